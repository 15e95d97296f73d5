"""Probes of the nmn depth study: one NMN trained on the depths asked for, under one lever.

Each invocation trains one model with the full run's budget (20,000 questions, 15 epochs, Adam 3e-3 unless
changed; training data seed s + 31000) and prints its error by depth on the test questions of the full
run's depth study (seed s: data seed s + 11000). With the defaults it is the reference (every depth 2-20);
``--max-depth 5`` gives the depth-generalisation models, typed or ``--untyped``, for counting how often
each fails to train over more seeds than the full run has. It also prints the mean training loss of each
epoch: the models sit on a plateau (loss about 1) and then drop, and a failed training is one whose drop has
not come by the last epoch.

    python scripts/nmn_reference_probe.py --seed 0 --lr 1e-3
    python scripts/nmn_reference_probe.py --seed 0 --max-depth 12
    python scripts/nmn_reference_probe.py --seed 0 --decay 0.85   # depth d drawn with weight 0.85 ** (d - 2)
    python scripts/nmn_reference_probe.py --seed 3 --max-depth 5 --untyped   # an untyped model, on probe data
    python scripts/nmn_reference_probe.py --seed 3 --max-depth 5 --data study   # the full run's typed model itself
    python scripts/nmn_reference_probe.py --seed 3 --max-depth 5 --data study --warmup 1000   # ... with a warm-up
    python scripts/nmn_reference_probe.py --seed 4 --max-depth 5 --data study --warmup 1000 --epochs 60 --patience 5
    python scripts/nmn_reference_probe.py --seed 0 --max-depth 5 --data study --film --lr 1e-3   # the FiLM baseline

``--data study`` trains on the full run's own depth-study questions and vocabulary (``depth_data`` of the
full preset, the one the experiment calls), so that the model, its initial weights and its batches are the full
run's: a lever can then be tried on a seed where the full run's training failed. It also validates on the
study's held-out questions after every epoch and keeps the best epoch (``--patience P`` stops after P epochs
without a lower validation loss), as the study does.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from modnets.analysis import accuracy_by
from modnets.data import ClevrLikeConfig, collate_clevr_like, make_clevr_like
from modnets.experiments import nmn as nmn_experiment
from modnets.experiments._vqa_training import film_of_size, parameter_count
from modnets.experiments.nmn._depth import depth_data
from modnets.models import QuestionVocabulary, nmn
from modnets.train import Classification, FitConfig, RunDir, fit, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-depth", type=int, default=20, help="deepest training programs (tests go to 20)")
    parser.add_argument("--decay", type=float, default=1.0, help="training depth d has weight decay ** (d - 2)")
    model_kind = parser.add_mutually_exclusive_group()
    model_kind.add_argument("--untyped", action="store_true", help="the untyped NMN with the geometric prior")
    model_kind.add_argument("--film", action="store_true", help="the FiLM baseline of the typed NMN's size")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    parser.add_argument("--patience", type=int, default=None, help="early stopping on the validation loss "
                        "(--data study)")
    parser.add_argument("--data", choices=("probe", "study"), default="probe",
                        help="probe: training data seed s + 31000; study: the full run's depth-study data")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = args.seed
    depths = tuple(range(2, args.max_depth + 1))
    weights = None if args.decay == 1.0 else tuple(args.decay ** (d - 2) for d in depths)
    valid = None
    if args.data == "study":
        full = nmn_experiment.Config.for_mode(False)
        data = depth_data(replace(full, depth_n_train=args.n_train, max_train_depth=args.max_depth), s)
        train, valid, test, vocab = data.train, data.valid, data.test, data.vocab
    elif args.patience is not None:
        parser.error("--patience needs --data study (its held-out questions)")
    else:
        train = make_clevr_like(ClevrLikeConfig(n_examples=args.n_train, depths=depths, depth_weights=weights,
                                                image_size=32, programs="chains", seed=s + 31_000))
        test = make_clevr_like(ClevrLikeConfig(n_examples=300 * 19, depths=tuple(range(2, 21)), image_size=32,
                                               programs="chains", seed=s + 1_000 + 10_000))
        vocab = QuestionVocabulary.build(train.questions)
    torch.manual_seed(s)
    typed = not args.untyped
    model = nmn(typed, image_size=32, hidden=64, prior="logits" if typed else "geometric", questions=vocab,
                question_hidden=64)
    if args.film:  # the typed NMN's size, seeded as the study seeds it
        torch.manual_seed(s)
        model = film_of_size(nmn_experiment.Config.for_mode(False), vocab, parameter_count(model))
    start = time.perf_counter()
    result = fit(Classification(model, target="answer"), train, collate=collate_clevr_like, run=RunDir(progress=False),
                 config=FitConfig(epochs=args.epochs, batch_size=64, lr=args.lr, warmup_steps=args.warmup,
                                  patience=args.patience, seed=s), valid=valid)
    per_epoch = -(-args.n_train // 64)
    losses = [[h["loss"] for h in result.history if e * per_epoch <= h["step"] < (e + 1) * per_epoch]
              for e in range(args.epochs)]
    error = {d: round(1 - a, 3) for d, a in accuracy_by(predict(model, test, collate=collate_clevr_like)
                                                         == test.answers, test.depths).items()}
    print(json.dumps({**vars(args), "seconds": round(time.perf_counter() - start), "error_by_depth": error,
                      "train_loss_by_epoch": [round(sum(v) / len(v), 3) for v in losses if v],
                      "valid_loss_by_epoch": [round(v, 3) for v in result.valid_loss],
                      "best_epoch": result.best_epoch}))


if __name__ == "__main__":
    main()
