"""Programs (layouts), the module library and batched execution of heterogeneous layouts.

A :class:`Program` is a tree of module calls, ``name[arg](child, ...)``, parsed from text or built from a
CLEVR-style node list. A :class:`Library` maps names to typed modules, type-checks programs against their
signatures and runs a batch of different programs at once, grouping identical calls at the same depth;
the grouping of a batch is an :class:`ExecutionPlan`.

Public names:

- ``Library``: the modules a program may call, by name; type-checks and executes programs.
- ``ExecutionPlan``: the grouped calls of a batch of programs, ready to run (built by ``Library.plan``).
- ``Program``: one module call and the calls that feed it: ``name[arg](child, child, ...)``.
"""

from ._library import Library as Library
from ._plan import ExecutionPlan as ExecutionPlan
from ._program import Program as Program
