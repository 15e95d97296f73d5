"""Experiment ``sorting``: the list-sorting agent trained monolithically vs module by module (thesis ch. 3).

One neural agent (LSTM operators, digestor and controller) is trained end to end through its unrolled loop
with the selection-sort traces as auxiliary selection loss and operator override; a second one is
trained module by module from the same kind of traces, with input noise (eq. 3.1 / 3.2) and the null
output, once sequentially and once with the modules in parallel processes. Both follow a curriculum over
list length and stop on the thesis criteria or on a time budget. Both agents are then run freely on fresh
lists of every length up to ``max_test_length``. The whole study is repeated over ``seeds`` seeds (the thesis
averages five runs) and reported as mean and spread.

A third regime trains the controller by reward (thesis 5.3): a fresh control module, with the modular agent's
operators (trained from traces) fixed, learns by REINFORCE from the sorted-or-not reward at the end of each
episode (``"terminal"``), or with potential-based shaping by the number of inversions (``"shaped"``), under the
same curriculum; it sits in the report beside the trace-trained controller, which drives the same operators.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch

from .._checks import check_ints
from .._config import Config as ConfigBase
from ..agents import Agent
from ..analysis import (
    Spread,
    accuracy_by,
    plot_error_curves,
    plot_spreads,
    plot_training_curves,
    spread,
    spread_by,
)
from ..data import (
    SortingEnvironment,
    SortingInterface,
    augment_sorting,
    sample_lists,
    sorting_episodes,
    sorting_potential,
    sorting_traces,
)
from ..errors import ConfigError
from ..models import sorting_agent, sorting_control
from ..train import (
    EPISODE_REWARDS,
    AgentTrainingConfig,
    ControlReinforceConfig,
    Criterion,
    ModuleJob,
    ModuleJobs,
    RunDir,
    StageRun,
    TrainResult,
    run_stages,
    train_agent_end_to_end,
    train_control,
    train_control_by_reward,
    train_operator,
)
from ._report import Report, markdown_table, percent
from ._report import spread_text as _s

__all__ = ["Config", "SeedRun", "run"]

#: Thesis 3.2.3: modular training reached its criterion about one order of magnitude faster in wall time.
PAPER_SPEEDUP = 10.0
#: Thesis 3.2.2: results of the monolithic configuration are averaged over five runs.
PAPER_SEEDS = 5


@dataclass
class Config(ConfigBase):
    """Settings of the ``sorting`` experiment (``Config.for_mode(quick)`` gives the two presets).

    Attributes:
        quick: quick-mode preset (recorded in the report).
        seed: the first seed; seed ``s`` seeds the agents' weights, the training lists and (offset) the test
            lists of one repetition.
        seeds: repetitions of the whole study, with seeds ``seed, seed + 1, ...`` (5 in the thesis).
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
        reward_arms: rewards of the controllers trained by reward (``"terminal"``, ``"shaped"``; empty: none).
        reward_seconds: time budget of each controller trained by reward (``None``: until the criterion).
        reward_entropy: weight of their entropy bonus.
        reward_shaping: weight of the shaping rewards of the ``"shaped"`` arm.
    """

    quick: bool = False
    seed: int = 0
    seeds: int = PAPER_SEEDS
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
    reward_arms: tuple[str, ...] = EPISODE_REWARDS
    reward_seconds: float | None = 1800.0
    reward_entropy: float = 0.05
    reward_shaping: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.criterion, dict):
            self.criterion = Criterion.from_dict(self.criterion)
        self.reward_arms = tuple(self.reward_arms)
        if len(set(self.reward_arms)) != len(self.reward_arms) or set(self.reward_arms) - set(EPISODE_REWARDS):
            raise ConfigError(f"reward_arms must be distinct rewards from {EPISODE_REWARDS}, got {self.reward_arms!r}")
        for name in ("reward_entropy", "reward_shaping"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_train_length < 3:
            raise ConfigError(
                f"max_train_length must be >= 3 (movb and retb need lists of 3), got {self.max_train_length}"
            )
        if self.max_test_length < self.max_train_length:
            raise ConfigError(
                f"max_test_length must be >= max_train_length ({self.max_train_length}), got {self.max_test_length}"
            )
        check_ints(self, "seeds", "hidden", "batch_size", "n_test_per_length", "max_steps")
        if self.workers is not None:
            check_ints(self, "workers")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"noise must be in [0, 1), got {self.noise!r}")
        for name in ("monolithic_seconds", "module_seconds", "reward_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 or None, got {value!r}")

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> Config:
        if quick:
            # lists up to 3: both regimes reach the criterion in about two minutes on two cores
            return cls(quick=True, seed=seed, seeds=1, max_train_length=3, max_test_length=8, n_test_per_length=50,
                       monolithic_seconds=240.0, module_seconds=90.0, reward_seconds=25.0)
        return cls(seed=seed)

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the repetitions."""
        return [self.seed + i for i in range(self.seeds)]

    def training(self, seconds: float | None, seed: int) -> AgentTrainingConfig:
        """The training settings of one run."""
        return AgentTrainingConfig(batch_size=self.batch_size, max_size=self.max_train_length, max_steps=self.max_steps,
                                   max_seconds=seconds, seed=seed, criterion=self.criterion)

    def by_reward(self, reward: str, seed: int) -> ControlReinforceConfig:
        """The settings of a controller trained by reward (the curriculum, criterion and limits of the others)."""
        return ControlReinforceConfig(training=self.training(self.reward_seconds, seed), reward=reward,
                                      entropy=self.reward_entropy, shaping=self.reward_shaping)


