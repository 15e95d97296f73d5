"""Where training runs: choosing a device by name, moving batches to it, and mixed precision.

``device`` accepts ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (the first CUDA device, else
MPS, else the CPU). Batches are moved leaf by leaf: tensors go to the device, mappings, lists and tuples
are walked, everything else (programs, question strings, ids) is left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["PRECISIONS", "autocast", "available_devices", "device_of", "resolve_device", "to_device"]

PRECISIONS = ("fp32", "bf16")


def available_devices() -> list[str]:
    """The device names this machine has, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str | torch.device) -> torch.device:
    """The :class:`torch.device` of a name (see the module docstring).

    Raises:
        ConfigError: a malformed name, or a device this machine does not have (the message lists those it has).
    """
    if isinstance(device, str) and device == "auto":
        have = available_devices()
        return torch.device("cuda" if any(d.startswith("cuda") for d in have) else "mps" if "mps" in have else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r} ({e})") from None
    have = available_devices()
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda" and any(d.startswith("cuda") for d in have):
        if dev.index is None or f"cuda:{dev.index}" in have:
            return dev
    if dev.type == "mps" and "mps" in have:
        return dev
    raise ConfigError(f"device {str(device)!r} is not available on this machine; available: {', '.join(have)}")


def device_of(module: torch.nn.Module) -> torch.device:
    """Where ``module``'s parameters live (the CPU for a module without any)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor on ``device``: objects with a ``to(device)`` method (tensors, agents'
    representations and traces) move themselves, mappings, lists and tuples are walked, other leaves are kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if callable(getattr(batch, "to", None)) and not isinstance(batch, torch.nn.Module):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple keeps its type
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple) and any(isinstance(v, torch.Tensor | Mapping | list | tuple) for v in batch):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`~modnets.errors.ConfigError` for an unknown precision or bf16 where the device lacks it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision='bf16' needs a GPU with bfloat16 support; {device} has none")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the forward pass under bfloat16 autocast (``precision="bf16"``), or as it is (``"fp32"``)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield
