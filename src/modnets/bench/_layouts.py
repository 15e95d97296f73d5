"""Benchmark ``layouts``: batched execution of heterogeneous NMN layouts vs one example at a time.

A batch of 256 generated questions whose programs all differ (1-8 attention modules below the answer
module, so program depths 2-9) runs through the typed NMN library, forward and backward, (a) batched:
one call of :class:`~modnets.compose.Library` (planning included), identical calls grouped per height;
(b) per example: :meth:`~modnets.compose.Library.execute_each`, every call of every example on its own.
The image stem is excluded from both (it is one batched convolution either way); its output is a leaf
that receives gradients in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._threads import num_threads
from ..data import ClevrLikeConfig, make_clevr_like
from ..models import nmn
from ._timing import median_times

__all__ = ["run"]


def run(quick: bool = False) -> dict:
    with num_threads(2):
        return _run(quick)


def _run(quick: bool) -> dict:
    batch = 64 if quick else 256
    image_size = 32
    data = make_clevr_like(
        ClevrLikeConfig(n_examples=batch, depths=tuple(range(2, 10)), image_size=image_size, balanced=False, seed=7)
    )
    torch.manual_seed(0)
    model = nmn(typed=True, image_size=image_size)
    lib = model.library
    with torch.no_grad():
        features = model.stem(data.images)
    programs = list(data.programs)
    target = data.answers

    def step(execute):
        def fn():
            f = features.detach().requires_grad_(True)
            out = execute(programs, features=f)
            loss = F.nll_loss(torch.log(out.clamp_min(1e-8)), target)
            loss.backward()
            lib.zero_grad(set_to_none=True)

        return fn

    repeats = 2 if quick else 5
    times = median_times({"batched": step(lib), "per_example": step(lib.execute_each)}, repeats=repeats)
    plan = lib.plan(programs)
    return {
        "bench": "layouts",
        "config": {
            "batch": batch,
            "program_depths": "2-9 (1-8 attention modules below the answer module)",
            "distinct_programs": len(set(programs)),
            "calls": plan.n_calls,
            "batched_module_invocations": plan.n_groups,
            "image_size": image_size,
            "feature_grid": list(features.shape[2:]),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "what": "typed NMN library forward+backward from image features (stem excluded)",
        },
        "results": {
            "batched_seconds": times["batched"],
            "per_example_seconds": times["per_example"],
        },
        "ratio": times["per_example"] / times["batched"],
        "ratio_is": "per-example time / batched time",
    }