class SeedRun(NamedTuple):
    """One repetition of the study.

    Attributes:
        seed: its seed.
        monolithic: the end-to-end training.
        sequential: the modules trained one after another.
        parallel: the same trainings in worker processes (timing only; these modules are not evaluated).
        accuracy: regime (``"monolithic"``, ``"modular"``, ``"reward_terminal"``, ...) -> ``"solved"`` /
            ``"sorted"`` -> length -> accuracy.
        reward: reward (``"terminal"``, ``"shaped"``) -> the training of a controller by that reward.
    """

    seed: int
    monolithic: TrainResult
    sequential: StageRun
    parallel: StageRun
    accuracy: dict[str, dict[str, dict[int, float]]]
    reward: dict[str, TrainResult]


def modular_jobs(agent: Agent, config: Config, seed: int, *, run: RunDir | None = None) -> list[ModuleJob]:
    """One independent training per operator, and one for the control module (logged and checkpointed in
    ``run`` under each module's name)."""
    noise = partial(augment_sorting, level=config.noise) if config.noise > 0 else None
    run = run if run is not None else RunDir(progress=False)
    jobs = [
        ModuleJob(op.name, op, partial(train_operator, action=k, traces=sorting_traces, noise=noise,
                                       config=config.training(config.module_seconds, seed + k + 1), run=run))
        for k, op in enumerate(agent.operators)
    ]
    jobs.append(ModuleJob("control", agent.control, partial(
        train_control, traces=sorting_traces, noise=noise,
        config=config.training(config.module_seconds, seed + len(jobs) + 1), run=run)))
    return jobs


def train_by_reward(modular: Agent, config: Config, seed: int, reward: str, run: RunDir) -> tuple[Agent, TrainResult]:
    """A fresh control module trained by ``reward`` with the operators of ``modular`` (trained from traces)
    fixed; returns the agent that drives them with it, and its training."""
    torch.manual_seed(seed)
    agent = sorting_agent(operators=list(modular.operators), control=sorting_control(hidden=config.hidden))
    result = train_control_by_reward(agent, episodes=sorting_episodes, config=config.by_reward(reward, seed + 100),
                                     potential=sorting_potential, run=run, name=f"control_{reward}")
    return agent, result


@torch.no_grad()
def evaluate(agent: Agent, config: Config, seed: int) -> dict[str, dict[int, float]]:
    """Free-running success by list length on fresh lists: the agent stopped with ``eop`` on the target
    state (sorted list, both pointers on the last digit); also how often the list alone ended sorted.

    Lists of length ``L`` sit on a tape of ``max(L, max_train_length)`` positions: in training a batch's tape
    is as wide as its longest list, so shorter lists were seen followed by null positions."""
    gen = torch.Generator().manual_seed(seed + 10_000)
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


def run_seed(config: Config, seed: int, run: RunDir) -> SeedRun:
    """One repetition: train both regimes (the modular one sequentially and in parallel) and evaluate."""
    torch.manual_seed(seed)
    monolithic = sorting_agent(hidden=config.hidden)
    mono = train_agent_end_to_end(monolithic, traces=sorting_traces, config=config.training(config.monolithic_seconds,
                                                                                              seed),
                                  run=run, name="monolithic")

    torch.manual_seed(seed)
    modular = sorting_agent(hidden=config.hidden)
    jobs = ModuleJobs(modular_jobs(modular, config, seed, run=run.sub("modular")))
    sequential = run_stages([jobs.names], jobs, collect=jobs.collect, progress=False)
    torch.manual_seed(seed)
    jobs = ModuleJobs(modular_jobs(sorting_agent(hidden=config.hidden), config, seed,
                                   run=run.sub("modular_parallel").quiet()))
    parallel = run_stages([jobs.names], jobs, collect=jobs.collect, backend="processes", workers=config.workers,
                          progress=False)
    accuracy = {"monolithic": evaluate(monolithic, config, seed), "modular": evaluate(modular, config, seed)}
    rewarded = {}
    for reward in config.reward_arms:
        agent, rewarded[reward] = train_by_reward(modular, config, seed, reward, run.sub("reward"))
        accuracy[f"reward_{reward}"] = evaluate(agent, config, seed)
    return SeedRun(seed, mono, sequential, parallel, accuracy, rewarded)


