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
