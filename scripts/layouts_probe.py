"""Probe of the layouts experiment's cloned arm: one learned arm of the full preset under one search setting.

The first full run's cloned arm (cloned from 10 % of the gold programs, then the top-K buffer on the answers)
reached 78 % of the gold-program accuracy, though after cloning its greedy programs were 92 % oracle-equivalent.
Each invocation trains one learned arm of the full preset (seed s, its data) with the search (both arms') and
any other settings given as JSON, and prints what ``modnets run layouts`` would measure for it.

    python scripts/layouts_probe.py --seed 0 --search '{"buffer_size": 1, "sample_gradient": false, "score": "joint"}'
    python scripts/layouts_probe.py --seed 0 --arm answers --library untyped
    python scripts/layouts_probe.py --seed 0 --config '{"fit_clone": {"epochs": 10}, "policy_hidden": 128}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from modnets.experiments import get_experiment
from modnets.train import ProgramSearchConfig, RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arm", choices=("answers", "cloned"), default="cloned")
    parser.add_argument("--library", choices=("typed", "untyped"), default="typed")
    parser.add_argument("--search", default=None, help="ProgramSearchConfig fields as JSON (default: the preset's)")
    parser.add_argument("--config", default=None, help="other Config fields as JSON, e.g. '{\"policy_hidden\": 128}'")
    args = parser.parse_args()
    torch.set_num_threads(1)
    layouts = get_experiment("layouts")
    config = layouts.Config.for_mode(False, seed=args.seed)
    if args.search is not None:
        search = ProgramSearchConfig.from_dict({**config.search.to_dict(), **json.loads(args.search)})
        config = layouts.Config.from_dict({**config.to_dict(), "search": search.to_dict(),
                                           "cloned_search": search.to_dict()})
    if args.config is not None:
        config = layouts.Config.from_dict(_merge(config.to_dict(), json.loads(args.config)))
    start = time.perf_counter()
    measured = layouts.learned_arm(config, args.arm, args.library == "typed", args.seed,
                                   layouts.seed_data(config, args.seed), RunDir(progress=False))
    measured.pop("accuracy_by_depth")
    measured.get("clone", {}).get("after", {}).pop("accuracy_by_depth", None)
    print(json.dumps({**vars(args), "seconds": round(time.perf_counter() - start), **measured}))


def _merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


if __name__ == "__main__":
    main()
