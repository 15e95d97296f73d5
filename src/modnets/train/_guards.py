"""Numerical guards: the first NaN or infinity in a step's loss terms or gradients, as an error that names
the step, the module and the quantity (returned, so that the loop decides to raise it or skip the batch)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..errors import NumericalError

__all__ = ["nonfinite_grad", "nonfinite_loss"]


def nonfinite_loss(terms: Mapping[str, Tensor], step: int, owner: str) -> NumericalError | None:
    """The error for the first loss term of ``owner`` (a module's name) that holds a NaN or inf, if any."""
    for name, value in terms.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            what = "NaN" if bool(torch.isnan(value).any()) else "inf"
            return NumericalError(
                f"step {step}: loss term {name!r} of {owner} is {what}",
                step=step, module=owner, quantity=f"loss term {name!r}",
            )
    return None


def nonfinite_grad(params: list[Tensor], names: Mapping[Tensor, str], step: int) -> NumericalError | None:
    """The error for the first parameter whose gradient holds a NaN or inf, named by ``names``, if any."""
    flags = [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    if not flags or bool(torch.stack(flags).all()):
        return None
    for p in params:
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            module, _, param = names.get(p, "?").rpartition(".")
            what = "NaN" if bool(torch.isnan(p.grad).any()) else "inf"
            return NumericalError(
                f"step {step}: gradient of {param!r} in module {module or '(top level)'!r} is {what}",
                step=step, module=module, quantity=f"gradient of {param}",
            )
    return None
