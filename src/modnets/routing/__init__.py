"""Routing: routers (policies over modules), ``ModularLayer``, the ``MoE`` layer and the dispatch engine.

A :class:`Router` chooses, per example, k of the M modules of each layer; a :class:`ModularLayer` or an
:class:`MoE` layer runs the chosen modules through the dispatch engine, which runs each module once on
exactly its rows. Expert banks store a layer's modules, capacities bound how many rows a module takes,
and the routing statistics diagnose collapse. Router training algorithms live in :mod:`modnets.train`.

Public names:

- ``ExpertChoice``: the rows each expert chose (``expert_choice``).
- ``Overflow``: what a capacity did to one call's picks (``assign_capacity``).
- ``assign_capacity``: place the picks under a capacity; drop or reroute the rest.
- ``expert_capacity``: the capacity ``C = ceil(factor * n_rows * k / n_experts)``, at least 1.
- ``expert_choice``: each expert takes the ``capacity`` rows with the highest scores for it.
- ``choose_strategy``: the execution strategy ``"auto"`` picks.
- ``dispatch``: run each chosen module once on exactly its rows and combine the outputs.
- ``dispatch_mask_loop``: baseline: per module, select its rows with a boolean mask, run it, copy back.
- ``dispatch_naive``: reference: a Python loop over examples and picks (slow; for tests).
- ``ExpertBank``: M modules of one layer, runnable grouped by the dispatch engine.
- ``LinearExperts``: M affine maps stored stacked: module e computes ``x @ weight[e] + bias[e]``.
- ``MLPExperts``: M two-layer perceptrons stored stacked.
- ``ModuleListExperts``: arbitrary modules (any shapes after the batch dimension), run chunk by chunk.
- ``Groups``: bookkeeping of one sort of the B * k picks by module id, optionally their bucket layout.
- ``make_groups``: sort the picks by module id (stable) and count them.
- ``LayerOutput``: what a ``ModularLayer`` returns.
- ``ModularLayer``: a layer of M modules of which a router picks k per example.
- ``MoE``: a mixture-of-experts layer: ``shared(x) + sum_j w_j(x) * expert_{c_j(x)}(x)`` over k gated picks.
- ``MoEOutput``: what ``MoE.forward`` returns with ``return_route=True``.
- ``router_z_loss``: the ST-MoE router z-loss ``mean_rows logsumexp(logits)^2``, averaged over layers.
- ``switch_balance_loss``: the Switch / GShard load-balancing loss ``M * sum_e f_e * P_e``, averaged over layers.
- ``Router``: a policy over the M modules of each of L layers.
- ``RouteResult``: a routing decision for a batch (``choice``, ``log_prob``, ``probs``, ...).
- ``plackett_luce_log_prob``: log-probability of drawing the ordered picks without replacement.
- ``stack_routes``: join per-layer results along the layer axis; log-probabilities add up.
- ``ModularStack``: an encoder, L modular layers each routed by its own router (or one shared one), a head.
- ``RoutedModel``: the call signature the router-training algorithms rely on (``ModularStack`` has it).
- ``RoutedOutput``: what a routed model returns.
- ``RoutingStats``: Monte-Carlo routing diagnostics of one batch (entropies in nats).
- ``entropy``: entropy in nats of distributions along a dimension (0 log 0 = 0); differentiable.
- ``routing_stats``: H(A), H(A|X), I(A;X), per-layer usage and a collapse flag from routing distributions.
"""

from ._capacity import ExpertChoice as ExpertChoice
from ._capacity import Overflow as Overflow
from ._capacity import assign_capacity as assign_capacity
from ._capacity import expert_capacity as expert_capacity
from ._capacity import expert_choice as expert_choice
from ._dispatch import choose_strategy as choose_strategy
from ._dispatch import dispatch as dispatch
from ._dispatch import dispatch_mask_loop as dispatch_mask_loop
from ._dispatch import dispatch_naive as dispatch_naive
from ._experts import ExpertBank as ExpertBank
from ._experts import LinearExperts as LinearExperts
from ._experts import MLPExperts as MLPExperts
from ._experts import ModuleListExperts as ModuleListExperts
from ._groups import Groups as Groups
from ._groups import make_groups as make_groups
from ._layer import LayerOutput as LayerOutput
from ._layer import ModularLayer as ModularLayer
from ._moe import MoE as MoE
from ._moe import MoEOutput as MoEOutput
from ._moe import router_z_loss as router_z_loss
from ._moe import switch_balance_loss as switch_balance_loss
from ._router import Router as Router
from ._router import RouteResult as RouteResult
from ._router import plackett_luce_log_prob as plackett_luce_log_prob
from ._router import stack_routes as stack_routes
from ._stack import ModularStack as ModularStack
from ._stack import RoutedModel as RoutedModel
from ._stack import RoutedOutput as RoutedOutput
from ._stats import RoutingStats as RoutingStats
from ._stats import entropy as entropy
from ._stats import routing_stats as routing_stats
