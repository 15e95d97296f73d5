"""Experiment ``routing``: learning modules and routing together (research note seed 000, Kirsch et al.).

Two parts, the same methods each: generalised EM (and two variants of its initialisation and schedule), the
top-K buffer, REINFORCE, soft routing, straight-through Gumbel, a gated top-1 mixture-of-experts layer (its
router trained by backpropagation through a sigmoid gate, DeepSeek-V3's, with the Switch load-balancing
loss), and a dense network of equal per-example compute. The layers have no residual connection, so a
Switch-style softmax gate would scale each layer's output by about 1/M at initialisation; a sigmoid gate
starts at 1/2.

- **compositions**: a synthetic multi-task problem whose tasks are compositions of hidden primitive
  functions (``modnets.data.make_composition_task``); the routers see the task only, so the chosen modules
  can be compared with the true primitives (adjusted mutual information, purity).
- **images**: Fashion-MNIST (or the MNIST-5k subset when it is not installed) through routed MLP layers
  whose routers see the layer's input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import default_collate

from .._checks import check_ints
from .._config import Config as ConfigBase
from .._threads import num_threads
from ..analysis import plot_routing_curves, recovery_scores, save_figure
from ..data import CompositionConfig, collate_images, load_image_classification, make_composition_task
from ..errors import ConfigError
from ..models import dense_mlp, modular_mlp
from ..train import (
    FitConfig,
    GaussianLikelihood,
    RunDir,
)
from ._report import Report, markdown_table, percent
from ._routing_methods import LABELS, METHODS, router_settings, train_and_test
from ._routing_methods import objective as make_objective

__all__ = ["Config", "run"]

#: trains with ``fit``, so ``modnets run NAME --nproc N`` trains it data-parallel
DATA_PARALLEL = True

@dataclass
class CompositionPart(ConfigBase):
    """The synthetic part: data, module sizes and training."""

    data: CompositionConfig = field(default_factory=CompositionConfig)
    n_modules: int = 4
    d_hidden: int = 32
    sigma: float = 0.3
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=20, batch_size=128, lr=1e-2))

    def __post_init__(self) -> None:
        check_ints(self, "n_modules", "d_hidden")
        if not self.sigma > 0:
            raise ConfigError(f"CompositionPart.sigma must be > 0, got {self.sigma!r}")


@dataclass
class ImagePart(ConfigBase):
    """The image part: subset sizes, module sizes and training."""

    n_train: int = 60000
    n_test: int = 10000
    d_model: int = 64
    d_hidden: int = 64
    n_modules: int = 8
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=8, batch_size=128, lr=3e-3))

    def __post_init__(self) -> None:
        check_ints(self, "n_train", "n_test", "d_model", "d_hidden", "n_modules")


@dataclass
class Config(ConfigBase):
    """Settings of the ``routing`` experiment (``Config.for_mode(quick)`` gives the two presets)."""

    quick: bool = False
    seed: int = 0
    methods: tuple[str, ...] = METHODS
    samples: int = 4
    buffer_size: int = 4
    threads: int = 1
    compositions: CompositionPart = field(default_factory=CompositionPart)
    images: ImagePart = field(default_factory=ImagePart)

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"methods must be a non-empty subset of {METHODS}, got {self.methods}")
        check_ints(self, "samples", "buffer_size", "threads")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(
                quick=True,
                seed=seed,
                compositions=CompositionPart(
                    data=CompositionConfig(n_train=4000, n_test=1000, gain=1.0, seed=seed),
                    fit=FitConfig(epochs=20, batch_size=128, lr=1e-2, seed=seed),
                ),
                images=ImagePart(
                    n_train=10000, n_test=2000, fit=FitConfig(epochs=3, batch_size=128, lr=3e-3, seed=seed)
                ),
            )
        return cls(
            seed=seed,
            compositions=CompositionPart(
                data=CompositionConfig(n_train=16000, n_test=4000, gain=1.0, seed=seed),
                fit=FitConfig(epochs=30, batch_size=128, lr=1e-2, seed=seed),
            ),
            images=ImagePart(fit=FitConfig(epochs=8, batch_size=128, lr=3e-3, seed=seed)),
        )


def _run_compositions(config: Config, rundir: RunDir) -> tuple[dict, dict]:
    part = config.compositions
    train, test = make_composition_task(part.data)
    ll = GaussianLikelihood(part.sigma)
    metrics, histories = {}, {}
    for method in config.methods:
        torch.manual_seed(config.seed)
        d = part.data.dim
        if method == "dense":
            net = dense_mlp(d_model=d, d_hidden=part.d_hidden, n_tasks=train.n_tasks)
        else:
            net = modular_mlp(d_model=d, d_hidden=part.d_hidden, n_modules=part.n_modules, **router_settings(method),
                              static=True, n_tasks=train.n_tasks)
        objective = make_objective(method, net, samples=config.samples, buffer_size=config.buffer_size,
                                   n=len(train), ll=ll)
        m, routed, histories[method] = train_and_test(
            method, net, objective, train, test, part="compositions", fit_config=part.fit, collate=default_collate,
            rundir=rundir,
        )
        m["test_accuracy"] = test.task_accuracy(routed.output)
        m["test_mse"] = float((routed.output - test.y).pow(2).sum(1).mean())
        if method != "dense":
            # soft routing has no single choice: its most probable module stands for it
            soft = objective.eval_mode == "soft"
            rec = recovery_scores(test.primitives, routed.route.probs.argmax(-1) if soft else routed.route.choice)
            m.update(recovery=rec.mean_ami, recovery_ami=list(rec.ami), recovery_purity=list(rec.purity),
                     recovery_coverage=list(rec.coverage))
        metrics[method] = m
    info = {"n_tasks": train.n_tasks, "chance_accuracy": 1.0 / train.n_tasks, "variance": float(test.y.var(0).sum())}
    return metrics, {"histories": histories, **info}


def _run_images(config: Config, rundir: RunDir) -> tuple[dict, dict]:
    part = config.images
    train = load_image_classification("train").subset(part.n_train, seed=config.seed)
    test = load_image_classification("test").subset(part.n_test, seed=config.seed + 1)
    d_in = train.images[0].numel()
    n_out = len(train.classes)
    metrics, histories = {}, {}
    for method in config.methods:
        torch.manual_seed(config.seed)
        if method == "dense":
            net = dense_mlp(d_in=d_in, d_model=part.d_model, d_hidden=part.d_hidden, n_out=n_out)
        else:
            net = modular_mlp(d_in=d_in, d_model=part.d_model, d_hidden=part.d_hidden, n_modules=part.n_modules,
                              n_out=n_out, **router_settings(method))
        objective = make_objective(method, net, samples=config.samples, buffer_size=config.buffer_size,
                                   n=len(train), ll=None)
        m, routed, histories[method] = train_and_test(
            method, net, objective, train, test, part="images", fit_config=part.fit, collate=collate_images,
            rundir=rundir,
        )
        m["test_accuracy"] = float((routed.output.argmax(1) == test.labels).float().mean())
        metrics[method] = m
    return metrics, {"histories": histories, "source": f"train: {train.source}; test: {test.source}"}


def _table(metrics: dict, *, recovery: bool) -> str:
    headers = ["method", "test accuracy", "I(A;X)", "H(A)", "H(A|X)", "modules used / layer", "collapsed"]
    headers += ["recovery AMI / layer", "purity / layer"] if recovery else []
    headers += ["train s"]
    rows = []
    for method, m in metrics.items():
        routed = "mutual_information" in m
        row = [
            LABELS[method],
            percent(m["test_accuracy"]),
            f"{m['mutual_information']:.2f}" if routed else "n/a",
            f"{m['entropy']:.2f}" if routed else "n/a",
            f"{m['conditional_entropy']:.2f}" if routed else "n/a",
            " / ".join(map(str, m["modules_used"])) if routed else "n/a",
            ("yes" if m["collapsed"] else "no") if routed else "n/a",
        ]
        if recovery:
            row += [
                " / ".join(f"{a:.2f}" for a in m["recovery_ami"]) if "recovery_ami" in m else "n/a",
                " / ".join(f"{a:.2f}" for a in m["recovery_purity"]) if "recovery_purity" in m else "n/a",
            ]
        row.append(f"{m['train_seconds']:.1f}")
        rows.append(row)
    return markdown_table(headers, rows)


def _plot_usage(metrics: dict, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    routed = {k: v for k, v in metrics.items() if "usage" in v}
    fig = Figure(figsize=(2.6 * len(routed), 2.6), dpi=110)
    axes = fig.subplots(1, len(routed), squeeze=False)
    for ax, (method, m) in zip(axes[0], routed.items(), strict=True):
        ax.imshow(m["usage"], vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(LABELS[method], fontsize=8)
        ax.set_xlabel("module")
        ax.set_ylabel("layer")
        ax.set_yticks(range(len(m["usage"])))
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Run both parts with every method; write plots, logs and checkpoints into ``out_dir``; return the report.

    ``resume=True`` continues every training from its checkpoints in ``out_dir`` (finished ones are not
    repeated).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with num_threads(config.threads):  # the models are small: extra threads only add synchronisation
        rundir = RunDir(out_dir, resume=resume, progress=progress)
        comp, comp_info = _run_compositions(config, rundir)
        images, image_info = _run_images(config, rundir)
    routed = [m for m in config.methods if m != "dense"]
    figures = []
    for name, part, info in (("compositions", comp, comp_info), ("images", images, image_info)):
        if routed:
            figures.append(plot_routing_curves(
                {m: info["histories"][m] for m in routed}, out_dir / f"routing_curves_{name}.png",
                title=f"{name}: routing diagnostics on training batches").name)
            figures.append(
                _plot_usage(part, out_dir / f"usage_{name}.png", f"{name}: test module usage per layer").name
            )
    metrics = {"compositions": comp, "images": images, "image_source": image_info["source"],
               "chance_accuracy_compositions": comp_info["chance_accuracy"]}
    best_recovery = max(routed, key=lambda m: comp[m].get("recovery", float("-inf"))) if routed else None
    summary = (
        f"{'Quick' if config.quick else 'Full'} run, seed {config.seed}. {len(config.methods)} ways of training "
        "modules and routers together, on a synthetic problem whose modular structure is known and on real images. "
        "The research note gives no numbers to reproduce, only predictions: EM and the top-K buffer should find "
        "good routings, REINFORCE is prone to unstable training and module collapse, and a good router has a high "
        "H(A) and a low H(A|X). The tables give what this run measured."
    )
    if best_recovery is not None:
        summary += (
            f" Best recovery of the known structure: {LABELS[best_recovery]}, mean AMI "
            f"{comp[best_recovery]['recovery']:.2f} (0 is chance, 1 a perfect match)."
        )
    for name, part in (("compositions", comp), ("images", images)):
        collapsed = [LABELS[m] for m in routed if part[m]["collapsed"]]
        summary += f" Collapsed on {name} (some layer with H(A_l) < half of log M on the test set): "
        summary += f"{', '.join(collapsed)}." if collapsed else "none."
    c = config.compositions
    sections = [
        ("Compositions: setup", (
            f"{comp_info['n_tasks']} tasks, each a composition of {c.data.depth} of {c.data.n_primitives} hidden "
            f"primitives tanh(W_p z + b_p) on R^{c.data.dim}; {c.data.n_train:,} training and {c.data.n_test:,} "
            f"test examples. Modular nets: {c.data.depth} layers of {c.n_modules} MLP modules (hidden "
            f"{c.d_hidden}), routers that see only the task id (one logits table per task); Gaussian likelihood "
            f"with sigma {c.sigma}. Test accuracy is the share of test inputs whose prediction is nearer to their "
            f"own task's target than to any other task's (chance {percent(comp_info['chance_accuracy'])}); the "
            f"targets' total variance is {comp_info['variance']:.2f}. Recovery compares, layer by layer, the "
            "module each test example is routed to with the primitive its task applies at that step (adjusted "
            "mutual information; purity = share of examples whose module's most frequent primitive is theirs). "
            "Soft routing is scored by its most probable module. The dense baseline has one module per layer "
            "and sees the task through an added embedding."
        )),
        ("Images: setup", (
            f"Data: {image_info['source']}. Encoder 784 -> {config.images.d_model}, two layers of "
            f"{config.images.n_modules} MLP modules (hidden {config.images.d_hidden}) with routers that see the "
            f"layer's input, a linear head. Hard routers are evaluated with their most probable module."
        )),
        ("Method settings", (
            f"EM: {config.samples} samples per E-step, one incumbent per example, E-step every step. Top-K buffer: "
            f"K = {config.buffer_size} routings per example plus {config.samples} fresh samples, which also enter "
            "the gradient as REINFORCE terms. REINFORCE: one sample, reward log p(y|x,a), moving-average "
            "baseline. Gumbel: straight-through, temperature annealed from 1. Entropies are in nats and "
            "measured on the test set with the evaluation routing (the curves show the training batches). "
            f"Training times are wall-clock seconds with {config.threads} CPU thread(s)."
        )),
    ]
    return Report(
        name="routing",
        title="Routing: EM, top-K buffer, REINFORCE, soft and Gumbel routing",
        summary=summary,
        headline="### Compositions (known structure)\n\n" + _table(comp, recovery=True)
        + "\n\n### Images\n\n" + _table(images, recovery=False),
        sections=sections,
        metrics=metrics,
        figures=figures,
        config=config,
    )