def run(config: Config, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Report:
    """Train both regimes once per seed, evaluate by list length, write plots, logs and checkpoints into
    ``out_dir`` (one ``seedS`` folder of logs and checkpoints per seed); return the report (``resume=True``:
    continue every training from its checkpoints; their time budgets count the time already spent)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    rundir = RunDir(out, resume=resume, progress=progress)
    runs = [run_seed(config, seed, rundir.sub(f"seed{seed}")) for seed in config.seed_list]
    figures = _plots(out, config, runs)
    metrics = _metrics(config, runs, time.perf_counter() - t0)
    return _report(config, metrics, runs, figures)


# ---------------------------------------------------------------------------------------------- measures
def _modular_seconds(run: StageRun) -> float:
    """The modules' own training times, summed (as the monolithic time, a resumed training counts the time it
    spent before the restart)."""
    return sum(r.seconds for r in run.results.values())


def _mean_grad(result: TrainResult) -> float:
    values = [r["grad_abs"] for r in result.history if "grad_abs" in r]
    return sum(values) / len(values) if values else math.nan


def _variability(result: TrainResult) -> float:
    """Mean absolute change of the logged training error rate between consecutive logs (how jumpy the error
    curve of Fig. 3.7 is)."""
    errors = [r["error"] for r in result.history if "error" in r]
    if len(errors) < 2:
        return math.nan
    return sum(abs(b - a) for a, b in zip(errors, errors[1:], strict=False)) / (len(errors) - 1)


def _decision_criterion_steps(result: TrainResult, max_error: float) -> float:
    """Steps the control module would have trained had each level ended when the fraction of wrong selections
    (not of wrong traces) was at most ``max_error`` in two consecutive logs: the sum over levels of the steps
    up to that point (a level where it never happened counts whole). An estimate from one run's logs."""
    rows = [r for r in result.history if "decision_error" in r and "size" in r]
    if not rows:
        return math.nan
    total, start = 0, 0
    for size in sorted({int(r["size"]) for r in rows}):
        level = [r for r in rows if int(r["size"]) == size]
        hit = next((b["step"] for a, b in zip(level, level[1:], strict=False)
                    if (a["decision_error"] + b["decision_error"]) / 2 <= max_error), level[-1]["step"])
        total += hit - start
        start = level[-1]["step"]
    return float(total)


def _level_end_steps(result: TrainResult) -> dict[str, int]:
    """Curriculum level -> the last logged step at that level (where a level ended, to the logging interval)."""
    ends: dict[str, int] = {}
    for row in result.history:
        if "size" in row:
            ends[str(int(row["size"]))] = int(row["step"])
    return ends


def _span(acc: dict[int, float], lo: int, hi: int) -> float:
    values = [a for n, a in acc.items() if lo <= n <= hi]
    return sum(values) / len(values) if values else math.nan


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
        "error_variability": _variability(result),
    }


def _seed_metrics(config: Config, r: SeedRun) -> dict:
    seq_seconds = _modular_seconds(r.sequential)
    lt, lmax = config.max_train_length, config.max_test_length
    return {
        "seed": r.seed,
        "train_seconds_monolithic": r.monolithic.seconds,
        "train_seconds_modular_sequential": seq_seconds,
        "train_seconds_modular_parallel": r.parallel.timings.wall_seconds,
        "speedup": r.monolithic.seconds / seq_seconds,
        "speedup_parallel": r.monolithic.seconds / r.parallel.timings.wall_seconds,
        "criterion_met": {"monolithic": r.monolithic.met_criterion,
                          "modular_sequential": all(m.met_criterion for m in r.sequential.results.values()),
                          "modular_parallel": all(m.met_criterion for m in r.parallel.results.values())},
        "parallel_workers": r.parallel.workers,
        "parallel_start_method": r.parallel.start_method,
        "monolithic": _run_metrics(r.monolithic),
        "modular_sequential": {k: _run_metrics(m) for k, m in r.sequential.results.items()},
        "modular_parallel": {k: _run_metrics(m) for k, m in r.parallel.results.items()},
        "control_steps_per_decision_criterion": _decision_criterion_steps(r.sequential.results["control"],
                                                                          config.criterion.max_error),
        "solved_trained_lengths": {k: _span(v["solved"], 2, lt) for k, v in r.accuracy.items()},
        "solved_longer_lengths": {k: _span(v["solved"], lt + 1, lmax) for k, v in r.accuracy.items()},
        "reward": {k: {**_run_metrics(m), "level_end_steps": _level_end_steps(m)} for k, m in r.reward.items()},
        "accuracy_by_length": {k: {str(n): a for n, a in v["solved"].items()} for k, v in r.accuracy.items()},
        "sorted_by_length": {k: {str(n): a for n, a in v["sorted"].items()} for k, v in r.accuracy.items()},
    }


def _mean_trace_steps(config: Config) -> float:
    """Mean selection-sort trace length (steps, eop included) at the curriculum's last level."""
    trace = sorting_traces(512, config.max_train_length, torch.Generator().manual_seed(config.seed + 20_000))
    return float(trace.steps.float().mean())


