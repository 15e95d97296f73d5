"""modnets: modular neural networks in PyTorch.

Typed modules composed per input by programs or learned routers, trained end to end or module by module.
"""

from . import errors as errors
from . import models as models  # the presets register their module classes with the hub
from . import plan as plan
from . import types as types
from ._config import Config as Config
from ._config import read_config_file as read_config_file
from ._config import with_overrides as with_overrides
from ._config import with_values as with_values
from .compose import Library as Library
from .compose import Program as Program
from .errors import ModnetsError as ModnetsError
from .modules import Signature as Signature
from .modules import TypedModule as TypedModule
from .types import check_interfaces as check_interfaces
from .types import checking_interfaces as checking_interfaces

__version__ = "0.1.0"
