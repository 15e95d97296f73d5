"""Probe of a finished ``layouts`` run: are the learned arms short of the gold arm in their programs or in their
modules?

For one seed and library of a run folder (``modnets run layouts --out DIR``), it loads the last checkpoint of
each arm and measures, on the test questions and on the first ``--train`` training questions:

- ``greedy``: the answers of the arm's own greedy programs (what the report measures; the gold arm has none);
- ``gold programs``: the answers of the arm's modules running the gold programs;
- ``gold arm's modules, arm's programs``: the gold arm's modules running this arm's greedy programs;
- for the learned arms, the incumbent programs the modules were trained on (the search's buffer, best entry):
  the share exact or oracle-equivalent to the gold ones, and the modules' accuracy when running them.

It measures the search's own modules (the experiment's ``refit`` stage, which trains fresh modules on the
cloned arm's programs, is left out).

    python scripts/layouts_modules_probe.py runs/layouts-full-3seeds --seed 0 --library typed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from modnets.data import ANSWERS
from modnets.data import collate_clevr_like as collate
from modnets.experiments import get_experiment
from modnets.train import Classification, ProgramSearch, predict

layouts = get_experiment("layouts")
WithPrograms = layouts._WithPrograms


def _latest(folder: Path) -> dict:
    files = sorted(folder.glob("step-*.pt"))
    if not files:
        raise SystemExit(f"no checkpoint in {folder}: give the folder of a finished `modnets run layouts`")
    return torch.load(files[-1], weights_only=False)["model"]


def _accuracy(model, data: Dataset, answers: torch.Tensor) -> float:
    return float((predict(Classification(model, target="answer"), data, collate=collate) == answers).float().mean())


def _agreement(programs: list, data, rows: list[int]) -> dict:
    """Exact match and oracle equivalence of ``programs`` with the gold programs of ``data``'s ``rows``."""
    exact = sum(p == data.programs[r] for p, r in zip(programs, rows, strict=True))
    equivalent = sum(layouts._oracle(p, data.scenes[r]) == ANSWERS[int(data.answers[r])]
                     for p, r in zip(programs, rows, strict=True))
    return {"exact_match": exact / len(rows), "execution_equivalent": equivalent / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder of a finished `modnets run layouts`")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--library", choices=layouts.LIBRARIES, default="typed")
    parser.add_argument("--train", type=int, default=2000, help="training questions measured (the first N)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    metrics = json.loads((args.run / "metrics.json").read_text())
    config = layouts.Config.from_dict(metrics["config"])
    typed = args.library == "typed"
    data = layouts.seed_data(config, args.seed)
    folder = args.run / "checkpoints" / f"seed{args.seed}" / args.library
    rows = list(range(min(args.train, len(data.train))))
    splits = {"test": (data.test, list(range(len(data.test)))), "train": (Subset(data.train, rows), rows)}
    gold_model = layouts._nmn(config, typed)
    Classification(gold_model, target="answer").load_state_dict(_latest(folder / "gold"))
    out = {"seed": args.seed, "library": args.library, "gold": {
        name: {"gold programs": _accuracy(gold_model, d, (data.test if name == "test" else data.train).answers[r])}
        for name, (d, r) in splits.items()}}
    for arm in ("answers", "cloned"):
        model, parts = layouts.arm_parts(config, typed, data)
        settings = (config.cloned_search or config.search) if arm == "cloned" else config.search
        gold_key = "program" if arm == "cloned" and config.keep_gold else None
        search = ProgramSearch(**parts, dataset_size=len(data.train), config=settings, gold_key=gold_key)
        search.load_state_dict(_latest(folder / f"{arm}-search"))
        search.eval()
        model.eval()
        out[arm] = {}
        for name, (d, r) in splits.items():
            source = data.test if name == "test" else data.train
            answers = source.answers[r]
            programs = layouts._greedy_programs(search, d)
            predicted = predict(search, d, collate=collate)
            out[arm][name] = {
                "greedy": float((predicted == answers).float().mean()),
                "gold programs": _accuracy(model, d, answers),
                "gold arm's modules, arm's programs": _accuracy(gold_model, WithPrograms(d, programs), answers),
                **{f"greedy {k}": v for k, v in _agreement(programs, source, r).items()}}
            if name == "train":
                best = search.buffer.score[r].argmax(1)
                incumbents = search.policy.decode(search.buffer.tokens[r, best])
                out[arm][name].update({
                    "incumbents": _accuracy(model, WithPrograms(d, incumbents), answers),
                    **{f"incumbent {k}": v for k, v in _agreement(incumbents, source, r).items()}})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
