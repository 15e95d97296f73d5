"""Fuzzing the manifest reader: whatever ``module.json`` holds, reading it either gives a valid manifest or
raises ``HubError``, never another exception."""

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.errors import HubError
from modnets.hub import Hub, Manifest
from modnets.models import Measure
from modnets.types import Mask, Probs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _valid() -> dict:
    """A real ``module.json``, as the hub writes it."""
    with tempfile.TemporaryDirectory() as root:
        Hub(root).save(Measure(hidden=4, n_answers=3, mask=Mask(), answer=Probs(3)), "measure", seed=1,
                       metrics={"accuracy": 0.5})
        return json.loads(next(Path(root).rglob("module.json")).read_text())


VALID = _valid()


def _read(text) -> Manifest | None:
    try:
        return Manifest.from_json(text)
    except HubError:
        return None


def test_the_valid_manifest_reads_back():
    assert json.loads(Manifest.from_json(json.dumps(VALID)).to_json()) == VALID


@settings(max_examples=100, deadline=None)
@given(st.one_of(json_values, st.text(), st.binary()))
def test_arbitrary_json_text_or_bytes_is_rejected_cleanly(value):
    text = value if isinstance(value, str | bytes) else json.dumps(value)
    _read(text)  # anything but HubError fails the test


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PATHS), json_values, st.booleans())
def test_a_manifest_with_one_field_replaced_or_removed_is_read_or_rejected_cleanly(path, value, remove):
    data = json.loads(json.dumps(VALID))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if remove and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    manifest = _read(json.dumps(data))
    if manifest is not None:  # accepted: then it is a manifest that writes and reads back the same
        assert Manifest.from_json(manifest.to_json()).to_json() == manifest.to_json()
