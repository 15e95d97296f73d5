import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset, default_collate

from modnets.errors import ConfigError, DataUnavailableError
from modnets.train import AuxiliaryDataset, AuxiliaryManifest, FitConfig, RunDir, cache_outputs, fit, module_sha256


def _collate(items):
    x, y = default_collate(items)
    return {"x": x, "y": y}


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _cache(producer, tmp_path, data, **kw):
    return cache_outputs(producer, data, directory=tmp_path / "cache", collate=_collate,
                         outputs=lambda b: {"h": producer(b["x"])}, targets=("y",), **kw)


def test_round_trip_in_shards_with_ids_targets_and_the_producer_hash(tmp_path):
    producer, data = nn.Linear(4, 3), _data(50)
    manifest = _cache(producer, tmp_path, data, shard_size=16, batch_size=7, name="enc")
    assert [s.n for s in manifest.shards] == [16, 16, 16, 2]
    assert manifest.producer == "enc" and manifest.producer_sha256 == module_sha256(producer)
    assert manifest.fields["h"] == {"dtype": "float32", "shape": [3]}
    on_disk = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert on_disk["n_examples"] == 50 and AuxiliaryManifest.read(tmp_path / "cache") == manifest

    aux = AuxiliaryDataset(tmp_path / "cache", producer=producer)
    assert len(aux) == 50 and torch.equal(aux.sample_ids, torch.arange(50))
    x, y = data.tensors
    with torch.no_grad():
        torch.testing.assert_close(aux.tensors["h"], producer(x))
    assert torch.equal(aux.tensors["y"], y)
    item = aux[7]
    assert set(item) == {"sample_id", "h", "y"} and int(item["sample_id"]) == 7


def test_a_changed_producer_makes_the_cache_stale_and_it_is_refused(tmp_path):
    producer = nn.Linear(4, 3)
    manifest = _cache(producer, tmp_path, _data())
    with torch.no_grad():
        producer.weight[0, 0] += 1e-3
    with pytest.raises(DataUnavailableError, match="stale auxiliary data set .* rebuild it"):
        AuxiliaryDataset(tmp_path / "cache", producer=producer)
    with pytest.raises(DataUnavailableError, match="stale"):
        AuxiliaryDataset(tmp_path / "cache", producer_sha256="0" * 64)
    assert len(AuxiliaryDataset(tmp_path / "cache", producer_sha256=manifest.producer_sha256)) == 50
    rebuilt = _cache(producer, tmp_path, _data())  # writing again replaces the stale cache
    assert rebuilt.producer_sha256 == module_sha256(producer) != manifest.producer_sha256
    assert len(AuxiliaryDataset(tmp_path / "cache", producer=producer)) == 50


def test_a_valid_cache_is_reused_and_a_changed_shard_is_refused(tmp_path):
    producer = nn.Linear(4, 3)
    first = _cache(producer, tmp_path, _data())
    calls = []
    again = cache_outputs(producer, _data(), directory=tmp_path / "cache", collate=_collate,
                          outputs=lambda b: calls.append(1) or {"h": producer(b["x"])}, targets=("y",))
    assert again == first and not calls  # nothing recomputed
    shard = tmp_path / "cache" / first.shards[0].file
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DataUnavailableError, match="shard-00000.safetensors is missing or changed"):
        AuxiliaryDataset(tmp_path / "cache", producer=producer)


def test_opening_errors(tmp_path):
    with pytest.raises(DataUnavailableError, match="no readable auxiliary data set"):
        AuxiliaryDataset(tmp_path / "nothing", producer_sha256="0" * 64)
    producer = nn.Linear(4, 3)
    _cache(producer, tmp_path, _data())
    with pytest.raises(ConfigError, match="exactly one of producer or producer_sha256"):
        AuxiliaryDataset(tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"fields \['z'\] are not cached; cached: h, y"):
        AuxiliaryDataset(tmp_path / "cache", producer=producer, fields=("z",))


