"""Benchmark ``imn``: one IMN training step (forward, backward) with winner-take-all over all module
combinations: the winner chosen without gradients and recomputed with them (``scorer="exact"``: every
candidate decoded in chunks; ``scorer="fast"``: the quadratic-form scorer on the decoder's features, top-2
re-checked exactly) vs the naive loop that evaluates every candidate with gradients and takes the min.

Model: ``modnets.models.imn`` with m = n = 5 (155 candidates), 64x64 images, an MLP decoder ending in a
linear layer. ``L_ind`` enters the winner's loss but not the score here (``score_independence=False``),
since scoring it by decoding costs ``2K + 1`` decodes per candidate in every contender alike.
"""

from __future__ import annotations

import torch

from .._threads import num_threads
from ..models import imn
from ..train import WinnerTakeAll, WinnerTakeAllConfig
from ._timing import median_times

__all__ = ["run"]

NAME = "imn"


def run(quick: bool = False) -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (B = 8, m = n = 2, 16x16 images, 1 repeat).

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``; ``ratio`` = ``ratio_exact`` = time of the naive
        step / time of the step with the exact scorer and the winner recompute.
    """
    batch, m, n, size, hidden = (8, 2, 2, 16, 32) if quick else (256, 5, 5, 64, 256)
    repeats, warmup = (1, 0) if quick else (3, 1)
    with num_threads(2):
        torch.manual_seed(0)
        net = imn(image_size=size, m=m, n=n, hidden=hidden)
        x = torch.rand(batch, 3, size, size)
        d = net.compositional[0].latent_dim
        noise = torch.randn(batch, m, d)
        directions = (torch.randint(0, 2, (2, batch, m, d)) * 2 - 1).float()
        objectives = {s: WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer=s, score_independence=False))
                      for s in ("naive", "exact", "fast")}

        def step(scorer: str):
            def go() -> None:
                net.zero_grad(set_to_none=True)
                objectives[scorer].terms(x, noise=noise, directions=directions)["loss"].backward()
            return go

        t = median_times({s: step(s) for s in objectives}, repeats=repeats, warmup=warmup)
        agreement = _agreement(objectives, x, noise, directions)
    ratio_exact, ratio_fast = t["naive"] / t["exact"], t["naive"] / t["fast"]
    return {
        "bench": NAME,
        "config": {"batch": batch, "m": m, "n": n, "candidates": objectives["naive"].n_candidates,
                   "image_size": size, "decoder_hidden": hidden, "score_independence": False,
                   "threads": 2, "repeats": repeats, "warmup": warmup, "quick": quick,
                   "timing": "median of forward+backward steps; the contenders interleaved round-robin in one process"},
        "results": {"naive_ms": round(t["naive"] * 1e3, 1), "exact_ms": round(t["exact"] * 1e3, 1),
                    "fast_ms": round(t["fast"] * 1e3, 1), "ratio_exact": round(ratio_exact, 3),
                    "ratio_fast": round(ratio_fast, 3), **agreement},
        "ratio": round(ratio_exact, 3),
        "ratio_is": "time of the naive step (every candidate with gradients, then the min) / time of the step "
                    "with the exact chunked scorer and the winner recomputed",
    }


def _agreement(objectives: dict[str, WinnerTakeAll], x, noise, directions) -> dict:
    """Share of the batch where the exact and the fast scorers choose the naive scorer's argmin."""
    reference = objectives["naive"].choose(x, noise=noise, directions=directions)
    return {f"argmin_agreement_{name}": float((objectives[name].choose(x, noise=noise, directions=directions)
                                                == reference).float().mean()) for name in ("exact", "fast")}
