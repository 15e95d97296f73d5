"""The ``sorting`` report's text: the thesis's figures, the tables and the verdicts, from the metrics of a run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...analysis import Spread, spread, spread_by
from .._report import Report, markdown_table, percent
from .._report import spread_text as _s

if TYPE_CHECKING:
    from . import Config, SeedRun

#: Thesis 3.2.3: modular training reached its criterion about one order of magnitude faster in wall time.
PAPER_SPEEDUP = 10.0
#: Thesis 3.2.2: results of the monolithic configuration are averaged over five runs.
PAPER_SEEDS = 5


def regimes(runs: list[SeedRun]) -> list[str]:
    """The evaluated agents: ``monolithic``, ``modular``, then ``reward_R`` for each reward arm."""
    return list(runs[0].accuracy)


def solved_by_length(runs: list[SeedRun], regime: str) -> dict[int, Spread]:
    """Per list length, the spread over seeds of the share of lists the agent `regime` solved."""
    return spread_by([r.accuracy[regime]["solved"] for r in runs])


def _first_below(acc: dict[int, Spread], level: float) -> str:
    for n in sorted(acc):
        if acc[n].mean < level:
            return str(n)
    return f"> {max(acc)}"


def report(config: Config, metrics: dict, runs: list[SeedRun], figures: list[str]) -> Report:
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
    solved = {k: solved_by_length(runs, k) for k in regimes(runs)}
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
             _s(metrics["solved_longer_lengths"]["modular"], percent=True),
             _s(metrics["selection_sort_trained_lengths"]["modular"], percent=True))]
    for arm in config.reward_arms:
        m, key = metrics["reward"][arm], f"reward_{arm}"
        reward, _, buffered = arm.partition("+")
        source = ("sorted-or-not at the episode's end" if reward == "terminal"
                  else f"sorted-or-not + {config.reward_shaping:g} x inversions removed per step")
        method = f"REINFORCE + its {config.reward_buffer} best episodes replayed" if buffered else "REINFORCE"
        rows.append((f"by reward ({arm})", f"{method}: {source}", _s(m["seconds"], "{:.1f}", unit=" s"),
                     _s(m["steps"], "{:.0f}"), f"{m['met_criterion']} of {n}", ", ".join(m["stop_reasons"]),
                     _s(metrics["solved_trained_lengths"][key], percent=True),
                     _s(metrics["solved_longer_lengths"][key], percent=True),
                     _s(metrics["selection_sort_trained_lengths"][key], percent=True)))
    table = markdown_table(["controller", "learns from", "training time", "steps", "seeds that met the criterion",
                            "how training ended", f"solved, lengths 2-{lt}", f"solved, lengths {lt + 1}-{lmax}",
                            f"selection sort's actions, lengths 2-{lt}"], rows)
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
        f"curriculum and criterion of the other runs, with the error rate of greedy (argmax) episodes on each "
        f"step's lists (the sampled episodes fail at the rate of the policy's exploration, so a 1 % criterion on "
        f"them could hold a controller at a level it has mastered), a budget of {_budget(config.reward_seconds)} "
        f"and at most {config.max_steps} steps. The `+buffer` arms keep the {config.reward_buffer} highest-return "
        f"episodes found so far (priority-queue training, Abolafia et al. 2018; the research note's top-K buffer "
        f"over episodes, since every step brings fresh lists and no list has an incumbent of its own; ties go to "
        f"the newer episode) and add their teacher-forced negative log-likelihood to the REINFORCE loss: the "
        f"controller imitates its own successes. Evaluated like the other agents: greedy (argmax) selections on "
        f"fresh lists.")
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
        parts.append(f"Trained by reward ({arm}), the controller {how}; it solved "
                     f"{percent(m['last_solved_sampled']['mean'])} of its last logged batch of sampled training "
                     f"episodes, and {percent(solved)} of the test lists of lengths 2-{lt} (greedy), against "
                     f"{percent(trace)} for the trace-trained controller on the same operators.")
    follows = metrics["selection_sort_trained_lengths"]
    parts.append(f"The trace-trained controller took exactly selection sort's actions on "
                 f"{percent(follows['modular']['mean'])} of the test lists of lengths 2-{lt}; the controllers "
                 f"trained by reward on " + ", ".join(f"{percent(follows[f'reward_{arm}']['mean'])} ({arm})"
                                                    for arm in config.reward_arms) + ".")
    if any(follows[f"reward_{arm}"]["mean"] < follows["modular"]["mean"] for arm in config.reward_arms):
        parts.append("Nothing rewards selection sort itself: a controller trained by reward keeps whatever action "
                     "sequence ends on the target state, including ones that apply the operators (trained on "
                     "selection-sort transitions only) to states their training never showed them, which pay "
                     "only where those operators happen to produce the right state.")
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
