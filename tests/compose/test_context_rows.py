"""``Library(programs, context_rows=...)``: many programs over one context row per example give what the
repeated context gives, values and gradients, for modules that read gathered rows and modules that index the
whole context."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.compose import ProgramPolicy, ProgramSpace
from modnets.errors import ShapeError
from modnets.models import nmn_library
from modnets.types import Probs


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    lib = nmn_library(True, channels=6, hidden=8, grid=(4, 4))
    space = ProgramSpace.of(lib, output=Probs(26), max_size=6, max_depth=4)
    return lib, ProgramPolicy(space=space, d_context=4)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 10_000))
def test_shared_context_rows_equal_the_repeated_context(setup, examples, samples, seed):
    lib, policy = setup
    g = torch.Generator().manual_seed(seed)
    n = examples * samples
    with torch.no_grad():
        programs = policy(torch.randn(n, 4, generator=g), mode="sample", generator=g).programs
    rows = torch.randint(0, examples, (n,), generator=g)
    features = torch.randn(examples, 6, 4, 4, generator=g)
    weights = torch.randn(n, 26, generator=g)
    shared, repeated = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    params = list(lib.parameters())
    a = lib(programs, context_rows=rows, features=shared)
    b = lib(programs, features=repeated[rows])
    assert torch.allclose(a, b, atol=1e-6)
    grads_a = torch.autograd.grad((a * weights).sum(), [shared, *params], allow_unused=True)
    grads_b = torch.autograd.grad((b * weights).sum(), [repeated, *params], allow_unused=True)
    for x, y in zip(grads_a, grads_b, strict=True):
        assert (x is None and y is None) or torch.allclose(x, y, atol=1e-5)
    each = lib.execute_each(programs, context_rows=rows, features=features)
    assert torch.allclose(each, b.detach(), atol=1e-5)


def test_bad_context_rows_raise_shape_errors(setup):
    lib, policy = setup
    programs = policy(torch.randn(3, 4)).programs
    features = torch.randn(2, 6, 4, 4)
    with pytest.raises(ShapeError, match=r"context_rows must be a \(3,\) long tensor"):
        lib(programs, context_rows=torch.tensor([0, 1]), features=features)
    with pytest.raises(ShapeError, match=r"rows in \[0, 2\)"):
        lib(programs, context_rows=torch.tensor([0, 1, 2]), features=features)
    with pytest.raises(ShapeError, match="same number of rows"):
        lib(programs, context_rows=torch.tensor([0, 1, 1]), features=features, other=torch.randn(3, 2))
