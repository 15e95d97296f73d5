import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modnets.errors import HubError, ModnetsError
from modnets.hub import Hub, parse_ref, validate_version
from modnets.models import nmn


@pytest.fixture
def stored(hub, model):
    """A hub with the stem and find of ``model`` (one version each)."""
    hub.save(model.stem, "stem")
    hub.save(model.library["find"], "find")
    return hub


def entry_file(hub, ref, file):
    name, version = ref.split("@")
    return hub.root / "modules" / name / version / file


def edit_manifest(hub, ref, change):
    path = entry_file(hub, ref, "module.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------------------------------- corruption
def test_a_corrupted_weight_file_is_refused(stored):
    path = entry_file(stored, "find@1", "module.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # one flipped byte inside a weight
    path.write_bytes(bytes(raw))
    with pytest.raises(HubError, match=r"find@1: module.safetensors does not match its manifest \(sha256"):
        stored.load("find")
    report = stored.verify()
    assert not report.ok and [p.ref for p in report.problems] == ["find@1"] and report.checked == 2
    stored.load("stem")  # the other entries are unaffected


def test_a_truncated_weight_file_is_refused(stored):
    path = entry_file(stored, "stem@1", "module.safetensors")
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 3])
    with pytest.raises(HubError, match=rf"stem@1: module.safetensors is truncated: {size // 3} of {size} bytes"):
        stored.load("stem")
    path.unlink()
    with pytest.raises(HubError, match="stem@1: module.safetensors is missing"):
        stored.load("stem")


def test_a_replaced_weight_file_with_a_matching_hash_but_other_tensors_is_refused(stored, model):
    # Someone swaps in another module's weights and fixes the hash: the weights no longer fit the class.
    find_weights = entry_file(stored, "find@1", "module.safetensors")
    stem_weights = entry_file(stored, "stem@1", "module.safetensors").read_bytes()
    find_weights.write_bytes(stem_weights)
    stem_manifest = json.loads(entry_file(stored, "stem@1", "module.json").read_text())
    edit_manifest(stored, "find@1", lambda d: d.update(weights=stem_manifest["weights"]))
    stored.rebuild_index()  # also the index trusts the edited manifest now
    with pytest.raises(HubError, match=r"find@1: the weights do not fit modnets.models.Find .*Missing key"):
        stored.load("find")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["signature"].update({"output": {"$type": "Probs", "size": None}}),
         r"the manifest's signature \(features: FeatureMap\(66\)\) -> Probs does not match the signature "
         r"\(features: FeatureMap\(66\)\) -> Mask of modnets.models.Find"),
        (lambda d: d.update({"class": "os.system"}),
         r"find@1: class not registered in this process: 'os.system' .*; registered classes: modnets"),
        (lambda d: d.update({"class": "modnets.models.Relate"}), r"modnets.models.Relate cannot be rebuilt"),
        (lambda d: d["config"].update({"channels": 12}), r"manifest's signature .* does not match"),
        (lambda d: d["config"].update({"mask": {"$type": "subprocess.Popen"}}), "unknown data type 'subprocess.Popen'"),
        (lambda d: d["weights"].update({"sha256": "0" * 64}), "does not match its manifest"),
        (lambda d: d.update({"name": "stem"}), "describes stem@1, not the entry of its folder"),
        (lambda d: d.pop("provenance"), r"missing fields \['provenance'\]"),
        (lambda d: d.update({"format": "other/9"}), "has format 'other/9'"),
    ],
)
def test_a_tampered_manifest_is_refused(stored, change, message):
    edit_manifest(stored, "find@1", change)
    with pytest.raises(HubError, match="find@1: module.json changed since it was saved"):
        stored.load("find")  # the index remembers the manifest's hash
    # Once the index is rebuilt from the edited folder, each of the other checks still catches it.
    stored.rebuild_index()
    with pytest.raises(HubError, match=message):
        stored.load("find")
    assert [p.ref for p in stored.verify().problems] == ["find@1"]


def test_a_manifest_that_is_not_json_is_refused(stored):
    entry_file(stored, "find@1", "module.json").write_text('{"format": ')
    stored.index.path.unlink()
    with pytest.raises(HubError, match="find@1: module.json is not valid JSON"):
        stored.load("find")
    report = stored.rebuild_index()
    assert report.checked == 2 and [p.ref for p in report.problems] == ["find@1"]
    assert [e.ref for e in stored.entries()] == ["stem@1"]  # a broken entry is left out of the index


