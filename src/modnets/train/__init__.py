"""Training algorithms and their infrastructure (logging, evaluation)."""

from ._logging import RunLogger as RunLogger
from ._supervised import FitConfig as FitConfig
from ._supervised import FitResult as FitResult
from ._supervised import fit as fit
from ._supervised import predict as predict
