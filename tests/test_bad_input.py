"""The bad inputs listed in the README's "Bad input" table, each with the error it must get.

``CASES`` is the table: a row's first cell is the text the README shows; ``test_the_readme_lists_every_case``
keeps the two in step.
"""

import re
from pathlib import Path

import pytest
import torch

import modnets
from modnets.cli import main
from modnets.compose import Program
from modnets.errors import (
    ConfigError,
    DataUnavailableError,
    HubError,
    InterfaceError,
    NumericalError,
    ProgramSyntaxError,
    ShapeError,
    TypeMismatchError,
)
from modnets.types import Mask

README = Path(__file__).resolve().parents[1] / "README.md"


def _layer():
    from modnets.routing import MLPExperts, ModularLayer, Router

    bank = MLPExperts(n_modules=4, d_in=6, d_hidden=8, d_out=6)
    return ModularLayer(modules=bank, router=Router(n_modules=4, d_in=6), k=1)


def _fit(**config):
    from modnets.train import Classification, FitConfig, RunDir, fit

    data = [{"x": torch.zeros(3), "y": 0}] * 4
    return fit(Classification(torch.nn.Linear(3, 2)), data, config=FitConfig(**config),
               collate=torch.utils.data.default_collate, run=RunDir(progress=False))


def _routed(batch, *, n_tasks=None, objective="reinforce", d_in=6):
    """A router objective's loss on one batch of a small routed MLP with 3 classes."""
    from modnets.models import modular_mlp
    from modnets.train import EndToEnd, Reinforce

    net = modular_mlp(d_in=d_in, d_model=6, n_modules=4, n_out=3, n_tasks=n_tasks)
    return (Reinforce(net) if objective == "reinforce" else EndToEnd(net)).loss(batch)


def _batch(**changes):
    return {"x": torch.randn(4, 6), "y": torch.tensor([0, 1, 2, 0]), **changes}


def _fit_routed(batch):
    from modnets.models import modular_mlp
    from modnets.train import EndToEnd, FitConfig, RunDir, fit

    data = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    fit(EndToEnd(modular_mlp(d_in=6, d_model=6, n_modules=4, n_out=3)), data, config=FitConfig(epochs=1),
        collate=torch.utils.data.default_collate, run=RunDir(progress=False))


def _fit_bare_model():
    from modnets.models import modular_mlp
    from modnets.train import FitConfig, RunDir, fit

    fit(modular_mlp(d_in=6, d_model=6, n_modules=4, n_out=3), [_batch()], config=FitConfig(),
        collate=lambda b: b[0], run=RunDir(progress=False))


def _typed_mismatch():
    from modnets.models import nmn_library

    nmn_library(True, channels=8, hidden=8, grid=(4, 4)).check(Program.parse("and(find[red], exist(find[red]))"))


def _em_without_ids():
    from modnets.models import modular_mlp
    from modnets.train import generalized_em

    em = generalized_em(modular_mlp(d_model=6, n_modules=4, n_out=3), dataset_size=8)
    em.loss({"x": torch.randn(2, 6), "y": torch.zeros(2, dtype=torch.long)})


def _fashion_missing(tmp_path):
    from modnets.data import load_fashion_mnist

    load_fashion_mnist(root=tmp_path / "nowhere")


def _fashion_truncated(tmp_path):
    import gzip

    from modnets.data import load_fashion_mnist

    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(b"\x00\x00\x08\x03\x00\x00\x00\x05")  # a header that promises data that is not there
    load_fashion_mnist(root=tmp_path)


def _hub_traversal(tmp_path):
    from modnets.hub import Hub

    Hub(tmp_path).load("../../etc/passwd")


