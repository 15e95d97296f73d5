"""Benchmark ``em``: one E-step of generalised EM, S sampled routings per example scored in one batched
forward pass (``ModularStack(..., samples=S)``: the encoder once, the routed layers on the S copies, as
:class:`~modnets.train.TopKBuffer` does) vs S separate forward passes over the batch.

Model: a routed MLP (``modnets.models.modular_mlp``: a linear encoder, two layers of E MLP modules with
dynamic routers, a 10-way head). Score: ``log p(y | x, a) + log p(a | x)``; the step ends with the best
sample of every example. No gradients (the E-step needs none).
"""

from __future__ import annotations

import torch

from .._threads import num_threads
from ..models import modular_mlp
from ..train import categorical_log_likelihood
from ._timing import median_times

__all__ = ["run"]

NAME = "em"


def run(quick: bool = False) -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (B = 64, S = 4, 2 repeats).

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``; ``ratio`` = time of S separate passes / time
        of the batched pass.
    """
    batch, samples, d_in, d_model, n_modules = (64, 4, 64, 32, 4) if quick else (512, 8, 784, 128, 8)
    repeats, warmup = (2, 1) if quick else (25, 3)
    with num_threads(2):
        torch.manual_seed(0)
        net = modular_mlp(d_in=d_in, d_model=d_model, n_modules=n_modules, n_out=10)
        x, y = torch.randn(batch, d_in), torch.randint(0, 10, (batch,))

        @torch.no_grad()
        def batched() -> torch.Tensor:
            out = net(x, samples=samples)  # the encoder once, the routed layers on S copies
            score = categorical_log_likelihood(out.output, y.repeat(samples)) + out.route.log_prob
            best = score.view(samples, batch).argmax(0)
            return out.route.choice.view(samples, batch, *out.route.choice.shape[1:])[best, torch.arange(batch)]

        @torch.no_grad()
        def separate() -> torch.Tensor:
            best_score, best_choice = None, None
            for _ in range(samples):
                out = net(x)
                score = categorical_log_likelihood(out.output, y) + out.route.log_prob
                if best_score is None:
                    best_score, best_choice = score, out.route.choice
                else:
                    better = score > best_score
                    best_score = torch.where(better, score, best_score)
                    best_choice = torch.where(better[:, None, None], out.route.choice, best_choice)
            return best_choice

        t = median_times({"batched": batched, "separate": separate}, repeats=repeats, warmup=warmup)
    return {
        "bench": NAME,
        "config": {"batch": batch, "samples": samples, "d_in": d_in, "d_model": d_model, "n_modules": n_modules,
                   "layers": 2, "threads": 2, "repeats": repeats, "warmup": warmup, "quick": quick,
                   "timing": "median; the two contenders interleaved round-robin in one process"},
        "results": {"batched_ms": round(t["batched"] * 1e3, 3), "separate_ms": round(t["separate"] * 1e3, 3)},
        "ratio": round(t["separate"] / t["batched"], 3),
        "ratio_is": f"time of {samples} separate forward passes / time of one batched pass over {samples} samples",
    }
