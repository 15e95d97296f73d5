"""Short seeded runs of the ``imn`` experiment, one per lever, to find out what makes the identities take the shapes.

Usage::

    python scripts/imn_levers.py --problem reduced --seeds 0 1 2 --levers paper score_id warmup
    python scripts/imn_levers.py --problem whole --steps 1500 --seeds 0 --levers paper tuned

Each lever is a set of ``--set`` overrides of the experiment's config on top of the problem's preset. Every run
appends one JSON line (lever, seed, per-variant dominant fractions, distinct dominant identities, the NMI of the
identities with each factor, train seconds) to ``OUT/levers.jsonl``; the end prints a Markdown table of means.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from modnets._config import with_overrides
from modnets.experiments import imn

#: the paper's eq. 9 / 10: beta = 1, L_ind in the score
PAPER: dict[str, object] = {"objective.beta": 1.0, "objective.score_independence": True}
#: lever name -> config overrides (dotted paths, as ``modnets run imn --set``)
LEVERS: dict[str, dict[str, object]] = {
    "paper": PAPER,
    # the presets before this study: beta = 0.1, L_ind in the loss only
    "beta0.1": {"objective.beta": 0.1, "objective.score_independence": False},
    "score_id": {**PAPER, "objective.score_id": True},
    "warmup": {**PAPER, "objective.warmup_steps": 300},
    "warmup+score_id": {**PAPER, "objective.warmup_steps": 300, "objective.score_id": True},
    "kl_anneal": {**PAPER, "objective.beta_warmup_steps": 600},
    "spread2": {**PAPER, "identity_spread": 2.0},
    "spread0.1": {**PAPER, "identity_spread": 0.1},
    "batch128": {**PAPER, "fit.batch_size": 128},
    "deconv": {**PAPER, "decoder": "deconv"},
    "64px": {**PAPER, "image_size": 64},
    "zoom1.5": {**PAPER, "zoom": 1.5},
    "zoom1.5+score_id": {**PAPER, "zoom": 1.5, "objective.score_id": True},
    "zoom1.5+warmup+score_id": {**PAPER, "zoom": 1.5, "objective.warmup_steps": 300,
                                "objective.score_id": True},
    "beta0.1+zoom1.5": {"objective.beta": 0.1, "objective.score_independence": False, "zoom": 1.5},
    "beta0.1+64px": {"objective.beta": 0.1, "objective.score_independence": False, "image_size": 64},
    "n3": {**PAPER, "n": 3},
    "n3+score_id": {**PAPER, "n": 3, "objective.score_id": True},
    "n3+warmup": {**PAPER, "n": 3, "objective.warmup_steps": 300},
}

PROBLEMS = ("reduced", "whole")


def _config(problem: str, seed: int, lever: str, steps: int | None) -> imn.Config:
    config = imn.Config.for_mode(problem == "reduced", seed=seed)
    overrides = {"seeds": 1, **LEVERS[lever]}
    if steps is not None:  # epochs that give at least `steps` optimiser steps
        batch = int(overrides.get("fit.batch_size", config.fit.batch_size))
        overrides["fit.epochs"] = max(1, -(-steps * batch // config.n_train))
    return with_overrides(config, [f"{path}={json.dumps(value)}" for path, value in overrides.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", choices=PROBLEMS, default="reduced")
    parser.add_argument("--levers", nargs="+", choices=sorted(LEVERS), default=["paper"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path("runs/imn-levers"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "levers.jsonl"
    for lever in args.levers:
        for seed in args.seeds:
            config = _config(args.problem, seed, lever, args.steps)
            report = imn.run(config, args.out / f"{args.problem}-{lever}-{seed}", progress=False)
            m = report.metrics["per_seed"][0]
            row = {"problem": args.problem, "lever": lever, "seed": seed, "steps": args.steps,
                   **{v: {"dominant": m["dominant_fraction"][v], "distinct": m["distinct_dominant_identities"][v],
                          "nmi": m[v]["identity_factor_nmi"], "seconds": m[v]["train_seconds"]}
                      for v in imn.VARIANTS}}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    _table(log)
    return 0


def _table(log: Path) -> None:
    rows: dict[tuple[str, str], list[dict]] = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault((r["problem"], r["lever"]), []).append(r)
    print("| problem | lever | seeds | variant | mean dominant (%) | distinct | shape NMI | most aligned factor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (problem, lever), runs in rows.items():
        for v in imn.VARIANTS:
            dom = [statistics.mean(r[v]["dominant"].values()) for r in runs]
            nmi = [r[v]["nmi"].get("shape", 0.0) for r in runs]
            top = [max(r[v]["nmi"], key=r[v]["nmi"].get) for r in runs]
            print(f"| {problem} | {lever} | {len(runs)} | {v.replace('_', ' ')} | "
                  f"{100 * statistics.mean(dom):.0f} ({', '.join(f'{100 * d:.0f}' for d in dom)}) | "
                  f"{', '.join(str(r[v]['distinct']) for r in runs)} | "
                  f"{statistics.mean(nmi):.2f} ({', '.join(f'{x:.2f}' for x in nmi)}) | {', '.join(top)} |")


if __name__ == "__main__":
    sys.exit(main())