def _metrics(config: Config, runs: list[SeedRun], wall: float) -> dict:
    per_seed = [_seed_metrics(config, r) for r in runs]
    modules = list(runs[0].sequential.results)

    def over(fn) -> Spread:
        return spread([fn(m) for m in per_seed])

    module_stats = {}
    for name in modules:
        results = [r.sequential.results[name] for r in runs]
        module_stats[name] = {
            "seconds": spread([m.seconds for m in results]).to_dict(),
            "steps": spread([m.steps for m in results]).to_dict(),
            "ms_per_step": spread([1000 * m.seconds / max(1, m.steps) for m in results]).to_dict(),
            "share_of_modular_seconds": spread([m.seconds / _modular_seconds(r.sequential)
                                                for m, r in zip(results, runs, strict=True)]).to_dict(),
            "met_criterion": sum(m.met_criterion for m in results),
            "mean_abs_gradient": spread([_mean_grad(m) for m in results]).to_dict(),
            "error_variability": spread([_variability(m) for m in results]).to_dict(),
        }
    mono_seconds = over(lambda m: m["train_seconds_monolithic"])
    seq_seconds = over(lambda m: m["train_seconds_modular_sequential"])
    return {
        "seeds": config.seed_list,
        "per_seed": per_seed,
        "train_seconds": {"monolithic": mono_seconds.to_dict(), "modular_sequential": seq_seconds.to_dict(),
                          "modular_parallel": over(lambda m: m["train_seconds_modular_parallel"]).to_dict()},
        "speedup": over(lambda m: m["speedup"]).to_dict(),
        "speedup_parallel": over(lambda m: m["speedup_parallel"]).to_dict(),
        "speedup_of_mean_times": mono_seconds.mean / seq_seconds.mean,
        "criterion_met": {k: sum(m["criterion_met"][k] for m in per_seed)
                          for k in ("monolithic", "modular_sequential", "modular_parallel")},
        "steps": {"monolithic": over(lambda m: m["monolithic"]["steps"]).to_dict(),
                  "modular_sequential": over(lambda m: sum(v["steps"] for v in m["modular_sequential"].values())
                                             ).to_dict()},
        "modules": module_stats,
        "monolithic": {"mean_abs_gradient": over(lambda m: m["monolithic"]["mean_abs_gradient"]).to_dict(),
                       "error_variability": over(lambda m: m["monolithic"]["error_variability"]).to_dict()},
        "control_steps_per_decision_criterion": over(lambda m: m["control_steps_per_decision_criterion"]).to_dict(),
        "mean_trace_steps_at_longest_training_lists": _mean_trace_steps(config),
        "reward": {k: _reward_stats([r.reward[k] for r in runs]) for k in config.reward_arms},
        "solved_trained_lengths": {k: over(lambda m, k=k: m["solved_trained_lengths"][k]).to_dict()
                                   for k in _regimes(runs)},
        "solved_longer_lengths": {k: over(lambda m, k=k: m["solved_longer_lengths"][k]).to_dict()
                                  for k in _regimes(runs)},
        "solved_by_length": {k: {str(n): s.to_dict() for n, s in _solved(runs, k).items()}
                             for k in _regimes(runs)},
        "experiment_seconds": wall,
    }


def _regimes(runs: list[SeedRun]) -> list[str]:
    """The evaluated agents: ``monolithic``, ``modular``, then ``reward_R`` for each reward arm."""
    return list(runs[0].accuracy)


def _reward_stats(results: list[TrainResult]) -> dict:
    """Time, steps, how training ended and the last logged sampled-episode figures of one reward arm."""
    last = [r.history[-1] if r.history else {} for r in results]
    return {
        "seconds": spread([r.seconds for r in results]).to_dict(),
        "steps": spread([r.steps for r in results]).to_dict(),
        "met_criterion": sum(r.met_criterion for r in results),
        "reached_length": spread([r.size for r in results]).to_dict(),
        "stop_reasons": sorted({r.stop_reason for r in results}),
        "last_solved_sampled": spread([row.get("solved", math.nan) for row in last]).to_dict(),
        "last_entropy": spread([row.get("entropy", math.nan) for row in last]).to_dict(),
    }


def _solved(runs: list[SeedRun], regime: str) -> dict[int, Spread]:
    return spread_by([r.accuracy[regime]["solved"] for r in runs])


# ---------------------------------------------------------------------------------------------- figures
def _plots(out: Path, config: Config, runs: list[SeedRun]) -> list[str]:
    modules = list(runs[0].sequential.results)
    histories = {"monolithic": [r.monolithic.history for r in runs],
                 **{f"modular: {k}": [r.sequential.results[k].history for r in runs] for k in modules}}
    figures = ["convergence_times.png", "error_vs_time.png", "error_vs_steps.png", "gradients.png",
               "module_loss.png", "accuracy_by_length.png"]
    plot_spreads({"monolithic": spread([r.monolithic.seconds for r in runs]),
                  "modular, sequential": spread([_modular_seconds(r.sequential) for r in runs]),
                  "modular, parallel": spread([r.parallel.timings.wall_seconds for r in runs]),
                  **{f"module {k}": spread([r.sequential.results[k].seconds for r in runs]) for k in modules}},
                 out / figures[0], ylabel="training time (s)", logy=True,
                 title="Convergence times (Fig. 3.6; bars: mean, dots: seeds)")
    plot_training_curves(histories, out / figures[1], x="seconds", y="error", logx=True, smooth=5,
                         title="Training error rate against time (Fig. 3.7 top)",
                         ylabel="error rate (training batches)")
    plot_training_curves(histories, out / figures[2], x="step", y="error", logx=True, smooth=5,
                         title="Training error rate against steps (Fig. 3.7 bottom)",
                         ylabel="error rate (training batches)")
    plot_training_curves(histories, out / figures[3], x="step", y="grad_abs", logy=True, smooth=5,
                         title="Mean absolute gradient per parameter (Fig. 3.8)", ylabel="mean |gradient|")
    plot_training_curves({k: v for k, v in histories.items() if k != "monolithic"}, out / figures[4], x="step",
                         y="loss", logy=True, smooth=5, title="Training loss of each module (Fig. 3.9)",
                         ylabel="training loss")
    plot_error_curves({k: _solved(runs, k) for k in _regimes(runs)}, out / figures[5],
                      xlabel="list length",
                      title=f"Free-running error by list length (Fig. 3.10; trained up to {config.max_train_length})",
                      trained_up_to=config.max_train_length)
    if config.reward_arms:
        figures.append("reward_training.png")
        plot_training_curves({f"by reward: {k}": [r.reward[k].history for r in runs] for k in config.reward_arms},
                             out / figures[-1], x="step", y="solved", smooth=5,
                             title="Controller trained by reward: solved fraction of the sampled training episodes",
                             ylabel="solved (sampled episodes)")
    return figures


