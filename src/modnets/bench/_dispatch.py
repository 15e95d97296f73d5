"""Benchmark ``dispatch``: a hard-routed ModularLayer against the dense MLP of equal FLOPs and against the
per-module mask loop of the original implementations.

Each step is forward + backward of one layer on B rows (each module an MLP d -> h -> d), with gradients to
the input and to every parameter (set to ``None`` before each step, as ``optimizer.zero_grad()`` does).

- The headline (``results["router"]``): the loads a real router produces. A freshly initialised dynamic
  router with the softmax-top-k gate routes the rows inside the step (its cost and the gate weights
  included), for E = 8, 32, 128 and k = 1, 2, against the dense MLP d -> k h -> d of the same FLOPs per row.
  A fresh linear router gives uneven counts (e.g. 84..187 rows per module at E = 32), and the engine pays for
  the imbalance. Each row decomposes its step: ``balanced_ms`` is the same layer on a perfectly balanced
  choice (B k / E picks per module) that its router scores, so ``ratio_if_balanced`` is the ratio a perfectly
  load-balanced router would get, and ``router_ms`` the router alone. ``trained`` holds the same step after a
  short load-balanced training of the router (:func:`balance_trained`: the loads a router has once its
  balancing loss has acted).
- ``results["fixed"]``: top-1 routings fixed in advance and given as a ``RouteResult`` (router cost
  excluded): ``balanced`` (B/E rows per module at random positions, as a perfectly load-balanced router)
  and ``iid`` (a uniform random choice per row), also against the per-module mask loop.
- ``results["matmul"]``: the batched products themselves: one layer's three products (forward, input and
  weight gradients) as one ``mm`` over B rows against one ``bmm`` over E blocks of B / E rows (time ratio).
- ``results["compile"]``: one routed layer (E = 32, k = 1, fresh router) eager against ``torch.compile``
  (compile time and step times, the backend used, or why compile is unavailable).

Each row also says how the engine ran it: the strategy and, for buckets, the tiers (modules x rows) and
the slots per pick (the padding).

The contenders of one setting are timed round-robin in one process after a warm-up; the figures are medians.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._threads import num_threads
from ..routing import (
    MLPExperts,
    ModularLayer,
    Router,
    RouteResult,
    choose_strategy,
    dispatch_mask_loop,
    make_groups,
    switch_balance_loss,
)
from ..routing._groups import plan_buckets, with_buckets
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


def layout(layer: ModularLayer, x: Tensor, choice: Tensor) -> dict:
    """How ``dispatch`` runs a choice (B, k): its strategy and, for ``"padded_bmm"``, the bucket tiers
    (modules x rows each) and the slots per pick (1 = no padding)."""
    bank = layer.experts
    groups = make_groups(choice, bank.n_modules)
    strategy = choose_strategy(bank, x, groups)
    out: dict = {"strategy": strategy}
    if strategy == "padded_bmm":
        plan = plan_buckets(groups.counts_list) if bank.overflow_ok else None
        buckets = with_buckets(groups, choice.shape[1], plan)
        out["tiers"] = [f"{t.n_modules}x{t.capacity}" for t in buckets.tiers]
        out["slots_per_pick"] = round(buckets.n_slots / choice.numel(), 3)
    return out


ROUTER_E, ROUTER_K = (8, 32, 128), (1, 2)


def balanced_choice(n_modules: int, batch: int, k: int, seed: int) -> Tensor:
    """A seeded choice (batch, k) with exactly B k / E picks per module (B a multiple of E) and k distinct
    modules per row: pick j of a row is its first pick shifted by j E / k modules."""
    gen = torch.Generator().manual_seed(seed)
    first = torch.randperm(batch, generator=gen) % n_modules
    shifts = torch.arange(k) * (n_modules // k)
    return (first[:, None] + shifts) % n_modules


BALANCE_STEPS = 100


def balance_trained(router: Router, d: int, batch: int, dev: torch.device, steps: int = BALANCE_STEPS,
                    seed: int = 0) -> Router:
    """A copy of ``router`` after a short load-balanced training: ``steps`` Adam steps (lr 1e-2) on the
    Switch load-balancing loss alone, over fresh standard-normal batches (the benchmark's input distribution)."""
    trained = copy.deepcopy(router)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        switch_balance_loss(trained(torch.randn(batch, d, generator=gen).to(dev))).backward()
        optimizer.step()
    return trained


def _router_loads(batch: int, d: int, hidden: int, dev: torch.device, repeats: int, warmup: int) -> dict:
    """``{"E=e": {"k=k": {...}}}``: a fresh gated router's loads, routed inside the step, against the dense MLP
    of equal FLOPs (d -> k h -> d), with the step's decomposition: the same experts under the router after
    :func:`balance_trained` (``trained``), the same layer on a perfectly balanced choice that its router scores
    (``balanced_ms``: the step without the imbalance, no top-k) and the router alone, forward and backward
    (``router_ms``)."""
    out: dict[str, dict] = {}
    for n_modules in ROUTER_E:
        out[f"E={n_modules}"] = {}
        for k in ROUTER_K:
            torch.manual_seed(n_modules * 10 + k)
            layer = ModularLayer(
                modules=MLPExperts(n_modules=n_modules, d_in=d, d_hidden=hidden, d_out=d),
                router=Router(n_modules=n_modules, d_in=d, mode="topk", k=k, gate="softmax_topk"), k=k,
            ).to(dev)
            dense = nn.Sequential(nn.Linear(d, k * hidden), nn.ReLU(), nn.Linear(k * hidden, d)).to(dev)
            x = torch.randn(batch, d, device=dev, requires_grad=True)
            grad_out = torch.randn(batch, d, device=dev)
            with torch.no_grad():
                choice = layer.router(x).choice[:, 0]  # (B, k): the loads of this router on these rows
            balanced = balanced_choice(n_modules, batch, k, seed=n_modules).to(dev)
            trained = ModularLayer(modules=layer.experts, router=balance_trained(layer.router, d, batch, dev), k=k)
            with torch.no_grad():
                trained_choice = trained.router(x).choice[:, 0]
            params = [x, *layer.parameters()]
            steps = {
                "dense": step_fn(lambda dense=dense, x=x: dense(x), [x, *dense.parameters()], grad_out),
                "modular": step_fn(lambda layer=layer, x=x: layer(x).output, params, grad_out),
                "balanced": step_fn(lambda layer=layer, x=x, c=balanced: layer(x, c).output, params, grad_out),
                "trained": step_fn(lambda layer=trained, x=x: layer(x).output, [x, *trained.parameters()], grad_out),
                "router": step_fn(lambda router=layer.router, x=x: router(x).weights[:, 0], params,
                                  torch.ones(batch, k, device=dev)),
            }
            t = median_times(steps, repeats=repeats, warmup=warmup, device=dev)
            out[f"E={n_modules}"][f"k={k}"] = {
                "dense_ms": round(t["dense"] * 1e3, 3),
                "modular_ms": round(t["modular"] * 1e3, 3),
                "ratio_to_dense": round(t["dense"] / t["modular"], 3),
                "trained": {
                    "modular_ms": round(t["trained"] * 1e3, 3),
                    "ratio_to_dense": round(t["dense"] / t["trained"], 3),
                    "rows_per_module_min_max": _counts(trained_choice, n_modules),
                    **layout(trained, x, trained_choice),
                },
                "balanced_ms": round(t["balanced"] * 1e3, 3),
                "ratio_if_balanced": round(t["dense"] / t["balanced"], 3),
                "router_ms": round(t["router"] * 1e3, 3),
                "rows_per_module_min_max": _counts(choice, n_modules),
                **layout(layer, x, choice),
            }
    return out


def _matmul_efficiency(batch: int, d: int, hidden: int, dev: torch.device, repeats: int, warmup: int) -> dict:
    """``{"E=e": mm_ms / bmm_ms}``: the three products of one layer's step (forward, input gradient, weight
    gradient) as one ``mm`` over B rows against one ``bmm`` over E modules of B / E rows each, same FLOPs.
    Below 1 the batched products themselves cost more than the dense ones, whatever the routing."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for n_modules in ROUTER_E:
        rows = batch // n_modules
        x = torch.randn(batch, d, generator=gen).to(dev)
        g = torch.randn(batch, hidden, generator=gen).to(dev)
        w = torch.randn(d, hidden, generator=gen).to(dev)
        xb, gb = x.view(n_modules, rows, d), g.view(n_modules, rows, hidden)
        wb = torch.randn(n_modules, d, hidden, generator=gen).to(dev)
        t = median_times({
            "mm": lambda x=x, g=g, w=w: (x @ w, g @ w.t(), x.t() @ g),
            "bmm": lambda xb=xb, gb=gb, wb=wb: (torch.bmm(xb, wb), torch.bmm(gb, wb.transpose(1, 2)),
                                                torch.bmm(xb.transpose(1, 2), gb)),
        }, repeats=repeats, warmup=warmup, device=dev)
        out[f"E={n_modules}"] = round(t["mm"] / t["bmm"], 3)
    return out


COMPILE_E, COMPILE_K = 32, 1


def _compiled(batch: int, d: int, hidden: int, dev: torch.device, repeats: int, warmup: int, quick: bool) -> dict:
    """One routed layer (fresh gated router, E = 32, k = 1) eager against ``torch.compile``: the compile time
    (first step) and the median step times. The dispatch engine itself stays eager under compile (its bucket
    plan depends on the routing's counts); the router and the code around it are compiled. Tries the
    inductor backend (the ``eager`` backend in quick mode: tracing only, seconds), then ``aot_eager``; reports
    ``{"available": False, "error": ...}`` when none runs."""
    torch.manual_seed(COMPILE_E * 10 + COMPILE_K)
    layer = ModularLayer(
        modules=MLPExperts(n_modules=COMPILE_E, d_in=d, d_hidden=hidden, d_out=d),
        router=Router(n_modules=COMPILE_E, d_in=d, mode="topk", k=COMPILE_K, gate="softmax_topk"), k=COMPILE_K,
    ).to(dev)
    x = torch.randn(batch, d, device=dev, requires_grad=True)
    grad_out = torch.randn(batch, d, device=dev)
    params = [x, *layer.parameters()]
    errors = []
    for backend in ("eager",) if quick else ("inductor", "aot_eager"):
        try:
            torch._dynamo.reset()
            compiled = torch.compile(lambda x=x: layer(x).output, backend=backend)
            step = step_fn(compiled, params, grad_out)
            start = time.perf_counter()
            step()
            compile_s = time.perf_counter() - start
            t = median_times({"eager": step_fn(lambda x=x: layer(x).output, params, grad_out), "compiled": step},
                             repeats=repeats, warmup=warmup, device=dev)
        except Exception as err:  # noqa: BLE001 - any backend failure is reported, never raised
            errors.append(f"{backend}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        finally:
            torch._dynamo.reset()
        return {
            "available": True,
            "backend": backend,
            "setting": f"E={COMPILE_E}, k={COMPILE_K}, fresh gated router",
            "compile_s": round(compile_s, 2),
            "eager_ms": round(t["eager"] * 1e3, 3),
            "compiled_ms": round(t["compiled"] * 1e3, 3),
            "speedup": round(t["eager"] / t["compiled"], 3),
        }
    return {"available": False, "error": "; ".join(errors)}


def run(quick: bool = False, device: str = "cpu") -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (B = 256, d = h = 64, 2 repeats) that runs in a few seconds.
        device: where the three contenders run (``"cpu"``, ``"cuda"``, ...).

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``. ``results["router"]["E=<E>"]["k=<k>"]`` holds
        the median milliseconds of the routed layer and of the dense MLP of equal FLOPs, ``ratio_to_dense``
        (dense / modular), the step with the router after a short load-balanced training (``trained``), the
        step on a balanced choice (``balanced_ms``, ``ratio_if_balanced``), the router
        alone (``router_ms``) and the router's rows per module; ``results["fixed"]["E=<E>"]`` holds, for the
        balanced routing, the three contenders' milliseconds, ``ratio_to_dense`` and ``ratio_to_mask_loop``
        (mask loop / modular), and the same under ``"iid"``; ``results["matmul"]["E=<E>"]`` the time ratio of one
        ``mm`` to one ``bmm`` of equal FLOPs; ``results["compile"]`` the eager and compiled
        step times of one routed layer; ``ratio`` is the smallest router-load ``ratio_to_dense``.
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
                    **layout(layer, x, choice),
                    "rows_per_module_min_max": _counts(choice, n_modules),
                }
            results[f"E={n_modules}"] = {"dense_ms": round(t["dense"] * 1e3, 3), **per_routing["balanced"]}
            results[f"E={n_modules}"]["iid"] = per_routing["iid"]
        routed = _router_loads(batch, d, hidden, dev, repeats, warmup)
        matmul = _matmul_efficiency(batch, d, hidden, dev, repeats, warmup)
        compiled = _compiled(batch, d, hidden, dev, repeats, warmup, quick)
    config = layer_config(batch, d, hidden, n_modules_list, repeats, warmup, quick)
    config["routing"] = (f"results['router'] (headline): a fresh dynamic Router(mode='topk', gate='softmax_topk') "
                         f"on the rows, inside the step, E = {list(ROUTER_E)}, k = {list(ROUTER_K)}, against the dense "
                         f"MLP {d}->k*{hidden}->{d}; results['fixed']: top-1 routings fixed in advance (router cost "
                         "excluded), 'balanced' (B/E rows per module) and 'iid' (uniform random choice)")
    config["dense"] = f"one MLP {d}->{hidden}->{d} over all rows (same FLOPs)"
    config["mask_loop"] = "per module: (choice == e).nonzero(), index_select rows, run, index_copy back"
    config["timing"] = "median; all contenders of one E interleaved round-robin in one process"
    config["device"] = str(dev)
    ratio = min(r["ratio_to_dense"] for per_e in routed.values() for r in per_e.values())
    return {
        "bench": NAME,
        "config": config,
        "results": {"router": routed, "fixed": results, "matmul": matmul, "compile": compiled},
        "ratio": ratio,
        "ratio_is": "dense MLP time / ModularLayer time with a fresh router's loads (min over E = 8, 32, 128 and "
                    "k = 1, 2)",
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
