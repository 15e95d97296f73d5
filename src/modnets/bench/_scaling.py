"""Benchmark ``scaling``: cost per example of a hard-routed ModularLayer as the number of modules grows.

Same step as ``modnets bench dispatch`` (forward + backward, top-1, MLP modules d -> h -> d, fixed seeded
routing given as a ``RouteResult``, router cost excluded) at fixed B and d, for E = 8, 32, 128. With hard
routing the FLOPs per example do not depend on E; what grows is the parameter memory (E * 2 * d * h floats,
and as much again for their gradients, written anew at every step) and the number of rows per module
shrinks (B / E), so the per-module matmuls get smaller. Headline routing: balanced (B/E rows per module
at random positions); ``results[...]["iid"]`` repeats it with an i.i.d. uniform choice, and
``results[...]["router"]`` with the loads of a freshly initialised gated router that routes inside the step
(its cost and gate weights included), as ``modnets bench dispatch`` measures them.
"""

from __future__ import annotations

import torch

from .._threads import num_threads
from ..routing import MLPExperts, ModularLayer, Router
from ._dispatch import ROUTINGS, fixed_choice, fixed_route, layer_config, layout, make_layer, step_fn
from ._timing import median_times

__all__ = ["run"]

NAME = "scaling"


def run(quick: bool = False) -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (B = 256, d = h = 64, 2 repeats) that runs in a few seconds.

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``; ``results["E=<E>"]`` holds the median step
        time and the time per example (balanced routing, and under ``"iid"`` for the i.i.d. routing);
        ``ratio`` is time(E=128) / time(E=8), balanced routing.
    """
    batch, d, hidden = (256, 64, 64) if quick else (4096, 256, 256)
    repeats, warmup = (2, 1) if quick else (25, 3)
    n_modules_list = (8, 32, 128)
    with num_threads(2):
        steps, strategies = {}, {}
        x = torch.randn(batch, d, requires_grad=True)
        grad_out = torch.randn(batch, d)
        for n_modules in n_modules_list:
            layer = make_layer(n_modules, d, hidden, seed=n_modules)
            params = [x, *layer.parameters()]
            for routing in ROUTINGS:
                choice = fixed_choice(n_modules, batch, routing, seed=n_modules)
                route = fixed_route(layer, choice)
                steps[(n_modules, routing)] = step_fn(
                    lambda layer=layer, route=route: layer(x, route).output, params, grad_out
                )
                strategies[(n_modules, routing)] = layout(layer, x, choice)
            torch.manual_seed(n_modules)
            gated = ModularLayer(modules=MLPExperts(n_modules=n_modules, d_in=d, d_hidden=hidden, d_out=d),
                                 router=Router(n_modules=n_modules, d_in=d, mode="topk", gate="softmax_topk"))
            steps[(n_modules, "router")] = step_fn(lambda gated=gated: gated(x).output, [x, *gated.parameters()],
                                                   grad_out)
            with torch.no_grad():
                strategies[(n_modules, "router")] = layout(gated, x, gated.router(x).choice[:, 0])
        t = median_times({f"{e}/{r}": s for (e, r), s in steps.items()}, repeats=repeats, warmup=warmup)

    def entry(n_modules: int, routing: str) -> dict:
        seconds = t[f"{n_modules}/{routing}"]
        return {
            "step_ms": round(seconds * 1e3, 3),
            "us_per_example": round(seconds / batch * 1e6, 3),
            **strategies[(n_modules, routing)],
        }

    results = {
        f"E={e}": {
            **entry(e, "balanced"),
            "params_mib": round(e * 2 * (d * hidden + hidden) * 4 / 2**20, 1),
            "iid": entry(e, "iid"),
            "router": entry(e, "router"),
        }
        for e in n_modules_list
    }
    first, last = n_modules_list[0], n_modules_list[-1]
    results["ratio_iid"] = round(t[f"{last}/iid"] / t[f"{first}/iid"], 3)
    results["ratio_router"] = round(t[f"{last}/router"] / t[f"{first}/router"], 3)
    config = layer_config(batch, d, hidden, n_modules_list, repeats, warmup, quick)
    config["timing"] = "median; all E values and routings interleaved round-robin in one process"
    return {
        "bench": NAME,
        "config": config,
        "results": results,
        "ratio": round(t[f"{last}/balanced"] / t[f"{first}/balanced"], 3),
        "ratio_is": f"time per example at E={last} / time per example at E={first} (balanced routing)",
    }
