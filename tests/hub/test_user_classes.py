"""Entries of the user's own module classes: a process that has not registered the class is told what to
import, still checks the weights' hash, and ``--import`` or an entry point registers the class."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from modnets.errors import HubError
from modnets.hub import ENTRY_POINT_GROUP, Hub, Manifest, _registry, import_modules, register_module
from modnets.models import Find
from modnets.modules import Signature, TypedModule
from modnets.types import Latent, Logits, Mask

#: a user module file, as it would sit in the user's own package
USER_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    from modnets.hub import register_module
    from modnets.modules import Signature, TypedModule
    from modnets.types import Latent, Logits


    class Gain(TypedModule):
        def __init__(self, size: int) -> None:
            super().__init__(Signature(inputs={"x": Latent(size)}, output=Logits(size)))
            self.size = size
            self.gain = nn.Parameter(torch.linspace(1.0, 2.0, size))

        def hub_config(self) -> dict:
            return {"size": self.size}

        def compute(self, x, *, arg=None):
            return x * self.gain


    register_module(Gain)
    """
)


class Offset(TypedModule):
    """A user class defined at the top of a module: another process can find it from its import path."""

    def __init__(self, size: int) -> None:
        super().__init__(Signature(inputs={"x": Latent(size)}, output=Logits(size)))
        self.size = size
        self.offset = nn.Parameter(torch.arange(size, dtype=torch.float32))

    def hub_config(self) -> dict:
        return {"size": self.size}

    def compute(self, x, *, arg=None):
        return x + self.offset


OFFSET = register_module(Offset, name="tests.Offset")


def _weights(hub, ref):
    name, version = ref.split("@")
    return hub.root / "modules" / name / version / "module.safetensors"


def _flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture
def unregistered(monkeypatch):
    """Forget the registration of ``Offset``, as a process that never imported its module would."""

    def forget():
        monkeypatch.delitem(_registry._registered, OFFSET)

    return forget


# ---------------------------------------------------------------------------------------------- manifests
def test_the_manifest_records_where_the_class_is_defined(hub):
    hub.save(Offset(3), "offset")
    assert hub.manifest("offset").class_import == f"{Offset.__module__}:Offset"
    stored = json.loads((hub.root / "modules" / "offset" / "1" / "module.json").read_text())
    assert stored["format"] == "modnets-hub-entry/2" and stored["class_import"] == f"{Offset.__module__}:Offset"
    hub.save(Find(["red"], channels=4, mask=Mask()), "find")
    assert hub.manifest("find").class_import == "modnets.models._nmn_modules:Find"


def test_a_class_defined_in_a_function_records_no_import_path(hub):
    class Local(Offset):
        pass

    register_module(Local, name="tests.Local")
    hub.save(Local(2), "local")
    assert hub.manifest("local").class_import is None


def test_a_manifest_of_the_first_format_still_loads(hub):
    module = Offset(3)
    hub.save(module, "offset")
    path = hub.root / "modules" / "offset" / "1" / "module.json"
    data = json.loads(path.read_text())
    del data["class_import"]
    data["format"] = "modnets-hub-entry/1"
    path.write_text(json.dumps(data))
    hub.rebuild_index()
    assert hub.manifest("offset").class_import is None
    x = torch.randn(2, 3)
    assert torch.equal(hub.load("offset")(x), module(x))
    data["class_import"] = "tests:Offset"  # the first format has no such field
    with pytest.raises(HubError, match=r"unknown fields \['class_import'\]"):
        Manifest.from_json(json.dumps(data))


@pytest.mark.parametrize("bad", ["os.system", "a:b:c", "mod:", ":Cls", "mod:Cls()", "mod:<locals>.Cls", 3])
def test_a_malformed_import_path_is_refused(hub, bad):
    hub.save(Offset(3), "offset")
    data = json.loads((hub.root / "modules" / "offset" / "1" / "module.json").read_text())
    data["class_import"] = bad
    with pytest.raises(HubError, match="class_import must be 'module:QualName' or null"):
        Manifest.from_json(json.dumps(data))


# ---------------------------------------------------------------------------------------------- unregistered
def test_loading_an_unregistered_class_says_what_to_import(hub, unregistered):
    hub.save(Offset(3), "offset")
    unregistered()
    module = Offset.__module__
    with pytest.raises(HubError, match=rf"offset@1: class not registered in this process: 'tests.Offset' "
                                       rf"\(defined in {module}:Offset\); import {module} first "
                                       rf"\(--import {module} on the command line\)"):
        hub.load("offset")


def test_verify_lists_an_unregistered_class_apart_and_still_checks_the_weights(hub, unregistered):
    hub.save(Offset(3), "offset")
    hub.save(Find(["red"], channels=4, mask=Mask()), "find")
    unregistered()
    report = hub.verify()
    assert report.ok and report.checked == 2
    assert [p.ref for p in report.unregistered] == ["offset@1"]
    assert f"import {Offset.__module__} first" in report.unregistered[0].problem
    _flip_a_byte(_weights(hub, "offset@1"))
    report = hub.verify()
    assert not report.ok and report.unregistered == ()
    assert [p.ref for p in report.problems] == ["offset@1"]
    assert "does not match its manifest (sha256" in report.problems[0].problem


