"""The data model of module-wise training: assemblies (what reads what, where the losses are) and the
training plans derived from them (stages, auxiliary data sets, surrogate gradient modules).

:func:`modnets.analysis.dependencies` turns an :class:`Assembly` into a :class:`TrainingPlan`;
:func:`modnets.train.run_stages` executes one.
"""

from ._assembly import CODEPENDENT_MERGES as CODEPENDENT_MERGES
from ._assembly import SAFE_MERGES as SAFE_MERGES
from ._assembly import Assembly as Assembly
from ._assembly import Loss as Loss
from ._assembly import Merge as Merge
from ._assembly import ModuleSpec as ModuleSpec
from ._training_plan import AuxiliaryNeed as AuxiliaryNeed
from ._training_plan import Stage as Stage
from ._training_plan import SurrogateNeed as SurrogateNeed
from ._training_plan import TrainingPlan as TrainingPlan
