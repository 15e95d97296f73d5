"""The NMN experiment's depth study (thesis Figs 4.12-4.13): typed and untyped NMNs and a FiLM of the typed
NMN's size trained on shallow programs and tested on deeper ones, beside a model of the question alone (the
floor: what is answered without looking) and a typed NMN trained on every depth (the reference curve), and the
report's section on them."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import torch

from ...analysis import Spread, accuracy_by, spread
from ...data import ANSWERS, ClevrDataset, ClevrLikeConfig, ClevrLikeDataset, make_clevr_like
from ...data import collate_clevr_like as collate
from ...models import QuestionEncoder, QuestionPrior, QuestionVocabulary, nmn
from ...train import RunDir, predict
from .._report import markdown_table, percent
from .._report import spread_text as _s
from .._vqa_training import film_of_size, fit_answers, parameter_count, seeded
from ._data import clevr_data, study_data

if TYPE_CHECKING:
    from . import Config

# Thesis code on CLEVR (trained on depth <= 5): mean error with / without neural data types.
PAPER_ERROR = {"typed": {"seen": 0.228, "unseen": 0.472}, "untyped": {"seen": 0.309, "unseen": 0.551}}
#: A restart r of the depth study trains from initial weights (and a batch order) seeded with seed + r * this.
RESTART_STRIDE = 100_003
#: The depth study's models, as the report names them.
CURVE_LABELS = {"typed": "typed NMN", "untyped": "untyped NMN", "film": "FiLM (same size)",
                "question_only": "question only (no image)",
                "typed_all_depths": "typed NMN trained on every depth (reference)"}


class DepthData(NamedTuple):
    """The depth study's data for one seed. ``valid`` and ``valid_all`` are held-out questions of the training
    distributions (``train``'s, ``train_all``'s), on which each model's best epoch is chosen."""

    train: ClevrLikeDataset | ClevrDataset
    valid: ClevrLikeDataset | ClevrDataset
    test: ClevrLikeDataset | ClevrDataset
    train_all: ClevrLikeDataset | ClevrDataset
    valid_all: ClevrLikeDataset | ClevrDataset
    vocab: QuestionVocabulary


def depth_data(config: Config, seed: int, pools=None) -> DepthData:
    """The depth study's data for one seed: ``depth_n_train`` (or ``n_train``) questions of depth <=
    ``max_train_depth`` (data seed ``seed + 1000``) and ``n_valid`` more (``seed + 21000``), the test questions of
    every depth to ``max_test_depth`` (``seed + 11000``), the reference's training questions of every depth
    (``seed + 31000``, drawn with ``reference_weights``) and ``n_valid`` more (``seed + 51000``), and the
    vocabulary over both training sets."""
    config = replace(config, n_train=config.depth_training[0])
    seen = range(2, config.max_train_depth + 1)
    every = range(2, config.max_test_depth + 1)
    train, valid, test = study_data(config, seed + 1_000, config.depth_programs, seen, every, pools=pools)
    if pools is not None:
        train_all, valid_all, _ = clevr_data(config, seed + 31_000, pools, every, every, valid=True)
    else:
        def reference(n, data_seed):
            return make_clevr_like(ClevrLikeConfig(n_examples=n, depths=tuple(every),
                                                   depth_weights=config.reference_weights,
                                                   image_size=config.image_size, programs=config.depth_programs,
                                                   seed=data_seed))
        train_all, valid_all = reference(config.n_train, seed + 31_000), reference(config.n_valid, seed + 51_000)
    vocab = QuestionVocabulary.build([*train.questions, *train_all.questions])
    return DepthData(train, valid, test, train_all, valid_all, vocab)


