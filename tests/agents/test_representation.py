import pytest
import torch

from modnets.agents import Representation
from modnets.errors import ConfigError, ShapeError


def _rep(b=3):
    return Representation(digits=torch.arange(b * 4 * 2, dtype=torch.float).reshape(b, 4, 2), a=torch.zeros(b, 4))


def test_mapping_and_immutability():
    rep = _rep()
    assert rep.batch_size == 3 and set(rep) == {"digits", "a"} and len(rep) == 2
    new = rep.replace(a=torch.ones(3, 4))
    assert rep["a"].sum() == 0 and new["a"].sum() == 12
    with pytest.raises(KeyError, match="no field 'b'"):
        rep["b"]


def test_rows_and_put_rows_round_trip_and_carry_gradients():
    rep = _rep()
    idx = torch.tensor([2, 0])
    sub = rep.rows(idx)
    torch.testing.assert_close(sub["digits"], rep["digits"][[2, 0]])
    x = torch.full((2, 4), 5.0, requires_grad=True)
    out = rep.put_rows(idx, sub.replace(a=x))
    assert out["a"][[0, 2]].eq(5).all() and out["a"][1].eq(0).all()
    out["a"].sum().backward()
    assert x.grad.eq(1).all()


def test_where_and_stack():
    a, b = _rep(), _rep().map(lambda x: -x)
    mixed = a.where(torch.tensor([True, False, True]), b)
    torch.testing.assert_close(mixed["digits"][1], b["digits"][1])
    torch.testing.assert_close(mixed["digits"][2], a["digits"][2])
    stacked = Representation.stack([a, b, a])
    assert stacked["digits"].shape == (3, 3, 4, 2)


def test_bad_representations_raise_typed_errors():
    with pytest.raises(ConfigError, match="at least one field"):
        Representation()
    with pytest.raises(ConfigError, match="must be a Tensor"):
        Representation(a=[1, 2])
    with pytest.raises(ShapeError, match="share their leading"):
        Representation(a=torch.zeros(2, 3), b=torch.zeros(3, 3))
    with pytest.raises(ShapeError, match="does not fit"):
        _rep().put_rows(torch.tensor([0]), _rep(2))
    with pytest.raises(ShapeError, match="mask"):
        _rep().where(torch.tensor([True]), _rep())
