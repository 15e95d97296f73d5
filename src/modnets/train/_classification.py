"""Supervised classification: the cross-entropy of a model's class scores against the batch's labels.

The objective for every classifier that is not routed: the NMN (answers of given programs), the FiLM
baseline, the question prior, answering heads, or any ``nn.Module``. A model that reads a whole batch (the
presets: several inputs, programs, cached prior logits) defines ``logits(batch) -> (B, C)`` and a
``batch_keys`` mapping of what it reads; any other module is applied to ``batch[input]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._likelihood import check_labels
from ._objective import Batch, check_input, input_fits

__all__ = ["Classification", "classification_terms"]


def classification_terms(logits: Tensor, target: object, *, name: str, owner: str) -> dict[str, Tensor]:
    """``loss`` (mean cross-entropy) and ``accuracy`` (detached) of ``(B, C)`` scores against ``(B,)`` labels.

    Raises:
        ShapeError: labels that do not match the scores' batch.
        ConfigError: labels that are not long class ids in [0, C) (``name`` is their batch key).
    """
    if logits.dim() != 2 or not isinstance(target, Tensor) or target.shape != logits.shape[:1]:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ShapeError(f"{owner} gave scores of shape {tuple(logits.shape)}; batch[{name!r}] must then be "
                         f"({logits.shape[0]},), got {shape}")
    check_labels(target, logits.shape[1], name=name)
    return {"loss": F.cross_entropy(logits, target),
            "accuracy": (logits.argmax(1) == target).float().mean().detach()}


class Classification(nn.Module):
    """Cross-entropy of ``(B, C)`` class scores (logits or log-probabilities) against ``(B,)`` labels.

    Loss terms: ``loss`` (mean cross-entropy) and ``accuracy`` (logged). :meth:`predict` gives the
    ``(B,)`` most probable classes.

    Args:
        model: a module with ``logits(batch)`` and ``batch_keys`` (the presets), or any module mapping
            ``batch[input]`` to ``(B, C)`` scores.
        input: the batch key of the inputs, for a module without ``logits(batch)``.
        target: the batch key of the ``(B,)`` long labels.

    Example:
        >>> import torch
        >>> objective = Classification(torch.nn.Linear(4, 3))
        >>> terms = objective.loss({"x": torch.randn(8, 4), "y": torch.randint(0, 3, (8,))})
        >>> sorted(terms)
        ['accuracy', 'loss']
    """

    def __init__(self, model: nn.Module, *, input: str = "x", target: str = "y"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Classification needs an nn.Module, got {type(model).__name__}")
        self.model, self.input, self.target = model, input, target
        self._reads_batch = callable(getattr(model, "logits", None))

    @property
    def batch_keys(self) -> dict[str, str]:
        keys = dict(self.model.batch_keys) if self._reads_batch else {self.input: "(B, ...) float inputs"}
        keys[self.target] = "(B,) long class labels"
        return keys

    def logits(self, batch: Batch) -> Tensor:
        """``(B, C)`` the model's class scores for a batch."""
        if self._reads_batch:
            return self.model.logits(batch)
        x = check_input(batch[self.input], self.input, self.model)
        with input_fits(self.input, x, type(self.model).__name__):
            return self.model(x)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        return classification_terms(self.logits(batch), batch[self.target], name=self.target,
                                    owner=type(self.model).__name__)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """``(B,)`` the most probable class of each example."""
        return self.logits(batch).argmax(1)
