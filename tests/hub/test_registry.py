"""The allow-list: presets register themselves, under the names existing manifests use."""

import json
import os
import subprocess
import sys
import textwrap

from modnets.hub import registered_names
from modnets.models import Describe, Find, Measure, Relate
from modnets.modules import CNNStem, Signature
from modnets.types import FeatureMap, Image

#: the class names written into manifests so far; entries saved under them must keep loading
MANIFEST_NAMES = {
    "modnets.models.Find": Find,
    "modnets.models.Relate": Relate,
    "modnets.models.Measure": Measure,
    "modnets.models.Describe": Describe,
    "modnets.modules.CNNStem": CNNStem,
}


def test_the_presets_are_registered_under_their_manifest_names():
    from modnets.hub._registry import module_class

    assert set(MANIFEST_NAMES) <= set(registered_names())
    for name, cls in MANIFEST_NAMES.items():
        assert module_class(name).cls is cls


def test_an_entry_loads_in_a_process_that_imported_only_the_hub(hub, model):
    hub.save(model.library["find"], "find")
    hub.save(model.stem, "stem")
    assert json.loads((hub.root / "modules" / "find" / "1" / "module.json").read_text())["class"] == (
        "modnets.models.Find"
    )
    script = textwrap.dedent(
        f"""
        import modnets.hub
        hub = modnets.hub.Hub({str(hub.root)!r})
        print(type(hub.load("find")).__name__, type(hub.load("stem")).__name__)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Find", "CNNStem"]


def test_a_stem_declares_its_own_signature():
    stem = CNNStem(3, (8, 16))  # 16 channels + 2 coordinate channels
    assert stem.signature == Signature(inputs={"images": Image(3)}, output=FeatureMap(18))
