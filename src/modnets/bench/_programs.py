"""Benchmark ``programs``: S sampled programs per question, executed batched vs one program at a time.

A :class:`~modnets.compose.ProgramPolicy` over the typed NMN library (fresh, so nearly uniform: the most
varied programs, as early in a program search) samples S = 8 programs for each of 256 generated questions
(programs of at most 7 calls, depth <= 4). The 2048 programs run through the library forward and backward
from the questions' image features (a) batched: one call of :class:`~modnets.compose.Library` over all of
them (``context_rows``: the 256 questions' features, read by the S programs of each), planning included,
identical calls grouped per height; (b) one program at a time: :meth:`~modnets.compose.Library.execute_each`
on that program alone with its question's features, every call on its own, then one backward pass over all
of them. The image stem runs once per question outside both; its output is the leaf that receives the
gradients (in (b) one copy per program, so that no program's gradient is added into a tensor of the whole
batch). The policy's sampling time is reported beside them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._threads import num_threads
from ..compose import ProgramPolicy, ProgramSpace
from ..data import ANSWERS, ClevrLikeConfig, make_clevr_like
from ..models import nmn
from ..types import Probs
from ._timing import median_times

__all__ = ["run"]

NAME = "programs"


def run(quick: bool = False) -> dict:
    """Run the benchmark.

    Args:
        quick: a smoke-test size (16 questions, S = 4, 1 repeat).

    Returns:
        ``{"bench", "config", "results", "ratio", "ratio_is"}``; ``ratio`` = one-program-at-a-time time / batched
        time.
    """
    with num_threads(2):
        return _run(quick)


def _run(quick: bool) -> dict:
    questions, samples = (16, 4) if quick else (256, 8)
    repeats = 1 if quick else 3
    image_size = 32
    data = make_clevr_like(ClevrLikeConfig(n_examples=questions, depths=(2, 3, 4), image_size=image_size, seed=11))
    torch.manual_seed(0)
    model = nmn(typed=True, image_size=image_size)
    lib = model.library
    space = ProgramSpace.of(lib, output=Probs(len(ANSWERS)), max_size=7, max_depth=4,
                            modules=("find", "relate", "and", "or", "exist", "count", "describe"))
    policy = ProgramPolicy(space=space, d_context=32)
    context = torch.randn(questions, 32)
    with torch.no_grad():
        features = model.stem(data.images)  # (questions, C, h, w)
        programs = policy(context, samples=samples, mode="sample", generator=torch.Generator().manual_seed(0)).programs
    rows = torch.arange(questions).repeat(samples)  # the policy's rows are sample-major: program i asks rows[i]
    target = data.answers[rows]

    def batched():
        f = features.detach().requires_grad_(True)
        out = lib(programs, context_rows=rows, features=f)
        F.nll_loss(torch.log(out.clamp_min(1e-8)), target).backward()
        lib.zero_grad(set_to_none=True)

    def one_at_a_time():
        # each program on its own copy of its question's features, a leaf of its own: the gradient of one
        # program's slice is not accumulated into a tensor of the whole batch
        leaves = [f.detach().requires_grad_(True) for f in features[rows].split(1)]
        out = torch.cat([lib.execute_each([p], features=f) for p, f in zip(programs, leaves, strict=True)])
        F.nll_loss(torch.log(out.clamp_min(1e-8)), target).backward()
        lib.zero_grad(set_to_none=True)

    def sampling():
        policy._decoded.clear()  # decode every program again, as a fresh batch of samples would
        policy(context, samples=samples, mode="sample", generator=torch.Generator().manual_seed(0))

    times = median_times({"batched": batched, "one_at_a_time": one_at_a_time, "sampling": sampling}, repeats=repeats)
    plan = lib.plan(programs)
    return {
        "bench": NAME,
        "config": {
            "questions": questions,
            "samples_per_question": samples,
            "programs": len(programs),
            "distinct_programs": len(set(programs)),
            "calls": plan.n_calls,
            "batched_module_invocations": plan.n_groups,
            "max_size": space.max_size,
            "max_depth": space.max_depth,
            "image_size": image_size,
            "feature_grid": list(features.shape[2:]),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "what": "typed NMN library forward+backward over programs sampled by a fresh ProgramPolicy "
                    "(image stem excluded)",
            "timing": "median; the two contenders interleaved round-robin in one process",
        },
        "results": {
            "batched_seconds": times["batched"],
            "one_at_a_time_seconds": times["one_at_a_time"],
            "policy_sampling_seconds": times["sampling"],
        },
        "ratio": times["one_at_a_time"] / times["batched"],
        "ratio_is": f"one-program-at-a-time time / batched time ({samples} sampled programs per question)",
    }
