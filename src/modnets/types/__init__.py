"""Neural data types (thesis 4.2.1, Table 4.3): what flows through module interfaces.

A data type describes the tensors a module reads or writes (an image, an attention mask, probabilities, a
transform). It constrains a typed module's output and, while interface checking is on, validates every
tensor that crosses an interface. The algebras say how attention maps combine under ``and``, ``or`` and
``not``.

Public names:

- ``Algebra``: how AND, OR and NOT combine two attention maps of the same shape.
- ``MaskAlgebra``: typed masks in [0, 1]: AND = min, OR = max, NOT = 1 - x.
- ``ProductSumAlgebra``: untyped heat maps: AND = product, OR = sum.
- ``algebra``: the mask algebra for typed interfaces, the product/sum algebra for untyped ones.
- ``DataType``: what flows through a module interface; the base of every data type.
- ``Bounded``: values inside ``[low, high]``; either end may be open.
- ``HeatMap``: an unnormalised, non-negative attention map (ReLU).
- ``Image``: an image batch ``(batch, channels, height, width)`` with values in [0, 1].
- ``Mask``: a soft mask (attention map) with values in (0, 1).
- ``Pointer``: a position along a sequence: a mask that is one-hot along its last dimension.
- ``uniform_noise``: thesis eq. 3.1, ``|x - U(0, level)|``: noise that keeps one-hot-like values near them.
- ``check_interfaces``: switch runtime interface checking on or off; returns the previous setting.
- ``checking_interfaces``: context manager form of ``check_interfaces``, restoring the setting on exit.
- ``interfaces_checked``: whether runtime interface checking is on.
- ``FeatureMap``: unbounded features on a spatial grid, ``(batch, channels, height, width)``.
- ``Latent``: an untyped, unbounded representation.
- ``Logits``: unnormalised class scores along the last dimension.
- ``OneHot``: a (near) one-hot vector: a distribution whose mass should sit on one class.
- ``Probs``: a categorical distribution along the last dimension (a softmax output).
- ``Transform``: a square matrix ``T = exp(A)`` acting on vectors, ``(batch, size, size)``.
"""

from ._algebra import Algebra as Algebra
from ._algebra import MaskAlgebra as MaskAlgebra
from ._algebra import ProductSumAlgebra as ProductSumAlgebra
from ._algebra import algebra as algebra
from ._base import DataType as DataType
from ._bounded import Bounded as Bounded
from ._bounded import HeatMap as HeatMap
from ._bounded import Image as Image
from ._bounded import Mask as Mask
from ._bounded import Pointer as Pointer
from ._bounded import uniform_noise as uniform_noise
from ._checking import check_interfaces as check_interfaces
from ._checking import checking_interfaces as checking_interfaces
from ._checking import interfaces_checked as interfaces_checked
from ._latent import FeatureMap as FeatureMap
from ._latent import Latent as Latent
from ._latent import Logits as Logits
from ._simplex import OneHot as OneHot
from ._simplex import Probs as Probs
from ._transform import Transform as Transform
