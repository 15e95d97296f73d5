"""Analysis: generalisation curves, baselines and routing diagnostics.

Functions that turn trained models and logged runs into tables and figures: accuracy by group and
majority baselines, decomposition and recovery of ground-truth factors, routing statistics, the dependency
analysis that derives a module-wise training plan (its data model is re-exported from :mod:`modnets.plan`),
surrogate-gradient-module selection and correlation, and training curves. Plots are written as PNG files.

Public names:

- ``CODEPENDENT_MERGES``: merges that make an operand's gradient depend on the other operands' values.
- ``SAFE_MERGES``: merges whose gradient reaches each operand only scaled by a constant.
- ``Assembly``: data sources, modules, merges and losses of a modular model, as a checked acyclic graph.
- ``AuxiliaryNeed``: an auxiliary data set to cache: a trained module's outputs and the targets of its readers.
- ``Loss``: a loss computed on one node's output against a target the data set provides.
- ``Merge``: a parameter-free combination of several nodes' outputs.
- ``ModuleSpec``: a module of an assembly.
- ``Stage``: modules that can train at the same time; the stages of a plan run in order.
- ``SurrogateNeed``: a module with indirect supervision, to be trained through a surrogate gradient module.
- ``TrainingPlan``: how to train an assembly module by module.
- ``RoutingStats``: Monte-Carlo routing diagnostics of one batch (entropies in nats).
- ``routing_stats``: H(A), H(A|X), I(A;X), per-layer usage and a collapse flag from routing distributions.
- ``Decomposition``: how the images of each concept split over the modules.
- ``decomposition_table``: for each ground-truth concept, the fraction of its images won by each module.
- ``factor_alignment``: normalised mutual information between each ground-truth factor and the winning module.
- ``plot_identity_images``: save a grid of identity-only reconstructions, one row per model.
- ``plot_usage_curves``: save the share of each batch won by each module over training, one panel per run.
- ``DependencyReport``: what ``dependencies`` found.
- ``ModuleDependencies``: one row of the dependency table.
- ``dependencies``: classify every trained module of an assembly (thesis 4.1) and derive a training plan.
- ``format_dependency_table``: the dependency table, laid out like thesis Table 4.1.
- ``format_training_plan``: the plan as readable lines: each stage's jobs, the SGMs and auxiliary data sets.
- ``save_figure``: lay out a figure and write it to a path (creating the folder); returns the path.
- ``accuracy_by``: accuracy within each group.
- ``majority_baseline``: correctness of answering with the most frequent training answer of each group.
- ``plot_error_curves``: plot error (1 - accuracy, in %) against a group variable, one line per model.
- ``ParetoSelection``: candidates chosen near the Pareto front.
- ``pareto_front``: the candidates that no other candidate dominates.
- ``plot_pareto_selection``: scatter the candidates (thesis Fig. 4.6), the chosen ones highlighted.
- ``select_near_pareto``: choose the candidates closest to the loss-variance Pareto front.
- ``Recovery``: agreement of chosen modules with the truth, per routed layer.
- ``recovery_scores``: compare chosen modules with the true components, layer by layer.
- ``plot_routing_curves``: one panel per diagnostic against training step, one line per method.
- ``SurrogateCorrelation``: correlation between SGM losses and full-model losses.
- ``plot_surrogate_correlation``: scatter of full-model loss against SGM loss with the least-squares line.
- ``surrogate_correlation``: Pearson r (p-value, bootstrap interval) and Spearman rho of SGM vs full-model losses.
- ``plot_training_curves``: plot one logged measure of several runs, one line per run.
- ``Spread``: one measurement over seeds: mean, sample standard deviation, count and per-seed values.
- ``plot_search_trials``: one panel per hyper-parameter search, each trial's value against a parameter.
- ``plot_spreads``: bars of means with one-standard-deviation error bars and a dot per seed.
- ``spread``: mean and spread of per-seed values.
- ``spread_by``: per key, the spread over seeds of a curve measured once per seed.
"""

from ..plan import CODEPENDENT_MERGES as CODEPENDENT_MERGES
from ..plan import SAFE_MERGES as SAFE_MERGES
from ..plan import Assembly as Assembly
from ..plan import AuxiliaryNeed as AuxiliaryNeed
from ..plan import Loss as Loss
from ..plan import Merge as Merge
from ..plan import ModuleSpec as ModuleSpec
from ..plan import Stage as Stage
from ..plan import SurrogateNeed as SurrogateNeed
from ..plan import TrainingPlan as TrainingPlan
from ..routing import RoutingStats as RoutingStats
from ..routing import routing_stats as routing_stats
from ._decomposition import Decomposition as Decomposition
from ._decomposition import decomposition_table as decomposition_table
from ._decomposition import factor_alignment as factor_alignment
from ._decomposition import plot_identity_images as plot_identity_images
from ._decomposition import plot_usage_curves as plot_usage_curves
from ._dependencies import DependencyReport as DependencyReport
from ._dependencies import ModuleDependencies as ModuleDependencies
from ._dependencies import dependencies as dependencies
from ._dependencies import format_dependency_table as format_dependency_table
from ._dependencies import format_training_plan as format_training_plan
from ._figures import save_figure as save_figure
from ._generalization import accuracy_by as accuracy_by
from ._generalization import majority_baseline as majority_baseline
from ._generalization import plot_error_curves as plot_error_curves
from ._pareto import ParetoSelection as ParetoSelection
from ._pareto import pareto_front as pareto_front
from ._pareto import plot_pareto_selection as plot_pareto_selection
from ._pareto import select_near_pareto as select_near_pareto
from ._recovery import Recovery as Recovery
from ._recovery import recovery_scores as recovery_scores
from ._routing_plots import plot_routing_curves as plot_routing_curves
from ._search_trials import plot_search_trials as plot_search_trials
from ._seeds import Spread as Spread
from ._seeds import plot_spreads as plot_spreads
from ._seeds import spread as spread
from ._seeds import spread_by as spread_by
from ._surrogate_correlation import SurrogateCorrelation as SurrogateCorrelation
from ._surrogate_correlation import plot_surrogate_correlation as plot_surrogate_correlation
from ._surrogate_correlation import surrogate_correlation as surrogate_correlation
from ._training_curves import plot_training_curves as plot_training_curves