def test_rebuilding_the_index_keeps_entries_of_unregistered_classes(hub, unregistered):
    hub.save(Offset(3), "offset")
    unregistered()
    report = hub.rebuild_index()
    assert report.ok and [e.ref for e in hub.entries()] == ["offset@1"]


def test_a_manifest_naming_another_class_at_a_registered_import_path_is_a_problem(hub):
    hub.save(Offset(3), "offset")
    path = hub.root / "modules" / "offset" / "1" / "module.json"
    path.write_text(path.read_text().replace('"tests.Offset"', '"os.system"'))
    hub.rebuild_index()
    report = hub.verify()
    assert report.unregistered == () and [p.ref for p in report.problems] == ["offset@1"]
    assert "names the class 'os.system', which is not registered, with the import path of the registered " \
           "tests.Offset" in report.problems[0].problem


def test_import_modules_registers_the_classes_of_a_module(tmp_path, monkeypatch):
    (tmp_path / "usermod_direct.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_modules(["usermod_direct"]) == ["usermod_direct.Gain"]
    assert import_modules(["usermod_direct"]) == []  # already imported: nothing new
    with pytest.raises(HubError, match=r"cannot import module 'no_such_module_here' \(No module named"):
        import_modules(["no_such_module_here"])
    for bad in (".relative", "a b", "", "pkg:attr"):
        with pytest.raises(HubError, match="invalid module name"):
            import_modules([bad])
    with pytest.raises(HubError, match="needs a list of module names"):
        import_modules("usermod_direct")


# ---------------------------------------------------------------------------------------------- other processes
def _run(code: str, *args: str, path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([path, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


CLI = "import sys\nfrom modnets.cli import main\nsys.exit(main(sys.argv[1:]))"


def test_verify_in_a_fresh_process_with_and_without_import(tmp_path, monkeypatch):
    (tmp_path / "usermod_cli.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import usermod_cli

    root = str(tmp_path / "hub")
    Hub(root).save(usermod_cli.Gain(4), "gain")

    done = _run(CLI, "hub", "verify", "--import", "usermod_cli", "--hub", root, path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "checked 1 entries" in done.stdout and "all fine" in done.stdout

    done = _run(CLI, "hub", "verify", "--hub", root, path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "no problems in the files checked" in done.stdout and "1 entries not rebuilt" in done.stdout
    assert "class not registered in this process: 'usermod_cli.Gain'" in done.stdout
    assert "--import usermod_cli" in done.stdout

    done = _run(CLI, "hub", "show", "gain", "--hub", root, path=str(tmp_path))
    assert done.returncode == 0 and "defined in:  usermod_cli:Gain" in done.stdout

    _flip_a_byte(_weights(Hub(root), "gain@1"))
    for extra in (["--import", "usermod_cli"], []):
        done = _run(CLI, "hub", "verify", *extra, "--hub", root, "--json", path=str(tmp_path))
        result = json.loads(done.stdout)
        assert done.returncode == 1 and [p["ref"] for p in result["problems"]] == ["gain@1"]
        assert "does not match its manifest (sha256" in result["problems"][0]["problem"]
        assert result["unregistered"] == []


def test_an_unknown_import_is_one_line_and_exit_code_2(tmp_path, capsys):
    from modnets.cli import main

    for command in (["list"], ["search"], ["show", "x"], ["verify"], ["remove", "x@1"]):
        code = main(["hub", *command, "--import", "no_such_module_here", "--hub", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and err == "modnets: error: cannot import module 'no_such_module_here' (No module named " \
                                    "'no_such_module_here')\n"


ENTRY_POINTS = f"""
[{ENTRY_POINT_GROUP}]
by-module = usermod_plugin
by-class = usermod_plugin_class:Gain
broken = usermod_missing
"""

LOAD_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import sys, warnings
    import torch
    from modnets.hub import Hub, registered_names

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registered_names()
    print([n for n in names if n.startswith("usermod_")])
    print([str(w.message) for w in caught])
    module = Hub(sys.argv[1]).load("gain")
    print(type(module).__module__, torch.equal(module.gain, torch.linspace(1.0, 2.0, 4)))
    """
)


def test_installed_packages_declare_their_classes_by_entry_point(tmp_path, monkeypatch):
    (tmp_path / "usermod_plugin.py").write_text(USER_MODULE)
    (tmp_path / "usermod_plugin_class.py").write_text(USER_MODULE.replace("register_module(Gain)", ""))
    info = tmp_path / "usermod_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: usermod-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import usermod_plugin

    root = str(tmp_path / "hub")
    Hub(root).save(usermod_plugin.Gain(4), "gain")
    done = _run(LOAD_IN_A_FRESH_PROCESS, root, path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    registered, warned, loaded = done.stdout.splitlines()
    assert registered == "['usermod_plugin.Gain', 'usermod_plugin_class.Gain']"
    assert "entry point 'broken' (usermod_missing) failed to load and was skipped: ModuleNotFoundError" in warned
    assert loaded == "usermod_plugin True"