def depth_study(config: Config, seed: int, rundir: RunDir, pools=None) -> dict:
    """Figs 4.12-4.13 on the ``config.depth_programs`` family (or real CLEVR, ``pools``): typed and untyped NMNs,
    a FiLM of the typed NMN's size and a model of the question alone (a GRU and a read-out, no image), trained
    end to end on depth <= ``max_train_depth`` with the same settings, tested to ``max_test_depth``; and the
    typed NMN trained on every depth (the reference curve).
    Every model ends at its epoch of lowest validation loss (held-out questions of its training depths; with
    ``patience`` in the training settings it stops early on it), and of its ``depth_restarts`` trainings from
    different initial weights and batch orders the one of lowest validation loss is tested."""
    config, fit_config = replace(config, n_train=config.depth_training[0]), seeded(config.depth_training[1], seed)
    data = depth_data(config, seed, pools)

    def build(name: str, restart: int):
        torch.manual_seed(seed + RESTART_STRIDE * restart)
        if name == "film":
            return film_of_size(config, data.vocab, typed_parameters)
        if name == "question_only":
            return QuestionPrior(QuestionEncoder(data.vocab, hidden=config.question_hidden), n_answers=len(ANSWERS))
        typed = name != "untyped"
        return nmn(typed, image_size=config.image_size, hidden=config.hidden, prior="logits" if typed else "geometric",
                   questions=data.vocab, question_hidden=config.question_hidden)

    typed_parameters = parameter_count(build("typed", 0))
    seconds, curves, epochs, parameters = {}, {}, {}, {}
    for name in CURVE_LABELS:
        train, valid = (data.train_all, data.valid_all) if name == "typed_all_depths" else (data.train, data.valid)
        trainings = []
        for restart in range(config.depth_restarts):
            model = build(name, restart)
            restart_fit = replace(fit_config, seed=fit_config.seed + RESTART_STRIDE * restart)
            result = fit_answers(model, train, restart_fit, rundir, name + (f"-restart{restart}" if restart else ""),
                                 valid=valid)
            trainings.append((min(result.valid_loss), model, result))
        kept = min(range(len(trainings)), key=lambda i: trainings[i][0])
        _, model, result = trainings[kept]
        seconds[f"depth_{name}"] = sum(r.seconds for _, _, r in trainings)
        epochs[name] = {"trained": len(result.valid_loss), "best": result.best_epoch,
                        "best_valid_loss": trainings[kept][0], "kept_restart": kept,
                        "restart_valid_losses": [loss for loss, _, _ in trainings]}
        curves[name] = accuracy_by(predict(model, data.test, collate=collate) == data.test.answers, data.test.depths)
        parameters[name] = parameter_count(model)
    return {
        "train_seconds": seconds,
        "epochs": epochs,
        "accuracy_by_depth": curves,
        "error_seen_unseen": {k: _seen_unseen(v, data.test.depths, config.max_train_depth)
                              for k, v in curves.items()},
        "parameters": {k: v for k, v in parameters.items() if k not in ("question_only", "typed_all_depths")},
    }


def _mean_over(acc_by_depth: dict[int, float], depths: torch.Tensor, wanted) -> float:
    counts = {d: int((depths == d).sum()) for d in wanted if d in acc_by_depth}
    return sum(acc_by_depth[d] * n for d, n in counts.items()) / max(1, sum(counts.values()))


def _seen_unseen(acc_by_depth, depths, max_train_depth) -> dict[str, float]:
    present = sorted(acc_by_depth)
    seen = [d for d in present if d <= max_train_depth]
    unseen = [d for d in present if d > max_train_depth]
    return {"seen": 1 - _mean_over(acc_by_depth, depths, seen),
            "unseen": 1 - _mean_over(acc_by_depth, depths, unseen) if unseen else math.nan}


