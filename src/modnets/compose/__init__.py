"""Programs (layouts), the module library and batched execution of heterogeneous layouts."""

from ._library import Library as Library
from ._plan import ExecutionPlan as ExecutionPlan
from ._program import Program as Program
