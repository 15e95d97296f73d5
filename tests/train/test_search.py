"""Per-module hyper-parameter search with Optuna: finds better settings, stores and continues studies."""

from __future__ import annotations

import logging
import math
import time

import optuna
import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, NumericalError
from modnets.train import FitConfig, SearchConfig, fit_objective, search, validation_loss
from modnets.train._search import finished_trials


class Toy(nn.Module):
    """A one-hidden-layer regressor; its width and learning rate are what the search tunes."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 1))

    batch_keys = {"x": "(B, 2) inputs", "y": "(B,) regression targets"}

    def loss(self, batch):
        return {"loss": nn.functional.mse_loss(self.predict(batch), batch["y"])}

    def predict(self, batch):
        return self.net(batch["x"]).squeeze(-1)


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = 2 * x[:, 0] - x[:, 1] + 0.5 * torch.tanh(3 * x[:, 1])
    return [(x[i], y[i]) for i in range(n)]


def _collate(examples):
    return {"x": torch.stack([e[0] for e in examples]), "y": torch.stack([e[1] for e in examples])}


def _toy_objective(train, valid):
    def objective(trial):
        torch.manual_seed(trial.number)
        return Toy(trial.suggest_int("width", 1, 32, log=True))

    def fit_config(trial):
        return FitConfig(epochs=3, batch_size=16, lr=trial.suggest_float("lr", 1e-5, 1e-1, log=True), seed=0)

    return fit_objective(objective=objective, fit_config=fit_config, train=train, valid=valid, collate=_collate)


def test_search_finds_better_hyperparameters_than_a_bad_setting(tmp_path):
    train, valid = _data(128, 0), _data(128, 1)
    objective = _toy_objective(train, valid)
    bad = objective(optuna.trial.FixedTrial({"width": 1, "lr": 1e-5}))
    config = SearchConfig(trials=8, seed=0, study_name="toy")

    result = search(objective, config=config, directory=tmp_path, progress=False)

    assert result.best_value < 0.25 * bad
    assert result.best_params["lr"] > 1e-2  # the bad setting's learning rate is far too small
    assert len(result.trials) == 8 and all(t["state"] == "COMPLETE" for t in result.trials)
    assert result.trials[result.best_trial]["value"] == result.best_value
    assert all(t["user_attrs"]["steps"] == 3 * 8 and t["seconds"] >= 0 for t in result.trials)
    # the same sampler seed repeats the same search (a second study in the same database)
    again = search(objective, config=SearchConfig(trials=3, seed=0, study_name="toy2", storage=result.storage),
                   progress=False)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials[:3]]
    assert [t["value"] for t in again.trials] == pytest.approx([t["value"] for t in result.trials[:3]])


def test_validation_loss_is_the_size_weighted_mean_over_the_set():
    torch.manual_seed(0)
    model, data = Toy(4), _data(70, 2)
    with torch.no_grad():
        whole = float(model.loss(_collate(data))["loss"])
    assert validation_loss(model, data, collate=_collate, batch_size=32) == pytest.approx(whole, rel=1e-5)


def _quadratic(trial):
    return (trial.suggest_float("x", -4.0, 4.0) - 1.0) ** 2


def test_sqlite_storage_is_created_and_a_study_continues(tmp_path):
    first = search(_quadratic, config=SearchConfig(trials=3, study_name="find"), directory=tmp_path,
                   progress=False)
    path = tmp_path / "find.db"
    assert path.is_file() and first.storage == f"sqlite:///{path.resolve()}"

    config = SearchConfig(trials=4, study_name="find", load_if_exists=True, seed=1)
    second = search(_quadratic, config=config, directory=tmp_path, progress=False)
    assert [t["number"] for t in second.trials] == list(range(7))
    assert second.trials[:3] == first.trials
    assert second.best_value <= first.best_value
    # a continued search's cost counts the trials of the calls before it
    assert second.seconds == pytest.approx(sum(t["seconds"] for t in second.trials))
    assert second.seconds > first.seconds == pytest.approx(sum(t["seconds"] for t in first.trials))

    with pytest.raises(ConfigError, match="load_if_exists"):
        search(_quadratic, config=SearchConfig(trials=1, study_name="find"), directory=tmp_path, progress=False)
    # the same study through an explicit URL
    shared = SearchConfig(trials=1, study_name="find", load_if_exists=True, storage=first.storage)
    assert len(search(_quadratic, config=shared, progress=False).trials) == 8
    assert finished_trials(shared) == 8 and finished_trials(SearchConfig(study_name="other"), tmp_path) == 0
    # no trial: the stored study's best
    read = search(_quadratic, config=SearchConfig(trials=0, study_name="find", load_if_exists=True),
                  directory=tmp_path, progress=False)
    assert len(read.trials) == 8 and read.best_value <= second.best_value


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://host/db", 42])
def test_bad_storage_url_raises_config_error_naming_the_field(url):
    with pytest.raises(ConfigError, match=r"SearchConfig\.storage"):
        SearchConfig(storage=url)


def test_storage_that_cannot_be_opened_raises_config_error(tmp_path):
    config = SearchConfig(trials=1, storage=f"sqlite:///{tmp_path}/missing/folder/s.db")
    with pytest.raises(ConfigError, match=r"SearchConfig\.storage: cannot open"):
        search(_quadratic, config=config, progress=False)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trials": -1}, r"SearchConfig\.trials must be an int >= 0, got -1"),
        ({"seed": -1}, r"SearchConfig\.seed"),
        ({"timeout": 0}, r"SearchConfig\.timeout"),
        ({"direction": "down"}, r"SearchConfig\.direction must be one of \('minimize', 'maximize'\)"),
        ({"study_name": " "}, r"SearchConfig\.study_name"),
        ({"load_if_exists": "yes"}, r"SearchConfig\.load_if_exists"),
    ],
)
def test_bad_config_fields_are_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**fields)


def test_no_storage_and_no_directory_is_an_error():
    with pytest.raises(ConfigError, match="no directory"):
        search(_quadratic, config=SearchConfig(trials=1), progress=False)


def test_diverged_trials_fail_without_stopping_the_search(tmp_path):
    def objective(trial):
        lr = trial.suggest_float("lr", 1e-3, 10.0, log=True)
        if lr > 0.1:
            raise NumericalError("loss is NaN", step=1, module="Toy", quantity="loss")
        return lr

    result = search(objective, config=SearchConfig(trials=6, seed=0), directory=tmp_path, progress=False)
    states = {t["state"] for t in result.trials}
    assert states == {"COMPLETE", "FAIL"} and len(result.trials) == 6
    assert result.best_params["lr"] <= 0.1
    failed = [t for t in result.trials if t["state"] == "FAIL"]
    assert all(t["user_attrs"]["error"] == "NumericalError: loss is NaN" for t in failed)

    def always_nan(trial):
        trial.suggest_float("lr", 1e-3, 1.0)
        return math.nan

    with pytest.raises(NumericalError, match="no trial of study 'nan' finished"):
        search(always_nan, config=SearchConfig(trials=2, study_name="nan", storage=result.storage), progress=False)


def test_optuna_per_trial_logging_is_silenced_and_restored(tmp_path):
    def objective(trial):
        if trial.number == 1:
            raise NumericalError("loss is NaN", step=1, module="Toy", quantity="loss")
        return _quadratic(trial)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        search(objective, config=SearchConfig(trials=3), directory=tmp_path, progress=False)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("optuna").removeHandler(handler)
    assert records and all(r.levelno >= logging.WARNING for r in records)  # no per-trial INFO lines
    assert all("Trial 1 failed" in r.getMessage() and r.exc_info is None for r in records)  # no traceback


def test_a_budget_counts_the_stored_trials_so_a_continued_search_spends_it_once(tmp_path):
    def slow(trial):
        time.sleep(0.05)
        return _quadratic(trial)

    def run(budget):
        config = SearchConfig(trials=100, budget=budget, study_name="slow", load_if_exists=True)
        return search(slow, config=config, directory=tmp_path, progress=False)

    first = run(0.2)  # stops once its trials have taken 0.2 s: the trial that crosses it is the last
    assert first.seconds >= 0.2 and first.seconds - first.trials[-1]["seconds"] < 0.2 and len(first.trials) < 100
    assert run(0.2).trials == first.trials  # spent: no more trials
    more = run(0.4)  # a search cut short and continued goes on to the whole budget
    assert more.trials[: len(first.trials)] == first.trials and len(more.trials) > len(first.trials)
    assert more.seconds >= 0.4 and more.seconds - more.trials[-1]["seconds"] < 0.4
    with pytest.raises(ConfigError, match="budget"):
        SearchConfig(budget=0)
