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
    ProgramSyntaxError,
    ShapeError,
    TypeMismatchError,
)
from modnets.types import Mask

README = Path(__file__).resolve().parents[1] / "README.md"


def _layer():
    from modnets.routing import MLPExperts, ModularLayer, Router

    return ModularLayer(modules=MLPExperts(4, 6, 8, 6), router=Router(n_modules=4, d_in=6), k=1)


def _fit(**config):
    from modnets.train import FitConfig, fit

    data = [{"x": torch.zeros(3), "y": torch.zeros(())}] * 4
    model = torch.nn.Linear(3, 1)
    return fit(model, data, config=FitConfig(**config), collate=lambda b: b, checkpoint_dir=None, resume=True,
               loss=lambda b: {"loss": model.weight.sum()}, progress=False)


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


# (what the README shows, how to provoke it, the error, a fragment of its message)
CASES = [
    ("`Program.parse('find[red')`", lambda tmp: Program.parse("find[red"), ProgramSyntaxError, "position"),
    ("a program whose argument types do not fit (`and(find[red], exist(find[red]))`)", lambda tmp: _typed_mismatch(),
     TypeMismatchError, "input 2 ('b') of 'and' expects Mask, got Probs"),
    ("`FitConfig(lr=0)`", lambda tmp: _fit(lr=0), ConfigError, "FitConfig.lr must be > 0, got 0"),
    ("`FitConfig(epochs=0)`", lambda tmp: _fit(epochs=0), ConfigError, "epochs"),
    ("`FitConfig(on_nonfinite='ignore')`", lambda tmp: _fit(on_nonfinite="ignore"), ConfigError,
     "one of ('raise', 'skip')"),
    ("`fit(..., resume=True)` without a `checkpoint_dir`", lambda tmp: _fit(), ConfigError, "checkpoint_dir"),
    ("`Router(n_modules=4, d_in=6, mode='greedy')`",
     lambda tmp: modnets.routing.Router(n_modules=4, d_in=6, mode="greedy"), ConfigError, "mode"),
    ("a `ModularLayer` input of the wrong width", lambda tmp: _layer()(torch.randn(5, 7)), ShapeError, "6"),
    ("an EM batch without example ids (`\"index\"`)", lambda tmp: _em_without_ids(), ConfigError, "index"),
    ("Fashion-MNIST folder missing", _fashion_missing, DataUnavailableError, "dataset-fashion-mnist"),
    ("Fashion-MNIST file truncated", _fashion_truncated, DataUnavailableError, "dataset-fashion-mnist"),
    ("hub name with a path (`../../etc/passwd`)", _hub_traversal, HubError, "name"),
    ("hub weights changed after saving", _hub_tampered, HubError, "sha256"),
    ("a NaN in a `Mask` interface (checking on)", lambda tmp: _interface_nan(), InterfaceError, "NaN"),
]

# (what the README shows, the command's arguments, a fragment of its one-line message)
CLI_CASES = [
    ("`modnets run nosuch`", ["run", "nosuch"], "unknown experiment 'nosuch'"),
    ("`modnets bench nosuch`", ["bench", "nosuch"], "unknown benchmark 'nosuch'"),
    ("`modnets run routing --nproc 0`", ["run", "routing", "--nproc", "0"], "--nproc must be >= 1"),
    ("`modnets run sorting --nproc 2`", ["run", "sorting", "--nproc", "2"], "does not train data-parallel"),
    ("`modnets hub show nosuch --hub DIR`", ["hub", "show", "nosuch", "--hub", "{tmp}"], "nosuch"),
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
