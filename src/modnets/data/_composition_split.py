"""A held-out split of the composition problem: some pairs of primitives never follow one another in training.

The composition problem (:func:`~modnets.data.make_composition_task`) has P^L tasks, every ordered tuple of L
of its P primitives, and shows every task in training. :func:`composition_split` holds out a structure
instead: for every pair of adjacent steps (i, i + 1) it draws a seeded permutation ``pi_i`` of the
primitives and holds out the ``held_out`` pairs

    (p_i, p_{i+1}) = (a, pi_i[(a + m) mod P]),   a = 0..P-1,  m = 0..held_out-1,

so that at every pair of adjacent steps each primitive has exactly ``held_out`` held-out successors and
``held_out`` held-out predecessors (the pairs of each ``m`` form a permutation). A task is *held out* when
any of its adjacent pairs is; training and the in-distribution test use the other tasks only. Since every
primitive keeps ``P - held_out >= 1`` allowed successors and predecessors at every step, every primitive
still occurs at every step of some training task: what training never shows is only the held-out pairs
together. With P = 4, L = 2 and ``held_out=1``, 12 of the 16 tasks are trained and 4 held out.

Example:
    >>> from modnets.data import CompositionConfig, composition_split
    >>> split = composition_split(CompositionConfig(n_train=200, n_test=50))
    >>> len(split.train), len(split.test), len(split.held_out), tuple(split.held_out_pairs.shape)
    (200, 50, 50, (4, 3))
    >>> set(split.train.task.tolist()) & set(split.held_out_tasks.tolist())
    set()
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError
from ._compositions import CompositionConfig, CompositionTask, composition_examples, primitives_of

__all__ = ["CompositionSplit", "composition_split"]

_SPLIT_STREAM = 0x5EED  # the held-out pairs come from their own generator, seeded (seed, this)


class CompositionSplit(NamedTuple):
    """A held-out split of one composition problem (the same primitives and task table in every part).

    Attributes:
        train: training examples, of the trained tasks only.
        test: fresh examples of the trained tasks (in-distribution test).
        held_out: fresh examples of the held-out tasks (every task with a held-out pair).
        held_out_pairs: (H, 3) long rows ``(step i, primitive at i, primitive at i + 1)``, H = (L - 1) P held_out.
        held_out_tasks: (T_h,) long ids (rows of ``train.tasks``) of the held-out tasks, ascending.
    """

    train: CompositionTask
    test: CompositionTask
    held_out: CompositionTask
    held_out_pairs: Tensor
    held_out_tasks: Tensor


def _held_out_pairs(p: int, depth: int, held_out: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed * 65_536 + _SPLIT_STREAM)
    rows = []
    for step in range(depth - 1):
        pi = torch.randperm(p, generator=g).tolist()
        rows += [(step, a, pi[(a + m) % p]) for m in range(held_out) for a in range(p)]
    return torch.tensor(rows, dtype=torch.long)


def composition_split(config: CompositionConfig, *, held_out: int = 1, seed: int | None = None) -> CompositionSplit:
    """A held-out split of the composition problem of ``config`` (see the module docstring for the rule).

    The primitives, the task table and the task ids are those of :func:`make_composition_task` with the same
    config, so ``task_accuracy`` still picks the nearest of all P^L tasks: a model that answers a held-out
    task with a trained one is wrong. ``config.n_train`` examples go to ``train`` (with ``config.noise``),
    ``config.n_test`` each to ``test`` and ``held_out``; tasks are drawn uniformly within each part.

    Args:
        config: the composition problem; needs ``depth >= 2`` (a pair needs two steps).
        held_out: partners held out per primitive at every pair of adjacent steps, in 1..P-1.
        seed: seed of the held-out pairs (``None``: ``config.seed``); the examples follow ``config.seed``.

    Returns:
        :class:`CompositionSplit` ``(train, test, held_out, held_out_pairs, held_out_tasks)``.

    Raises:
        ConfigError: ``config`` not a :class:`CompositionConfig`, ``depth`` below 2, ``held_out`` outside
            1..P-1, or ``seed`` not an int >= 0.
    """
    if not isinstance(config, CompositionConfig):
        raise ConfigError(f"composition_split needs a CompositionConfig, got {type(config).__name__}")
    p = config.n_primitives
    if config.depth < 2:
        raise ConfigError(f"composition_split holds out pairs of adjacent steps and needs depth >= 2, got "
                          f"depth={config.depth}")
    if not isinstance(held_out, int) or isinstance(held_out, bool) or not 1 <= held_out <= p - 1:
        raise ConfigError(f"held_out must be an int in 1..n_primitives-1 = 1..{p - 1} (every primitive keeps a "
                          f"partner in training), got held_out={held_out!r}")
    seed = config.seed if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be None or an int >= 0, got seed={seed!r}")
    g, weight, bias, tasks = primitives_of(config)
    pairs = _held_out_pairs(p, config.depth, held_out, seed)
    banned = torch.zeros(config.depth - 1, p, p, dtype=torch.bool)  # (steps - 1, first, second)
    banned[pairs[:, 0], pairs[:, 1], pairs[:, 2]] = True
    steps = torch.arange(config.depth - 1)
    is_held = banned[steps, tasks[:, :-1], tasks[:, 1:]].any(1)  # (T,)
    trained, held = (~is_held).nonzero().flatten(), is_held.nonzero().flatten()
    seen = torch.zeros(config.depth, p, dtype=torch.bool)
    seen[torch.arange(config.depth), tasks[trained]] = True
    assert bool(seen.all()), "every primitive occurs at every step of some trained task (held_out <= P - 1)"
    return CompositionSplit(
        train=composition_examples(g, config.n_train, trained, tasks, weight, bias, noise=config.noise),
        test=composition_examples(g, config.n_test, trained, tasks, weight, bias),
        held_out=composition_examples(g, config.n_test, held, tasks, weight, bias),
        held_out_pairs=pairs,
        held_out_tasks=held,
    )
