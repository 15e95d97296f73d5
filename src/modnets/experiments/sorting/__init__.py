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
same curriculum, alone or with the top-K buffer of the best episodes found so far (``"terminal+buffer"``:
priority-queue training); it sits in the report beside the trace-trained controller, which drives the same
operators.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch

from ..._checks import check_ints
from ..._config import Config as ConfigBase
from ...agents import Agent
from ...analysis import (
    Spread,
    accuracy_by,
    plot_error_curves,
    plot_spreads,
    plot_training_curves,
    spread,
)
from ...data import (
    OPERATIONS,
    SortingEnvironment,
    SortingInterface,
    augment_sorting,
    sample_lists,
    selection_sort_trace,
    sorting_episodes,
    sorting_potential,
    sorting_traces,
)
from ...errors import ConfigError
from ...models import sorting_agent, sorting_control
from ...train import (
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
from .._report import Report
from ._text import PAPER_SEEDS, regimes, report, solved_by_length

__all__ = ["REWARD_ARMS", "Config", "SeedRun", "run"]

#: The controllers trained by reward the study can run: a reward alone (REINFORCE) or with the episode buffer.
REWARD_ARMS = (*EPISODE_REWARDS, *(f"{reward}+buffer" for reward in EPISODE_REWARDS))


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
        reward_arms: the controllers trained by reward, from :data:`REWARD_ARMS` (empty: none): a reward
            (``"terminal"``, ``"shaped"``), alone (REINFORCE) or with ``"+buffer"`` (REINFORCE plus the top-K
            buffer of the best episodes, priority-queue training).
        reward_buffer: K, the episodes the ``"+buffer"`` arms keep and replay.
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
    reward_arms: tuple[str, ...] = ("terminal", "shaped", "terminal+buffer")
    reward_buffer: int = 64
    reward_seconds: float | None = 1800.0
    reward_entropy: float = 0.05
    reward_shaping: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.criterion, dict):
            self.criterion = Criterion.from_dict(self.criterion)
        self.reward_arms = tuple(self.reward_arms)
        if len(set(self.reward_arms)) != len(self.reward_arms) or set(self.reward_arms) - set(REWARD_ARMS):
            raise ConfigError(f"reward_arms must be distinct arms from {REWARD_ARMS}, got {self.reward_arms!r}")
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
        check_ints(self, "seeds", "hidden", "batch_size", "n_test_per_length", "max_steps", "reward_buffer")
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

    def by_reward(self, arm: str, seed: int) -> ControlReinforceConfig:
        """The settings of the controller of one reward arm (the curriculum, criterion and limits of the others)."""
        reward, _, buffered = arm.partition("+")
        return ControlReinforceConfig(training=self.training(self.reward_seconds, seed), reward=reward,
                                      entropy=self.reward_entropy, shaping=self.reward_shaping,
                                      buffer=self.reward_buffer if buffered else 0)


class SeedRun(NamedTuple):
    """One repetition of the study.

    Attributes:
        seed: its seed.
        monolithic: the end-to-end training.
        sequential: the modules trained one after another.
        parallel: the same trainings in worker processes (timing only; these modules are not evaluated).
        accuracy: regime (``"monolithic"``, ``"modular"``, ``"reward_terminal"``, ...) -> ``"solved"`` /
            ``"sorted"`` / ``"selection_sort"`` -> length -> accuracy (the last: the selection-sort trace's actions).
        reward: reward arm (``"terminal"``, ``"shaped"``, ``"terminal+buffer"``, ...) -> the training of its
            controller.
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


def train_by_reward(modular: Agent, config: Config, seed: int, arm: str, run: RunDir) -> tuple[Agent, TrainResult]:
    """A fresh control module trained as reward ``arm`` says, with the operators of ``modular`` (trained from
    traces) fixed; returns the agent that drives them with it, and its training."""
    torch.manual_seed(seed)
    agent = sorting_agent(operators=list(modular.operators), control=sorting_control(hidden=config.hidden))
    result = train_control_by_reward(agent, episodes=sorting_episodes, config=config.by_reward(arm, seed + 100),
                                     potential=sorting_potential, run=run, name=f"control_{arm.replace('+', '_')}")
    return agent, result


@torch.no_grad()
def evaluate(agent: Agent, config: Config, seed: int) -> dict[str, dict[int, float]]:
    """Free-running success by list length on fresh lists: the agent stopped with ``eop`` on the target
    state (sorted list, both pointers on the last digit); also how often the list alone ended sorted, and how
    often the agent took exactly the selection-sort trace's actions (the program its traces teach).

    Lists of length ``L`` sit on a tape of ``max(L, max_train_length)`` positions: in training a batch's tape
    is as wide as its longest list, so shorter lists were seen followed by null positions."""
    gen = torch.Generator().manual_seed(seed + 10_000)
    correct, sorted_, selection, lengths = [], [], [], []
    for length in range(2, config.max_test_length + 1):
        lists = sample_lists(config.n_test_per_length, min_length=length, max_length=length,
                             width=max(length, config.max_train_length), generator=gen)
        env = SortingEnvironment()
        env.reset(lists.values, lists.lengths)
        trace = agent.solve(SortingInterface(env))
        correct.append(trace.stopped & env.is_target())
        sorted_.append(env.is_sorted())
        selection.append(torch.tensor([
            [a for a in taken if a >= 0] == [OPERATIONS.index(op) for op in selection_sort_trace(values[:length])]
            for taken, values in zip(trace.actions.tolist(), lists.values.tolist(), strict=True)]))
        lengths.append(lists.lengths)
    groups = torch.cat(lengths)
    return {"solved": accuracy_by(torch.cat(correct), groups), "sorted": accuracy_by(torch.cat(sorted_), groups),
            "selection_sort": accuracy_by(torch.cat(selection), groups)}


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
    return report(config, metrics, runs, figures)


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
        "selection_sort_trained_lengths": {k: _span(v["selection_sort"], 2, lt) for k, v in r.accuracy.items()},
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
                                   for k in regimes(runs)},
        "solved_longer_lengths": {k: over(lambda m, k=k: m["solved_longer_lengths"][k]).to_dict()
                                  for k in regimes(runs)},
        "selection_sort_trained_lengths": {k: over(lambda m, k=k: m["selection_sort_trained_lengths"][k]).to_dict()
                                           for k in regimes(runs)},
        "solved_by_length": {k: {str(n): s.to_dict() for n, s in solved_by_length(runs, k).items()}
                             for k in regimes(runs)},
        "experiment_seconds": wall,
    }


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
    plot_error_curves({k: solved_by_length(runs, k) for k in regimes(runs)}, out / figures[5],
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
