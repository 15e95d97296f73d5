"""Analysis: generalisation curves, baselines and routing diagnostics."""

from ._generalization import accuracy_by as accuracy_by
from ._generalization import majority_baseline as majority_baseline
from ._generalization import plot_error_curves as plot_error_curves
from ..routing import RoutingStats as RoutingStats
from ..routing import routing_stats as routing_stats
