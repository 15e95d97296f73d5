"""Winner-take-all over module combinations (IMN, seed 002, eq. 4-10).

Every image is explained by every candidate ``T = P_S T^I_j``: ``P_S`` the ordered product of the
transforms of a non-empty subset ``S`` of the ``m`` compositional modules (eq. 4), ``T^I_j`` one of the
``n`` identity modules (eq. 5), so ``C = (2^m - 1) n`` candidates (155 for m = n = 5), all decoded by one
decoder (eq. 6). A candidate's loss is ``L_img + L_ind + sum KL`` (eq. 7-9; its score is minus that) and
only the best candidate of each image is trained, with the LVAE stability term added (eq. 10).

How it is made fast:

- the subset products are built level by level, one batched matmul per subset size (``P_{S+j} = P_S T_j``
  for ``j > max S``);
- the winner is chosen without gradients and only the winner is recomputed with them: the gradient of
  ``min_c L_c`` is the gradient of the winner's ``L``, so this equals the naive loop (``scorer="naive"``)
  in value and gradient, at a fraction of the cost and memory;
- ``scorer="exact"`` decodes the candidates in cache-sized chunks of rows;
- ``scorer="fast"`` (decoders ending in a linear layer ``x_hat = W h + b``) never decodes: with
  ``G = W^T W`` and ``r = W^T (x - b)``, ``||x - x_hat||^2 = ||x - b||^2 - 2 r.h + h^T G h``, evaluated in
  float64, and the two best candidates of each image are re-scored exactly so the argmin is the exact one.

The independence term ``L_ind`` (eq. 8) is the Hessian-penalty estimator of Peebles et al. (2020) with
finite differences: for Rademacher directions ``v_1..v_K`` over all the latents of the combination, the
unbiased variance over ``k`` of ``(x_hat(z + eps v_k) - 2 x_hat(z) + x_hat(z - eps v_k)) / eps^2``, summed
over pixels. Its expectation is ``2 sum_{i != j} H_ij^2`` per pixel: zero exactly when the decoder is
additive in the latents, and it covers pairs inside one module (intra) and across modules (inter) alike.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError, ShapeError
from ._objective import check_batch

__all__ = [
    "Assignment",
    "CombinationModel",
    "SubsetPlan",
    "WinnerTakeAll",
    "WinnerTakeAllConfig",
    "hessian_penalty",
    "subset_plan",
    "subset_products",
]

SCORERS = ("exact", "fast", "naive")


class CombinationModel(Protocol):
    """What :class:`WinnerTakeAll` needs of a model (:class:`modnets.models.IMN` provides it)."""

    m: int
    n: int
    identities: Callable[[], Tensor]
    decoder: nn.Module
    id_classifier: nn.Module | None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def transforms(self, z: Tensor) -> Tensor: ...

    def algebra_penalties(self) -> Tensor: ...


@dataclass
class WinnerTakeAllConfig(Config):
    """Settings of :class:`WinnerTakeAll`.

    Attributes:
        beta: weight of the KL terms.
        independence: weight of ``L_ind`` (0 turns it off, in the score and the loss).
        extra: weight of the LVAE stability term ``sum_{i != j} ||A_i A_j||^2`` of the winner's modules
            (loss only, not scored).
        id_weight: weight of the ID classifier's cross-entropy (used when the model has one and the batch
            gives ``shape``).
        id_feature_weight: weight of the L2 distance between the classifier features of the winner's identity
            and of the winner's whole transform.
        probes: Rademacher directions of the Hessian-penalty estimator (>= 2).
        eps: finite-difference step of the estimator.
        scorer: ``"exact"`` (decode every candidate, chunked, no gradients; then recompute the winner),
            ``"fast"`` (quadratic form on the decoder's features, needs ``decoder.features`` and a linear
            ``decoder.head``) or ``"naive"`` (every candidate with gradients, then the min; the reference).
        score_independence: include ``L_ind`` in the score (eq. 9); otherwise it enters the winner's loss only.
        chunk_rows: candidates decoded together by the exact scorer.
        sample: draw ``z = mu + sigma * noise`` in training (``False``: ``z = mu``).
        score_id: in training, add the ID classifier's two terms (weighted as in the loss) to every candidate's
            score, so the shape label takes part in choosing the winner (not in the paper, where the classifier
            only enters the winner's loss); assignments at test time (:meth:`WinnerTakeAll.assign`) never see a
            label. Needs a model with an ID classifier.
        warmup_steps: a shared-identity phase: for the first ``warmup_steps`` training steps every image is
            explained with identity 0 (the compositional modules and the decoder learn what varies most while
            the identities do not compete); at the end of the phase every identity starts from identity 0 plus
            Gaussian noise of standard deviation ``warmup_spread / sqrt(k)`` on its Lie-algebra element.
        warmup_spread: the noise of that restart.
        beta_warmup_steps: the KL weight rises linearly from 0 to ``beta`` over this many training steps
            (annealed KL; 0: ``beta`` from the start).
    """

    beta: float = 1.0
    independence: float = 1e-3
    extra: float = 1e-2
    id_weight: float = 1.0
    id_feature_weight: float = 1.0
    probes: int = 2
    eps: float = 0.1
    scorer: str = "fast"
    score_independence: bool = True
    chunk_rows: int = 256
    sample: bool = True
    score_id: bool = False
    warmup_steps: int = 0
    warmup_spread: float = 0.5
    beta_warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_ints(self, "chunk_rows")
        check_ints(self, "probes", minimum=2)
        check_ints(self, "warmup_steps", "beta_warmup_steps", minimum=0)
        for name in ("beta", "independence", "extra", "id_weight", "id_feature_weight", "warmup_spread"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"WinnerTakeAllConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.eps > 0:
            raise ConfigError(f"WinnerTakeAllConfig.eps must be > 0, got {self.eps!r}")
        if self.scorer not in SCORERS:
            raise ConfigError(f"WinnerTakeAllConfig.scorer must be one of {SCORERS}, got {self.scorer!r}")


class SubsetPlan(NamedTuple):
    """The non-empty subsets of ``m`` modules, by size then lexicographically, and how to build their products.

    Attributes:
        members: the subsets, each an increasing tuple of module indices.
        mask: ``(S, m)`` bool, ``mask[s, i]``: module ``i`` is in subset ``s``.
        parents: per level ``L >= 2``, ``(L_count,)`` the index (into ``members``) of each subset minus its last module.
        lasts: per level ``L >= 2``, ``(L_count,)`` the last (largest) module of each subset.
    """

    members: tuple[tuple[int, ...], ...]
    mask: Tensor
    parents: tuple[Tensor, ...]
    lasts: tuple[Tensor, ...]


@functools.lru_cache(maxsize=16)
def subset_plan(m: int) -> SubsetPlan:
    """The :class:`SubsetPlan` of ``m`` modules (``2^m - 1`` subsets).

    Example:
        >>> subset_plan(3).members
        ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
    """
    if not isinstance(m, int) or m < 1:
        raise ConfigError(f"subset_plan: m must be an int >= 1, got {m!r}")
    members = tuple(s for size in range(1, m + 1) for s in itertools.combinations(range(m), size))
    index = {s: i for i, s in enumerate(members)}
    mask = torch.zeros(len(members), m, dtype=torch.bool)
    for i, s in enumerate(members):
        mask[i, list(s)] = True
    parents, lasts = [], []
    for size in range(2, m + 1):
        level = [s for s in members if len(s) == size]
        parents.append(torch.tensor([index[s[:-1]] for s in level]))
        lasts.append(torch.tensor([s[-1] for s in level]))
    return SubsetPlan(members, mask, tuple(parents), tuple(lasts))


def subset_products(transforms: Tensor, plan: SubsetPlan | None = None) -> Tensor:
    """The ordered product of every non-empty subset of the modules' transforms (eq. 4), one batched matmul per
    subset size.

    Args:
        transforms: ``(..., m, k, k)`` one transform per module.
        plan: the subsets (default: :func:`subset_plan` of ``m``).

    Returns:
        ``(..., S, k, k)``, entry ``s`` = ``T_{i1} T_{i2} ... T_{iL}`` for ``members[s] = (i1 < ... < iL)``.
    """
    if transforms.dim() < 3 or transforms.shape[-1] != transforms.shape[-2]:
        raise ShapeError(f"transforms must be (..., m, k, k), got {tuple(transforms.shape)}")
    plan = plan if plan is not None else subset_plan(transforms.shape[-3])
    if plan.mask.shape[1] != transforms.shape[-3]:
        raise ShapeError(f"the plan is for m={plan.mask.shape[1]} modules, transforms hold {transforms.shape[-3]}")
    levels = [transforms]
    for parents, lasts in zip(plan.parents, plan.lasts, strict=True):
        done = torch.cat(levels, dim=-3)
        levels.append(done[..., parents.to(done.device), :, :] @ transforms[..., lasts.to(done.device), :, :])
    return torch.cat(levels, dim=-3)


def hessian_penalty(fn: Callable[[Tensor], Tensor], z: Tensor, *, directions: Tensor, eps: float) -> Tensor:
    """Finite-difference Hessian penalty of ``fn`` at ``z``, per example (see the module docstring).

    Args:
        fn: maps ``(B, ...)`` latents to ``(B, ...)`` outputs.
        z: ``(B, ...)`` latents.
        directions: ``(K, B, ...)`` Rademacher (+-1) directions, ``K >= 2``.
        eps: finite-difference step.

    Returns:
        ``(B,)`` the unbiased variance over directions of the second directional differences, summed over
        the output elements.
    """
    if directions.dim() != z.dim() + 1 or directions.shape[1:] != z.shape or directions.shape[0] < 2:
        raise ShapeError(f"directions must be (K >= 2, *z.shape) = (K, {', '.join(map(str, z.shape))}), got "
                         f"{tuple(directions.shape)}")
    center = fn(z).flatten(1)
    second = torch.stack([(fn(z + eps * v).flatten(1) + fn(z - eps * v).flatten(1) - 2 * center) / eps**2
                          for v in directions])  # (K, B, D)
    return _probe_variance(second)


def _probe_variance(second: Tensor) -> Tensor:
    """``(K, ...rows, D)`` -> ``(...rows,)`` unbiased variance over the first dimension, summed over the last
    (written out: ``Tensor.var`` over a short leading dimension is many times slower)."""
    centered = second - second.mean(0)
    return centered.pow(2).sum(0).sum(-1) / (second.shape[0] - 1)


class Assignment(NamedTuple):
    """The winning combination of each image.

    Attributes:
        candidate: ``(B,)`` index ``s * n + j`` of the winner among the ``C`` candidates.
        subset: ``(B,)`` index into :attr:`SubsetPlan.members` of the winner's compositional modules.
        identity: ``(B,)`` the winner's identity module.
        loss: ``(B,)`` the winner's scored loss (minus its score).
    """

    candidate: Tensor
    subset: Tensor
    identity: Tensor
    loss: Tensor


class _Prepared(NamedTuple):
    z: Tensor  # (B, m, d)
    kl: Tensor  # (B, m)
    directions: Tensor  # (K, B, m, d)


class WinnerTakeAll(nn.Module):
    """The IMN objective: score every combination, train the winner (eq. 4-10), with the optional ID classifier.

    An :class:`~modnets.train.Objective`: ``fit(WinnerTakeAll(model), data, ...)``. Batches give ``x``
    (B, 3, H, W) and, for a model with an ID classifier, ``shape`` (B,). :meth:`loss` draws the latent noise
    and the probe directions, then computes :meth:`terms` (deterministic given them): ``loss``, ``loss_img``,
    ``loss_ind``, ``loss_kl``, ``loss_extra``, ``loss_id``, ``loss_id_feature`` (with a classifier),
    ``subset_size`` (mean number of compositional modules in the winners) and ``usage_j`` (share of the batch
    won by identity ``j``). :meth:`predict` gives each image's winning candidate at the posterior means.

    Args:
        model: an :class:`~modnets.models.IMN` (or any :class:`CombinationModel` that is an ``nn.Module``).
        config: settings.
    """

    def __init__(self, model: CombinationModel, *, config: WinnerTakeAllConfig | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"WinnerTakeAll needs an nn.Module model, got {type(model).__name__}")
        self.model = model
        self.config = config if config is not None else WinnerTakeAllConfig()
        self.plan = subset_plan(model.m)
        if self.config.score_id and model.id_classifier is None:
            raise ConfigError("WinnerTakeAllConfig.score_id=True scores the ID classifier's terms, but the model "
                              "has no ID classifier (build it with id_classifier=True)")
        # training steps taken (loss calls with gradients; the warm-up schedules count them); saved with the
        # objective's state
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        if self.config.scorer == "fast":
            head = getattr(model.decoder, "head", None)
            if not isinstance(head, nn.Linear) or not hasattr(model.decoder, "features"):
                raise ConfigError("scorer='fast' needs a decoder with `features` and a linear `head` "
                                  f"(decoder(T) = head(features(T))), got {type(model.decoder).__name__}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints written before the step counter existed have none: they predate the warm-up schedules
        # that read it, so such a run resumes at step 0
        state_dict.setdefault(prefix + "steps", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_candidates(self) -> int:
        return len(self.plan.members) * self.model.n

    @property
    def batch_keys(self) -> dict[str, str]:
        keys = {"x": "(B, 3, H, W) float images"}
        if self.model.id_classifier is not None:
            keys["shape"] = "(B,) long identity labels, for the ID classifier"
        return keys

    def loss(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Draw the latent noise and the probe directions (on the batch's device), then :meth:`terms`."""
        check_batch(self, batch)  # with an ID classifier, a batch without "shape" would skip its loss silently
        x = batch["x"]
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(f"batch['x'] must be a (B, 3, H, W) float tensor of images, got {got}")
        mu, _ = self.model.encode(x[:1])  # only for the latent shape
        shape = (x.shape[0], *mu.shape[1:])
        noise = torch.randn(shape, device=x.device) if self.config.sample else torch.zeros(shape, device=x.device)
        directions = torch.randint(0, 2, (self.config.probes, *shape), device=x.device).to(x.dtype) * 2 - 1
        cfg = self.config
        if cfg.warmup_steps and int(self.steps) == cfg.warmup_steps:
            self._restart_identities()
        # full precision even under bf16 autocast: the matrix exponentials of the Lie-group transforms and the
        # exact re-check of the winner overflow or tie in bfloat16
        with torch.autocast(x.device.type, enabled=False):
            out = self.terms(x, noise=noise, directions=directions, shape=batch.get("shape"))
        if cfg.beta_warmup_steps:
            out["beta"] = torch.tensor(self.beta)
        if torch.is_grad_enabled():  # a training step (validation losses run without gradients)
            self.steps += 1
        return out

    @property
    def beta(self) -> float:
        """The KL weight now: ``config.beta``, ramped up from 0 during ``beta_warmup_steps``."""
        cfg = self.config
        if cfg.beta_warmup_steps and int(self.steps) < cfg.beta_warmup_steps:
            return cfg.beta * int(self.steps) / cfg.beta_warmup_steps
        return cfg.beta

    @property
    def in_warmup(self) -> bool:
        """Whether the shared-identity phase is on (every image uses identity 0)."""
        return int(self.steps) < self.config.warmup_steps

    @torch.no_grad()
    def _restart_identities(self) -> None:
        """End of the shared-identity phase: every identity becomes identity 0 plus noise."""
        algebra = self.model.identities.algebra
        k = algebra.shape[-1]
        gen = torch.Generator().manual_seed(int(self.steps))
        noise = torch.randn(algebra.shape, generator=gen, device="cpu").to(algebra)
        algebra.copy_(algebra[:1] + self.config.warmup_spread * noise / k**0.5)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``(B,)`` each image's winning candidate ``subset * n + identity`` at the posterior means."""
        return self.assign(batch["x"]).candidate

    def terms(self, x: Tensor, *, noise: Tensor, directions: Tensor, shape: Tensor | None = None
              ) -> dict[str, Tensor]:
        """The loss terms of a batch with given latent noise and probe directions (deterministic).

        Args:
            x: ``(B, 3, H, W)`` images.
            noise: ``(B, m, d)`` standard normal noise of the latents (zeros: ``z = mu``).
            directions: ``(K, B, m, d)`` Rademacher directions of the Hessian-penalty estimator.
            shape: ``(B,)`` ground-truth identity labels, for the ID classifier.

        Returns:
            the named terms (see the class docstring); ``loss`` is their weighted sum, averaged over the batch.
        """
        cfg, model = self.config, self.model
        prep = self._prepare(x, noise, directions)
        with torch.no_grad():
            bias = self._candidate_bias(prep, shape)
        if cfg.scorer == "naive":
            scored = torch.stack([self._scored(x, prep, torch.full_like(x[:, 0, 0, 0], c, dtype=torch.long),
                                             independence=self.config.score_independence).total
                                  for c in range(self.n_candidates)], dim=1)  # (B, C), with gradients
            winner = (scored if bias is None else scored + bias).argmin(dim=1)
            winner_loss = scored.gather(1, winner[:, None]).squeeze(1)
            terms = self._scored(x, prep, winner)  # the winner's split into terms (and its transform)
        else:
            with torch.no_grad():
                winner = self._choose(x, prep, bias)
            terms = self._scored(x, prep, winner)
            winner_loss = terms.total
        subset = winner // model.n
        identity = winner % model.n
        mask = self.plan.mask.to(x.device)[subset]  # (B, m)
        extra = (model.algebra_penalties()[None] * mask).sum(1)
        total = winner_loss
        if not cfg.score_independence:
            total = total + cfg.independence * terms.ind
        total = total + cfg.extra * extra
        out = {"loss_img": terms.img.mean(), "loss_ind": terms.ind.mean(), "loss_kl": terms.kl.mean(),
               "loss_extra": extra.mean()}
        if model.id_classifier is not None and shape is not None:
            feat_id, logits = model.id_classifier(model.identities()[identity])
            feat_all, _ = model.id_classifier(terms.transform)
            out["loss_id"] = F.cross_entropy(logits, shape)
            out["loss_id_feature"] = (feat_id - feat_all).pow(2).sum(-1).mean()
            total = total + cfg.id_weight * out["loss_id"] + cfg.id_feature_weight * out["loss_id_feature"]
        out["loss"] = total.mean()
        out["subset_size"] = mask.float().sum(1).mean()
        for j in range(model.n):
            out[f"usage_{j}"] = (identity == j).float().mean()
        return out

    @torch.no_grad()
    def assign(self, x: Tensor, *, seed: int = 0) -> Assignment:
        """The winning combination of each image at the posterior means (``z = mu``), without gradients.

        Args:
            x: ``(B, 3, H, W)`` images.
            seed: seeds the probe directions of ``L_ind``.
        """
        mu, _ = self.model.encode(x[:1])
        shape = (x.shape[0], *mu.shape[1:])
        gen = torch.Generator().manual_seed(seed)
        # drawn on the CPU generator (the same directions on every device), then moved
        directions = (torch.randint(0, 2, (self.config.probes, *shape), generator=gen, device="cpu") * 2 - 1).to(x)
        prep = self._prepare(x, torch.zeros(shape, device=x.device), directions)
        winner = self._choose(x, prep)
        loss = self._scored(x, prep, winner).total
        return Assignment(winner, winner // self.model.n, winner % self.model.n, loss)

    @torch.no_grad()
    def candidate_losses(self, x: Tensor, *, noise: Tensor, directions: Tensor) -> Tensor:
        """``(B, C)`` every candidate's scored loss (minus eq. 9) by the configured scorer, without gradients:
        one candidate at a time (``naive``), decoded in chunks (``exact``) or by the quadratic form in float64
        (``fast``, before its exact top-2 re-check)."""
        prep = self._prepare(x, noise, directions)
        if self.config.scorer == "naive":
            return torch.stack([self._scored(x, prep, torch.full_like(x[:, 0, 0, 0], c, dtype=torch.long),
                                             independence=self.config.score_independence).total
                                for c in range(self.n_candidates)], dim=1)
        return self._all_fast(x, prep) if self.config.scorer == "fast" else self._all_exact(x, prep)

    @torch.no_grad()
    def choose(self, x: Tensor, *, noise: Tensor, directions: Tensor) -> Tensor:
        """``(B,)`` the winning candidate of each image by the configured scorer (the fast one re-checked)."""
        if self.config.scorer == "naive":
            return self.candidate_losses(x, noise=noise, directions=directions).argmin(1)
        return self._choose(x, self._prepare(x, noise, directions))

    # -- internals -------------------------------------------------------------------------------------------

    def _prepare(self, x: Tensor, noise: Tensor, directions: Tensor) -> _Prepared:
        mu, logvar = self.model.encode(x)  # (B, m, d)
        if noise.shape != mu.shape or directions.shape[1:] != mu.shape:
            raise ShapeError(f"noise must be {tuple(mu.shape)} and directions (K, *{tuple(mu.shape)}), got "
                             f"{tuple(noise.shape)} and {tuple(directions.shape)}")
        z = mu + (0.5 * logvar).exp() * noise
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)  # (B, m)
        return _Prepared(z, kl, directions)

    def _latent_versions(self, prep: _Prepared) -> Tensor:
        """``(P, B, m, d)``: ``z``, then ``z + eps v_k``, then ``z - eps v_k`` when ``L_ind`` is scored."""
        if not (self.config.score_independence and self.config.independence > 0):
            return prep.z[None]
        step = self.config.eps * prep.directions
        return torch.cat([prep.z[None], prep.z + step, prep.z - step])

    def _candidates(self, z_versions: Tensor) -> Tensor:
        """``(P, B, C, k, k)`` every candidate transform ``P_S T^I_j`` (eq. 5), candidate index ``s * n + j``."""
        products = subset_products(self.model.transforms(z_versions), self.plan)  # (P, B, S, k, k)
        identities = self.model.identities()  # (n, k, k)
        n, k = identities.shape[0], identities.shape[-1]
        # one GEMM for all (subset, identity) pairs: rows of P_S times [T_1 | ... | T_n]
        cand = products.reshape(-1, k) @ identities.permute(1, 0, 2).reshape(k, n * k)  # (P*B*S*k, n*k)
        cand = cand.view(*products.shape[:-2], k, n, k).transpose(-3, -2)  # (P, B, S, n, k, k)
        return cand.flatten(-4, -3)

    def _kl_per_candidate(self, prep: _Prepared) -> Tensor:
        """``(B, C)`` the summed KL of each candidate's compositional modules."""
        per_subset = prep.kl @ self.plan.mask.to(prep.kl).T  # (B, S)
        return per_subset.repeat_interleave(self.model.n, dim=1)

    def _candidate_bias(self, prep: _Prepared, shape: Tensor | None) -> Tensor | None:
        """``(B, C)`` what training adds to every candidate's scored loss before the argmin, or ``None``:
        ``inf`` on identities other than 0 in the shared-identity warm-up, and the ID classifier's terms when
        ``score_id`` (and labels are given)."""
        cfg, model = self.config, self.model
        n_subsets = len(self.plan.members)
        bias = None
        if cfg.score_id and shape is not None:
            feat_id, logits = model.id_classifier(model.identities())  # (n, F), (n, classes)
            ce = -logits.log_softmax(-1)[:, shape].T  # (B, n)
            cand = self._candidates(prep.z[None])[0]  # (B, C, k, k)
            feat_all, _ = model.id_classifier(cand.flatten(0, 1))
            gap = (feat_all.view(*cand.shape[:2], -1) - feat_id.repeat(n_subsets, 1)).pow(2).sum(-1)  # (B, C)
            bias = cfg.id_weight * ce.repeat(1, n_subsets) + cfg.id_feature_weight * gap
        if self.in_warmup:
            others = torch.full((model.n,), float("inf"), device=prep.z.device)
            others[0] = 0.0
            bias = others.repeat(n_subsets) if bias is None else bias + others.repeat(n_subsets)
        return bias

    def _choose(self, x: Tensor, prep: _Prepared, bias: Tensor | None = None) -> Tensor:
        """``(B,)`` the argmin candidate of each image (exact or fast scorer), after adding ``bias``."""
        bias = torch.zeros((), device=x.device) if bias is None else bias.expand(x.shape[0], -1)
        if self.config.scorer != "fast":
            return (self._all_exact(x, prep) + bias).argmin(1)
        fast = self._all_fast(x, prep) + bias  # (B, C) float64
        top2 = fast.topk(min(2, fast.shape[1]), dim=1, largest=False).indices  # (B, 2)
        rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(top2.shape[1])
        exact = self._exact_rows(x, prep, rows, top2.flatten()).view_as(top2)
        if bias.dim():
            exact = exact + bias.gather(1, top2).to(exact)
        return top2.gather(1, exact.argmin(1, keepdim=True)).squeeze(1)

    def _all_exact(self, x: Tensor, prep: _Prepared) -> Tensor:
        b, c = x.shape[0], self.n_candidates
        rows = torch.arange(b, device=x.device).repeat_interleave(c)
        cols = torch.arange(c, device=x.device).repeat(b)
        return self._exact_rows(x, prep, rows, cols).view(b, c)

    def _exact_rows(self, x: Tensor, prep: _Prepared, rows: Tensor, cols: Tensor) -> Tensor:
        """``(R,)`` the scored loss of candidate ``cols[r]`` on image ``rows[r]``, decoded in chunks."""
        cfg = self.config
        cand = self._candidates(self._latent_versions(prep))  # (P, B, C, k, k)
        kl = self._kl_per_candidate(prep)[rows, cols]
        target = x.flatten(1)
        out = torch.empty(rows.shape[0], dtype=x.dtype, device=x.device)
        n_probes = (cand.shape[0] - 1) // 2
        for start in range(0, rows.shape[0], cfg.chunk_rows):
            r, c = rows[start:start + cfg.chunk_rows], cols[start:start + cfg.chunk_rows]
            decoded = self.model.decoder(cand[:, r, c]).flatten(2)  # (P, R, D)
            if n_probes:
                second = (decoded[1:1 + n_probes] + decoded[1 + n_probes:] - 2 * decoded[0]) / cfg.eps**2
                penalty = _probe_variance(second)
            loss = decoded[0].sub_(target[r]).square_().sum(-1)  # in place: the chunk stays in cache
            if n_probes:
                loss = loss + cfg.independence * penalty
            out[start:start + cfg.chunk_rows] = loss
        return out + self.beta * kl

    def _all_fast(self, x: Tensor, prep: _Prepared) -> Tensor:
        """``(B, C)`` float64 scored losses from the decoder's features: the quadratic-form identity."""
        cfg, decoder = self.config, self.model.decoder
        weight, bias = decoder.head.weight.double(), decoder.head.bias.double()  # (D, F), (D,)
        gram = weight.T @ weight  # (F, F)
        target = x.flatten(1).double() - bias  # (B, D)
        cross = target @ weight  # (B, F)
        feats = decoder.features(self._candidates(self._latent_versions(prep)).flatten(-2))  # (P, B, C, F)
        h = feats[0].double()
        loss = target.pow(2).sum(-1, keepdim=True) - 2 * (h * cross[:, None]).sum(-1) + ((h @ gram) * h).sum(-1)
        n_probes = (feats.shape[0] - 1) // 2
        if n_probes:  # a sum of squares, free of cancellation: float32 is enough
            second = (feats[1:1 + n_probes] + feats[1 + n_probes:] - 2 * feats[0]) / cfg.eps**2  # (K, B, C, F)
            centered = second - second.mean(0)
            penalty = ((centered @ gram.to(centered.dtype)) * centered).sum(-1).sum(0) / (n_probes - 1)
            loss = loss + cfg.independence * penalty.double()
        return loss + self.beta * self._kl_per_candidate(prep).double()

    class _Terms(NamedTuple):
        total: Tensor  # (B,) the scored loss
        img: Tensor
        ind: Tensor
        kl: Tensor
        transform: Tensor  # (B, k, k)

    def _scored(self, x: Tensor, prep: _Prepared, candidate: Tensor, *, independence: bool = True
                ) -> WinnerTakeAll._Terms:
        """The scored loss of one candidate per image, with gradients (the winner recompute); ``L_ind`` is
        left at zero when ``independence`` is false (a naive candidate whose score does not need it)."""
        cfg, model = self.config, self.model
        subset, identity = candidate // model.n, candidate % model.n
        mask = self.plan.mask.to(x.device)[subset]  # (B, m)
        right = model.identities()[identity]  # (B, k, k)
        eye = torch.eye(right.shape[-1], dtype=right.dtype, device=right.device)

        def transform(z: Tensor) -> Tensor:
            t = torch.where(mask[..., None, None], model.transforms(z), eye)  # non-members act as the identity
            product = t[:, 0]
            for i in range(1, t.shape[1]):
                product = product @ t[:, i]
            return product @ right

        whole = transform(prep.z)
        img = (x.flatten(1) - model.decoder(whole).flatten(1)).pow(2).sum(-1)
        if cfg.independence > 0 and independence:
            ind = hessian_penalty(lambda z: model.decoder(transform(z)), prep.z, directions=prep.directions,
                                  eps=cfg.eps)
        else:
            ind = torch.zeros_like(img)
        kl = (prep.kl * mask).sum(1)
        total = img + self.beta * kl
        if cfg.score_independence:
            total = total + cfg.independence * ind
        return WinnerTakeAll._Terms(total, img, ind, kl, whole)
