"""Compositional-generalisation curves: accuracy by program depth (or list length, ...), and their plot."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ShapeError
from ._figures import save_figure
from ._seeds import Spread

__all__ = ["accuracy_by", "majority_baseline", "plot_error_curves"]


def accuracy_by(correct: Tensor, groups: Tensor) -> dict[int, float]:
    """Accuracy within each group.

    Args:
        correct: ``(n,)`` bool, whether each example was answered correctly.
        groups: ``(n,)`` int group of each example (program depth, list length, ...).

    Returns:
        group -> accuracy, for every group present, in increasing order.
    """
    if correct.shape != groups.shape or correct.dim() != 1:
        raise ShapeError(f"correct and groups must be (n,) each, got {tuple(correct.shape)} and {tuple(groups.shape)}")
    out = {}
    for g in torch.unique(groups).tolist():
        sel = groups == g
        out[int(g)] = float(correct[sel].float().mean())
    return out


def plot_error_curves(
    curves: Mapping[str, Mapping[int, float | Spread]],
    path: str | Path,
    *,
    xlabel: str = "program depth",
    title: str = "",
    trained_up_to: int | None = None,
    references: Mapping[str, Mapping[int, float]] | None = None,
) -> Path:
    """Plot error (1 - accuracy, in %) against a group variable, one line per model; writes a PNG.

    A curve measured over several seeds (values are :class:`Spread` of accuracies) is drawn as its mean
    with a band of one standard deviation either side.

    Args:
        curves: label -> {x: accuracy}, or {x: :class:`Spread` of accuracies over seeds}.
        path: output PNG.
        xlabel: what x is.
        title: plot title.
        trained_up_to: draw a dashed line after this x (the deepest value seen in training).
        references: label -> {x: accuracy} drawn dotted (e.g. a paper's numbers).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.subplots()
    for label, acc in curves.items():
        xs = sorted(acc)
        if all(isinstance(acc[x], Spread) for x in xs):
            mean = [100 * (1 - acc[x].mean) for x in xs]
            std = [100 * acc[x].std for x in xs]
            n = max((acc[x].n for x in xs), default=0)
            line = ax.plot(xs, mean, marker="o", label=f"{label} ({n} seeds)" if n > 1 else label)[0]
            if n > 1:
                ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)],
                                [m + s for m, s in zip(mean, std, strict=True)], color=line.get_color(), alpha=0.2,
                                linewidth=0)
        else:
            ax.plot(xs, [100 * (1 - float(acc[x])) for x in xs], marker="o", label=label)
    for label, acc in (references or {}).items():
        xs = sorted(acc)
        ax.plot(xs, [100 * (1 - acc[x]) for x in xs], linestyle=":", marker="x", label=label)
    if trained_up_to is not None:
        ax.axvline(trained_up_to + 0.5, color="gray", linestyle="--", linewidth=1)
        ax.text(trained_up_to + 0.6, ax.get_ylim()[1] * 0.95, "unseen depths", color="gray", fontsize=8, va="top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def majority_baseline(
    train_answers: Tensor, train_groups: Sequence[Hashable], test_answers: Tensor, test_groups: Sequence[Hashable]
) -> Tensor:
    """Correctness of answering every test example with the most frequent training answer of its group.

    The floor a model must beat to show it uses its input (the answer prior of each question type).

    Args:
        train_answers: ``(n_train,)`` long answers.
        train_groups: ``n_train`` group keys (question types).
        test_answers: ``(n_test,)`` long answers.
        test_groups: ``n_test`` group keys; a group unseen in training is answered with answer 0.

    Returns:
        ``(n_test,)`` bool.
    """
    if len(train_groups) != train_answers.shape[0] or len(test_groups) != test_answers.shape[0]:
        raise ShapeError("each answer needs exactly one group key")
    best = {}
    for key in set(train_groups):
        answers = train_answers[torch.tensor([g == key for g in train_groups])]
        best[key] = int(torch.bincount(answers).argmax())
    return torch.tensor([best.get(g, 0) for g in test_groups]) == test_answers
