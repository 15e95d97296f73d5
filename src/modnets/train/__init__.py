"""Training algorithms and their infrastructure (logging, evaluation)."""

from ._buffer import RoutingBuffer as RoutingBuffer
from ._buffer import TopKBuffer as TopKBuffer
from ._buffer import TopKBufferConfig as TopKBufferConfig
from ._buffer import generalized_em as generalized_em
from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import CheckpointWarning as CheckpointWarning
from ._end_to_end import EndToEnd as EndToEnd
from ._end_to_end import EndToEndConfig as EndToEndConfig
from ._likelihood import GaussianLikelihood as GaussianLikelihood
from ._likelihood import LogLikelihood as LogLikelihood
from ._likelihood import categorical_log_likelihood as categorical_log_likelihood
from ._logging import RunLogger as RunLogger
from ._objective import Baseline as Baseline
from ._objective import RoutingObjective as RoutingObjective
from ._regularizers import RoutingRegularizers as RoutingRegularizers
from ._regularizers import load_balancing_loss as load_balancing_loss
from ._regularizers import mutual_information_estimate as mutual_information_estimate
from ._regularizers import policy_entropy as policy_entropy
from ._reinforce import Reinforce as Reinforce
from ._reinforce import ReinforceConfig as ReinforceConfig
from ._supervised import FitConfig as FitConfig
from ._supervised import FitResult as FitResult
from ._supervised import fit as fit
from ._supervised import predict as predict
from ._supervised import predict_routed as predict_routed
