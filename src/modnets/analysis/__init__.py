"""Analysis: generalisation curves, baselines and routing diagnostics."""

from ..routing import RoutingStats as RoutingStats
from ..routing import routing_stats as routing_stats
from ._generalization import accuracy_by as accuracy_by
from ._generalization import majority_baseline as majority_baseline
from ._generalization import plot_error_curves as plot_error_curves
from ._recovery import Recovery as Recovery
from ._recovery import recovery_scores as recovery_scores
from ._routing_plots import plot_routing_curves as plot_routing_curves
from ._training_curves import plot_training_curves as plot_training_curves
from ._assembly import CODEPENDENT_MERGES as CODEPENDENT_MERGES
from ._assembly import SAFE_MERGES as SAFE_MERGES
from ._assembly import Assembly as Assembly
from ._assembly import Loss as Loss
from ._assembly import Merge as Merge
from ._assembly import ModuleSpec as ModuleSpec
from ._dependencies import AuxiliaryNeed as AuxiliaryNeed
from ._dependencies import DependencyReport as DependencyReport
from ._dependencies import ModuleDependencies as ModuleDependencies
from ._dependencies import Stage as Stage
from ._dependencies import SurrogateNeed as SurrogateNeed
from ._dependencies import TrainingPlan as TrainingPlan
from ._dependencies import dependencies as dependencies
from ._dependencies import format_dependency_table as format_dependency_table
from ._dependencies import format_training_plan as format_training_plan