def depth_report(config: Config, metrics: dict, curves: dict[str, dict[int, Spread]]) -> str:
    """The report's section on Figs 4.12-4.13: errors up to and beyond the training depths beside the thesis code's,
    error by depth, and what they say (typed vs untyped, FiLM against the question alone, the reference)."""
    err = metrics["error_seen_unseen"]
    depth_rows = [(CURVE_LABELS[k], _s(v["seen"], percent=True), _s(v["unseen"], percent=True),
                   percent(PAPER_ERROR[k]["seen"]) if k in PAPER_ERROR else "-",
                   percent(PAPER_ERROR[k]["unseen"]) if k in PAPER_ERROR else "-") for k, v in err.items()]
    depths = sorted(curves["typed"])
    per_depth = markdown_table(
        ["depth", *[CURVE_LABELS[k] for k in curves]],
        [(d, *[_error(v[d]) for v in curves.values()]) for d in depths],
    )
    unseen = {k: Spread.from_dict(v["unseen"]) for k, v in err.items()}
    margin = unseen["untyped"].mean - unseen["typed"].mean
    spread_unseen = max(unseen["typed"].std, unseen["untyped"].std)
    params = metrics["parameters"]
    n_depth = len(metrics["depth_seeds"])
    return (
        (f"Over the depth study's {n_depth} seeds ({', '.join(map(str, metrics['depth_seeds']))}; "
         f"{len(metrics['depth_only_per_seed'])} of them ran the depth study alone).\n\n"
         if n_depth != len(metrics["seeds"]) else "")
        + markdown_table(["model", f"our error, depth <= {config.max_train_depth}", "our error, deeper",
                          "thesis code (CLEVR), <= 5", "thesis code (CLEVR), deeper"], depth_rows)
        + "\n\n" + per_depth + "\n\n"
        + (f"Typed modules err less than untyped ones at unseen depths by {percent(margin)}"
           + (f", more than the seed spread ({percent(spread_unseen)}), as in the thesis."
              if n_depth > 1 and margin > spread_unseen
              else " (one seed: no spread to judge it by)." if n_depth == 1 and margin > 0
              else f", within the seed spread ({percent(spread_unseen)}): not a result." if margin > 0
              else "; they do not (the thesis found them better)."))
        + _paired_text(unseen["typed"], unseen["untyped"])
        + _untrained_text(err, config.max_train_depth)
        + f" FiLM ({params['film']:,} parameters, against {params['typed']:,} for the typed NMN) "
        + _film_text(err, config.max_train_depth)
        + " " + _reference_text(curves["typed_all_depths"], config)
        + _epochs_text(metrics.get("depth_epochs"), config.depth_training[1].epochs)
        + _restarts_text(metrics.get("depth_restart_valid_losses"))
        + (f" The depth study runs on the `{config.depth_programs}` program family (every level of depth a step "
           "of reasoning: relation hops from a unique referent and filters, under exist, count and describe; the "
           "`clevr` family adds same-attribute hops and comparisons), all five models trained end to end with the "
           f"same settings ({_budget_text(config)}). The thesis numbers come from real CLEVR with programs up to 22 "
           "modules deep; ours from "
           "a procedural analogue, so only directions compare." if config.data is None else
           " The depth study runs on real CLEVR questions (trained on the train split's questions of depth <= "
           f"{config.max_train_depth}, tested on the val split's), all five models trained end to end with the "
           f"same settings ({_budget_text(config)}); depth counts the mapped NMN program, not CLEVR's node list, "
           "and the thesis trained far "
           "longer, so the directions compare more than the values.")
    )


def _learned(err: dict, name: str) -> bool:
    """Whether model ``name`` erred less than the question alone on its training depths, by more than the seed
    spread: whether it learned to use the image at all."""
    seen, floor = Spread.from_dict(err[name]["seen"]), Spread.from_dict(err["question_only"]["seen"])
    return floor.mean - seen.mean > max(seen.std, floor.std)


def _untrained_text(err: dict, max_train_depth: int) -> str:
    """The NMNs that answered their training depths no better than the question alone: their margin at unseen
    depths says that they trained slower, not that they generalise worse."""
    return "".join(
        f" The {CURVE_LABELS[k]} erred {_s(err[k]['seen'], percent=True)} at depths <= {max_train_depth}, no better "
        f"than the question alone ({_s(err['question_only']['seen'], percent=True)}): it did not learn these "
        "questions within the budget, so its error beyond them says how slowly it trains, not how it generalises."
        for k in ("typed", "untyped") if not _learned(err, k))


def _film_text(err: dict, max_train_depth: int) -> str:
    """Does FiLM degrade faster than the typed NMN beyond the training depths (thesis Fig. 4.13)? Only readable
    when FiLM answers its training depths better than the question alone, by more than the seed spread."""
    seen = {k: Spread.from_dict(err[k]["seen"]) for k in ("film", "question_only", "typed")}
    growth = {k: Spread.from_dict(err[k]["unseen"]).mean - seen[k].mean for k in ("film", "typed")}
    if not _learned(err, "film"):
        return (f"erred {seen['film'].format(percent=True)} at depths <= {max_train_depth}, and the question "
                f"alone {seen['question_only'].format(percent=True)}: it answers no better than a model that does "
                "not look at the image, so whether it degrades faster than the NMN (thesis Fig. 4.13) cannot be "
                "read here.")
    return ("degrades faster" if growth["film"] > growth["typed"] else "does not degrade faster") + (
        " than the typed NMN beyond the training depths"
        + (" (as thesis Fig. 4.13)." if growth["film"] > growth["typed"] else " (thesis Fig. 4.13: it does)."))


