"""Neural data types (thesis 4.2.1, Table 4.3): what flows through module interfaces."""

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
