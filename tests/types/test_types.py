import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modnets
from modnets.errors import ConfigError, InterfaceError
from modnets.types import (
    Bounded,
    HeatMap,
    Image,
    Latent,
    Logits,
    Mask,
    MaskAlgebra,
    OneHot,
    Pointer,
    Probs,
    ProductSumAlgebra,
    Transform,
    algebra,
    uniform_noise,
)

ALL = [Mask(), Probs(4), Logits(4), OneHot(4), Pointer(4), Bounded(low=-2, high=3), Latent(), HeatMap(),
       Transform(3), Image(3)]


def _raw(t):
    if isinstance(t, Transform):
        return torch.randn(5, 3, 3) * 0.3
    if isinstance(t, Image):
        return torch.randn(5, 3, 4, 4) * 5
    return torch.randn(5, 4) * 5


@pytest.mark.parametrize("t", ALL, ids=str)
def test_constrain_lands_in_the_domain_and_validates(t):
    x = t.constrain(_raw(t))
    t.validate(x)  # does not raise
    assert t.accepts(t)
    assert torch.isfinite(t.penalty(x)) and t.penalty(x).dim() == 0


@pytest.mark.parametrize("t", ALL, ids=str)
def test_augment_stays_in_the_domain(t):
    x = t.constrain(_raw(t))
    noisy = t.augment(x, 0.4, generator=torch.Generator().manual_seed(1))
    assert noisy.shape == x.shape
    t.validate(noisy)


def test_uniform_noise_is_eq_3_1():
    x = torch.tensor([0.0, 1.0, 0.0, 1.0])
    y = uniform_noise(x, 0.4, torch.Generator().manual_seed(0))
    assert ((y >= 0) & (y <= 0.4))[x == 0].all()
    assert ((y >= 0.6) & (y <= 1.0))[x == 1].all()


def test_softmax_noise_is_eq_3_2_and_keeps_the_argmax():
    x = torch.eye(5)
    y = Probs(5).augment(x, 0.4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(y.sum(-1), torch.ones(5))
    assert (y.argmax(-1) == torch.arange(5)).all()


@pytest.mark.parametrize(
    "consumer, producer, ok",
    [
        (Mask(), Mask(), True),
        (Mask(), Pointer(), True),
        (Pointer(), Mask(), False),
        (Mask(), HeatMap(), False),
        (HeatMap(), Mask(), True),
        (Bounded(), Mask(), True),
        (Bounded(low=0, high=0.5), Mask(), False),
        (Mask(), Image(), False),
        (Probs(3), OneHot(3), True),
        (Probs(3), OneHot(4), False),
        (OneHot(3), Probs(3), False),
        (Latent(), Mask(), True),
        (Latent(4), Probs(5), False),
        (Logits(3), Latent(3), False),
        (Logits(3), Logits(), True),
        (Probs(3), Logits(3), False),
    ],
    ids=lambda v: str(v),
)
def test_accepts(consumer, producer, ok):
    assert consumer.accepts(producer) is ok


def test_validate_names_where_type_and_problem():
    bad = torch.tensor([[0.2, float("nan")]])
    expected = r"module 'find\[red\]' output: Mask value of shape \(1, 2\) contains 1 NaN"
    with pytest.raises(InterfaceError, match=expected):
        Mask().validate(bad, where="module 'find[red]' output")
    with pytest.raises(InterfaceError, match="above 1.0"):
        Mask().validate(torch.tensor([[0.5, 1.5]]))
    with pytest.raises(InterfaceError, match="does not sum to 1"):
        Probs(2).validate(torch.tensor([[0.5, 0.9]]))
    with pytest.raises(InterfaceError, match="last dimension 2, expected 3"):
        Probs(3).validate(torch.tensor([[0.5, 0.5]]))
    with pytest.raises(InterfaceError, match="4 dimensions"):
        Image(3).validate(torch.rand(3, 4, 4))
    with pytest.raises(InterfaceError, match="square matrices"):
        Transform(3).validate(torch.rand(2, 3, 4))
    with pytest.raises(InterfaceError, match="floating dtype"):
        Latent().validate(torch.ones(2, 2, dtype=torch.long))


def test_bad_type_parameters_raise_config_error():
    with pytest.raises(ConfigError, match="low must be < high"):
        Bounded(low=1, high=0)
    with pytest.raises(ConfigError, match="size"):
        Probs(0)
    with pytest.raises(ConfigError, match="noise level"):
        uniform_noise(torch.zeros(2), -1)


def test_pointer_validity_and_saturation():
    p = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.7, 0.0], [0.1, 0.2, 0.3]])
    assert Pointer.is_valid(p).tolist() == [True, False, False]
    ref = torch.tensor([[1.0, 0, 0]])
    assert OneHot.saturation(torch.tensor([[0.95, 0.05, 0.0]]), ref) == 0
    assert OneHot.saturation(torch.tensor([[0.8, 0.05, 0.15]]), ref) == pytest.approx(2 / 3)


masks = st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=6, max_size=6).map(torch.tensor)


@settings(max_examples=50, deadline=None)
@given(masks, masks, masks)
def test_mask_algebra_laws(a, b, c):
    m = MaskAlgebra()
    # bounded, commutative, associative, De Morgan, idempotent
    for r in (m.and_(a, b), m.or_(a, b), m.not_(a)):
        assert ((r >= 0) & (r <= 1)).all()
    assert torch.equal(m.and_(a, b), m.and_(b, a))
    assert torch.equal(m.and_(m.and_(a, b), c), m.and_(a, m.and_(b, c)))
    assert torch.allclose(m.not_(m.and_(a, b)), m.or_(m.not_(a), m.not_(b)))
    assert torch.equal(m.or_(a, a), a)


def test_algebra_choice():
    a, b = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.5])
    assert isinstance(algebra(True), MaskAlgebra) and isinstance(algebra(False), ProductSumAlgebra)
    assert torch.allclose(algebra(False).and_(a, b), a * b)
    assert torch.allclose(algebra(False).or_(a, b), a + b)
    assert torch.allclose(algebra(True).and_(a, b), torch.tensor([0.2, 0.5]))


def test_check_interfaces_switch_returns_previous():
    assert modnets.check_interfaces(True) is False
    assert modnets.types.interfaces_checked()
    assert modnets.check_interfaces(False) is True
    with modnets.checking_interfaces():
        assert modnets.types.interfaces_checked()
    assert not modnets.types.interfaces_checked()
