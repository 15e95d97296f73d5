"""Freezing a trained module inside a model that goes on training around it."""

from __future__ import annotations

import types

from torch import nn

__all__ = ["freeze"]


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(*modules: nn.Module) -> None:
    """No gradients for the modules' parameters, and evaluation mode that ``train()`` does not undo, also when
    a parent model calls it (batch-norm statistics and dropout stay fixed while the rest of the model trains).

    Example:
        >>> stem, head = nn.BatchNorm1d(3), nn.Linear(3, 2)
        >>> model = nn.Sequential(stem, head)
        >>> freeze(stem)
        >>> _ = model.train()
        >>> stem.training, head.training, stem.weight.requires_grad
        (False, True, False)
    """
    for module in modules:
        module.requires_grad_(False)
        module.eval()
        module.train = types.MethodType(_stay_in_eval, module)  # type: ignore[method-assign]
