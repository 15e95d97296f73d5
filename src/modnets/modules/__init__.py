"""Typed modules: signatures, arguments and building blocks.

A typed module declares a :class:`Signature` (named input data types -> output data type), which is what
lets a program be type-checked and a module be found in the hub. Any ``nn.Module`` becomes one through
``Typed``; ``PerArgument`` gives a module one instance per argument value. The blocks are the small
networks the presets are built from, and the surrogate gradient modules stand in for the modules between
a trained module and its loss.

Public names:

- ``MLP``: a multi-layer perceptron ``d_in -> hidden... -> d_out`` with ReLU between layers.
- ``CNNStem``: a small convolutional feature extractor: strided 3x3 convolutions with ReLU.
- ``FeatureAttention``: attend over a feature map with an attention map; one feature vector per example.
- ``coordinate_channels``: two channels holding each cell's x and y coordinate in [-1, 1].
- ``freeze``: no gradients and a fixed evaluation mode for trained modules inside a model that trains on.
- ``Signature``: named input types -> output type.
- ``LowRankLinear``: a linear map with a factorised weight ``W = W_A W_B`` of rank ``rank``.
- ``MaskReadout``: read an attention mask as the NMN answering modules do, one vector per example.
- ``MCDropoutPrediction``: Monte-Carlo dropout prediction of a surrogate gradient module.
- ``SurrogateGradientModule``: a small, differentiable stand-in for the modules between a module and its loss.
- ``PerArgument``: one module instance per argument value (``find[red]``, ``find[blue]``, each with own weights).
- ``Typed``: give any ``nn.Module`` (or function of tensors) a signature.
- ``TypedModule``: a module with a signature whose output goes through the output type's ``constrain``.
"""

from ._blocks import MLP as MLP
from ._blocks import CNNStem as CNNStem
from ._blocks import FeatureAttention as FeatureAttention
from ._blocks import coordinate_channels as coordinate_channels
from ._freeze import freeze as freeze
from ._signature import Signature as Signature
from ._surrogate import LowRankLinear as LowRankLinear
from ._surrogate import MaskReadout as MaskReadout
from ._surrogate import MCDropoutPrediction as MCDropoutPrediction
from ._surrogate import SurrogateGradientModule as SurrogateGradientModule
from ._typed import PerArgument as PerArgument
from ._typed import Typed as Typed
from ._typed import TypedModule as TypedModule