def _paired_text(typed: Spread, untyped: Spread) -> str:
    """Per seed (the same data and initial weights for both): in how many seeds the typed NMN erred less
    beyond the training depths, and by how much; a mean can hide a single training failure."""
    margins = [u - t for t, u in zip(typed.values, untyped.values, strict=True)]
    if len(margins) < 2:
        return ""
    wins = sum(m > 0 for m in margins)
    return (f" Per seed, the typed NMN erred less beyond the training depths in {wins} of {len(margins)} seeds "
            f"(untyped - typed: {', '.join(f'{100 * m:+.1f}' for m in margins)} points).")


def _reference_text(curve: dict[int, Spread], config: Config) -> str:
    """Does error rise with depth when the model is trained on every depth? Shallowest vs deepest third of the
    depths, per seed: a rise counts when the mean rise exceeds its seed spread (or, with one seed, is > 0)."""
    depths = sorted(curve)
    third = max(1, len(depths) // 3)
    low, high = depths[:third], depths[-third:]
    n = len(curve[depths[0]].values)

    def error(ds, i):
        return sum(1 - curve[d].values[i] for d in ds) / len(ds)

    low_error = spread([error(low, i) for i in range(n)])
    high_error = spread([error(high, i) for i in range(n)])
    rise = spread([error(high, i) - error(low, i) for i in range(n)])
    rises = rise.mean > (rise.std if n > 1 else 0)
    drawn = ("as they come in CLEVR's train split" if config.data is not None else
             "uniformly" if config.reference_weights is None else
             f"depth d with weight {config.reference_depth_decay:g}^(d - 2), the deepest rarest as in CLEVR")
    return (
        f"Trained on every depth (2-{config.max_test_depth}, drawn {drawn}), the typed NMN's error is "
        f"{low_error.format(percent=True)} at depths {low[0]}-{low[-1]} and {high_error.format(percent=True)} at "
        f"depths {high[0]}-{high[-1]}; it rises by {rise.format(percent=True)} (rises in "
        f"{sum(v > 0 for v in rise.values)} of {n} seeds): "
        + ("error rises with depth, as on CLEVR." if rises else
           "error does not rise with depth by more than the seed spread here, unlike CLEVR.")
    )


def _budget_text(config: Config) -> str:
    n_train, fit_config = config.depth_training
    warmup = f" after a linear warm-up of {fit_config.warmup_steps:,} steps" if fit_config.warmup_steps else ""
    stop = (f", stopped after {fit_config.patience} epoch{'s' * (fit_config.patience != 1)} without a lower "
            "validation loss"
            if fit_config.patience is not None else "")
    return (f"{'up to ' if stop else ''}{fit_config.epochs} epochs of {n_train:,} questions, batch "
            f"{fit_config.batch_size}, Adam {fit_config.lr:g}{warmup}{stop}, each model kept at its epoch of lowest "
            f"validation loss ({config.n_valid:,} held-out questions of its training depths)")


def _epochs_text(epochs: dict | None, most: int) -> str:
    """How long each model of the depth study trained and which epoch it kept (``None``: a run from before the
    depth study validated)."""
    if epochs is None:
        return ""
    def listed(part):
        return ", ".join(str(round(x)) for x in part["values"])

    parts = [f"{CURVE_LABELS[k]} {listed(v['trained'])} (kept epoch {listed(v['best'])})" for k, v in epochs.items()]
    return f" Epochs trained per seed (of at most {most}): " + "; ".join(parts) + "."


def _restarts_text(losses: dict[str, list[list[float]]] | None) -> str:
    """Each model's validation losses over its restarts, per seed (the lowest was kept); nothing with one
    training per model."""
    n = 0 if losses is None else len(next(iter(losses.values()))[0])
    if n < 2:
        return ""
    parts = [f"{CURVE_LABELS[k]} " + ", ".join(" / ".join(f"{x:.2f}" for x in seed) for seed in v)
             for k, v in losses.items()]
    return (f" Each model trained {n} times per seed, from initial weights and batch orders seeded s + "
            f"{RESTART_STRIDE:,} r (r = 0-{n - 1}), and the training of lowest validation loss was tested; "
            "validation losses of the restarts, per seed: " + "; ".join(parts) + ".")


def _error(accuracy: Spread) -> str:
    """Error (1 - accuracy) of a spread of accuracies, in percent."""
    return spread([1 - v for v in accuracy.values]).format(percent=True)
