"""The data model of module-wise training: assemblies (what reads what, where the losses are) and the
training plans derived from them (stages, auxiliary data sets, surrogate gradient modules).

:func:`modnets.analysis.dependencies` turns an :class:`Assembly` into a :class:`TrainingPlan`;
:func:`modnets.train.run_stages` executes one.

Public names:

- ``ASSEMBLY_FORMAT``: the format name written into an assembly's JSON form.
- ``CODEPENDENT_MERGES``: merges that make an operand's gradient depend on the other operands' values.
- ``SAFE_MERGES``: merges whose gradient reaches each operand only scaled by a constant.
- ``Assembly``: data sources, modules, merges and losses of a modular model, as a checked acyclic graph.
- ``Loss``: a loss computed on one node's output against a target the data set provides.
- ``Merge``: a parameter-free combination of several nodes' outputs.
- ``ModuleSpec``: a module of an assembly.
- ``read_assembly``: the assembly a user points to: a JSON file, or ``package.module:attribute``.
- ``AuxiliaryNeed``: an auxiliary data set to cache: a trained module's outputs and the targets of its readers.
- ``Stage``: modules that can train at the same time; the stages of a plan run in order.
- ``SurrogateNeed``: a module with indirect supervision, to be trained through a surrogate gradient module.
- ``TrainingPlan``: how to train an assembly module by module.
"""

from ._assembly import ASSEMBLY_FORMAT as ASSEMBLY_FORMAT
from ._assembly import CODEPENDENT_MERGES as CODEPENDENT_MERGES
from ._assembly import SAFE_MERGES as SAFE_MERGES
from ._assembly import Assembly as Assembly
from ._assembly import Loss as Loss
from ._assembly import Merge as Merge
from ._assembly import ModuleSpec as ModuleSpec
from ._assembly_source import read_assembly as read_assembly
from ._training_plan import AuxiliaryNeed as AuxiliaryNeed
from ._training_plan import Stage as Stage
from ._training_plan import SurrogateNeed as SurrogateNeed
from ._training_plan import TrainingPlan as TrainingPlan