# ---------------------------------------------------------------------------------------------- report
def _first_below(acc: dict[int, Spread], level: float) -> str:
    for n in sorted(acc):
        if acc[n].mean < level:
            return str(n)
    return f"> {max(acc)}"


def _report(config: Config, metrics: dict, runs: list[SeedRun], figures: list[str]) -> Report:
    lt, lmax, n = config.max_train_length, config.max_test_length, len(runs)
    times, met = metrics["train_seconds"], metrics["criterion_met"]
    modules = list(runs[0].sequential.results)
    workers = runs[0].parallel.workers
    ended = {
        "monolithic": sorted({r.monolithic.stop_reason for r in runs}),
        "modular": sorted({m.stop_reason for r in runs for m in r.sequential.results.values()}),
        "parallel": sorted({m.stop_reason for r in runs for m in r.parallel.results.values()}),
    }
    headline = ("Mean ± standard deviation over the seeds.\n\n" if n > 1 else "") + markdown_table(
        ["regime", "training time", "steps", "seeds that met the criterion", "how training ended",
         f"solved, lengths 2-{lt}", f"solved, lengths {lt + 1}-{lmax}"],
        [("monolithic (end to end)", _s(times["monolithic"], "{:.1f}", unit=" s"), _s(metrics["steps"]["monolithic"],
                                                                                     "{:.0f}"),
          f"{met['monolithic']} of {n}", ", ".join(ended["monolithic"]),
          _s(metrics["solved_trained_lengths"]["monolithic"], percent=True),
          _s(metrics["solved_longer_lengths"]["monolithic"], percent=True)),
         ("modular, sequential (sum of modules)", _s(times["modular_sequential"], "{:.1f}", unit=" s"),
          _s(metrics["steps"]["modular_sequential"], "{:.0f}"), f"{met['modular_sequential']} of {n}",
          ", ".join(ended["modular"]), _s(metrics["solved_trained_lengths"]["modular"], percent=True),
          _s(metrics["solved_longer_lengths"]["modular"], percent=True)),
         (f"modular, parallel ({workers} processes, measured wall time)",
          _s(times["modular_parallel"], "{:.1f}", unit=" s"), "", f"{met['modular_parallel']} of {n}",
          ", ".join(ended["parallel"]), "(not evaluated)", "")])

    mods = metrics["modules"]
    module_table = markdown_table(
        ["module", "steps", "training time", "ms per step", "share of the modular time", "seeds that met the criterion",
         "mean abs. gradient", "error variability"],
        [(k, _s(mods[k]["steps"], "{:.0f}"), _s(mods[k]["seconds"], "{:.1f}", unit=" s"), _s(mods[k]["ms_per_step"],
                                                                                        "{:.1f}"),
          _s(mods[k]["share_of_modular_seconds"], percent=True), f"{mods[k]['met_criterion']} of {n}",
          _s(mods[k]["mean_abs_gradient"], "{:.2e}"), _s(mods[k]["error_variability"], "{:.3f}")) for k in modules]
        + [("monolithic (for comparison)", _s(metrics["steps"]["monolithic"], "{:.0f}"),
            _s(times["monolithic"], "{:.1f}", unit=" s"),
            spread([1000 * r.monolithic.seconds / max(1, r.monolithic.steps) for r in runs]).format("{:.1f}"), "",
            f"{met['monolithic']} of {n}", _s(metrics["monolithic"]["mean_abs_gradient"], "{:.2e}"),
            _s(metrics["monolithic"]["error_variability"], "{:.3f}"))])
    module_table += ("\n\nError variability: the mean absolute change of the logged training error rate between "
                     "consecutive logs (every 10 steps), a measure of how jumpy the curves of Fig. 3.7 are.")

    control = _control_section(config, metrics)
    comparison = _comparison(config, metrics, runs)
    solved = {k: _solved(runs, k) for k in _regimes(runs)}
    length_table = markdown_table(
        ["list length", *(f"{_regime_name(k)}: solved" for k in solved)],
        [(length, *(v[length].format(percent=True) for v in solved.values()))
         for length in sorted(solved["monolithic"])])
    curve_summary = markdown_table(
        ["regime", "mean accuracy first below 90 % at length", "mean accuracy first 0 at length"],
        [(_regime_name(k), _first_below(v, 0.9), _first_below(v, 1e-9)) for k, v in solved.items()])

    speedup = metrics["speedup"]
    summary = (
        f"Two list-sorting agents with the thesis architecture (LSTMs of {config.hidden} units; swap a bidirectional "
        f"LSTM with a softmax over ten digits and a null class; pointer operators with sigmoid outputs; an LSTM "
        f"digestor and an LSTM controller) were trained on selection-sort traces of random lists with a curriculum "
        f"up to length {lt} ({'quick mode' if config.quick else 'full mode'}, {n} seed{'s' if n > 1 else ''}: "
        f"{', '.join(map(str, config.seed_list))}): one end to end through the unrolled loop, the other module by "
        f"module with input noise (eq. 3.1 / 3.2, level {config.noise}). Monolithic training took "
        f"{_s(times['monolithic'], '{:.0f}', unit=' s')}, modular training "
        f"{_s(times['modular_sequential'], '{:.0f}', unit=' s')} when the modules run one after another and "
        f"{_s(times['modular_parallel'], '{:.0f}', unit=' s')} measured with "
        f"{workers} worker processes: a speed-up of {_s(speedup, '{:.1f}', unit='x')} per seed (thesis: about "
        f"{PAPER_SPEEDUP:.0f}x). The monolithic run met its criterion in {met['monolithic']} of {n} seeds, the "
        f"modular one (every module) in {met['modular_sequential']} of {n}."
        + (" With one seed there is no spread: the full run repeats the study over five seeds." if n == 1 else "")
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
        f"modules' measured times; the parallel time is measured from starting the {workers} worker "
        f"processes (one thread each) to the last result. Budgets: "
        f"monolithic {_budget(config.monolithic_seconds)}, each module {_budget(config.module_seconds)}, at most "
        f"{config.max_steps} steps per run. Evaluation: "
        f"{config.n_test_per_length} fresh random lists per length 2-{lmax} (a different random stream from "
        f"training), each agent running freely (its own selections, soft representation, written to the "
        f"environment after every step) until eop or {lmax}^2 - 1 + {lmax} steps on the longest; solved = "
        f"stopped with eop, list sorted, both pointers on the last digit. A test list of length L sits on a tape "
        f"of max(L, {lt}) positions, as in training, where a batch's tape is as wide as its longest list and "
        f"shorter lists are followed by null positions. Every figure is mean ± sample standard deviation over the "
        f"seeds; the per-seed values are in `metrics.json` (`per_seed`). TensorBoard logs: `tensorboard/seedS/`."
    )
    departures = "\n".join(f"- {d}" for d in [
        "Gradient norm clipped at 1.0 in both regimes (the thesis does not say).",
        f"A time budget caps each run (monolithic {_budget(config.monolithic_seconds)}, each module "
        f"{_budget(config.module_seconds)}); a run stopped on it is reported as such and its time is a lower bound.",
        "The control module's error counts a trace wrong when any of its selections is; the thesis does not say "
        "whether its error rate counts traces or selections (the section above estimates the other reading).",
        "Input noise (eq. 3.1 / 3.2) also reaches the control module's digestor; the thesis adds it to "
        "\"modules' inputs\" without naming which.",
        f"Lists up to length {lt} in training ({'quick mode; ' if config.quick else ''}7 in the thesis) and "
        f"{n} seed{'s' if n > 1 else ''} ({PAPER_SEEDS} in the thesis).",
    ])
    return Report(
        name="sorting",
        title="List sorting: monolithic vs modular training of a perception-action agent",
        summary=summary,
        headline=headline,
        sections=[
            ("Against the thesis", comparison),
            ("Modules", module_table),
            ("Why the control module dominates the modular time", control),
            *([("Controller trained by reward (thesis 5.3)", _reward_section(config, metrics, runs))]
              if config.reward_arms else []),
            ("Accuracy by list length (Fig. 3.10)", curve_summary + "\n\n" + length_table),
            ("Departures from the thesis", departures),
            ("Set-up", setup),
        ],
        metrics=metrics,
        figures=figures,
        config=config,
    )


