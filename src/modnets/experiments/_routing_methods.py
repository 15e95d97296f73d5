"""The routing methods the ``routing`` and ``generalization`` experiments compare: their names and labels, the
objective and the routers' settings of each, and one training with the routing diagnostics of its test set."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ..analysis import routing_stats
from ..train import (
    EndToEnd,
    EndToEndConfig,
    FitConfig,
    LogLikelihood,
    Reinforce,
    ReinforceConfig,
    RoutingObjective,
    RoutingRegularizers,
    RunDir,
    TopKBuffer,
    TopKBufferConfig,
    fit,
    generalized_em,
    predict_routed,
)

#: The routing methods, by name; LABELS: how reports name them.
METHODS = ("em", "em_best_sample", "em_every4", "topk", "reinforce", "soft", "gumbel", "moe", "dense")
LABELS = {
    "em": "generalised EM (K=1)",
    "em_best_sample": "EM, incumbents from the first E-step's best sample",
    "em_every4": "EM, one E-step every 4 M-steps",
    "topk": "top-K buffer",
    "reinforce": "REINFORCE",
    "soft": "soft routing",
    "gumbel": "straight-through Gumbel",
    "moe": "gated top-1 MoE (sigmoid gate, load balancing)",
    "dense": "dense, equal compute",
}


def objective(
    method: str, net: torch.nn.Module, *, samples: int, buffer_size: int, n: int, ll: LogLikelihood | None
) -> RoutingObjective:
    """The routing objective of ``method`` over a training set of ``n`` examples (EM and the top-K buffer keep
    per-example state; ``samples`` routes per example and step, ``buffer_size`` K)."""
    if method.startswith("em"):
        em = TopKBufferConfig.em(samples=samples, init="best_sample" if method == "em_best_sample" else "random",
                                 e_step_every=4 if method == "em_every4" else 1)
        return generalized_em(net, dataset_size=n, config=em, likelihood=ll)
    if method == "topk":
        buffer = TopKBufferConfig(buffer_size=buffer_size, samples=samples)
        return TopKBuffer(net, dataset_size=n, config=buffer, likelihood=ll)
    if method == "reinforce":
        return Reinforce(net, ReinforceConfig(), likelihood=ll)
    if method == "moe":  # the Switch Transformer's auxiliary load-balancing loss, weight 0.01
        return EndToEnd(net, EndToEndConfig(regularizers=RoutingRegularizers(load_balance=0.01)), likelihood=ll)
    return EndToEnd(net, likelihood=ll)


def router_settings(method: str) -> dict[str, Any]:
    """The routers' mode, gate and k for ``method`` (keyword arguments of :func:`~modnets.models.modular_mlp`)."""
    if method == "moe":  # sigmoid: a softmax weight ~1/M per layer would shrink the signal (no residual path)
        return {"mode": "topk", "gate": "sigmoid", "k": 1}
    return {"mode": {"soft": "soft", "gumbel": "gumbel"}.get(method, "sample"), "gate": None, "k": 1}


def train_and_test(
    method: str, net: torch.nn.Module, objective: RoutingObjective, train: Dataset, test: Dataset, *, part: str,
    fit_config: FitConfig, collate: Any, rundir: RunDir,
) -> tuple[dict[str, Any], Any, list[dict[str, float]]]:
    """Train one method; returns its test metrics, its test routing and its training history."""
    result = fit(objective, train, config=fit_config, collate=collate, run=rundir, name=f"{part}/{method}")
    routed = predict_routed(net, test, collate=collate, mode=objective.eval_mode)
    metrics: dict[str, Any] = {"train_seconds": result.seconds, "steps": result.steps}
    if method != "dense":
        soft = objective.eval_mode == "soft"
        stats = routing_stats(routed.route.probs, choice=None if soft else routed.route.choice)
        metrics.update(
            mutual_information=stats.mutual_information,
            entropy=stats.entropy,
            conditional_entropy=stats.conditional_entropy,
            modules_used=(stats.usage >= 0.01).sum(1).tolist(),
            usage=stats.usage.tolist(),
            collapsed=stats.collapsed,
        )
    return metrics, routed, result.history
