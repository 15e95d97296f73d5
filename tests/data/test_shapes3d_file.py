"""``load_shapes3d`` on a small ``3dshapes.h5`` written in the real layout."""

import builtins
import itertools

import numpy as np
import pytest
import torch

from modnets.data import SHAPES3D_FACTORS, Shapes3DDataset, collate_shapes3d, load_shapes3d
from modnets.errors import ConfigError, DataUnavailableError, MissingDependencyError

h5py = pytest.importorskip("h5py")

HUES = np.linspace(0.0, 1.0, 10, endpoint=False)
SCALES = np.linspace(0.75, 1.25, 8)
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)


def factor_values(labels):
    """The values the real file stores for integer labels ``(N, 6)``."""
    f, w, o, s, shape, r = labels.T
    return np.stack([HUES[f], HUES[w], HUES[o], SCALES[s], shape.astype(np.float64), ORIENTATIONS[r]], axis=1)


def some_labels(n=40):
    """Labels in the file's order (the last factor varying fastest), every value of every factor present."""
    grid = itertools.product(*(range(k) for k in SHAPES3D_FACTORS.values()))
    picked = [next(grid) for _ in range(3)]
    rng = np.random.default_rng(1)
    picked += [tuple(int(rng.integers(k)) for k in SHAPES3D_FACTORS.values()) for _ in range(n - 3 - 15)]
    picked += [(k % 10, k % 10, k % 10, k % 8, k % 4, k) for k in range(15)]
    return np.array(picked, dtype=np.int64)


def write_h5(path, labels, images=None, *, label_values=None):
    n = len(labels)
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3))
        f.create_dataset("labels", data=factor_values(labels) if label_values is None else label_values)
    return images


def test_load_shapes3d_reads_images_and_turns_values_into_labels(tmp_path):
    labels = some_labels()
    images = write_h5(tmp_path / "3dshapes.h5", labels)
    ds = load_shapes3d(tmp_path / "3dshapes.h5")
    assert isinstance(ds, Shapes3DDataset) and len(ds) == len(labels)
    assert ds.factors.dtype == torch.long and ds.factors.tolist() == labels.tolist()
    assert ds.images.shape == (len(labels), 3, 64, 64) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
    batch = collate_shapes3d([ds[i] for i in range(4)])
    assert batch["x"].shape == (4, 3, 64, 64) and batch["shape"].tolist() == labels[:4, 4].tolist()


def test_limit_draws_rows_at_random_or_takes_the_first(tmp_path):
    labels = some_labels()
    images = write_h5(tmp_path / "3dshapes.h5", labels)
    first = load_shapes3d(tmp_path / "3dshapes.h5", limit=5, seed=None)
    assert first.factors.tolist() == labels[:5].tolist()
    drawn = load_shapes3d(tmp_path / "3dshapes.h5", limit=8, seed=3)
    rows = [int(np.flatnonzero((images == (drawn.images[i] * 255).round().byte().permute(1, 2, 0).numpy())
                               .all(axis=(1, 2, 3)))[0]) for i in range(8)]
    assert rows == sorted(rows) and len(set(rows)) == 8 and rows != list(range(8))
    assert drawn.factors.tolist() == labels[rows].tolist()  # each image keeps its own labels
    again = load_shapes3d(tmp_path / "3dshapes.h5", limit=8, seed=3)
    assert torch.equal(again.factors, drawn.factors)


def test_image_size_resizes(tmp_path):
    labels = some_labels(20)
    write_h5(tmp_path / "3dshapes.h5", labels, images=np.full((20, 64, 64, 3), 128, dtype=np.uint8))
    ds = load_shapes3d(tmp_path / "3dshapes.h5", image_size=32)
    assert ds.images.shape == (20, 3, 32, 32)
    assert torch.allclose(ds.images, torch.full_like(ds.images, 128 / 255), atol=1e-5)


def write_datasets(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: None, "3dshapes file .*3dshapes.h5 is missing"),
        (lambda p: p.write_bytes(b"not hdf5"), "3dshapes.h5 is not an HDF5 file"),
        (lambda p: write_datasets(p, images=np.zeros((2, 64, 64, 3), np.uint8)), "has no 'labels' data set"),
        (lambda p: write_datasets(p, images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros((2, 6))),
         "'images' must be \\(N, 64, 64, 3\\) uint8"),
        (lambda p: write_datasets(p, images=np.zeros((2, 64, 64, 3), np.float32), labels=np.zeros((2, 6))),
         "'images' must be \\(N, 64, 64, 3\\) uint8"),
        (lambda p: write_datasets(p, images=np.zeros((2, 64, 64, 3), np.uint8), labels=np.zeros((3, 6))),
         "'labels' must be \\(2, 6\\) float"),
        (lambda p: write_h5(p, some_labels(20), label_values=factor_values(some_labels(20)) + [0, 0, 0, 0.03, 0, 0]),
         "row 0 has scale = 0.78, not one of \\[0.75, 0.8214"),
        (lambda p: write_h5(p, some_labels(20), label_values=np.where(np.eye(20, 6, k=-5) > 0, np.nan,
                                                                     factor_values(some_labels(20)))),
         "row 5 has floor_hue = nan"),
    ],
)
def test_missing_or_malformed_files_raise_naming_the_file(tmp_path, write, message):
    path = tmp_path / "3dshapes.h5"
    write(path)
    with pytest.raises(DataUnavailableError, match=message):
        load_shapes3d(path)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"limit": 0}, "limit"), ({"image_size": 4}, "image_size"), ({"seed": -1}, "seed")]
)
def test_bad_arguments_raise_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_shapes3d(tmp_path / "3dshapes.h5", **kwargs)


def test_without_h5py_the_error_gives_the_pip_command(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(MissingDependencyError, match="pip install 'modnets\\[data\\]'"):
        load_shapes3d(tmp_path / "3dshapes.h5")