def _regime_name(key: str) -> str:
    return f"controller by reward ({key.removeprefix('reward_')})" if key.startswith("reward_") else key


def _reward_section(config: Config, metrics: dict, runs: list[SeedRun]) -> str:
    lt, lmax, n = config.max_train_length, config.max_test_length, len(runs)
    ctrl = metrics["modules"]["control"]
    rows = [("trace-trained (modular control module)", "selection-sort traces (cross-entropy)",
             _s(ctrl["seconds"], "{:.1f}", unit=" s"), _s(ctrl["steps"], "{:.0f}"), f"{ctrl['met_criterion']} of {n}",
             ", ".join(sorted({r.sequential.results["control"].stop_reason for r in runs})),
             _s(metrics["solved_trained_lengths"]["modular"], percent=True),
             _s(metrics["solved_longer_lengths"]["modular"], percent=True))]
    for arm in config.reward_arms:
        m, key = metrics["reward"][arm], f"reward_{arm}"
        source = ("sorted-or-not at the episode's end" if arm == "terminal"
                  else f"sorted-or-not + {config.reward_shaping:g} x inversions removed per step")
        rows.append((f"by reward ({arm})", f"REINFORCE: {source}", _s(m["seconds"], "{:.1f}", unit=" s"),
                     _s(m["steps"], "{:.0f}"), f"{m['met_criterion']} of {n}", ", ".join(m["stop_reasons"]),
                     _s(metrics["solved_trained_lengths"][key], percent=True),
                     _s(metrics["solved_longer_lengths"][key], percent=True)))
    table = markdown_table(["controller", "learns from", "training time", "steps", "seeds that met the criterion",
                            "how training ended", f"solved, lengths 2-{lt}", f"solved, lengths {lt + 1}-{lmax}"], rows)
    levels = markdown_table(
        ["controller", "curriculum level reached (mean)", "level -> last step trained at it (first seed)",
         "solved, sampled training episodes (last log)", "policy entropy per step (last log, nats)"],
        [(f"by reward ({arm})", _s(metrics["reward"][arm]["reached_length"], "{:.1f}"),
          ", ".join(f"{k}: {v}" for k, v in metrics["per_seed"][0]["reward"][arm]["level_end_steps"].items()),
          _s(metrics["reward"][arm]["last_solved_sampled"], percent=True),
          _s(metrics["reward"][arm]["last_entropy"], "{:.2f}")) for arm in config.reward_arms])
    setup = (
        f"Each controller trained by reward is a fresh control module (LSTM digestor and controller, {config.hidden} "
        f"units) driving the modular agent's operators, trained from traces and then fixed (the same operators "
        f"the trace-trained controller drives). It learns by REINFORCE (`modnets.train.train_control_by_reward`): "
        f"{config.batch_size} fresh lists per step rolled out through the agent's loop with actions sampled from "
        f"its softmax, every step written to the environment and read back; reward 1 at the end of an episode "
        f"that stopped with eop on the target state, 0 otherwise; the shaped arm adds, at every step, "
        f"{config.reward_shaping:g} x the change of minus the normalised inversion count (a potential, so the "
        f"shaping sums to the inversions removed over the episode). Return-to-go minus a moving-average baseline "
        f"(decay 0.9), entropy bonus {config.reward_entropy:g}, Adam {1e-3}, gradient norm clipped at 1.0, the "
        f"curriculum and criterion of the other runs with the error rate of the sampled episodes (not solved), a "
        f"budget of {_budget(config.reward_seconds)} and at most {config.max_steps} steps. Evaluated like the "
        f"other agents: greedy (argmax) selections on fresh lists.")
    return "\n\n".join([table, levels, _reward_verdict(config, metrics), setup])


