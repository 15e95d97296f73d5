"""A synthetic multi-task problem with known modular structure: every task is a composition of hidden
primitive functions.

There are P primitives ``f_p(z) = tanh(W_p z + b_p)`` on R^d (W_p a random orthogonal matrix times a gain,
so that the primitives differ and stay invertible-ish). A task is an ordered tuple (p_1, ..., p_L) of
primitives, and its target is ``y = f_{p_L}(... f_{p_1}(x))`` for a Gaussian input x. All P^L tuples are
tasks. Since the primitive used at every step is known, a routed model's choices can be compared with the
truth: a router that recovers the structure sends every task to the module that learnt its primitive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError, ShapeError

__all__ = ["CompositionConfig", "CompositionTask", "make_composition_task"]


@dataclass
class CompositionConfig(Config):
    """Settings of :func:`make_composition_task`.

    Attributes:
        n_primitives: P, hidden primitive functions.
        depth: L, primitives composed per task (tasks: all P^L ordered tuples).
        dim: d, the dimension of inputs, intermediate values and targets.
        gain: scale of the primitives' weight matrices (larger: more nonlinear).
        n_train: training examples.
        n_test: test examples (fresh inputs, the same tasks).
        noise: standard deviation of Gaussian noise added to the training targets.
        seed: seeds the primitives and the examples.
    """

    n_primitives: int = 4
    depth: int = 2
    dim: int = 8
    gain: float = 1.5
    n_train: int = 8000
    n_test: int = 2000
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_ints(self, "n_primitives", "depth", "dim", "n_train", "n_test")
        if self.n_primitives ** self.depth > 4096:
            raise ConfigError(f"n_primitives ** depth (the number of tasks) must be <= 4096, got "
                              f"{self.n_primitives}**{self.depth}")
        if not self.gain > 0 or self.noise < 0:
            raise ConfigError(f"gain must be > 0 and noise >= 0, got gain={self.gain!r}, noise={self.noise!r}")


class CompositionTask(Dataset):
    """Examples of the composition problem.

    Items are ``{"index": n, "x": (d,), "y": (d,), "task": task id}``.

    Attributes:
        x: (N, d) inputs. y: (N, d) targets. task: (N,) long task ids.
        tasks: (T, L) long, the primitive of each task at each step.
        weight: (P, d, d), bias: (P, d): the primitives.
    """

    def __init__(self, x: Tensor, task: Tensor, tasks: Tensor, weight: Tensor, bias: Tensor, noise: float = 0.0,
                 generator: torch.Generator | None = None):
        self.x, self.task, self.tasks, self.weight, self.bias = x, task, tasks, weight, bias
        clean = self.apply(x, tasks[task])
        self.y = clean + noise * torch.randn(clean.shape, generator=generator) if noise else clean

    @property
    def primitives(self) -> Tensor:
        """(N, L) the true primitive at each step of each example."""
        return self.tasks[self.task]

    @property
    def n_tasks(self) -> int:
        return self.tasks.shape[0]

    @property
    def n_primitives(self) -> int:
        return self.weight.shape[0]

    @property
    def description(self) -> Tensor:
        """(N, L * P) float: each example's task described by its parts, the one-hot primitive of every step
        side by side (a model given this can meet an unseen combination of known parts)."""
        return F.one_hot(self.primitives, self.n_primitives).flatten(1).float()

    def apply(self, x: Tensor, steps: Tensor) -> Tensor:
        """Compose primitives: x (N, d), steps (N, L) primitive ids -> (N, d)."""
        z = x
        for step in range(steps.shape[1]):
            p = steps[:, step]
            z = torch.tanh(torch.einsum("nd,nde->ne", z, self.weight[p]) + self.bias[p])
        return z

    def nearest_task(self, prediction: Tensor) -> Tensor:
        """(N,) the task whose target at each example's input is nearest to ``prediction`` (N, d)."""
        if prediction.shape != self.x.shape:
            raise ShapeError(f"prediction must have shape {tuple(self.x.shape)}, got {tuple(prediction.shape)}")
        n, t = self.x.shape[0], self.n_tasks
        every = self.apply(self.x.repeat_interleave(t, 0), self.tasks.repeat(n, 1)).view(n, t, -1)
        return (every - prediction[:, None]).pow(2).sum(-1).argmin(1)

    def task_accuracy(self, prediction: Tensor) -> float:
        """Share of examples whose prediction is nearer to their own task's target than to any other task's:
        whether the model computed the right composition (chance: 1 / T)."""
        return float((self.nearest_task(prediction) == self.task).float().mean())

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "x": self.x[i], "y": self.y[i], "task": self.task[i]}


def make_composition_task(config: CompositionConfig) -> tuple[CompositionTask, CompositionTask]:
    """The training and test sets of one composition problem (same primitives and tasks).

    Example:
        >>> train, test = make_composition_task(CompositionConfig(n_train=100, n_test=20))
        >>> len(train), train.n_tasks, tuple(train.primitives.shape), test.task_accuracy(test.y)
        (100, 16, (100, 2), 1.0)
    """
    g, weight, bias, tasks = primitives_of(config)
    every = torch.arange(tasks.shape[0])
    train = composition_examples(g, config.n_train, every, tasks, weight, bias, noise=config.noise)
    return train, composition_examples(g, config.n_test, every, tasks, weight, bias)


def primitives_of(config: CompositionConfig) -> tuple[torch.Generator, Tensor, Tensor, Tensor]:
    """The seeded problem of a config: the generator after drawing the primitives, weight (P, d, d), bias (P, d)
    and the task table (P^L, L) (every ordered tuple, the last step varying fastest)."""
    g = torch.Generator().manual_seed(config.seed)
    p, d = config.n_primitives, config.dim
    q, _ = torch.linalg.qr(torch.randn(p, d, d, generator=g))
    weight = config.gain * q
    bias = 0.3 * torch.randn(p, d, generator=g)
    tasks = torch.tensor(list(itertools.product(range(p), repeat=config.depth)), dtype=torch.long)
    return g, weight, bias, tasks


def composition_examples(g: torch.Generator, n: int, pool: Tensor, tasks: Tensor, weight: Tensor, bias: Tensor, *,
                         noise: float = 0.0) -> CompositionTask:
    """``n`` examples with Gaussian inputs and task ids drawn uniformly from ``pool`` ((T',) long), from ``g``."""
    x = torch.randn(n, weight.shape[1], generator=g)
    task = pool[torch.randint(0, pool.shape[0], (n,), generator=g)]
    return CompositionTask(x, task, tasks, weight, bias, noise=noise, generator=g)
