"""Data-parallel training on ``torch.distributed``: which process this is, and the few collectives that
the training algorithms need to stay correct when the examples are sharded across processes.

Every function here is a no-op (or the identity) in a single process, so the algorithms call them
unconditionally. A process group is started by :func:`init_from_env` from the environment variables that
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), with the gloo backend on
CPU and NCCL where a GPU exists.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_any", "all_gather_objects", "all_gather_rows", "all_mean", "barrier", "broadcast_object", "init_from_env",
    "wire_device", "world",
]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Start the process group described by torchrun's environment variables, if there is one.

    Returns:
        whether a process group with more than one process is now running (``False`` when ``WORLD_SIZE``
        is unset or 1, or a group was already started by the caller).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def wire_device() -> torch.device:
    """Where a collective's own tensors live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if world()[1] > 1:
        dist.barrier()


def all_mean(x: Tensor) -> Tensor:
    """The mean of ``x`` over the processes (``x`` itself in a single process); ``x`` is not modified."""
    if world()[1] == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world()[1]


def all_any(flag: bool) -> bool:
    """Whether ``flag`` is true in any process; every process must call it at the same point."""
    if world()[1] == 1:
        return flag
    t = torch.tensor([float(flag)], device=wire_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor's rows from every process, concatenated in rank order.

    The processes may hold different numbers of rows (zero included), but the same number of tensors with
    the same trailing shapes and dtypes; every process must call it at the same point.

    Args:
        tensors: ``(n_r, ...)`` tensors sharing their first dimension ``n_r`` on process ``r``.

    Returns:
        ``(sum_r n_r, ...)`` tensors, the same on every process.
    """
    size = world()[1]
    if size == 1:
        return tensors
    n = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    counts = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(counts, n)
    counts_ = [int(c) for c in counts]
    most = max(counts_)
    out = []
    for t in tensors:
        as_int = t.dtype == torch.bool  # gloo does not gather booleans
        src = t.to(torch.uint8) if as_int else t
        padded = src.new_zeros((most, *t.shape[1:]))
        padded[: t.shape[0]] = src
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
        joined = torch.cat([p[:c] for p, c in zip(parts, counts_, strict=True)])
        out.append(joined.bool() if as_int else joined)
    return tuple(out)


def all_gather_objects(obj: Any) -> list[Any]:
    """One picklable object from every process, in rank order (``[obj]`` in a single process)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Process 0's ``obj`` in every process (``obj`` itself in a single process)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