def _reward_verdict(config: Config, metrics: dict) -> str:
    lt = config.max_train_length
    trace = metrics["solved_trained_lengths"]["modular"]["mean"]
    parts = []
    for arm in config.reward_arms:
        m = metrics["reward"][arm]
        solved = metrics["solved_trained_lengths"][f"reward_{arm}"]["mean"]
        reached = m["reached_length"]["mean"]
        if m["met_criterion"]:
            how = f"met the criterion up to length {lt} in {m['met_criterion']} seed(s)"
        else:
            how = (f"did not meet the criterion within its budget: it reached curriculum level {reached:.0f} of "
                   f"{lt} ({', '.join(m['stop_reasons'])})")
        parts.append(f"Trained by the {arm} reward, the controller {how}; it solved "
                     f"{percent(m['last_solved_sampled']['mean'])} of its last logged batch of sampled training "
                     f"episodes, and {percent(solved)} of the test lists of lengths 2-{lt} (greedy), against "
                     f"{percent(trace)} for the trace-trained controller on the same operators.")
    if any(metrics["reward"][arm]["reached_length"]["mean"] < lt for arm in config.reward_arms):
        parts.append(f"A controller that never left a level below {lt} trained only on tapes as wide as its lists; "
                     f"the test puts a list of length L on a tape of max(L, {lt}) positions, so it meets the null "
                     f"positions after a short list for the first time at test, which is where its training and "
                     f"test figures part.")
    return " ".join(parts)


def _control_section(config: Config, metrics: dict) -> str:
    mods = metrics["modules"]
    operators = [k for k in mods if k != "control"]
    ctrl = mods["control"]
    op_ms = sum(mods[k]["ms_per_step"]["mean"] for k in operators) / len(operators)
    steps = metrics["mean_trace_steps_at_longest_training_lists"]
    per_decision = metrics["control_steps_per_decision_criterion"]
    return (
        f"The control module took {_s(ctrl['share_of_modular_seconds'], percent=True)} of the sequential modular "
        f"time. It needed {_s(ctrl['steps'], '{:.0f}')} steps, against "
        + ", ".join(f"{k} {_s(mods[k]['steps'], '{:.0f}')}" for k in operators)
        + f"; but each of its steps cost {_s(ctrl['ms_per_step'], '{:.1f}', unit=' ms')} against {op_ms:.1f} ms on "
        f"average "
        f"for an operator step. The reason is what one step reads: an operator step fits {config.batch_size} "
        f"transitions, each one pass over a tape of at most {config.max_train_length} positions; a control step "
        f"digests every R(t) of {config.batch_size} whole traces, {steps:.1f} steps long on average at lists up to "
        f"{config.max_train_length} (selection sort takes O(L^2) steps), so its digestor LSTM reads about "
        f"{steps:.0f} times as many positions per step, then the controller LSTM runs along each trace. Its "
        f"criterion is also strict: a trace counts wrong when any of its selections is. Had each level ended when "
        f"the fraction of wrong selections was <= {percent(config.criterion.max_error)} instead (estimated from "
        f"the logged `decision_error`), the control module would have trained {_s(per_decision, '{:.0f}')} steps "
        f"instead of {_s(ctrl['steps'], '{:.0f}')}. The thesis reports that the control module \"converges sooner\" "
        f"than the operators in steps (Fig. 3.9), not in time."
    )


