"""modnets: modular neural networks in PyTorch.

Typed modules composed per input by programs or learned routers, trained end to end or module by module.
"""

from . import errors as errors
from . import types as types
from .compose import Library as Library
from .compose import Program as Program
from .errors import ModnetsError as ModnetsError
from .modules import Signature as Signature
from .modules import TypedModule as TypedModule
from .types import check_interfaces as check_interfaces
from .types import checking_interfaces as checking_interfaces

__version__ = "0.1.0"
