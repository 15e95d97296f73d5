import json
import math

import torch

from modnets.train import RunLogger


def _read(directory):
    return [json.loads(line) for line in (directory / "scalars.jsonl").read_text().splitlines()]


def test_scalars_round_trip_through_the_jsonl_file(tmp_path):
    logged = [(1, {"loss": 0.75, "acc": 0.5}), (2, {"loss": 0.5, "acc": 0.625}), (10, {"loss": 0.25})]
    with RunLogger(tmp_path / "run", tensorboard=False) as log:
        for step, scalars in logged:
            log.log(step, **scalars)
    assert _read(tmp_path / "run") == [{"step": step, **scalars} for step, scalars in logged]


def test_ints_and_zero_dim_tensors_are_stored_as_floats_and_non_finite_values_as_text(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.log(torch.tensor(3), loss=torch.tensor(0.5), count=7, bad=float("nan"), big=math.inf)
    (row,) = _read(tmp_path)
    assert row == {"step": 3, "loss": 0.5, "count": 7.0, "bad": "nan", "big": "inf"}
    assert isinstance(row["count"], float) and isinstance(row["step"], int)
    assert float(row["bad"]) != float(row["bad"]) and float(row["big"]) == math.inf  # text that reads back


def test_a_second_logger_appends_to_the_same_run(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.log(1, loss=1.0)
    with RunLogger(tmp_path, tensorboard=False) as log:  # a resumed run
        log.log(2, loss=0.5)
    assert [(r["step"], r["loss"]) for r in _read(tmp_path)] == [(1, 1.0), (2, 0.5)]


def test_lines_can_be_read_while_the_run_is_still_logging(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    try:
        log.log(1, loss=1.0)
        assert _read(tmp_path) == [{"step": 1, "loss": 1.0}]  # before close: each line is written at once
    finally:
        log.close()
