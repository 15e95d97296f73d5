import pytest
import torch
from torch import nn

import modnets
from modnets import Signature, TypedModule
from modnets.errors import ConfigError, InterfaceError, ShapeError, UnknownNameError
from modnets.modules import MLP, CNNStem, FeatureAttention, PerArgument, Typed
from modnets.types import Latent, Mask, Probs


class Gate(TypedModule):
    def __init__(self):
        super().__init__(Signature(inputs={"x": Latent(3)}, output=Mask()), arguments=["lo", "hi"])
        self.bias = nn.Embedding(2, 1)

    def compute(self, x, *, arg=None):
        return x + self.bias(arg)


def test_output_goes_through_the_output_type_constraint():
    g = Gate()
    y = g(torch.randn(4, 3) * 10, arg=torch.tensor([0, 1, 0, 1]))
    assert ((y > 0) & (y < 1)).all()
    assert g.arg_index("hi") == 1
    with pytest.raises(UnknownNameError, match="no argument 'mid'; known: lo, hi"):
        g.arg_index("mid")


def test_wrong_number_of_inputs_is_an_interface_error():
    with pytest.raises(InterfaceError, match=r"expects 1 inputs \(x: Latent\(3\)\) -> Mask, got 2"):
        Gate()(torch.randn(2, 3), torch.randn(2, 3), arg=torch.tensor([0, 0]))


def test_checking_validates_inputs_and_outputs_with_the_module_named():
    head = Typed(nn.Linear(3, 2), Signature(inputs={"h": Latent(3)}, output=Probs(2)))
    head.label = "answer"
    x = torch.randn(2, 3)
    x[1, 0] = float("inf")
    head(x)  # unchecked
    with modnets.checking_interfaces():
        with pytest.raises(InterfaceError, match=r"module 'answer' input 'h': Latent\(3\) value of shape \(2, 3\) "
                           r"contains 0 NaN and 1 infinite"):
            head(x)
        with pytest.raises(InterfaceError, match=r"last dimension 4, expected 3"):
            head(torch.randn(2, 4))


def test_signature_validation_and_text():
    sig = Signature(inputs={"a": Mask(), "b": Mask()}, output=Mask(), context={"features": Latent(8)})
    assert str(sig) == "(a: Mask, b: Mask; features: Latent(8)) -> Mask"
    assert sig.arity == 2 and sig.accepts_inputs((Mask(), Latent())) == 1
    with pytest.raises(ConfigError, match="must be a DataType"):
        Signature(inputs={"a": "Mask"}, output=Mask())
    with pytest.raises(ConfigError, match="output must be a DataType"):
        Signature(output=3)


def test_per_argument_instances_have_their_own_weights():
    pa = PerArgument(lambda v: Typed(nn.Linear(3, 3), Signature(inputs={"x": Latent(3)}, output=Latent(3))),
                     ["left", "right"])
    pa.set_label("relate")
    assert pa.instance("left") is not pa.instance("right")
    assert pa.instance("left").label == "relate[left]"
    x = torch.randn(5, 3)
    arg = torch.tensor([0, 1, 1, 0, 1])
    y = pa(x, arg=arg)
    torch.testing.assert_close(y[0], pa.instance("left")(x[:1])[0])
    torch.testing.assert_close(y[2], pa.instance("right")(x[2:3])[0])
    with pytest.raises(UnknownNameError, match="known: left, right"):
        pa.instance("up")
    with pytest.raises(ConfigError):
        PerArgument(lambda v: Gate(), [])


def test_blocks_shapes_and_errors():
    assert MLP(4, 2, (8, 8))(torch.randn(3, 4)).shape == (3, 2)
    with pytest.raises(ShapeError, match="last dimension 4"):
        MLP(4, 2)(torch.randn(3, 5))
    stem = CNNStem(3, (8, 16), coords=True)
    f = stem(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 18, 8, 8) and stem.out_channels == 18
    with pytest.raises(ShapeError, match="CNNStem expects images"):
        stem(torch.rand(2, 1, 32, 32))
    att = FeatureAttention("sum")
    feats = torch.randn(2, 5, 4, 4)
    one_hot = torch.zeros(2, 4, 4)
    one_hot[:, 1, 2] = 1
    torch.testing.assert_close(att(feats, one_hot), feats[:, :, 1, 2], atol=1e-5, rtol=1e-5)
    with pytest.raises(ShapeError):
        att(feats, torch.zeros(2, 3, 3))
    with pytest.raises(ConfigError):
        FeatureAttention("mean")


def test_per_argument_refuses_an_empty_batch():
    pa = PerArgument(lambda v: Typed(nn.Linear(3, 3), Signature(inputs={"x": Latent(3)}, output=Latent(3))), ["a"])
    with pytest.raises(ShapeError, match="non-empty"):
        pa(torch.zeros(0, 3), arg=torch.zeros(0, dtype=torch.long))
