"""Experiment ``sorting``: the list-sorting agent trained monolithically vs module by module (thesis ch. 3).

One neural agent (LSTM operators, digestor and controller) is trained end to end through its unrolled loop
with the selection-sort traces as auxiliary selection loss and operator override; a second one is
trained module by module from the same kind of traces, with input noise (eq. 3.1 / 3.2) and the null
output, once sequentially and once with the modules in parallel processes. Both follow a curriculum over
list length and stop on the thesis criteria or on a time budget. Both agents are then run freely on fresh
lists of every length up to ``max_test_length``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..agents import Agent
from ..analysis import accuracy_by, plot_error_curves, plot_training_curves
from ..data import SortingEnvironment, SortingInterface, augment_sorting, sample_lists, sorting_traces
from ..errors import ConfigError
from ..models import sorting_agent
from ..train import (
    AgentTrainingConfig,
    Criterion,
    ModuleJob,
    ModuleJobs,
    RunDir,
    StageRun,
    TrainResult,
    run_stages,
    train_agent_end_to_end,
    train_control,
    train_operator,
)
from ._report import Report, markdown_table, percent

__all__ = ["Config", "run"]

#: Thesis 3.2.3: modular training reached its criterion about one order of magnitude faster in wall time.
PAPER_SPEEDUP = 10.0


@dataclass
class Config(ConfigBase):
    """Settings of the ``sorting`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        quick: quick-mode preset (recorded in the report).
        seed: seeds the agents' weights, the training lists and (offset) the test lists.
        hidden: LSTM units of every module (100 in the thesis).
        batch_size: lists (operators: transitions) per training step.
        max_train_length: the curriculum's longest lists (7 in the thesis).
        max_test_length: test lists go from 2 to this length.
        n_test_per_length: fresh test lists per length.
        noise: upper end of the input noise of eq. 3.1 for modular training (0.4 in the thesis; 0: none).
        monolithic_seconds: time budget of the monolithic training (``None``: until the criterion).
        module_seconds: time budget of each module's training (``None``: until the criterion).
        max_steps: step limit of every training run.
        workers: processes for the parallel modular training (``None``: one per core).
        criterion: the thesis criteria.
    """

    quick: bool = False
    seed: int = 0
    hidden: int = 100
    batch_size: int = 64
    max_train_length: int = 7
    max_test_length: int = 20
    n_test_per_length: int = 100
    noise: float = 0.4
    monolithic_seconds: float | None = 7200.0
    module_seconds: float | None = None
    max_steps: int = 200_000
    workers: int | None = None
    criterion: Criterion = field(default_factory=Criterion)

    def __post_init__(self) -> None:
        if isinstance(self.criterion, dict):
            self.criterion = Criterion.from_dict(self.criterion)
        if self.max_train_length < 3:
            raise ConfigError(
                f"max_train_length must be >= 3 (movb and retb need lists of 3), got {self.max_train_length}"
            )
        if self.max_test_length < self.max_train_length:
            raise ConfigError(
                f"max_test_length must be >= max_train_length ({self.max_train_length}), got {self.max_test_length}"
            )
        check_ints(self, "hidden", "batch_size", "n_test_per_length", "max_steps")
        if self.workers is not None:
            check_ints(self, "workers")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"noise must be in [0, 1), got {self.noise!r}")
        for name in ("monolithic_seconds", "module_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 or None, got {value!r}")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            return cls(quick=True, seed=seed, max_train_length=4, n_test_per_length=10, monolithic_seconds=30.0,
                       module_seconds=7.0)
        return cls(seed=seed)

    def training(self, seconds: float | None, seed_offset: int = 0) -> AgentTrainingConfig:
        """The training settings of one run."""
        return AgentTrainingConfig(batch_size=self.batch_size, max_size=self.max_train_length, max_steps=self.max_steps,
                                   max_seconds=seconds, seed=self.seed + seed_offset, criterion=self.criterion)


def modular_jobs(agent: Agent, config: Config, *, run: RunDir | None = None) -> list[ModuleJob]:
    """One independent training per operator, and one for the control module (logged and checkpointed in
    ``run`` under each module's name)."""
    noise = partial(augment_sorting, level=config.noise) if config.noise > 0 else None
    run = run if run is not None else RunDir(progress=False)
    jobs = [
        ModuleJob(op.name, op, partial(train_operator, action=k, traces=sorting_traces, noise=noise,
                                       config=config.training(config.module_seconds, k + 1), run=run))
        for k, op in enumerate(agent.operators)
    ]
    jobs.append(ModuleJob("control", agent.control, partial(
        train_control, traces=sorting_traces, noise=noise, config=config.training(config.module_seconds, len(jobs) + 1),
        run=run)))
    return jobs


@torch.no_grad()
def evaluate(agent: Agent, config: Config) -> dict[str, dict[int, float]]:
    """Free-running success by list length on fresh lists: the agent stopped with ``eop`` on the target
    state (sorted list, both pointers on the last digit); also how often the list alone ended sorted.

    Lists of length ``L`` sit on a tape of ``max(L, max_train_length)`` positions: in training a batch's tape
    is as wide as its longest list, so shorter lists were seen followed by null positions."""
    gen = torch.Generator().manual_seed(config.seed + 10_000)
    correct, sorted_, lengths = [], [], []
    for length in range(2, config.max_test_length + 1):
        lists = sample_lists(config.n_test_per_length, min_length=length, max_length=length,
                             width=max(length, config.max_train_length), generator=gen)
        env = SortingEnvironment()
        env.reset(lists.values, lists.lengths)
        trace = agent.solve(SortingInterface(env))
        correct.append(trace.stopped & env.is_target())
        sorted_.append(env.is_sorted())
        lengths.append(lists.lengths)
    groups = torch.cat(lengths)
    return {"solved": accuracy_by(torch.cat(correct), groups), "sorted": accuracy_by(torch.cat(sorted_), groups)}


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train both regimes, evaluate by list length, write plots, logs and checkpoints into ``out_dir``; return
    the report (``resume=True``: continue every training from its checkpoints; their time budgets count the
    time already spent)."""
    out = Path(out_dir)
    t0 = time.perf_counter()

    rundir = RunDir(out, resume=resume, progress=progress)
    torch.manual_seed(config.seed)
    monolithic = sorting_agent(hidden=config.hidden)
    mono = train_agent_end_to_end(monolithic, traces=sorting_traces, config=config.training(config.monolithic_seconds),
                                  run=rundir, name="monolithic")

    torch.manual_seed(config.seed)
    modular = sorting_agent(hidden=config.hidden)
    jobs = ModuleJobs(modular_jobs(modular, config, run=rundir.sub("modular")))
    sequential = run_stages([jobs.names], jobs, collect=jobs.collect, progress=False)
    torch.manual_seed(config.seed)
    jobs = ModuleJobs(modular_jobs(sorting_agent(hidden=config.hidden), config,
                                   run=rundir.sub("modular_parallel").quiet()))
    parallel = run_stages([jobs.names], jobs, collect=jobs.collect, backend="processes", workers=config.workers,
                          progress=False)

    accuracy = {"monolithic": evaluate(monolithic, config), "modular": evaluate(modular, config)}
    figures = _plots(out, config, mono, sequential, accuracy)
    metrics = _metrics(config, mono, sequential, parallel, accuracy, time.perf_counter() - t0)
    return _report(config, metrics, mono, sequential, parallel, accuracy, figures)


def _plots(out: Path, config: Config, mono: TrainResult, sequential: StageRun, accuracy) -> list[str]:
    runs = {"monolithic": mono.history, **{f"modular: {k}": r.history for k, r in sequential.results.items()}}
    figures = ["error_vs_time.png", "error_vs_steps.png", "gradients.png", "accuracy_by_length.png"]
    plot_training_curves(runs, out / figures[0], x="seconds", y="error", logx=True, smooth=5,
                         title="Training error rate against time (Fig. 3.7 top)",
                         ylabel="error rate (training batches)")
    plot_training_curves(runs, out / figures[1], x="step", y="error", logx=True, smooth=5,
                         title="Training error rate against steps (Fig. 3.7 bottom)",
                         ylabel="error rate (training batches)")
    plot_training_curves(runs, out / figures[2], x="step", y="grad_abs", logy=True, smooth=5,
                         title="Mean absolute gradient per parameter (Fig. 3.8)", ylabel="mean |gradient|")
    plot_error_curves({k: v["solved"] for k, v in accuracy.items()}, out / figures[3], xlabel="list length",
                      title=f"Free-running error by list length (Fig. 3.10; trained up to {config.max_train_length})",
                      trained_up_to=config.max_train_length)
    return figures


def _mean_grad(result: TrainResult) -> float:
    values = [r["grad_abs"] for r in result.history]
    return sum(values) / len(values) if values else float("nan")


def _run_metrics(result: TrainResult) -> dict:
    last = result.history[-1] if result.history else {}
    return {
        "seconds": result.seconds,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "met_criterion": result.met_criterion,
        "stopped_on_budget": result.cut_short,
        "reached_length": result.size,
        "levels": {str(k): v for k, v in result.levels.items()},
        "last_logged": last,
        "mean_abs_gradient": _mean_grad(result),
    }


def _modular_seconds(run: StageRun) -> float:
    """The modules' own training times, summed (as the monolithic time, a resumed training counts the time it
    spent before the restart)."""
    return sum(r.seconds for r in run.results.values())


def _metrics(config, mono, sequential, parallel, accuracy, wall) -> dict:
    seq_seconds = _modular_seconds(sequential)
    mono_done = mono.met_criterion
    modular_done = all(r.met_criterion for r in sequential.results.values())
    return {
        "train_seconds_monolithic": mono.seconds,
        "train_seconds_modular_sequential": seq_seconds,
        "train_seconds_modular_parallel": parallel.timings.wall_seconds,
        "speedup": mono.seconds / seq_seconds,
        "speedup_parallel": mono.seconds / parallel.timings.wall_seconds,
        "speedup_is_lower_bound": (not mono_done) and modular_done,
        "criterion_met": {"monolithic": mono_done, "modular_sequential": modular_done,
                          "modular_parallel": all(r.met_criterion for r in parallel.results.values())},
        "parallel_workers": parallel.workers,
        "parallel_start_method": parallel.start_method,
        "monolithic": _run_metrics(mono),
        "modular_sequential": {k: _run_metrics(r) for k, r in sequential.results.items()},
        "modular_parallel": {k: _run_metrics(r) for k, r in parallel.results.items()},
        "accuracy_by_length": {k: {str(n): a for n, a in v["solved"].items()} for k, v in accuracy.items()},
        "sorted_by_length": {k: {str(n): a for n, a in v["sorted"].items()} for k, v in accuracy.items()},
        "mean_abs_gradient": {"monolithic": _mean_grad(mono),
                              **{f"modular: {k}": _mean_grad(r) for k, r in sequential.results.items()}},
        "experiment_seconds": wall,
    }


def _ended(result: TrainResult) -> str:
    if result.cut_short:
        return f"**{result.stop_reason}** (criterion not reached)"
    return result.stop_reason


def _span(acc: dict[int, float], lo: int, hi: int) -> float:
    values = [a for n, a in acc.items() if lo <= n <= hi]
    return sum(values) / len(values) if values else float("nan")


def _first_below(acc: dict[int, float], level: float) -> str:
    for n in sorted(acc):
        if acc[n] < level:
            return str(n)
    return f"> {max(acc)}"


def _report(config, metrics, mono, sequential, parallel, accuracy, figures) -> Report:
    lt, lmax = config.max_train_length, config.max_test_length
    solved = {k: v["solved"] for k, v in accuracy.items()}
    modular_ended = ", ".join(sorted({r.stop_reason for r in sequential.results.values()}))
    rows = [
        ("monolithic (end to end)", f"{mono.seconds:.1f} s", mono.steps, _ended(mono), mono.size,
         percent(_span(solved["monolithic"], 2, lt)), percent(_span(solved["monolithic"], lt + 1, lmax))),
        ("modular, sequential (sum of modules)", f"{_modular_seconds(sequential):.1f} s",
         sum(r.steps for r in sequential.results.values()),
         modular_ended if not any(r.cut_short for r in sequential.results.values()) else
         f"**{modular_ended}** (some modules short of the criterion)",
         min(r.size for r in sequential.results.values()),
         percent(_span(solved["modular"], 2, lt)), percent(_span(solved["modular"], lt + 1, lmax))),
        (f"modular, parallel ({parallel.workers} processes, measured wall time)",
         f"{parallel.timings.wall_seconds:.1f} s",
         sum(r.steps for r in parallel.results.values()),
         ", ".join(sorted({r.stop_reason for r in parallel.results.values()})), "", "(not evaluated)", ""),
    ]
    headline = markdown_table(
        ["regime", "training time", "steps", "how training ended", "longest lists trained",
         f"solved, lengths 2-{lt}", f"solved, lengths {lt + 1}-{lmax}"], rows)

    module_rows = []
    for name, r in sequential.results.items():
        p = parallel.results[name]
        last = r.history[-1] if r.history else {}
        module_rows.append((name, r.steps, f"{r.seconds:.1f} s", f"{p.seconds:.1f} s", _ended(r),
                            percent(last.get("error"), 2),
                            percent(last.get("saturation"), 2) if "saturation" in last else "n/a (controller)"))
    module_table = markdown_table(
        ["module", "steps", "time (sequential run)", "time (parallel run)", "how training ended",
         "last logged batch error", "last logged batch saturation"], module_rows)
    slowest = max(sequential.results, key=lambda k: sequential.results[k].seconds)
    share = sequential.results[slowest].seconds / _modular_seconds(sequential)
    module_table += (
        f"\n\nThe slowest module, {slowest}, took {percent(share, 0)} of the sequential modular time; in parallel "
        f"no schedule can finish before it does ({parallel.results[slowest].seconds:.0f} s in the parallel run, "
        f"{parallel.timings.wall_seconds:.0f} s wall time for all {len(parallel.results)} trainings on "
        f"{parallel.workers} processes)."
    )

    length_table = markdown_table(
        ["list length", "monolithic: solved", "modular: solved", "monolithic: list sorted", "modular: list sorted"],
        [(n, percent(solved["monolithic"][n]), percent(solved["modular"][n]),
          percent(accuracy["monolithic"]["sorted"][n]), percent(accuracy["modular"]["sorted"][n]))
         for n in sorted(solved["monolithic"])],
    )
    curve_summary = markdown_table(
        ["regime", "accuracy first below 90 % at length", "accuracy first 0 at length"],
        [(k, _first_below(v, 0.9), _first_below(v, 1e-9)) for k, v in solved.items()],
    )

    speedup = metrics["speedup"]
    budget_note = []
    if mono.cut_short:
        budget_note.append(f"The monolithic training stopped on its {mono.stop_reason} "
                           f"({_budget(config.monolithic_seconds)}) before reaching the criterion, at lists of "
                           f"length {mono.size}.")
    short = [k for k, r in sequential.results.items() if r.cut_short]
    if short:
        budget_note.append(f"Modules stopped on their budget ({_budget(config.module_seconds)}) before the "
                           f"criterion: {', '.join(short)}.")
    bound = "at least " if metrics["speedup_is_lower_bound"] else ""
    mono_gen, mod_gen = _span(solved["monolithic"], lt + 1, lmax), _span(solved["modular"], lt + 1, lmax)
    comparison = (
        markdown_table(
            ["measure", "thesis (ch. 3)", "this run"],
            [("wall time, monolithic / modular (sequential)", f"about {PAPER_SPEEDUP:.0f}x (one order of magnitude)",
              f"{bound}{speedup:.1f}x"),
             ("wall time, monolithic / modular (parallel)", "shorter still (not measured)",
              f"{bound}{metrics['speedup_parallel']:.1f}x"),
             ("training steps", "modular needs more steps", f"monolithic {mono.steps}, modular "
              f"{sum(r.steps for r in sequential.results.values())} in total"),
             ("mean absolute gradient per parameter", "larger and more variable in the monolithic case",
              f"monolithic {_mean_grad(mono):.2e}; modules " + ", ".join(
                  f"{k} {_mean_grad(r):.2e}" for k, r in sequential.results.items())),
             (f"solved, lists longer than {lt}", "monolithic generalises better",
              f"monolithic {percent(mono_gen)}, modular {percent(mod_gen)}")])
        + "\n\n" + _verdict(metrics, mono_gen, mod_gen) + " " + _gradient_verdict(mono, sequential)
    )
    summary = (
        f"Two list-sorting agents with the thesis architecture (LSTMs of {config.hidden} units; swap a bidirectional "
        f"LSTM with a softmax over ten digits and a null class; pointer operators with sigmoid outputs; an LSTM "
        f"digestor and an LSTM controller) were trained on selection-sort traces of random lists with a curriculum "
        f"up to length {lt} ({'quick mode' if config.quick else 'full mode'}, seed {config.seed}): one end to end "
        f"through the unrolled loop, the other module by module with input noise (eq. 3.1 / 3.2, level "
        f"{config.noise}). Monolithic training took {mono.seconds:.0f} s, modular training "
        f"{_modular_seconds(sequential):.0f} s when the modules run one after another and "
        f"{parallel.timings.wall_seconds:.0f} s measured with {parallel.workers} worker processes: a speed-up of "
        f"{bound}{speedup:.1f}x (thesis: about {PAPER_SPEEDUP:.0f}x). " + " ".join(budget_note)
    )
    setup = (
        f"Training: Adam, learning rate {1e-3}, {config.batch_size} lists per step (operators: {config.batch_size} "
        f"(R(t), R(t+1)) pairs of their action drawn from the traces of {config.batch_size} fresh lists), gradient "
        f"norm clipped at 1.0 (the thesis does not say), fresh random lists at every step. Curriculum: level n "
        f"trains on lengths 2-n, from n = 2 to {lt}; a level ends when, averaged over {config.criterion.window} "
        f"batches, the error rate is <= {percent(config.criterion.max_error)} and, for operators, the saturation "
        f"(outputs more than 0.1 from the one-hot reference) <= {percent(config.criterion.max_saturation)}; or the "
        f"loss is below {config.criterion.min_loss:g}; or it has not improved by "
        f"{percent(config.criterion.min_improvement, 0)} in {config.criterion.patience} steps (stagnant). Errors are "
        f"measured on the training batches (operators: on noisy inputs). A monolithic example is wrong when any "
        f"selection differs from the trace or any value of the final representation is on the wrong side of 0.5; "
        f"an operator's output when it does not decode to the expected one (a pointer needs exactly one value above "
        f"0.5, at the right place); the controller's when any selection of the trace is wrong. Times: training loop "
        f"wall time including the generation of the traces; the sequential modular time is the sum of the "
        f"modules' measured times; the parallel time is measured from starting the {parallel.workers} worker "
        f"processes (started by {parallel.start_method}, one thread each) to the last result. Budgets: "
        f"monolithic {_budget(config.monolithic_seconds)}, each module {_budget(config.module_seconds)}, at most "
        f"{config.max_steps} steps per run. Evaluation: "
        f"{config.n_test_per_length} fresh random lists per length 2-{lmax} (a different random stream from "
        f"training), each agent running freely (its own selections, soft representation, written to the "
        f"environment after every step) until eop or {lmax}^2 - 1 + {lmax} steps on the longest; solved = "
        f"stopped with eop, list sorted, both pointers on the last digit. A test list of length L sits on a tape "
        f"of max(L, {lt}) positions, as in training, where a batch's tape is as wide as its longest list and "
        f"shorter lists are followed by null positions. TensorBoard logs: `tensorboard/`."
    )
    return Report(
        name="sorting",
        title="List sorting: monolithic vs modular training of a perception-action agent",
        summary=summary,
        headline=headline,
        sections=[
            ("Modules", module_table),
            ("Against the thesis", comparison),
            ("Accuracy by list length (Fig. 3.10)", curve_summary + "\n\n" + length_table),
            ("Set-up", setup),
        ],
        metrics=metrics,
        figures=figures,
        config=config,
    )


def _budget(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds:g} s"


def _gradient_verdict(mono: TrainResult, sequential: StageRun) -> str:
    mono_grad = _mean_grad(mono)
    modules = {k: _mean_grad(r) for k, r in sequential.results.items()}
    above = [k for k, g in modules.items() if mono_grad > g]
    if len(above) == len(modules):
        return ("The monolithic gradient per parameter was larger on average than every module's, as the thesis "
                "found.")
    if not above:
        return "The monolithic gradient per parameter was smaller on average than every module's, unlike the thesis."
    below = [k for k in modules if k not in above]
    return (f"The monolithic gradient per parameter was larger on average than that of {', '.join(above)} but "
            f"smaller than that of {', '.join(below)}, so not uniformly larger (the thesis found it larger).")


def _verdict(metrics, mono_gen: float, mod_gen: float) -> str:
    mono_done = metrics["criterion_met"]["monolithic"]
    modular_done = metrics["criterion_met"]["modular_sequential"]
    speedup = metrics["speedup"]
    if not mono_done and not modular_done:
        parts = [f"Neither regime reached its criterion within its budget, so the times above are budgets spent, "
                 f"not times to criterion, and their ratio ({speedup:.1f}x) does not measure the thesis' comparison."]
    elif not modular_done:
        parts = [f"The monolithic agent reached its criterion and the modular one did not (some modules ran out of "
                 f"budget): the ratio ({speedup:.1f}x) is not a comparison of times to criterion."]
    else:
        faster = speedup > 1
        parts = [("Modular training reached its criterion faster than monolithic training, as in the thesis"
                  if faster else "Modular training was not faster than monolithic training, unlike the thesis")
                 + f" ({'at least ' if not mono_done else ''}{speedup:.1f}x against about {PAPER_SPEEDUP:.0f}x)."]
        if not mono_done:
            parts.append("The monolithic run stopped on its budget before its criterion, so its time to criterion, "
                         "and the speed-up, are larger than measured.")
    if math.isnan(mono_gen) or math.isnan(mod_gen):
        return " ".join(parts)
    if mono_gen > mod_gen:
        parts.append("On lists longer than the training lists the monolithic agent did better, as in the thesis.")
    elif mono_gen < mod_gen:
        parts.append("On lists longer than the training lists the modular agent did better, unlike the thesis "
                     "(which found the monolithic agent degrading more slowly).")
    else:
        parts.append(f"On lists longer than the training lists both agents solved {percent(mono_gen)}.")
    return " ".join(parts)
