"""Routing: routers (policies over modules), ``ModularLayer``, the ``MoE`` layer and the dispatch engine."""

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
