"""Routed multilayer perceptrons (Kirsch et al. 2018): an encoder, L modular layers of M two-layer
perceptrons with a router each, a head; and the dense network of equal per-example compute."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..routing import MLPExperts, ModularLayer, ModularStack, Router

__all__ = ["dense_mlp", "modular_mlp"]


def modular_mlp(
    *,
    d_model: int,
    n_modules: int,
    d_in: int | None = None,
    d_hidden: int | None = None,
    n_out: int | None = None,
    n_layers: int = 2,
    k: int = 1,
    mode: str = "sample",
    gate: str | None = None,
    static: bool = False,
    n_tasks: int | None = None,
    router_hidden: int | None = None,
    task_embedding: bool = False,
) -> ModularStack:
    """A :class:`ModularStack` of ``n_layers`` layers of ``n_modules`` MLP modules (d_model -> d_hidden ->
    d_model), ReLU between layers.

    Args:
        d_model: width of the routed layers.
        n_modules: M, modules per layer (1 gives a dense network of the same per-example compute).
        d_in: input features; when given, the input is flattened and mapped to d_model by a linear encoder
            with ReLU (``None``: the input already has d_model features).
        d_hidden: hidden width of each module (default d_model).
        n_out: outputs of a linear head (``None``: no head, the last layer's output is the output).
        n_layers: L, routed layers.
        k: modules per example and layer.
        mode: router mode (``"sample"``, ``"argmax"``, ``"topk"``, ``"soft"``, ``"gumbel"``).
        gate: the routers' gate (:data:`~modnets.routing.GATES`, e.g. ``"softmax_topk"`` with ``mode="topk"``:
            the mixture-of-experts layer whose router learns by backpropagation); ``None``: unweighted picks.
        static: routers see the task id only (per-task logits tables; needs ``n_tasks``), not the input.
        n_tasks: number of task ids (static routers: one table per task; dynamic: a per-task bias).
        router_hidden: hidden width of dynamic routers (``None``: linear).
        task_embedding: add a learned embedding of the task to the encoder output, so that the modules see
            the task (needs ``n_tasks``).

    Example:
        >>> net = modular_mlp(d_in=784, d_model=32, n_modules=4, n_out=10)
        >>> import torch
        >>> tuple(net(torch.rand(5, 1, 28, 28)).output.shape)
        (5, 10)
    """
    if static and n_tasks is None:
        raise ConfigError("static routers route per task: give n_tasks")
    if task_embedding and n_tasks is None:
        raise ConfigError("task_embedding needs n_tasks")
    d_hidden = d_hidden or d_model
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(d_in, d_model), nn.ReLU()) if d_in is not None else None
    layers = [
        ModularLayer(
            modules=MLPExperts(n_modules=n_modules, d_in=d_model, d_hidden=d_hidden, d_out=d_model),
            router=Router(n_modules=n_modules, d_in=None if static else d_model, mode=mode, k=k, gate=gate,
                          static=static, n_tasks=n_tasks, hidden=router_hidden),
            k=k,
        )
        for _ in range(n_layers)
    ]
    return ModularStack(
        layers=layers,
        encoder=encoder,
        head=nn.Linear(d_model, n_out) if n_out is not None else None,
        activation=nn.ReLU(),
        task_embedding=nn.Embedding(n_tasks, d_model) if task_embedding else None,
    )


def dense_mlp(*, d_model: int, d_in: int | None = None, d_hidden: int | None = None, n_out: int | None = None,
              n_layers: int = 2, n_tasks: int | None = None) -> ModularStack:
    """The non-modular baseline of equal per-example compute: :func:`modular_mlp` with one module per layer
    (no routing) and, for multi-task data, the task added to the input by an embedding."""
    return modular_mlp(d_model=d_model, n_modules=1, d_in=d_in, d_hidden=d_hidden, n_out=n_out, n_layers=n_layers,
                       mode="argmax", static=True, n_tasks=n_tasks or 1, task_embedding=n_tasks is not None)
