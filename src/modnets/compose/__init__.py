"""Programs (layouts), the module library and batched execution of heterogeneous layouts.

A :class:`Program` is a tree of module calls, ``name[arg](child, ...)``, parsed from text or built from a
CLEVR-style node list. A :class:`Library` maps names to typed modules, type-checks programs against their
signatures and runs a batch of different programs at once, grouping identical calls at the same depth;
the grouping of a batch is an :class:`ExecutionPlan`. A :class:`ProgramSpace` lists the programs a library
can form within size and depth bounds, and a :class:`ProgramPolicy` learns to write them: a decoder whose
every sample type-checks by construction.

Public names:

- ``Library``: the modules a program may call, by name; type-checks and executes programs.
- ``ExecutionPlan``: the grouped calls of a batch of programs, ready to run (built by ``Library.plan``).
- ``Program``: one module call and the calls that feed it: ``name[arg](child, child, ...)``.
- ``ProgramSpace``: the programs of bounded size and depth that a set of typed modules can form, as token sequences.
- ``ProgramPolicy``: a policy over the programs of a ``ProgramSpace``, decoded under its types.
- ``ProgramSample``: programs drawn, picked or scored by a ``ProgramPolicy``, one per row.
"""

from ._library import Library as Library
from ._plan import ExecutionPlan as ExecutionPlan
from ._policy import ProgramPolicy as ProgramPolicy
from ._policy import ProgramSample as ProgramSample
from ._program import Program as Program
from ._space import ProgramSpace as ProgramSpace
