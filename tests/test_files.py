import pytest

from modnets import _files
from modnets._files import (
    current_dir,
    publish_dir,
    recover_dir,
    replace_durably,
    replacing,
    staging_dir,
    swap_dir,
    write_durably,
)


def _stage(target, text):
    staged = staging_dir(target)
    write_durably(staged / "data.txt", text.encode())
    return staged


class Stop(Exception):
    """Stands for a crash: raised from the swap's test hook, it leaves the disk as the step left it."""


def _stop_after(monkeypatch, step):
    def hook(at):
        if at == step:
            raise Stop(at)

    monkeypatch.setattr(_files, "_after_swap_step", hook)


def test_write_durably_writes_a_new_file_and_never_overwrites(tmp_path):
    write_durably(tmp_path / "a.bin", b"first")
    assert (tmp_path / "a.bin").read_bytes() == b"first"
    with pytest.raises(FileExistsError):
        write_durably(tmp_path / "a.bin", b"second")
    assert (tmp_path / "a.bin").read_bytes() == b"first"


def test_replace_durably_creates_then_replaces_and_leaves_no_temporary_file(tmp_path):
    replace_durably(tmp_path / "state.bin", b"one")
    replace_durably(tmp_path / "state.bin", b"two")
    assert (tmp_path / "state.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_an_error_while_replacing_keeps_the_old_file(tmp_path):
    replace_durably(tmp_path / "state.bin", b"old")
    with pytest.raises(RuntimeError, match="interrupted"), replacing(tmp_path / "state.bin") as f:
        f.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert (tmp_path / "state.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_publish_dir_moves_a_folder_and_refuses_to_replace_one(tmp_path):
    publish_dir(_stage(tmp_path / "entry", "v1"), tmp_path / "entry")
    assert (tmp_path / "entry" / "data.txt").read_text() == "v1"
    with pytest.raises(OSError):
        publish_dir(_stage(tmp_path / "entry", "v2"), tmp_path / "entry")
    assert (tmp_path / "entry" / "data.txt").read_text() == "v1"


def test_swap_dir_creates_then_replaces_a_folder_and_tidies_up(tmp_path):
    target = tmp_path / "cache"
    swap_dir(_stage(target, "old"), target)
    (target / "only-in-old.txt").write_text("x")
    swap_dir(_stage(target, "new"), target)
    assert sorted(p.name for p in target.iterdir()) == ["data.txt"]
    assert (target / "data.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


@pytest.mark.parametrize(("step", "seen"), [("aside", "old"), ("placed", "new")])
def test_a_swap_stopped_after_any_step_leaves_old_or_new_readable_and_recovers(tmp_path, monkeypatch, step, seen):
    target = tmp_path / "cache"
    swap_dir(_stage(target, "old"), target)
    _stop_after(monkeypatch, step)
    with pytest.raises(Stop):
        swap_dir(_stage(target, "new"), target)
    assert (current_dir(target) / "data.txt").read_text() == seen  # a reader finds a whole folder

    recover_dir(target)
    assert (target / "data.txt").read_text() == seen
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # staging and old folders are gone
    monkeypatch.undo()
    swap_dir(_stage(target, "newer"), target)
    assert (target / "data.txt").read_text() == "newer"


def test_a_swap_stopped_after_the_first_step_is_settled_by_the_next_swap(tmp_path, monkeypatch):
    target = tmp_path / "cache"
    swap_dir(_stage(target, "old"), target)
    _stop_after(monkeypatch, "aside")
    with pytest.raises(Stop):
        swap_dir(_stage(target, "new"), target)
    monkeypatch.undo()
    assert not target.exists()
    swap_dir(_stage(target, "newer"), target)  # no recover_dir call first
    assert (target / "data.txt").read_text() == "newer"
    assert current_dir(target) == target


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path):
    target = tmp_path / "cache"
    swap_dir(_stage(target, "old"), target)
    with pytest.raises(FileNotFoundError):
        swap_dir(tmp_path / "no-such-folder", target)
    assert (target / "data.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_current_dir_changes_nothing_and_names_the_target_when_there_is_nothing(tmp_path):
    target = tmp_path / "cache"
    assert current_dir(target) == target
    recover_dir(target)  # nothing to recover: no error, nothing created
    assert list(tmp_path.iterdir()) == []
