"""Experiment ``imn``: Independent Modular Networks on generated 3D-shapes-like images (seed 002).

Five compositional modules (Lie-group VAE encoders) and five identity modules (learnable matrices that
never see the input) are trained by winner-take-all over all 155 combinations, once without and once with
the ID classifier. For each ground-truth shape, the Table I analogue gives the fraction of its test images
whose winning combination used each identity module; the identities alone are decoded (Fig. 2b analogue).
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch

from .._checks import check_image_size, check_ints
from .._config import Config as ConfigBase
from ..analysis import (
    decomposition_table,
    factor_alignment,
    plot_identity_images,
    plot_training_curves,
    plot_usage_curves,
    spread,
)
from ..data import (
    SHAPES3D_FACTORS,
    SHAPES3D_SHAPES,
    Shapes3DConfig,
    Shapes3DDataset,
    collate_shapes3d,
    load_shapes3d,
    make_shapes3d,
)
from ..errors import ConfigError
from ..models import IMN_DECODERS, imn
from ..train import FitConfig, RunDir, WinnerTakeAll, WinnerTakeAllConfig, fit
from ._report import Report, markdown_table, percent
from ._report import spread_text as _s

__all__ = ["Config", "PAPER_TABLE1", "run"]

#: the paper's Table I (percent of each shape's test images per identity module), without / with ID classifier
PAPER_TABLE1: dict[str, list[list[float]]] = {
    "without_id_classifier": [[28.03, 28.80, 0, 43.17, 0], [100.0, 0, 0, 0, 0], [0, 0, 100.0, 0, 0],
                              [40.32, 0, 0, 0, 59.68]],
    "with_id_classifier": [[93.62, 0, 0, 0, 6.377], [0, 0, 0, 0, 100.0], [0, 0, 12.33, 87.66, 0],
                           [0, 77.80, 13.34, 7.992, 0]],
}
VARIANTS = ("without_id_classifier", "with_id_classifier")
#: the quick preset's reduced problem: cube and sphere, floor / wall / object hue 0 / 5 / 3, orientation 7
QUICK_FACTORS: dict[str, tuple[int, ...]] = {
    "shape": (0, 2), "floor_hue": (0,), "wall_hue": (5,), "object_hue": (3,), "orientation": (7,),
}


#: the shape NMI at or above which a run whose most aligned factor is the shape counts as split by shape
SHAPE_SPLIT_NMI = 0.25
#: the paper's set-up where this experiment can depart from it
PAPER_SETUP = {"m": 5, "n": 5, "image_size": 64, "beta": 1.0}


@dataclass
class Config(ConfigBase):
    """Settings of the ``imn`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        seed: the first seed; seeds: repetitions of the study with seeds ``seed, seed + 1, ...`` (each its own data
            draw and initialisation).
        image_size: height and width of the generated images (a power of two).
        n_train: training images; n_test: test images (other factor draws).
        m: compositional modules; n: identity modules (the paper: 5 and 5).
        latent_dim: latent size of each compositional module; matrix_size: transforms are k x k.
        hidden: decoder width; channels: encoder CNN width.
        fit: training of each variant.
        objective: the winner-take-all settings (scorer, weights, Hessian-penalty probes).
        factor_values: the labels some factors are restricted to (``None``: the whole problem); the quick preset
            uses a reduced problem (see :data:`QUICK_FACTORS`).
        decoder: ``"mlp"`` (ends in a linear layer: the fast scorer) or ``"deconv"`` (the Lie-group VAE's
            transposed convolutions; the exact scorer, many times slower).
        identity_spread: standard deviation of the identities' initial Lie-algebra elements.
        workers: seeds trained at once, each in its own process on one thread (1: one after another, here).
        zoom: the renderer's camera magnification (:class:`~modnets.data.Shapes3DConfig`; 1: the object covers
            about 15 % of the pixels, 1.5: about a third).
        data: ``None`` for the generated images, or ``"3dshapes:PATH"`` for DeepMind's ``3dshapes.h5``
            (:func:`~modnets.data.load_shapes3d`: ``n_train + n_test`` rows drawn at random with ``seed``, the
            first ``n_train`` for training; ``factor_values`` then keeps only the matching rows).
    """

    quick: bool = False
    seed: int = 0
    seeds: int = 3
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
    factor_values: dict[str, tuple[int, ...]] | None = None
    decoder: str = "mlp"
    identity_spread: float = 0.5
    zoom: float = 1.0
    workers: int = 1
    data: str | None = None

    def __post_init__(self) -> None:
        check_ints(self, "seeds", "workers", "n_train", "n_test", "m", "n", "latent_dim", "matrix_size", "hidden",
                   "channels")
        if self.decoder not in IMN_DECODERS:
            raise ConfigError(f"Config.decoder must be one of {IMN_DECODERS}, got {self.decoder!r}")
        check_image_size(self.image_size, owner="Config.")
        if self.data is not None and (not isinstance(self.data, str) or not self.data.startswith("3dshapes:")
                                      or len(self.data) == len("3dshapes:")):
            raise ConfigError(f"Config.data must be None (generated images) or '3dshapes:PATH' (the 3dshapes.h5 "
                              f"file), got {self.data!r}")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            # a reduced problem where the effect shows in a minute: two shapes, one hue per surface, one
            # orientation, all 8 scales; m = 2 compositional and n = 3 identity modules (one more identity than
            # shapes, as the paper's 5 for 4; with n = 2 one identity wins everything); the paper's eq. 9 / 10
            return cls(quick=True, seed=seed, seeds=1, image_size=32, n_train=2000, n_test=600, m=2, n=3,
                       hidden=128, channels=16,
                       fit=FitConfig(epochs=10, batch_size=32, lr=2e-3, seed=seed, on_nonfinite="skip"),
                       objective=WinnerTakeAllConfig(beta=1.0, score_independence=True),
                       factor_values=dict(QUICK_FACTORS))
        # the whole problem: beta = 0.1 with L_ind in the loss only is the best configuration measured, and 30
        # epochs (7,500 steps) the longest this machine affords: at 2,500 steps cube, cylinder and sphere stayed
        # mixed (see LEVERS_TEXT); the three seeds train in three processes
        return cls(seed=seed, image_size=32, hidden=128, workers=3,
                   fit=FitConfig(epochs=30, batch_size=32, lr=2e-3, seed=seed, on_nonfinite="skip"),
                   objective=WinnerTakeAllConfig(beta=0.1, score_independence=False))

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the repetitions: ``seed, seed + 1, ...``."""
        return [self.seed + i for i in range(self.seeds)]


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train both variants once per seed, build the Table I analogue and the identity reconstructions; return the
    report (checkpoints go into ``out_dir``; ``resume=True`` continues from them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rundir = RunDir(out, resume=resume, progress=progress)
    shapes = _present_shapes(config)
    per_seed, histories, identity_images = [], {}, {}
    for seed, result in zip(config.seed_list, _run_seeds(config, rundir), strict=True):
        per_seed.append(result.metrics)
        for v in VARIANTS:
            histories.setdefault(v.replace("_", " "), []).append(result.histories[v])
            identity_images[f"{v.replace('_', ' ')}, seed {seed}"] = result.identity_images[v]
    names = [SHAPES3D_SHAPES[s] for s in shapes]
    metrics: dict = {
        "seeds": config.seed_list, "per_seed": per_seed, "shapes": names, "paper_table1": PAPER_TABLE1,
        "table1": {v: [m["table1"][v] for m in per_seed] for v in VARIANTS},
        "dominant_fraction": {v: {s: spread([m["dominant_fraction"][v][s] for m in per_seed]).to_dict()
                                  for s in names} for v in VARIANTS},
        "mean_dominant_fraction": {v: spread([sum(m["dominant_fraction"][v].values()) / len(names)
                                              for m in per_seed]).to_dict() for v in VARIANTS},
        "distinct_dominant_identities": {v: [m["distinct_dominant_identities"][v] for m in per_seed]
                                         for v in VARIANTS},
        "shape_nmi": {v: spread([m["shape_nmi"][v] for m in per_seed]).to_dict() for v in VARIANTS},
        "split_by_shape": {v: sum(m["split_by_shape"][v] for m in per_seed) / len(per_seed) for v in VARIANTS},
        "departures": departures(config),
    }
    figures = ["identity_images.png", "identity_usage.png", "loss.png"]
    plot_identity_images(torch.zeros(0), out / figures[0], titles=[f"identity {j}" for j in range(config.n)],
                         rows=identity_images)
    plot_usage_curves({k: h[0] for k, h in histories.items()}, out / figures[1])
    plot_training_curves(histories, out / figures[2], x="step", y="loss", logy=True,
                         title="winner's loss (eq. 10) per step")
    metrics["total_seconds"] = time.perf_counter() - t0
    return _report(config, metrics, figures)


class SeedRun(NamedTuple):
    """One seed of the study: its metrics (JSON-ready), the training histories and the identity-only images."""

    metrics: dict
    histories: dict[str, list[dict]]
    identity_images: dict[str, torch.Tensor]


def _run_seeds(config: Config, rundir: RunDir) -> list[SeedRun]:
    """Every seed's run: one after another here, or ``config.workers`` at a time in spawned processes."""
    if config.workers == 1 or config.seeds == 1:
        return [_run_seed(config, seed, rundir.sub(f"seed{seed}")) for seed in config.seed_list]
    context = multiprocessing.get_context("spawn")  # forking a process that has run torch threads can hang
    with ProcessPoolExecutor(max_workers=min(config.workers, config.seeds), mp_context=context) as pool:
        jobs = [pool.submit(_run_seed_alone, config, seed, rundir.sub(f"seed{seed}").quiet())
                for seed in config.seed_list]
        return [job.result() for job in jobs]


def _run_seed_alone(config: Config, seed: int, rundir: RunDir) -> SeedRun:
    """:func:`_run_seed` in a worker process, on one thread."""
    torch.set_num_threads(1)
    return _run_seed(config, seed, rundir)


def _run_seed(config: Config, seed: int, rundir: RunDir) -> SeedRun:
    """Both variants on seed ``seed``'s data draw and initialisation."""
    t0 = time.perf_counter()
    train, test = _data(config, seed)
    shapes = _present_shapes(config)
    varying = [f for i, f in enumerate(SHAPES3D_FACTORS) if test.factors[:, i].unique().numel() > 1]
    m: dict = {"seed": seed, "data_seconds": time.perf_counter() - t0, "table1": {}, "dominant_fraction": {},
               "distinct_dominant_identities": {}, "shape_nmi": {}, "split_by_shape": {}}
    histories, identity_images = {}, {}
    fit_config = replace(config.fit, seed=seed)
    for variant in VARIANTS:
        torch.manual_seed(seed)
        net = imn(image_size=config.image_size, m=config.m, n=config.n, latent_dim=config.latent_dim,
                  matrix_size=config.matrix_size, hidden=config.hidden, channels=config.channels,
                  id_classifier=variant == "with_id_classifier", n_classes=len(SHAPES3D_SHAPES),
                  decoder=config.decoder, identity_spread=config.identity_spread)
        objective = WinnerTakeAll(net, config=_objective_config(config, variant))
        result = fit(objective, train, config=fit_config, collate=collate_shapes3d, run=rundir, name=variant)
        winners = _assign(objective, test)
        table = decomposition_table(test.shapes, winners["identity"], n_concepts=len(SHAPES3D_SHAPES),
                                    n_modules=config.n)
        histories[variant] = result.history
        identity_images[variant] = net.identity_images()
        # rows of the shapes the data holds (a reduced problem leaves some out)
        m["table1"][variant] = [[round(100 * v, 2) for v in table.fractions[s].tolist()] for s in shapes]
        m["dominant_fraction"][variant] = {SHAPES3D_SHAPES[s]: float(table.dominant_fraction[s]) for s in shapes}
        m["distinct_dominant_identities"][variant] = len({int(table.dominant[s]) for s in shapes})
        # factors held fixed by a reduced problem carry no information (their NMI with anything is 1 by convention)
        nmi = {f: v for f, v in factor_alignment(test.factors, winners["identity"], list(SHAPES3D_FACTORS)).items()
               if f in varying}
        m["shape_nmi"][variant] = nmi["shape"]
        m["split_by_shape"][variant] = split_by_shape(nmi)
        m[variant] = {
            "train_seconds": result.seconds, "steps": result.steps, "skipped_batches": result.skipped,
            "final": {k: v for k, v in result.history[-1].items() if not k.startswith("usage_")},
            "test_winner_loss": float(winners["loss"].mean()),
            "test_subset_size": float(winners["subset_size"].mean()),
            "test_identity_usage": torch.bincount(winners["identity"], minlength=config.n).div(len(test)).tolist(),
            "dominant_identity": {SHAPES3D_SHAPES[s]: int(table.dominant[s]) for s in shapes},
            "identity_factor_nmi": nmi,
        }
    return SeedRun(m, histories, identity_images)


def split_by_shape(nmi: dict[str, float], *, threshold: float = SHAPE_SPLIT_NMI) -> bool:
    """Whether a run's identities split by shape: shape is the factor most aligned with the winning identity
    (largest NMI among the factors that vary) and its NMI is at least ``threshold``."""
    return max(nmi, key=nmi.get) == "shape" and nmi["shape"] >= threshold


def departures(config: Config) -> list[str]:
    """Where ``config`` departs from the paper's set-up, one sentence each (empty: none of the settings checked)."""
    obj, out = config.objective, []
    if config.data is None:
        out.append("generated 3D-shapes-like images (`make_shapes3d`), not the real 3dshapes set")
    if config.factor_values:
        out.append(f"a reduced problem: factors restricted to {config.factor_values}")
    for name in ("m", "n", "image_size"):
        if getattr(config, name) != PAPER_SETUP[name]:
            out.append(f"{name} = {getattr(config, name)} (paper: {PAPER_SETUP[name]})")
    if obj.beta != PAPER_SETUP["beta"]:
        out.append(f"KL weight beta = {obj.beta} (eq. 9 and 10 weigh the KL by 1)")
    if not obj.score_independence:
        out.append("L_ind in the winner's loss only, not in the score (eq. 9 scores it)")
    if obj.score_id:
        out.append("the ID classifier's two terms enter the score in training (the paper adds them to the "
                   "winner's loss only); test assignments never see the label")
    if obj.warmup_steps:
        out.append(f"a shared-identity warm-up: identity 0 explains every image for the first {obj.warmup_steps} "
                   f"steps, then every identity restarts from it plus noise ({obj.warmup_spread} / sqrt(k))")
    if obj.beta_warmup_steps:
        out.append(f"the KL weight annealed from 0 over the first {obj.beta_warmup_steps} steps")
    return out


def _objective_config(config: Config, variant: str) -> WinnerTakeAllConfig:
    """The variant's objective settings: no ID-classifier scoring without a classifier, and the exact scorer for a
    decoder that does not end in a linear layer."""
    scorer = "exact" if config.decoder != "mlp" and config.objective.scorer == "fast" else config.objective.scorer
    return replace(config.objective, scorer=scorer,
                   score_id=config.objective.score_id and variant == "with_id_classifier")


def _data(config: Config, seed: int) -> tuple[Shapes3DDataset, Shapes3DDataset]:
    """The training and test images of a seed: generated, or rows of the real ``3dshapes.h5`` (``config.data``)."""
    if config.data is None:
        return (make_shapes3d(Shapes3DConfig(n_examples=config.n_train, image_size=config.image_size,
                                             seed=seed, factor_values=config.factor_values, zoom=config.zoom)),
                make_shapes3d(Shapes3DConfig(n_examples=config.n_test, image_size=config.image_size,
                                             seed=seed + 10_000, factor_values=config.factor_values,
                                             zoom=config.zoom)))
    rows = load_shapes3d(config.data.removeprefix("3dshapes:"), limit=config.n_train + config.n_test,
                         image_size=config.image_size, seed=seed)
    keep = torch.ones(len(rows), dtype=torch.bool)
    for name, values in (config.factor_values or {}).items():
        keep &= torch.isin(rows.factors[:, list(SHAPES3D_FACTORS).index(name)], torch.tensor(values))
    index = keep.nonzero().flatten()
    if len(index) <= config.n_train:
        raise ConfigError(f"{config.data}: {len(index)} of the {len(rows)} rows drawn match factor_values "
                          f"{config.factor_values}, too few for {config.n_train} training images and a test split")
    train, test = index[:config.n_train], index[config.n_train:]
    return (Shapes3DDataset(rows.images[train], rows.factors[train]),
            Shapes3DDataset(rows.images[test], rows.factors[test]))


def _present_shapes(config: Config) -> list[int]:
    """The shape labels the data can hold."""
    return sorted((config.factor_values or {}).get("shape", range(len(SHAPES3D_SHAPES))))


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


#: the lever study behind the presets (fixed text: separate short seeded runs of scripts/imn_levers.py, not this run)
LEVERS_TEXT = (
    "Short seeded runs of `python scripts/imn_levers.py` on 2 shared CPU cores, one thread each "
    "(2026-11-29); each lever is a set of config overrides, and each run trains both variants. "
    "*reduced*: the quick preset's problem (cube and sphere, the three hues and the orientation fixed, "
    "scale free; m = 2; 630 steps of 32 images at 32x32). *whole*: every factor free, m = n = 5, 8,000 "
    "images at 32x32. *paper*: beta = 1 and L_ind in the score; *score_id* changes only the variant with "
    "the classifier (its row without the classifier is the paper's setting). One seed is not a result "
    "where a second seed differs as much as the levers do; the table says how many seeds each row had.\n"
    "\n"
    "| problem | setting | steps | seeds | ID cls. | mean dominant (%) | distinct | shape NMI | most "
    "aligned factor |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    "| reduced | paper, n = 4 | 630 | 1 | no | 88 (88) | 2 | 0.57 (0.57) | shape |\n"
    "| reduced | paper, n = 4 | 630 | 1 | yes | 69 (69) | 2 | 0.44 (0.44) | shape |\n"
    "| reduced | score_id, n = 4 | 630 | 1 | no | 88 (88) | 2 | 0.57 (0.57) | shape |\n"
    "| reduced | score_id, n = 4 | 630 | 1 | yes | 84 (84) | 2 | 0.82 (0.82) | shape |\n"
    "| reduced | warmup 300, n = 4 | 630 | 1 | no | 57 (57) | 2 | 0.67 (0.67) | shape |\n"
    "| reduced | warmup 300, n = 4 | 630 | 1 | yes | 44 (44) | 2 | 0.32 (0.32) | scale |\n"
    "| reduced | warmup 300 + score_id, n = 4 | 630 | 1 | no | 57 (57) | 2 | 0.67 (0.67) | shape |\n"
    "| reduced | warmup 300 + score_id, n = 4 | 630 | 1 | yes | 53 (53) | 2 | 0.67 (0.67) | shape |\n"
    "| reduced | paper, n = 3 (the quick preset) | 630 | 2 | no | 76 (69, 82) | 2, 1 | 0.18 (0.11, 0.25) "
    "| scale, shape |\n"
    "| reduced | paper, n = 3 (the quick preset) | 630 | 2 | yes | 100 (100, 100) | 2, 2 | 1.00 (1.00, "
    "1.00) | shape, shape |\n"
    "| reduced | score_id, n = 3 | 630 | 2 | no | 76 (69, 82) | 2, 1 | 0.18 (0.11, 0.25) | scale, shape "
    "|\n"
    "| reduced | score_id, n = 3 | 630 | 2 | yes | 91 (100, 82) | 2, 2 | 0.72 (1.00, 0.45) | shape, "
    "shape |\n"
    "| reduced | warmup 300, n = 3 | 630 | 2 | no | 51 (50, 52) | 2, 2 | 0.26 (0.25, 0.27) | scale, "
    "scale |\n"
    "| reduced | warmup 300, n = 3 | 630 | 2 | yes | 63 (64, 62) | 2, 2 | 0.51 (0.52, 0.50) | shape, "
    "shape |\n"
    "| whole | paper + zoom 1.5 | 1,000 | 1 | no | 27 (27) | 3 | 0.01 (0.01) | floor_hue |\n"
    "| whole | paper + zoom 1.5 | 1,000 | 1 | yes | 30 (30) | 2 | 0.02 (0.02) | object_hue |\n"
    "| whole | paper + score_id | 1,000 | 1 | no | 25 (25) | 3 | 0.00 (0.00) | floor_hue |\n"
    "| whole | paper + score_id | 1,000 | 1 | yes | 26 (26) | 3 | 0.00 (0.00) | floor_hue |\n"
    "| whole | beta 0.1, L_ind in the loss + zoom 1.5 | 2,500 | 1 | no | 57 (57) | 3 | 0.47 (0.47) | "
    "shape |\n"
    "| whole | beta 0.1, L_ind in the loss + zoom 1.5 | 2,500 | 1 | yes | 49 (49) | 4 | 0.39 (0.39) | "
    "shape |\n"
    "| reduced | KL annealed over 600 steps, n = 3 | 630 | 2 | no | 78 (55, 100) | 2, 2 | 0.50 (0.01, "
    "1.00) | scale, shape |\n"
    "| reduced | KL annealed over 600 steps, n = 3 | 630 | 2 | yes | 91 (95, 87) | 2, 2 | 0.66 (0.78, "
    "0.54) | shape, shape |\n"
    "| reduced | identity spread 2 (not 0.5), n = 3 | 630 | 2 | no | 92 (84, 100) | 1, 1 | 0.12 (0.23, "
    "0.00) | shape, scale |\n"
    "| reduced | identity spread 2 (not 0.5), n = 3 | 630 | 2 | yes | 84 (88, 81) | 2, 2 | 0.50 (0.57, "
    "0.43) | shape, shape |\n"
    "| reduced | batch 128 (the same 10 epochs), n = 3 | 160 | 2 | no | 84 (87, 81) | 2, 2 | 0.49 (0.55, "
    "0.43) | shape, shape |\n"
    "| reduced | batch 128 (the same 10 epochs), n = 3 | 160 | 2 | yes | 100 (100, 100) | 1, 1 | 0.00 "
    "(0.00, 0.00) | scale, scale |\n"
    "| reduced | LVAE deconvolutional decoder, n = 3 | 630 | 2 | no | 85 (100, 69) | 2, 2 | 0.74 (1.00, "
    "0.48) | shape, shape |\n"
    "| reduced | LVAE deconvolutional decoder, n = 3 | 630 | 2 | yes | 64 (84, 43) | 2, 2 | 0.49 (0.82, "
    "0.17) | shape, scale |\n"
    "| whole | beta 0.1, L_ind in the loss (the earlier full preset) | 2,500 | 3 | no | 50 (53, 46, 51) | 3, 2, "
    "3 | 0.32 (0.40, 0.15, 0.41) | shape, floor_hue, shape |\n"
    "| whole | beta 0.1, L_ind in the loss (the earlier full preset) | 2,500 | 3 | yes | 49 (53, 40, 56) | 2, "
    "4, 4 | 0.39 (0.38, 0.38, 0.42) | shape, shape, shape |\n"
    "| whole | beta 0.1, L_ind in the loss, trained 3x longer | 7,500 | 1 | no | 73 (73) | 4 | 0.67 (0.67) | "
    "shape |\n"
    "| whole | beta 0.1, L_ind in the loss, trained 3x longer | 7,500 | 1 | yes | 79 (79) | 4 | 0.74 (0.74) | "
    "shape |\n"
    "| whole | beta 0.1, L_ind in the loss, seed 1, trained 5x longer | 12,500 | 1 | no | 30 (30) | 2 | 0.01 "
    "(0.01) | floor_hue |\n"
    "| whole | beta 0.1, L_ind in the loss, seed 1, trained 5x longer | 12,500 | 1 | yes | 62 (62) | 3 | 0.53 "
    "(0.53) | shape |\n"
    "| whole | paper | 7,500 | 1 | no | 35 (35) | 3 | 0.15 (0.15) | floor_hue |\n"
    "| whole | paper | 7,500 | 1 | yes | 31 (31) | 2 | 0.02 (0.02) | floor_hue |\n"
    "| whole | the full preset at 64x64 | 7,500 | 3 | no | 44 (45, 49, 37) | 2, 3, 2 | 0.25 (0.27, 0.40, 0.07) | "
    "wall_hue, shape, floor_hue |\n"
    "| whole | the full preset at 64x64 | 7,500 | 3 | yes | 35 (29, 47, 28) | 1, 1, 2 | 0.01 (0.01, 0.01, 0.02) | "
    "floor_hue, floor_hue, floor_hue |\n"
    "\n"
    "What the runs say:\n"
    "\n"
    "- **What moves the most pixels wins the identities.** On the whole problem at beta = 1 (1,000 "
    "steps, with or without the closer camera, with or without the ID classifier in the score) the "
    "identities split by a hue (floor or object), never by shape: the compositional latents carry only "
    "5-7 nats at beta = 1, so the hues, which dominate the pixel error, are left for the identity to "
    "explain. At beta = 0.1 the latents take the hues and the identities turn to shape: shape is the "
    "most aligned factor in 5 of the 6 variant-seeds of the full preset, but only the capsule (the most "
    "distinct silhouette, lying down) gets an identity of its own (98-100 % in two seeds of three); "
    "cube, cylinder and sphere stay mixed (29-54 %).\n"
    "- **One identity more than shapes.** On the reduced problem with the paper's settings, n = 3 "
    "identities for 2 shapes (as the paper's 5 for 4) gave a clean split with the ID classifier in both "
    "seeds (100 % / 100 %, shape NMI 1.0), n = 4 did not (75 % / 64 %); with n = 2 one identity wins "
    "every image and the other is never trained (eq. 9 has nothing that brings a loser back). Without "
    "the classifier the spare identities take the scale.\n"
    "- **The ID classifier in the score** (not the paper's method) did not help: while the identities "
    "are mixed the classifier predicts the marginal (its loss stays at ln 4 on the whole problem), so "
    "its terms are the same for every candidate; on the reduced problem it matched the paper's loss-only "
    "classifier in one seed and was worse in the other.\n"
    "- **A shared-identity warm-up** hurt on the reduced problem: restarted from one identity, the "
    "identities split by scale first. **An annealed KL** (0 to 1 over 600 steps) gave the one perfect "
    "split without the classifier (seed 1) and a good one with it (seed 0: shape NMI 0.78), but scale "
    "took the other seed: not better than the paper's setting beyond the seed spread. **A wider initial "
    "spread of the identities** (2 instead of 0.5) and **batches of 128** (for the winner statistics; "
    "the same 10 epochs, so 160 steps) were no better: with batches of 128 one identity won every image "
    "with the classifier in both seeds (a dominant fraction of 100 % with a single distinct identity is "
    "a collapse, not a split).\n"
    "- **A closer camera** (zoom 1.5: the object on a third of the pixels instead of 15 %) did not turn "
    "the beta = 1 split to shape; at beta = 0.1 one seed measured shape NMI 0.47 / 0.39 against 0.40 / "
    "0.38 at zoom 1, within the seed spread of the full preset (± 0.15).\n"
    "- **The LVAE's deconvolutional decoder** (scored exactly) helped the variant without the classifier "
    "on the reduced problem (shape NMI 1.0 and 0.48, against 0.11 and 0.25 with the MLP decoder) and "
    "hurt the one with it (0.82 and 0.17, against 1.0 and 1.0): two seeds, opposite signs, so it stays "
    "an option.\n"
    "- **Training longer is the lever that worked on the whole problem.** At 2,500 steps the pixel error of "
    "the winners (about 15 per image) was as large as what tells cube, cylinder and sphere apart (22-54 "
    "summed squared error between two of them at the middle scale, against 66 for one floor-hue step), so "
    "which of their identities won was close to a tie. Trained for 7,500 steps (pixel error 7.5) every shape "
    "got an identity of its own in seed 0: 58 / 63 / 70 / 100 % (cube / cylinder / sphere / capsule) "
    "without the classifier and 64 / 76 / 75 / 100 % with it, 4 distinct dominant identities in both; the "
    "full preset now trains that long. The paper's beta = 1 trained as long still split by the floor hue "
    "(floor-hue NMI 0.36 and 0.17, shape 0.15 and 0.02; pixel error 20 instead of 7.5): the length does "
    "not replace the lower beta. Nor does it undo an early hue split: seed 1, whose variant without the "
    "classifier split by the floor hue in the full run, still did after 12,500 steps (floor-hue NMI 0.37); "
    "with the classifier it gained a little (62 % against 56 %, shape NMI 0.53 against 0.47).\n"
    "- **64x64 images, as 3dshapes, were worse** (the full preset with `--set image_size=64`, 3 seeds, 5,544 s "
    "on 2 cores): the mean dominant fraction fell to 44 ± 6 % without and 35 ± 10 % with the classifier "
    "(32x32: 60 ± 22 and 70 ± 12 %), and a hue was the most aligned factor in 5 of the 6 variant-seeds (with "
    "the classifier the floor hue in all three, one identity winning nearly everything in two). The winners' "
    "error per pixel was the same as at 32x32 (a summed 26-35 over 4,096 pixels against 7.2-8.8 over 1,024), "
    "and the latents carried more (KL 28-37 against 19-21 nats). Why the larger image turns the split back to "
    "hue is not measured; 32x32 stays the default.\n"
    "- **Not measured here:** the LVAE's deconvolutional decoder on the whole problem (`--set decoder=deconv`: "
    "it must be scored exactly, about 155 decodes per image and probe, far beyond this machine's budget), "
    "training longer than 7,500 steps on more than one seed or at 64x64, and the real 3dshapes file (`--data "
    "3dshapes:PATH`; not on this machine)."
)