def test_downstream_module_trains_from_the_cache_alone(tmp_path):
    torch.manual_seed(0)
    upstream = nn.Sequential(nn.Linear(4, 8), nn.Tanh())  # "trained" upstream module, frozen from here on
    data = _data(256)
    _cache(upstream, tmp_path, data, shard_size=100)
    del upstream  # the downstream module never runs it

    class Head(nn.Module):
        batch_keys = {"h": "(B, 8) cached upstream outputs", "y": "(B,) class labels"}

        batch_keys = {"h": "(B, 8) cached features", "y": "(B,) labels"}

        def __init__(self):
            super().__init__()
            self.net = nn.Linear(8, 2)

        def loss(self, batch):
            return {"loss": nn.functional.cross_entropy(self.net(batch["h"]), batch["y"])}

        def predict(self, batch):
            return self.net(batch["h"]).argmax(-1)

    aux = AuxiliaryDataset(tmp_path / "cache", producer_sha256=json.loads(
        (tmp_path / "cache" / "manifest.json").read_text())["producer_sha256"])
    head = Head()
    everything = default_collate([aux[i] for i in range(len(aux))])
    with torch.no_grad():
        before = float(head.loss(everything)["loss"])
    fit(head, aux, config=FitConfig(epochs=8, batch_size=64, lr=5e-2), collate=default_collate,
        run=RunDir(progress=False))
    with torch.no_grad():
        after = float(head.loss(everything)["loss"])
    assert after < 0.6 * before


# ---------------------------------------------------------------------------------------------- crashes
KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset, default_collate
    from modnets import _files
    from modnets.train import cache_outputs

    directory, point = sys.argv[1], sys.argv[2]

    def die_at(step):
        if step == point:
            os.kill(os.getpid(), signal.SIGKILL)

    _files._after_swap_step = die_at
    torch.manual_seed(1)
    producer = nn.Linear(4, 3)
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x[:, 0] > 0).long())

    def collate(items):
        x, y = default_collate(items)
        return {"x": x, "y": y}

    cache_outputs(producer, data, directory=directory, collate=collate, outputs=lambda b: {"h": producer(b["x"])},
                  targets=("y",), shard_size=16)
    """
)


def _loads(directory, producer):
    try:
        aux = AuxiliaryDataset(directory, producer=producer)
    except DataUnavailableError:
        return False
    with torch.no_grad():
        return torch.equal(aux.tensors["h"], producer(_data().tensors[0]))


@pytest.mark.parametrize(("point", "survivor"), [("aside", "old"), ("placed", "new")])
def test_a_writer_killed_between_the_steps_of_the_swap_leaves_the_old_or_the_new_cache(tmp_path, point, survivor):
    torch.manual_seed(0)
    old = nn.Linear(4, 3)
    _cache(old, tmp_path, _data(), shard_size=16)
    torch.manual_seed(1)
    new = nn.Linear(4, 3)  # what the killed writer builds
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "cache"), point], env=env,
                          capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]

    # Readers find exactly one whole cache, without anything repairing the folder first.
    assert (_loads(tmp_path / "cache", old), _loads(tmp_path / "cache", new)) == (survivor == "old", survivor == "new")
    expected = module_sha256(old if survivor == "old" else new)
    assert AuxiliaryManifest.read(tmp_path / "cache").producer_sha256 == expected

    # The next writer settles the swap and tidies up: a valid cache is reused, a stale one rebuilt.
    calls = []
    cache_outputs(new, _data(), directory=tmp_path / "cache", collate=_collate, shard_size=16, targets=("y",),
                  outputs=lambda b: calls.append(1) or {"h": new(b["x"])})
    assert bool(calls) == (survivor == "old")
    assert _loads(tmp_path / "cache", new) and [p.name for p in tmp_path.iterdir()] == ["cache"]