def test_the_index_can_be_rebuilt_from_the_folders(stored):
    before = stored.entries()
    stored.index.path.unlink()
    for suffix in ("-wal", "-shm"):
        stored.index.path.with_name(stored.index.path.name + suffix).unlink(missing_ok=True)
    assert stored.entries() == []
    report = stored.rebuild_index()
    assert report.ok and report.checked == 2
    assert stored.entries() == before


def test_an_unreadable_index_is_reported_and_rebuilt(stored):
    before = stored.entries()
    stored.index.reset()
    stored.index.path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(HubError, match="the hub index .* is unreadable"):
        stored.entries()
    with pytest.raises(HubError, match="cannot write the hub index"):
        stored.remove("find", 1)
    with pytest.raises(HubError, match="rebuild it from the folders"):
        stored.load("find")  # loading cannot confirm the manifest against the index
    assert stored.rebuild_index().ok and stored.entries() == before
    stored.load("find")


# ---------------------------------------------------------------------------------------------- names
BAD_NAMES = ["../evil", "..", ".", "", "/etc/passwd", "a/b", "a\\b", "Find", "with space", "x" * 101, "a\x00b",
             "-dash", "~user"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_leave_the_hub_folder_are_refused(tmp_path, model, name):
    hub = Hub(tmp_path / "hub")
    for call in (lambda: hub.save(model.stem, name), lambda: hub.load(name), lambda: hub.remove(name, 1),
                 lambda: hub.manifest(name), lambda: hub.entries(name), lambda: parse_ref(f"{name}@1")):
        with pytest.raises(HubError, match="invalid entry name"):
            call()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing was written, inside or beside the hub


@pytest.mark.parametrize("version", [0, -1, "0", "01", "../1", "1.0", "1/..", True, 1.0, None])
def test_versions_must_be_positive_integers(stored, version):
    with pytest.raises(HubError, match="invalid version"):
        validate_version(version)
    if version is not None:
        with pytest.raises(HubError, match="invalid version"):
            stored.load("find", version)


def test_hub_errors_are_modnets_errors():
    assert issubclass(HubError, ModnetsError)


# ---------------------------------------------------------------------------------------------- crashes
KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from modnets.hub import Hub, _index, _store
    from modnets.models import nmn

    root, point = sys.argv[1], sys.argv[2]
    torch.manual_seed(1)
    module = nmn(True, image_size=32, hidden=8).stem

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "writing-weights":
        def half_then_die(path, data):
            with open(path, "xb") as f:
                f.write(data[: len(data) // 2])
            die()
        _store.write_durably = half_then_die
    elif point == "before-publish":
        _store.publish_dir = die
    elif point == "after-publish":
        publish = _store.publish_dir
        _store.publish_dir = lambda staging, final: (publish(staging, final), die())
    elif point == "after-index-insert":
        insert = _index.HubIndex.insert
        _index.HubIndex.insert = staticmethod(lambda conn, entry: (insert(conn, entry), die()))
    Hub(root).save(module, "stem")
    """
)


@pytest.mark.parametrize("point", ["writing-weights", "before-publish", "after-publish", "after-index-insert"])
def test_a_save_killed_midway_leaves_the_old_state_or_the_whole_new_entry(tmp_path, point):
    hub = Hub(tmp_path / "hub")
    torch.manual_seed(0)
    old = nmn(True, image_size=32, hidden=8).stem.eval()
    hub.save(old, "stem")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(hub.root), point], env=env, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-2000:]

    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(hub.load("stem", 1)(x), old(x))  # the old entry is intact
    assert [e.ref for e in hub.entries()] == ["stem@1"]  # the index holds the committed state only
    report = hub.verify()
    assert report.temporary == (1 if point in ("writing-weights", "before-publish") else 0)
    if point in ("writing-weights", "before-publish"):
        assert hub.versions("stem") == [1] and report.ok  # the old state: nothing half-written is visible
    else:
        # The new state: the whole entry was published and loads; only the index lags behind.
        assert hub.versions("stem") == [1, 2]
        torch.manual_seed(1)
        new = nmn(True, image_size=32, hidden=8).stem.eval()
        assert torch.equal(hub.load("stem", 2)(x), new(x))
        assert [(p.ref, "not in the index" in p.problem) for p in report.problems] == [("stem@2", True)]
        assert hub.rebuild_index().ok and [e.ref for e in hub.entries()] == ["stem@1", "stem@2"]
    assert hub.clean(min_age_s=0) == report.temporary
    after = hub.save(old, "stem")  # the hub stays writable: the dead writer's lock went with it
    assert after.version == hub.versions("stem")[-1] and hub.verify().ok and hub.verify().temporary == 0
