"""Analysis: generalisation curves and (in later modules) routing and dependency diagnostics."""

from ._generalization import accuracy_by as accuracy_by
from ._generalization import majority_baseline as majority_baseline
from ._generalization import plot_error_curves as plot_error_curves