def _hub_tampered(tmp_path):
    from modnets.hub import Hub
    from modnets.models import Measure
    from modnets.types import Probs

    hub = Hub(tmp_path)
    hub.save(Measure(hidden=4, n_answers=3, mask=Mask(), answer=Probs(3)), "measure")
    weights = next(tmp_path.rglob("module.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    hub.load("measure")


def _interface_nan():
    Mask().validate(torch.tensor([[0.5, float("nan")]]))


def _reinforce_config(**fields):
    from modnets.train import ReinforceConfig

    ReinforceConfig(**fields)


def _fit_config_from(data):
    from modnets.train import FitConfig

    FitConfig.from_dict(data)


# (what the README shows, how to provoke it, the error, a fragment of its message)
CASES = [
    ("`Program.parse('find[red')`", lambda tmp: Program.parse("find[red"), ProgramSyntaxError, "position"),
    ("a program whose argument types do not fit (`and(find[red], exist(find[red]))`)", lambda tmp: _typed_mismatch(),
     TypeMismatchError, "input 2 ('b') of 'and' expects Mask, got Probs"),
    ("`FitConfig(lr=0)`", lambda tmp: _fit(lr=0), ConfigError, "FitConfig.lr must be > 0, got 0"),
    ("`FitConfig(epochs=0)`", lambda tmp: _fit(epochs=0), ConfigError, "epochs"),
    ("`FitConfig(on_nonfinite='ignore')`", lambda tmp: _fit(on_nonfinite="ignore"), ConfigError,
     "one of ('raise', 'skip')"),
    ("`ReinforceConfig(baseline='ema')`", lambda tmp: _reinforce_config(baseline="ema"), ConfigError,
     "ReinforceConfig.baseline must be one of ('moving_average', 'learned', 'none'), got 'ema'"),
    ("`FitConfig.from_dict({'epoch': 3})`", lambda tmp: _fit_config_from({"epoch": 3}), ConfigError,
     "unknown key 'epoch' in FitConfig (did you mean 'epochs'?); accepted keys: epochs, batch_size"),
    ("`FitConfig.from_dict({'epochs': 'ten'})`", lambda tmp: _fit_config_from({"epochs": "ten"}), ConfigError,
     "FitConfig.epochs must be an int, got 'ten'"),
    ("`RunDir(resume=True)` without a folder", lambda tmp: modnets.train.RunDir(resume=True), ConfigError,
     "resume=True needs a run folder"),
    ("`Router(n_modules=4, d_in=6, mode='greedy')`",
     lambda tmp: modnets.routing.Router(n_modules=4, d_in=6, mode="greedy"), ConfigError, "mode"),
    ("a `ModularLayer` input of the wrong width", lambda tmp: _layer()(torch.randn(5, 7)), ShapeError, "6"),
    ("an EM batch without example ids (`\"index\"`)", lambda tmp: _em_without_ids(), ConfigError, "index"),
    ("Fashion-MNIST folder missing", _fashion_missing, DataUnavailableError, "dataset-fashion-mnist"),
    ("Fashion-MNIST file truncated", _fashion_truncated, DataUnavailableError, "dataset-fashion-mnist"),
    ("hub name with a path (`../../etc/passwd`)", _hub_traversal, HubError, "name"),
    ("hub weights changed after saving", _hub_tampered, HubError, "sha256"),
    ("a NaN in a `Mask` interface (checking on)", lambda tmp: _interface_nan(), InterfaceError, "NaN"),
    ("a batch with `\"label\"` where the objective reads `\"y\"`",
     lambda tmp: _fit_routed({"x": torch.randn(8, 6), "label": torch.zeros(8, dtype=torch.long)}), ConfigError,
     "the batch has no 'y' ((B, ...) targets); the batch has 'label' instead"),
    ("a batch without `\"task\"` for a router built with `n_tasks`", lambda tmp: _routed(_batch(), n_tasks=2),
     ConfigError, "batches need 'task'"),
    ("a NaN or inf in the inputs of a router objective",
     lambda tmp: _routed(_batch(x=torch.full((4, 6), float("nan")))), NumericalError,
     "step 1: batch['x'] holds NaN or inf values"),
    ("float64 inputs", lambda tmp: _routed(_batch(x=torch.randn(4, 6, dtype=torch.float64))), ConfigError,
     "batch['x'] must be torch.float32 like the model's parameters, got torch.float64"),
    ("a NumPy array as inputs", lambda tmp: _routed(_batch(x=torch.randn(4, 6).numpy())), ConfigError,
     "batch['x'] must be a torch.Tensor, got ndarray"),
    ("labels out of range", lambda tmp: _routed(_batch(y=torch.tensor([0, 1, 2, 3])), objective="soft"), ConfigError,
     "outside [0, 3)"),
    ("float labels", lambda tmp: _routed(_batch(y=torch.zeros(4)), objective="soft"), ConfigError,
     "must hold integer class ids"),
    ("inputs of the wrong width into a preset model", lambda tmp: _routed(_batch(x=torch.randn(4, 5))), ShapeError,
     "batch['x'] of shape (4, 5) does not fit ModularStack"),
    ("`fit(model, ...)` on a bare routed model", lambda tmp: _fit_bare_model(), ConfigError,
     "ModularStack is a routed model, not an objective"),
    ("`FitConfig(device='cuda')` where there is no GPU", lambda tmp: _fit(device="cuda:7"), ConfigError,
     "is not available on this machine; available: cpu"),
]

# (what the README shows, the command's arguments, a fragment of its one-line message)
CLI_CASES = [
    ("`modnets run nosuch`", ["run", "nosuch"], "unknown experiment 'nosuch'"),
    ("`modnets bench nosuch`", ["bench", "nosuch"], "unknown benchmark 'nosuch'"),
    ("`modnets run routing --nproc 0`", ["run", "routing", "--nproc", "0"], "--nproc must be >= 1"),
    ("`modnets run sorting --nproc 2`", ["run", "sorting", "--nproc", "2"], "does not train data-parallel"),
    ("`modnets run routing --data 3dshapes:FILE`", ["run", "routing", "--data", "3dshapes:/x.h5"],
     "experiment 'routing' takes no --data; --data works with: nmn, imn"),
    ("`modnets hub show nosuch --hub DIR`", ["hub", "show", "nosuch", "--hub", "{tmp}"], "nosuch"),
    ("`modnets run routing --set fit.epoch=1`", ["run", "routing", "--set", "fit.epoch=1"],
     "'fit.epoch=1' matches no field of routing.Config; nearest: compositions.fit.epochs"),
    ("`modnets run routing --set fit.epochs=ten`", ["run", "routing", "--set", "fit.epochs=ten"],
     "routing.Config.compositions.fit.epochs must be an int, got 'ten'"),
    ("`modnets run routing --set fit.epochs`", ["run", "routing", "--set", "fit.epochs"],
     "invalid override 'fit.epochs'; expected PATH=VALUE"),
    ("`modnets run routing --config nowhere.json`", ["run", "routing", "--config", "{tmp}/nowhere.json"],
     "cannot read config file"),
    ("`modnets hub verify --import nosuch --hub DIR`", ["hub", "verify", "--import", "nosuch", "--hub", "{tmp}"],
     "cannot import module 'nosuch'"),
    ("`modnets analyze nowhere.json`", ["analyze", "{tmp}/nowhere.json"], "cannot read assembly file"),
]


@pytest.mark.parametrize(("shown", "provoke", "error", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_documented_error(shown, provoke, error, fragment, tmp_path):
    with pytest.raises(error) as caught:
        provoke(tmp_path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("shown", "args", "fragment"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_command_line_answers_bad_input_with_one_line_and_exit_code_2(shown, args, fragment, tmp_path, capsys):
    code = main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_readme_lists_every_case():
    text = README.read_text()
    table = text[text.index("## Bad input"):]
    rows = [re.split(r"\s*\|\s*", line.strip("| ")) for line in table.splitlines() if line.startswith("| ")]
    shown = {r[0] for r in rows}
    for case in [*CASES, *CLI_CASES]:
        assert case[0] in shown, f"README 'Bad input' table lacks {case[0]!r}"
