import json

import pytest

from modnets.bench import BENCHMARKS, get_benchmark
from modnets.errors import UnknownNameError


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_runs_quick_and_reports_the_contract(name):
    result = get_benchmark(name).run(quick=True)
    assert set(result) == {"bench", "config", "results", "ratio", "ratio_is"}
    assert result["bench"] == name
    assert result["ratio"] > 0 and isinstance(result["ratio_is"], str)
    json.dumps(result)  # JSON-ready


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known benchmarks: layouts, dispatch, scaling"):
        get_benchmark("nope")


@pytest.mark.parametrize(("n_modules", "k"), [(8, 1), (8, 2), (32, 2), (6, 3)])
def test_the_balanced_choice_gives_every_module_the_same_load_and_distinct_picks_per_row(n_modules, k):
    import torch

    from modnets.bench._dispatch import balanced_choice

    choice = balanced_choice(n_modules, 96, k, seed=0)
    assert choice.shape == (96, k)
    assert torch.bincount(choice.reshape(-1), minlength=n_modules).tolist() == [96 * k // n_modules] * n_modules
    assert all(len(set(row)) == k for row in choice.tolist())


def test_the_dispatch_benchmark_decomposes_each_router_row():
    result = get_benchmark("dispatch").run(quick=True)
    for per_k in result["results"]["router"].values():
        for row in per_k.values():
            assert row["balanced_ms"] > 0 and row["router_ms"] > 0 and row["ratio_if_balanced"] > 0
    assert set(result["results"]["matmul"]) == {"E=8", "E=32", "E=128"}


def test_the_balance_trained_router_has_a_lower_balancing_loss_and_leaves_the_original_alone():
    import torch

    from modnets.bench._dispatch import balance_trained
    from modnets.routing import Router, switch_balance_loss

    torch.manual_seed(0)
    router = Router(n_modules=8, d_in=16, mode="topk", k=1, gate="softmax_topk")
    with torch.no_grad():
        next(router.parameters()).mul_(4.0)  # a more skewed router
    before = [p.detach().clone() for p in router.parameters()]
    x = torch.randn(2048, 16)
    trained = balance_trained(router, 16, 512, torch.device("cpu"), steps=60)
    with torch.no_grad():
        assert switch_balance_loss(trained(x)) < switch_balance_loss(router(x))
    assert all(torch.equal(a, b) for a, b in zip(before, router.parameters(), strict=True))
