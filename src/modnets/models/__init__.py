"""Presets: paper architectures as functions returning composed parts."""

from ._assemblies import ASSEMBLIES as ASSEMBLIES
from ._assemblies import example_assembly as example_assembly
from ._assemblies import get_assembly as get_assembly
from ._assemblies import nmn_assembly as nmn_assembly
from ._nmn import NMN as NMN
from ._nmn import nmn as nmn
from ._nmn import nmn_library as nmn_library
from ._nmn_modules import Combine as Combine
from ._nmn_modules import Describe as Describe
from ._nmn_modules import Find as Find
from ._nmn_modules import Measure as Measure
from ._nmn_modules import Relate as Relate
from ._routed import dense_mlp as dense_mlp
from ._routed import modular_mlp as modular_mlp
from ._sorting import ControllerPolicy as ControllerPolicy
from ._sorting import PointerShift as PointerShift
from ._sorting import ReferenceDigestor as ReferenceDigestor
from ._sorting import ReferencePolicy as ReferencePolicy
from ._sorting import ShiftReference as ShiftReference
from ._sorting import SortingDigestor as SortingDigestor
from ._sorting import SwapNet as SwapNet
from ._sorting import SwapReference as SwapReference
from ._sorting import sorting_agent as sorting_agent
from ._sorting import sorting_control as sorting_control
from ._sorting import sorting_operators as sorting_operators
