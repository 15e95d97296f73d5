"""Expert banks: keyword-only constructors that name a bad argument, and modules that agree across paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError
from modnets.routing import LinearExperts, MLPExperts, ModuleListExperts


def test_positional_arguments_are_rejected():
    with pytest.raises(TypeError):
        MLPExperts(4, 8, 16, 8)
    with pytest.raises(TypeError):
        LinearExperts(4, 8, 8)
    with pytest.raises(TypeError):
        ModuleListExperts([nn.Linear(2, 2)])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: MLPExperts(n_modules=0, d_in=8, d_hidden=16, d_out=8), ["n_modules", "n_modules=0", "positive int"]),
        (lambda: MLPExperts(n_modules=4, d_in=8, d_hidden=2.5, d_out=8), ["d_hidden", "2.5", "positive int"]),
        (lambda: MLPExperts(n_modules=4, d_in=True, d_hidden=16, d_out=8), ["d_in", "True", "positive int"]),
        (lambda: MLPExperts(n_modules=4, d_in=8, d_hidden=16, d_out=8, activation="relu"), ["activation", "'relu'"]),
        (lambda: LinearExperts(n_modules=4, d_in=8, d_out=-1), ["d_out", "-1", "positive int"]),
        (lambda: LinearExperts(n_modules=4, d_in=8, d_out=8, bias="yes"), ["bias", "'yes'", "bool"]),
        (lambda: ModuleListExperts(modules=[]), ["modules", "non-empty"]),
        (lambda: ModuleListExperts(modules=nn.Linear(2, 2)), ["modules", "Linear"]),
        (lambda: ModuleListExperts(modules=[nn.Linear(2, 2), "conv"]), ["modules", "str"]),
        (lambda: ModuleListExperts(modules=[nn.Linear(2, 2)], d_in=0), ["d_in", "d_in=0", "None or a positive int"]),
    ],
)
def test_bad_value_raises_config_error_naming_the_argument(make, words):
    with pytest.raises(ConfigError) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_module_list_experts_accepts_a_module_list_and_sizes():
    bank = ModuleListExperts(modules=nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)]), d_in=3, d_out=2)
    assert (bank.n_modules, bank.d_in, bank.d_out) == (2, 3, 2)


@pytest.mark.parametrize(
    "bank",
    [
        LinearExperts(n_modules=3, d_in=4, d_out=5),
        LinearExperts(n_modules=3, d_in=4, d_out=5, bias=False),
        MLPExperts(n_modules=3, d_in=4, d_hidden=6, d_out=5),
        MLPExperts(n_modules=3, d_in=4, d_hidden=6, d_out=5, activation=torch.tanh),
        ModuleListExperts(modules=[nn.Linear(4, 5) for _ in range(3)]),
    ],
    ids=["linear", "linear_nobias", "mlp", "mlp_tanh", "list"],
)
def test_run_all_equals_each_module_on_every_row(bank):
    x = torch.randn(7, 4)
    want = torch.stack([f(x) for f in bank.expert_fns()])
    torch.testing.assert_close(bank.run_all(x), want, atol=1e-5, rtol=1e-4)
    assert bank.run_all(x).shape == (3, 7, 5)