def _comparison(config: Config, metrics: dict, runs: list[SeedRun]) -> str:
    n = len(runs)
    mods = metrics["modules"]
    mono_var = metrics["monolithic"]["error_variability"]
    rows = [
        ("wall time, monolithic / modular (sequential)", f"about {PAPER_SPEEDUP:.0f}x (one order of magnitude)",
         _s(metrics["speedup"], "{:.1f}", unit="x")
         + ("" if n == 1 else f" (ratio of the mean times {metrics['speedup_of_mean_times']:.1f}x)")),
        ("wall time, monolithic / modular (parallel)", "shorter still (not measured)",
         _s(metrics["speedup_parallel"], "{:.1f}", unit="x")),
        ("training steps", "modular needs more steps",
         f"monolithic {_s(metrics['steps']['monolithic'], '{:.0f}')}, modular "
         f"{_s(metrics['steps']['modular_sequential'], '{:.0f}')} in total"),
        ("mean absolute gradient per parameter", "larger and more variable in the monolithic case",
         f"monolithic {_s(metrics['monolithic']['mean_abs_gradient'], '{:.2e}')}; modules "
         + ", ".join(f"{k} {mods[k]['mean_abs_gradient']['mean']:.2e}" for k in mods)),
        ("error rate during training", "modular error rates less variable",
         f"variability monolithic {_s(mono_var, '{:.3f}')}; modules "
         + ", ".join(f"{k} {mods[k]['error_variability']['mean']:.3f}" for k in mods)),
        (f"solved, lists longer than {config.max_train_length}", "monolithic generalises better",
         f"monolithic {_s(metrics['solved_longer_lengths']['monolithic'], percent=True)}, modular "
         f"{_s(metrics['solved_longer_lengths']['modular'], percent=True)}"),
    ]
    return markdown_table(["measure", "thesis (ch. 3)", "this run"], rows) + "\n\n" + _verdict(config, metrics, runs)


def _budget(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds:g} s"


def _verdict(config: Config, metrics: dict, runs: list[SeedRun]) -> str:
    n = len(runs)
    met = metrics["criterion_met"]
    speed = Spread.from_dict(metrics["speedup"])
    parts = []
    if met["monolithic"] < n or met["modular_sequential"] < n:
        parts.append(f"Not every run reached its criterion (monolithic {met['monolithic']} of {n} seeds, modular "
                     f"{met['modular_sequential']} of {n}): where a run stopped on its budget its time is a lower "
                     f"bound, and the speed-up of that seed is not a ratio of times to criterion.")
    if speed.n:
        if speed.low > 1:
            parts.append(f"Modular training reached its criterion faster than monolithic training in every seed, as "
                         f"in the thesis, by {speed.format('{:.1f}', unit='x', count=True)} (thesis: about "
                         f"{PAPER_SPEEDUP:.0f}x).")
        elif speed.high < 1:
            parts.append("Modular training was slower than monolithic training in every seed, unlike the thesis.")
        else:
            parts.append(f"The speed-up ({speed.format('{:.1f}', unit='x')}) is above 1 in some seeds and below in "
                         f"others: "
                         f"no consistent direction.")
    mono_var = metrics["monolithic"]["error_variability"]["mean"]
    calmer = [k for k, m in metrics["modules"].items() if m["error_variability"]["mean"] < mono_var]
    parts.append(f"The error curve was less jumpy than the monolithic one for {len(calmer)} of "
                 f"{len(metrics['modules'])} modules" + (f" ({', '.join(calmer)})." if calmer else "."))
    gen = {k: metrics["solved_longer_lengths"][k] for k in ("monolithic", "modular")}
    diff = gen["monolithic"]["mean"] - gen["modular"]["mean"]
    noise = max(gen["monolithic"]["std"], gen["modular"]["std"])
    if math.isnan(diff):
        pass
    elif n > 1 and abs(diff) <= noise:
        parts.append(f"On lists longer than {config.max_train_length} the two regimes differ by less than the seed "
                     f"spread ({percent(abs(diff))} against {percent(noise)}): no result.")
    elif diff > 0:
        parts.append(f"On lists longer than {config.max_train_length} the monolithic agent did better, as in the "
                     f"thesis.")
    elif diff < 0:
        parts.append(f"On lists longer than {config.max_train_length} the modular agent did better, unlike the thesis "
                     f"(which found the monolithic agent degrading more slowly).")
    else:
        parts.append(f"On lists longer than {config.max_train_length} both agents solved "
                     f"{percent(gen['monolithic']['mean'])}.")
    return " ".join(parts)
