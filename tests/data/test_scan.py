"""``load_scan`` on SCAN task files written in the real format."""

import pytest

from modnets.data import ScanDataset, ScanPair, load_scan
from modnets.errors import ConfigError, DataUnavailableError

LINES = [
    "IN: jump OUT: I_JUMP",
    "IN: jump twice after walk left OUT: I_TURN_LEFT I_WALK I_JUMP I_JUMP",
    "IN: turn opposite right and look OUT: I_TURN_RIGHT I_TURN_RIGHT I_LOOK",
]


def test_load_scan_reads_command_and_action_tokens(tmp_path):
    path = tmp_path / "tasks_train_simple.txt"
    path.write_text("\n".join(LINES) + "\n\n")  # the real files end with a newline
    ds = load_scan(path)
    assert isinstance(ds, ScanDataset) and len(ds) == 3 and ds.path == path
    assert ds[1] == ScanPair(("jump", "twice", "after", "walk", "left"),
                             ("I_TURN_LEFT", "I_WALK", "I_JUMP", "I_JUMP"))
    assert ds[-1].command == ("turn", "opposite", "right", "and", "look")
    assert ds.action_words == ("I_JUMP", "I_LOOK", "I_TURN_LEFT", "I_TURN_RIGHT", "I_WALK")
    assert "twice" in ds.command_words and "I_JUMP" not in ds.command_words
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("jump OUT: I_JUMP", "expected 'IN: <command> OUT: <actions>'"),
        ("IN: jump I_JUMP", "expected 'IN: <command> OUT: <actions>'"),
        ("IN: jump OUT: I_JUMP OUT: I_JUMP", "expected 'IN: <command> OUT: <actions>'"),
        ("IN: OUT: I_JUMP", "the command is empty"),
        ("IN: jump OUT:", "the action sequence is empty"),
    ],
)
def test_a_malformed_line_raises_naming_the_file_and_line(tmp_path, bad, message):
    path = tmp_path / "tasks.txt"
    path.write_text("\n".join([LINES[0], "", bad, LINES[1]]))
    with pytest.raises(DataUnavailableError, match=f"tasks.txt, line 3: {message}"):
        load_scan(path)


def test_missing_empty_or_binary_files_raise(tmp_path):
    with pytest.raises(DataUnavailableError, match="SCAN file .*nothing.txt is missing; expected a SCAN task file"):
        load_scan(tmp_path / "nothing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataUnavailableError, match="empty.txt holds no examples"):
        load_scan(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00IN")
    with pytest.raises(DataUnavailableError, match="binary.txt cannot be read as UTF-8 text"):
        load_scan(tmp_path / "binary.txt")


def test_a_dataset_checks_its_pairs():
    with pytest.raises(ConfigError, match="pair 1"):
        ScanDataset([ScanPair(("jump",), ("I_JUMP",)), ScanPair((), ("I_JUMP",))])
