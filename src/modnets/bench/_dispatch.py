"""Benchmark ``dispatch``: a hard-routed ModularLayer against the dense MLP of equal FLOPs and against the
per-module mask loop of the original implementations.

Each step is forward + backward of one layer on B rows (top-1 routing, each module an MLP d -> h -> d),
with gradients to the input and to every parameter (set to ``None`` before each step, as
``optimizer.zero_grad()`` does). The routing is fixed and seeded and given to the layer as a
``RouteResult``, so the router's own (tiny) cost is excluded. Two routings are measured:

- ``balanced`` (the headline): every module gets B/E rows at random positions, as a load-balanced router
  produces;
- ``iid``: each row picks a module uniformly at random, so the counts vary (about B/E +- sqrt(B/E)) and the
  engine pays for the imbalance (bucket padding).

The contenders are timed round-robin in one process after a warm-up; the figures are medians.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._threads import num_threads
from ..routing import MLPExperts, ModularLayer, Router, RouteResult, choose_strategy, dispatch_mask_loop, make_groups
from ..train import resolve_device
from ._timing import median_times

__all__ = ["run"]

NAME = "dispatch"
ROUTINGS = ("balanced", "iid")


def fixed_choice(n_modules: int, batch: int, routing: str, seed: int) -> Tensor:
    """A seeded top-1 choice (batch, 1): ``"balanced"`` (B/E rows per module, shuffled) or ``"iid"``."""
    gen = torch.Generator().manual_seed(seed)
    if routing == "balanced":
        return (torch.randperm(batch, generator=gen) % n_modules).view(batch, 1)
    return torch.randint(0, n_modules, (batch, 1), generator=gen)


def make_layer(n_modules: int, d: int, hidden: int, seed: int) -> ModularLayer:
    """A top-1 ModularLayer of ``n_modules`` MLPs d -> hidden -> d under a static router."""
    torch.manual_seed(seed)
    return ModularLayer(
        modules=MLPExperts(n_modules=n_modules, d_in=d, d_hidden=hidden, d_out=d),
        router=Router(n_modules=n_modules, static=True, mode="argmax"),
    )


def fixed_route(layer: ModularLayer, choice: Tensor) -> RouteResult:
    """The router's RouteResult for a given choice (B, 1), computed once, outside any timing."""
    with torch.no_grad():
        return layer.router(torch.empty(choice.shape[0], 0, device=choice.device), choice=choice)


def step_fn(forward: Callable[[], Tensor], params: list[Tensor], grad_out: Tensor) -> Callable[[], None]:
    """One training step: clear the gradients, forward, backward with a fixed output gradient."""

    def step() -> None:
        for p in params:
            p.grad = None
        forward().backward(grad_out)

    return step


def _counts(choice: Tensor, n_modules: int) -> list[int]:
    counts = torch.bincount(choice.reshape(-1), minlength=n_modules)
    return [int(counts.min()), int(counts.max())]


def run(quick: bool = False, device: str = "cpu") -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (B = 256, d = h = 64, 2 repeats) that runs in a few seconds.
        device: where the three contenders run (``"cpu"``, ``"cuda"``, ...).

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``. ``results["E=<E>"]`` holds, for the
        balanced routing, the median milliseconds of the three contenders, ``ratio_to_dense`` (dense /
        modular) and ``ratio_to_mask_loop`` (mask loop / modular), and the same under ``"iid"`` for the
        i.i.d. routing; ``ratio`` is the smaller balanced ``ratio_to_dense``.
    """
    batch, d, hidden = (256, 64, 64) if quick else (4096, 256, 256)
    repeats, warmup = (2, 1) if quick else (25, 3)
    dev = resolve_device(device)
    n_modules_list = (8, 32)
    with num_threads(2):
        results: dict[str, dict] = {}
        for n_modules in n_modules_list:
            layer = make_layer(n_modules, d, hidden, seed=n_modules).to(dev)
            params = [*layer.parameters()]
            dense = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d)).to(dev)
            x = torch.randn(batch, d, device=dev, requires_grad=True)
            grad_out = torch.randn(batch, d, device=dev)
            steps = {"dense": step_fn(lambda dense=dense, x=x: dense(x), [x, *dense.parameters()], grad_out)}
            choices = {r: fixed_choice(n_modules, batch, r, seed=n_modules).to(dev) for r in ROUTINGS}
            for routing, choice in choices.items():
                route = fixed_route(layer, choice)
                steps[f"modular/{routing}"] = step_fn(
                    lambda layer=layer, x=x, route=route: layer(x, route).output, [x, *params], grad_out
                )
                steps[f"mask_loop/{routing}"] = step_fn(
                    lambda bank=layer.experts, x=x, choice=choice: dispatch_mask_loop(x, choice, bank),
                    [x, *params],
                    grad_out,
                )
            t = median_times(steps, repeats=repeats, warmup=warmup, device=dev)
            per_routing = {}
            for routing, choice in choices.items():
                modular, mask = t[f"modular/{routing}"], t[f"mask_loop/{routing}"]
                per_routing[routing] = {
                    "modular_ms": round(modular * 1e3, 3),
                    "mask_loop_ms": round(mask * 1e3, 3),
                    "ratio_to_dense": round(t["dense"] / modular, 3),
                    "ratio_to_mask_loop": round(mask / modular, 3),
                    "strategy": choose_strategy(layer.experts, x, make_groups(choice, n_modules)),
                    "rows_per_module_min_max": _counts(choice, n_modules),
                }
            results[f"E={n_modules}"] = {"dense_ms": round(t["dense"] * 1e3, 3), **per_routing["balanced"]}
            results[f"E={n_modules}"]["iid"] = per_routing["iid"]
    config = layer_config(batch, d, hidden, n_modules_list, repeats, warmup, quick)
    config["dense"] = f"one MLP {d}->{hidden}->{d} over all rows (same FLOPs)"
    config["mask_loop"] = "per module: (choice == e).nonzero(), index_select rows, run, index_copy back"
    config["timing"] = "median; all contenders of one E interleaved round-robin in one process"
    config["device"] = str(dev)
    ratio = min(r["ratio_to_dense"] for r in results.values())
    return {
        "bench": NAME,
        "config": config,
        "results": results,
        "ratio": ratio,
        "ratio_is": "dense MLP time / ModularLayer time (min over E)",
    }


def layer_config(batch: int, d: int, hidden: int, n_modules_list, repeats: int, warmup: int, quick: bool) -> dict:
    """The ``config`` entries that the ``dispatch`` and ``scaling`` benchmarks share."""
    return {
        "batch": batch,
        "d": d,
        "hidden": hidden,
        "module": f"MLP {d}->{hidden}->{d} (ReLU), stacked weights (MLPExperts)",
        "n_modules": list(n_modules_list),
        "k": 1,
        "routing": "fixed, seeded, passed as a RouteResult (router cost excluded); headline: balanced "
        "(B/E rows per module at random positions); results[...]['iid']: i.i.d. uniform choice",
        "step": "forward + backward, grads to x and all parameters (set to None before each step)",
        "threads": 2,
        "dtype": "float32",
        "repeats": repeats,
        "warmup": warmup,
        "quick": quick,
    }