def _report(config: Config, m: dict, figures: list[str]) -> Report:
    n_seeds = len(m["seeds"])
    rows = []
    for variant in VARIANTS:
        label = "yes" if variant == "with_id_classifier" else "no"
        for row, shape in enumerate(m["shapes"]):
            dom = m["dominant_fraction"][variant][shape]
            first = m["table1"][variant][0][row]
            paper = PAPER_TABLE1[variant][SHAPES3D_SHAPES.index(shape)]
            rows.append((label, shape, _s(dom, percent=True),
                         ", ".join(f"{100 * v:.0f}" for v in dom["values"]), f"{max(paper):.1f}",
                         " / ".join(f"{v:.0f}" for v in first), " / ".join(f"{v:.1f}" for v in paper)))
    headline = ("Dominant fraction: the share of a shape's test images won by its most frequent identity; mean ± "
                "std over the seeds, then each seed. The identity columns are seed "
                f"{m['seeds'][0]}'s (which index learns which shape is arbitrary, as in the paper).\n\n"
                if n_seeds > 1 else "") + markdown_table(
        ["ID cls.", "GT shape", "dominant", "per seed (%)", "paper dominant (%)",
         f"seed {m['seeds'][0]}: identity 1..n (%)", "paper: m1..m5 (%)"], rows)
    paper_rows = {v: [PAPER_TABLE1[v][SHAPES3D_SHAPES.index(s)] for s in m["shapes"]] for v in VARIANTS}
    paper_mean = {v: sum(max(r) for r in paper_rows[v]) / (100 * len(paper_rows[v])) for v in VARIANTS}
    distinct = {v: ", ".join(map(str, m["distinct_dominant_identities"][v])) for v in VARIANTS}
    by_shape = {v: round(m["split_by_shape"][v] * n_seeds) for v in VARIANTS}
    meets = {v: all(_mean(m["dominant_fraction"][v][s]) >= max(paper_rows[v][i]) / 100 - 1e-9
                    for i, s in enumerate(m["shapes"])) for v in VARIANTS}
    reach = {v: "reaches" if ok else "does not reach" for v, ok in meets.items()}
    reduced = (
        f" This is a reduced problem ({', '.join(m['shapes'])} only; the factors "
        f"{', '.join(f'{k} = {list(v)}' for k, v in config.factor_values.items() if k != 'shape')} are held "
        f"fixed), so the paper's rows for these shapes are a reference for the kind of split, not a target."
        if config.factor_values else ""
    )
    summary = (
        f"IMN with m = {config.m} compositional and n = {config.n} identity modules "
        f"({(2 ** config.m - 1) * config.n} combinations scored per image), trained by winner-take-all on "
        f"{config.n_train:,} {'generated ' if config.data is None else ''}{config.image_size}x{config.image_size} "
        f"{'3D-shapes-like images' if config.data is None else 'images of the real 3dshapes set'} "
        f"({'quick mode' if config.quick else 'full mode'}, {n_seeds} seed{'s' if n_seeds > 1 else ''}, "
        f"{config.fit.epochs} epoch(s) of {-(-config.n_train // config.fit.batch_size)} steps per variant). On "
        f"{config.n_test:,} test images (assigned without labels), the mean dominant-identity fraction per shape "
        f"was {_s(m['mean_dominant_fraction']['without_id_classifier'], percent=True)} without and "
        f"{_s(m['mean_dominant_fraction']['with_id_classifier'], percent=True)} with the ID classifier (paper: "
        f"{percent(paper_mean['without_id_classifier'])} and {percent(paper_mean['with_id_classifier'])}); the "
        f"{len(m['shapes'])} shapes had {distinct['without_id_classifier']} and {distinct['with_id_classifier']} "
        f"distinct dominant identities per seed (one-to-one: {len(m['shapes'])}); the identities split by shape "
        f"(shape the most aligned factor, NMI >= {SHAPE_SPLIT_NMI}) in {by_shape['without_id_classifier']} and "
        f"{by_shape['with_id_classifier']} of {n_seeds} seeds (shape NMI "
        f"{_s(m['shape_nmi']['without_id_classifier'], '{:.2f}')} and "
        f"{_s(m['shape_nmi']['with_id_classifier'], '{:.2f}')}). "
        + ("" if config.factor_values else
           f"Every shape's mean dominant fraction {reach['with_id_classifier']} the paper's row with the ID "
           f"classifier, and {reach['without_id_classifier']} it without. ")
        + ("The data are a procedural analogue of 3dshapes, not the real set, and the training is far shorter "
           "than the paper's; the departures are listed below."
           if config.data is None else "The images are the real 3dshapes set; the departures are listed below.")
        + reduced
    )
    per_variant = markdown_table(
        ["variant", "train time (mean)", "steps", "skipped (non-finite)", "final loss", "test winner loss",
         "mean modules in winner", f"test identity usage, seed {m['seeds'][0]} (%)"],
        [(v.replace("_", " "), f"{_avg(m, v, 'train_seconds'):.0f} s", m["per_seed"][0][v]["steps"],
          sum(r[v]["skipped_batches"] for r in m["per_seed"]),
          f"{sum(r[v]['final']['loss'] for r in m['per_seed']) / n_seeds:.1f}",
          f"{_avg(m, v, 'test_winner_loss'):.1f}", f"{_avg(m, v, 'test_subset_size'):.2f}",
          " / ".join(f"{100 * u:.0f}" for u in m["per_seed"][0][v]["test_identity_usage"])) for v in VARIANTS])
    factors = list(m["per_seed"][0]["without_id_classifier"]["identity_factor_nmi"])
    nmi = markdown_table(["factor"] + [v.replace("_", " ") for v in VARIANTS],
                         [(f, *(spread([r[v]["identity_factor_nmi"][f] for r in m["per_seed"]]).format("{:.3f}")
                                for v in VARIANTS)) for f in factors])
    nmi += (
        "\n\nNormalised mutual information between each ground-truth factor and the winning identity on the test "
        "images (0: unrelated; 1: the identity determines the factor), mean ± std over the seeds. The paper "
        "reports the identities aligning with `shape`. `identity_images.png` is the analogue of Fig. 2b (without "
        "the ID classifier) and Fig. 2c (with it): each identity decoded alone, without any input image."
    )
    obj = config.objective
    scored = "part of the score" if obj.score_independence else "in the loss only"
    id_scored = "also enters the score in training" if obj.score_id else "enters the loss only, as in the paper"
    method = (
        f"As the paper: every combination of a non-empty subset of the m compositional modules (ordered product "
        f"of their transforms, eq. 4) with one identity (eq. 5) is decoded by one decoder (eq. 6) and scored by "
        f"eq. 9, S = -(L_img + L_ind + sum KL); the winner alone is trained on eq. 10 (its scored terms plus "
        f"L_extra). KL weight beta = {obj.beta}; L_ind is {scored}. The ID classifier (with-classifier variant) "
        f"is a fully connected classifier of the shape "
        f"label from the winner's identity matrix (cross-entropy, weight {obj.id_weight}) plus the L2 distance "
        f"between its features of the identity and of the whole winning transform (weight "
        f"{obj.id_feature_weight}); it {id_scored}. The winner is chosen by the `{obj.scorer}` scorer without "
        f"gradients and "
        f"recomputed with them (the same value and gradient as the minimum over all candidates).\n\n"
        f"Where the paper is silent, chosen here: (1) L_img is the per-image sum of squared pixel errors, as the "
        f"Lie-group VAE code the IMN builds on (its `l2` loss); the paper calls it a mean-squared error. (2) L_ind is "
        f"the finite-difference Hessian penalty (Peebles et al. 2020) with {obj.probes} Rademacher probes over all "
        f"latents of the combination (eps = {obj.eps}), covering intra- and inter-module pairs, weighted "
        f"{obj.independence}: eq. 8 writes sums of second derivatives without a scale, and at weight 1 the "
        f"estimate dwarfs L_img. (3) L_extra is the LVAE condition sum_(i != j) ||A_i A_j||^2 over the winner's "
        f"Lie-algebra bases (weight {obj.extra}). (4) The decoder is "
        + ("an MLP from the flattened transform ending in a linear layer, which the fast quadratic-form scorer "
           "needs (the LVAE's decoder is deconvolutional: `--set decoder=deconv`, scored exactly and many times "
           "slower)" if config.decoder == "mlp" else "the LVAE's: linear layers, then transposed convolutions")
        + f". (5) Adam, learning rate {config.fit.lr}, batch {config.fit.batch_size}, {config.fit.epochs} epochs "
        f"of {config.n_train:,} images. (6) latent size {config.latent_dim} per compositional module, "
        f"{config.matrix_size}x{config.matrix_size} transforms."
    )
    departure_text = ("\n".join(f"- {d}" for d in m["departures"]) if m["departures"]
                      else "None of the settings checked departs from the paper.")
    data = (
        f"Read from `{config.data.removeprefix('3dshapes:')}` (DeepMind's 3dshapes) with `modnets.data.load_shapes3d`: "
        f"{config.n_train + config.n_test:,} rows drawn at random per seed"
        f"{', restricted to ' + str(config.factor_values) if config.factor_values else ''}, the first "
        f"{config.n_train:,} for training and the rest for testing. "
    ) if config.data is not None else (
        f"Generated with `modnets.data.make_shapes3d` (numpy ray caster: floor, wall and object hue 10 values "
        f"each, scale 8, shape 4, orientation 15, factors drawn uniformly; camera zoom {config.zoom}"
        f"{'; restricted to ' + str(config.factor_values) if config.factor_values else ''}), "
        f"{config.n_train:,} training and {config.n_test:,} test images per seed, from separate draws. "
    )
    data += (f"Seeds {', '.join(map(str, m['seeds']))}; per-seed results in `metrics.json` (`per_seed`, `table1`). "
             f"TensorBoard logs: `tensorboard/seedS/`. Total run time {m['total_seconds']:.0f} s.")
    return Report(
        name="imn",
        title="Independent Modular Networks: shape decomposition (Table I analogue)",
        summary=summary,
        headline=headline,
        sections=[("What the identities encode", nmi), ("Training", per_variant), ("Method", method),
                  ("Departures from the paper", departure_text),
                  ("Levers: what makes the identities take the shapes", LEVERS_TEXT),
                  ("Earlier probes on the whole problem", WHAT_IT_TAKES), ("Data", data)],
        metrics=m,
        figures=figures,
        config=config,
    )


def _mean(d: dict) -> float:
    return float(d["mean"])


def _avg(m: dict, variant: str, key: str) -> float:
    """The mean over seeds of a per-variant scalar."""
    return sum(r[variant][key] for r in m["per_seed"]) / len(m["per_seed"])
