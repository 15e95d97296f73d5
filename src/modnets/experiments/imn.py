"""Experiment ``imn``: Independent Modular Networks on generated 3D-shapes-like images (seed 002).

Five compositional modules (Lie-group VAE encoders) and five identity modules (learnable matrices that
never see the input) are trained by winner-take-all over all 155 combinations, once without and once with
the ID classifier. For each ground-truth shape, the Table I analogue gives the fraction of its test images
whose winning combination used each identity module; the identities alone are decoded (Fig. 2b analogue).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..analysis import (
    decomposition_table,
    factor_alignment,
    plot_identity_images,
    plot_training_curves,
    plot_usage_curves,
)
from ..data import SHAPES3D_FACTORS, SHAPES3D_SHAPES, Shapes3DConfig, Shapes3DDataset, collate_shapes3d, make_shapes3d
from ..errors import ConfigError
from ..models import imn
from ..train import FitConfig, RunDir, WinnerTakeAll, WinnerTakeAllConfig, fit
from ._report import Report, markdown_table, percent

__all__ = ["Config", "PAPER_TABLE1", "run"]

#: the paper's Table I (percent of each shape's test images per identity module), without / with ID classifier
PAPER_TABLE1: dict[str, list[list[float]]] = {
    "without_id_classifier": [[28.03, 28.80, 0, 43.17, 0], [100.0, 0, 0, 0, 0], [0, 0, 100.0, 0, 0],
                              [40.32, 0, 0, 0, 59.68]],
    "with_id_classifier": [[93.62, 0, 0, 0, 6.377], [0, 0, 0, 0, 100.0], [0, 0, 12.33, 87.66, 0],
                           [0, 77.80, 13.34, 7.992, 0]],
}
VARIANTS = ("without_id_classifier", "with_id_classifier")


@dataclass
class Config(ConfigBase):
    """Settings of the ``imn`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        image_size: height and width of the generated images (a power of two).
        n_train: training images; n_test: test images (other factor draws).
        m: compositional modules; n: identity modules (the paper: 5 and 5).
        latent_dim: latent size of each compositional module; matrix_size: transforms are k x k.
        hidden: decoder width; channels: encoder CNN width.
        fit: training of each variant.
        objective: the winner-take-all settings (scorer, weights, Hessian-penalty probes).
    """

    quick: bool = False
    seed: int = 0
    image_size: int = 64
    n_train: int = 8000
    n_test: int = 2000
    m: int = 5
    n: int = 5
    latent_dim: int = 3
    matrix_size: int = 8
    hidden: int = 256
    channels: int = 16
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=1, batch_size=32, lr=2e-3))
    objective: WinnerTakeAllConfig = field(default_factory=WinnerTakeAllConfig)

    def __post_init__(self) -> None:
        check_ints(self, "n_train", "n_test", "m", "n", "latent_dim", "matrix_size", "hidden", "channels")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ConfigError(f"Config.image_size must be a power of two >= 8, got {self.image_size!r}")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        # beta = 0.1 and thousands of steps: the compositional modules must first absorb the hues (most of the
        # pixel variance) before the winning identity can follow the shape; at beta = 1 or a few hundred
        # steps the identities split the floor and wall hues instead (measured at 32x32, see the report text)
        objective = WinnerTakeAllConfig(beta=0.1, score_independence=False)
        if quick:
            return cls(quick=True, seed=seed, image_size=32, n_train=2400, n_test=800, hidden=128, channels=16,
                       fit=FitConfig(epochs=6, batch_size=32, lr=2e-3, seed=seed, on_nonfinite="skip"),
                       objective=objective)
        return cls(seed=seed, image_size=32, hidden=128,
                   fit=FitConfig(epochs=10, batch_size=32, lr=2e-3, seed=seed, on_nonfinite="skip"),
                   objective=objective)


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train both variants, build the Table I analogue and the identity reconstructions; return the report
    (checkpoints go into ``out_dir``; ``resume=True`` continues from them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = make_shapes3d(Shapes3DConfig(n_examples=config.n_train, image_size=config.image_size, seed=config.seed))
    test = make_shapes3d(Shapes3DConfig(n_examples=config.n_test, image_size=config.image_size,
                                        seed=config.seed + 10_000))
    metrics: dict = {"data_seconds": time.perf_counter() - t0, "table1": {},
                     "dominant_fraction": {}, "distinct_dominant_identities": {}, "paper_table1": PAPER_TABLE1}
    histories, identity_images = {}, {}
    rundir = RunDir(out, resume=resume, progress=progress)
    for variant in VARIANTS:
        torch.manual_seed(config.seed)
        net = imn(image_size=config.image_size, m=config.m, n=config.n, latent_dim=config.latent_dim,
                  matrix_size=config.matrix_size, hidden=config.hidden, channels=config.channels,
                  id_classifier=variant == "with_id_classifier", n_classes=len(SHAPES3D_SHAPES))
        objective = WinnerTakeAll(net, config=config.objective)
        result = fit(objective, train, config=config.fit, collate=collate_shapes3d, run=rundir, name=variant)
        winners = _assign(objective, test)
        table = decomposition_table(test.shapes, winners["identity"], n_concepts=len(SHAPES3D_SHAPES),
                                    n_modules=config.n)
        histories[variant] = result.history
        identity_images[variant] = net.identity_images()
        metrics["table1"][variant] = [[round(100 * v, 2) for v in row] for row in table.fractions.tolist()]
        metrics["dominant_fraction"][variant] = {s: float(f) for s, f in
                                                 zip(SHAPES3D_SHAPES, table.dominant_fraction, strict=True)}
        metrics["distinct_dominant_identities"][variant] = table.distinct_dominant
        metrics[variant] = {
            "train_seconds": result.seconds, "steps": result.steps, "skipped_batches": result.skipped,
            "final": {k: v for k, v in result.history[-1].items() if not k.startswith("usage_")},
            "test_winner_loss": float(winners["loss"].mean()),
            "test_subset_size": float(winners["subset_size"].mean()),
            "test_identity_usage": torch.bincount(winners["identity"], minlength=config.n).div(len(test)).tolist(),
            "dominant_identity": {s: int(d) for s, d in zip(SHAPES3D_SHAPES, table.dominant, strict=True)},
            "identity_factor_nmi": factor_alignment(test.factors, winners["identity"], list(SHAPES3D_FACTORS)),
        }
    figures = ["identity_images.png", "identity_usage.png", "loss.png"]
    plot_identity_images(torch.zeros(0), out / figures[0], titles=[f"identity {j}" for j in range(config.n)],
                         rows={v.replace("_", " "): imgs for v, imgs in identity_images.items()})
    plot_usage_curves({v.replace("_", " "): h for v, h in histories.items()}, out / figures[1])
    plot_training_curves({v.replace("_", " "): h for v, h in histories.items()}, out / figures[2], x="step",
                         y="loss", logy=True, title="winner's loss (eq. 10) per step")
    metrics["total_seconds"] = time.perf_counter() - t0
    return _report(config, metrics, figures)


@torch.no_grad()
def _assign(objective: WinnerTakeAll, data: Shapes3DDataset, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The winning combination of every test image, at the posterior means."""
    parts = [objective.assign(data.images[i:i + batch_size], seed=i) for i in range(0, len(data), batch_size)]
    mask = objective.plan.mask
    subset = torch.cat([p.subset for p in parts])
    return {"identity": torch.cat([p.identity for p in parts]), "subset": subset,
            "subset_size": mask[subset].sum(1).float(), "loss": torch.cat([p.loss for p in parts])}


#: probe measurements behind the presets (fixed text: they come from separate short runs, not from this run)
WHAT_IT_TAKES = (
    "Probes at 32x32 (2,400 training and 800 test images, seed 0, ID classifier on, batch 32, lr 2e-3) showed "
    "that the identities follow the shape only once the compositional modules have absorbed the hues. In the "
    "generated images the floor hue explains 50 % of the pixel variance, the wall hue 31 %, the object hue 7 %, "
    "the shape 0.9 % (the object covers 6-34 % of the pixels, 15 % on average), so the winner-take-all split "
    "first follows the floor and wall hues. With beta = 1 it stayed there: after 1,500 steps the mean "
    "dominant-identity fraction was 27 % and the shape NMI 0.006 (floor 0.34, wall 0.32). With beta = 0.1 the "
    "latents carried more (KL about 19 instead of 4 nats), the hue NMIs fell, and between 1,200 and 1,800 steps "
    "the split turned to the shape: mean dominant fraction 30 % / 40 % / 52 % / 54 % and shape NMI "
    "0.008 / 0.058 / 0.35 / 0.42 after 600 / 1,200 / 1,800 / 2,400 steps (capsule 100 % on one identity, the ID "
    "classifier's loss below ln 4 for the first time); beta = 0.03 behaved alike (shape NMI 0.33 at 1,800 "
    "steps). Forcing the training winner's identity to the shape label (an oracle, not the paper's method) gave "
    "a test split by reconstruction alone of 73 % (shape NMI 0.48) after 900 steps at a training pixel error of "
    "41.3 against 40.1 for the free hue split: eq. 9 barely prefers either split, so the order in which factors "
    "are learnt decides. Adding the ID classifier's cross-entropy to the score (weights 1 and 50) changed nothing "
    "while the identities were mixed (the classifier predicts the same marginal for every identity), and "
    "neither a latent size of 6 (600 steps) nor identities initialised closer together with a 3x larger "
    "Lie-algebra basis (300 steps) moved the split at beta = 1. The turn is not guaranteed within the presets' "
    "step budget: of five runs at beta = 0.1 with 2,400-2,500 steps, three turned (shape NMI 0.33-0.42) and two "
    "stayed on the floor hue (floor-hue NMI 0.37 and 0.71, shape NMI 0.008); the full-mode run at seed 0 turned "
    "without the ID classifier (shape NMI 0.40, capsule 98 % on one identity) and not with it, and 8,000 images "
    "at seed 1 did the opposite."
)


def _report(config: Config, m: dict, figures: list[str]) -> Report:
    rows = []
    for variant in VARIANTS:
        label = "yes" if variant == "with_id_classifier" else "no"
        for s, shape in enumerate(SHAPES3D_SHAPES):
            ours = m["table1"][variant][s]
            paper = PAPER_TABLE1[variant][s]
            rows.append((label, shape, " / ".join(f"{v:.1f}" for v in ours), f"{max(ours):.1f}",
                         " / ".join(f"{v:.1f}" for v in paper), f"{max(paper):.1f}"))
    headline = markdown_table(
        ["ID cls.", "GT shape", "this run: identity 1..n (%)", "dominant (%)", "paper: m1..m5 (%)",
         "paper dominant (%)"], rows)
    dom = {v: m["dominant_fraction"][v] for v in VARIANTS}
    mean_dom = {v: sum(d.values()) / len(d) for v, d in dom.items()}
    paper_mean = {v: sum(max(r) for r in PAPER_TABLE1[v]) / 400 for v in VARIANTS}
    distinct = m["distinct_dominant_identities"]
    summary = (
        f"IMN with m = {config.m} compositional and n = {config.n} identity modules "
        f"({(2 ** config.m - 1) * config.n} combinations scored per image), trained by winner-take-all on "
        f"{config.n_train:,} generated {config.image_size}x{config.image_size} 3D-shapes-like images "
        f"({'quick mode' if config.quick else 'full mode'}, seed {config.seed}, "
        f"{config.fit.epochs} epoch(s) of {-(-config.n_train // config.fit.batch_size)} steps per variant). On "
        f"{config.n_test:,} test images, the mean dominant-identity "
        f"fraction per shape was {percent(mean_dom['without_id_classifier'])} without and "
        f"{percent(mean_dom['with_id_classifier'])} with the ID classifier (paper: "
        f"{percent(paper_mean['without_id_classifier'])} and {percent(paper_mean['with_id_classifier'])}); "
        f"the four shapes had {distinct['without_id_classifier']} and {distinct['with_id_classifier']} distinct "
        f"dominant identities (a one-to-one split has 4; the paper's Table I has 4 in both rows, with one identity "
        f"left nearly unused). The data are a procedural analogue of 3dshapes, not the real set, and the "
        f"training is far shorter than the paper's, so the numbers compare the kind of decomposition, not its "
        f"exact values."
    )
    per_variant = markdown_table(
        ["variant", "train time", "steps", "skipped (non-finite)", "final loss", "test winner loss",
         "mean modules in winner", "test identity usage"],
        [(v.replace("_", " "), f"{m[v]['train_seconds']:.0f} s", m[v]["steps"], m[v]["skipped_batches"],
          f"{m[v]['final']['loss']:.1f}",
          f"{m[v]['test_winner_loss']:.1f}", f"{m[v]['test_subset_size']:.2f}",
          " / ".join(f"{100 * u:.0f}" for u in m[v]["test_identity_usage"])) for v in VARIANTS])
    nmi = markdown_table(["factor"] + [v.replace("_", " ") for v in VARIANTS],
                         [(f, *(f"{m[v]['identity_factor_nmi'][f]:.3f}" for v in VARIANTS)) for f in SHAPES3D_FACTORS])
    aligned = {v: max(m[v]["identity_factor_nmi"], key=m[v]["identity_factor_nmi"].get) for v in VARIANTS}
    nmi += (
        f"\n\nNormalised mutual information between each ground-truth factor and the winning identity module on "
        f"the test images (0: unrelated; 1: the identity determines the factor). The identities aligned most with "
        f"`{aligned['without_id_classifier']}` without and `{aligned['with_id_classifier']}` with the ID "
        f"classifier; the paper reports them aligning with `shape`. The identity-only reconstructions "
        f"(`identity_images.png`) show what each identity encodes."
    )
    obj = config.objective
    method = (
        f"Scoring (eq. 9) and loss (eq. 10): per-image sum of squared pixel errors, beta = {obj.beta} times the KL "
        f"of the combination's modules, and L_ind with weight {obj.independence}: the finite-difference Hessian "
        f"penalty (Peebles et al. 2020) with {obj.probes} Rademacher probes over all latents of the combination "
        f"(eps = {obj.eps}), which covers intra- and inter-module pairs; it is "
        f"{'part of the score' if obj.score_independence else 'in the loss only'}. The LVAE stability term is "
        f"sum_(i != j) ||A_i A_j||^2 of the winner's Lie-algebra bases (weight {obj.extra}; the condition under "
        f"which the decoder's latent Hessian is diagonal). Winner chosen by the `{obj.scorer}` scorer without "
        f"gradients, then recomputed with them. The ID classifier is an MLP on the winner's identity matrix "
        f"trained on the shape label (weight {obj.id_weight}), plus the L2 distance between its features of the "
        f"identity and of the whole winning transform (weight {obj.id_feature_weight}). Table I's columns are the "
        f"identity modules in their index order; which index learns which shape is arbitrary, as in the paper."
    )
    data = (
        f"Generated with `modnets.data.make_shapes3d` (numpy ray caster: floor, wall and object hue 10 values "
        f"each, scale 8, shape 4, orientation 15, factors drawn uniformly), {config.n_train:,} training and "
        f"{config.n_test:,} test images from other draws; generation took {m['data_seconds']:.1f} s. "
        f"TensorBoard logs: `tensorboard/`. Total run time {m['total_seconds']:.0f} s."
    )
    return Report(
        name="imn",
        title="Independent Modular Networks: shape decomposition (Table I analogue)",
        summary=summary,
        headline=headline,
        sections=[("What the identities encode", nmi), ("Training", per_variant), ("Method", method),
                  ("What it takes for the identities to follow shape", WHAT_IT_TAKES), ("Data", data)],
        metrics=m,
        figures=figures,
        config=config,
    )
