"""Typed modules: signatures, arguments and building blocks."""

from ._blocks import MLP as MLP
from ._blocks import CNNStem as CNNStem
from ._blocks import FeatureAttention as FeatureAttention
from ._blocks import coordinate_channels as coordinate_channels
from ._signature import Signature as Signature
from ._surrogate import LowRankLinear as LowRankLinear
from ._surrogate import MaskReadout as MaskReadout
from ._surrogate import MCDropoutPrediction as MCDropoutPrediction
from ._surrogate import SurrogateGradientModule as SurrogateGradientModule
from ._typed import PerArgument as PerArgument
from ._typed import Typed as Typed
from ._typed import TypedModule as TypedModule
