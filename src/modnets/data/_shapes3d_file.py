"""The real 3dshapes data set (DeepMind, ``3dshapes.h5``) as a :class:`~modnets.data.Shapes3DDataset`.

The file holds two HDF5 data sets: ``images`` ``(480000, 64, 64, 3)`` uint8 and ``labels`` ``(480000, 6)``
float64, the factor values in the order of :data:`~modnets.data.SHAPES3D_FACTORS`. The values become
integer labels ``0..n-1``:

==============  ================================  ======
factor          values in the file                labels
==============  ================================  ======
``floor_hue``   0.0, 0.1, ..., 0.9                0..9
``wall_hue``    0.0, 0.1, ..., 0.9                0..9
``object_hue``  0.0, 0.1, ..., 0.9                0..9
``scale``       0.75 to 1.25 in 8 even steps      0..7
``shape``       0, 1, 2, 3                        0..3
``orientation`` -30 to 30 in 15 even steps        0..14
==============  ================================  ======

Only the chosen rows are read from the file (the whole of it as float32 images would take 24 GB). The
file lists every factor combination in order, the last factor varying fastest, so its first rows all
share one floor and wall hue: ``limit`` therefore draws its rows at random (seeded) unless ``seed=None``.
Reading needs ``h5py`` (``pip install 'modnets[data]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataUnavailableError, MissingDependencyError
from ._shapes3d import SHAPES3D_FACTORS, Shapes3DDataset

__all__ = ["load_shapes3d"]

_SOURCE = "3dshapes.h5 from https://github.com/google-deepmind/3d-shapes"
#: factor name -> the values the file stores, in label order
_FACTOR_VALUES: dict[str, np.ndarray] = {
    "floor_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "wall_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "object_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "scale": np.linspace(0.75, 1.25, 8),
    "shape": np.arange(4, dtype=np.float64),
    "orientation": np.linspace(-30.0, 30.0, 15),
}
assert {k: len(v) for k, v in _FACTOR_VALUES.items()} == SHAPES3D_FACTORS
_TOLERANCE = 0.25  # a stored value may be this fraction of a step away from its grid value
_CHUNK = 4096  # rows read from the file at a time


def load_shapes3d(
    path: str | Path, *, limit: int | None = None, image_size: int = 64, seed: int | None = 0
) -> Shapes3DDataset:
    """Load images and factor labels from ``3dshapes.h5``.

    Args:
        path: the ``3dshapes.h5`` file.
        limit: load only this many rows; ``None``: every row.
        image_size: side of the images the data set holds (>= 8); 64 keeps them as stored, any other
            size resizes them with antialiasing.
        seed: with ``limit``, draw the rows uniformly at random without replacement from a generator
            seeded with ``seed`` (kept in file order); ``None``: the first ``limit`` rows.

    Returns:
        A :class:`~modnets.data.Shapes3DDataset`: images ``(N, 3, S, S)`` float32 in [0, 1], factors
        ``(N, 6)`` long labels.

    Raises:
        MissingDependencyError: ``h5py`` is not installed; the message gives the pip command.
        DataUnavailableError: the file is missing, not HDF5, lacks ``images`` or ``labels``, holds them in
            another shape or dtype, or holds a factor value off its grid; the message names the file and
            what was expected.
        ConfigError: a bad ``limit``, ``image_size`` or ``seed``.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"load_shapes3d limit must be an int >= 1 or None, got {limit!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ConfigError(f"load_shapes3d image_size must be an int >= 8, got {image_size!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"load_shapes3d seed must be an int >= 0 or None, got {seed!r}")
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "load_shapes3d reads HDF5 files with h5py, which is not installed: pip install 'modnets[data]' "
            "(or pip install h5py)"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"3dshapes file {path} is missing; expected {_SOURCE}")
    try:
        file = h5py.File(path, "r")
    except OSError as e:
        raise DataUnavailableError(f"3dshapes file {path} is not an HDF5 file ({e}); expected {_SOURCE}") from None
    with file:
        images, labels = _datasets(file, path)
        n = images.shape[0]
        if limit is None or limit >= n:
            rows = np.arange(n)
        elif seed is None:
            rows = np.arange(limit)
        else:
            rows = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
        factors = _labels(np.asarray(_read_rows(labels, rows)), rows, path)
        out = torch.empty(len(rows), 3, image_size, image_size, dtype=torch.float32)
        for start in range(0, len(rows), _CHUNK):
            part = rows[start:start + _CHUNK]
            block = np.asarray(_read_rows(images, part))  # (n, 64, 64, 3) uint8
            x = torch.from_numpy(block).permute(0, 3, 1, 2).float() / 255.0  # (n, 3, 64, 64)
            if image_size != x.shape[-1]:
                x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                                  align_corners=False).clamp(0.0, 1.0)
            out[start:start + len(part)] = x
    return Shapes3DDataset(out, torch.from_numpy(factors))


def _datasets(file, path: Path):
    """The ``images`` and ``labels`` data sets of an open file, their shapes and dtypes checked."""
    found = {}
    for key in ("images", "labels"):
        item = file.get(key)
        if item is None or not hasattr(item, "shape"):
            raise DataUnavailableError(f"3dshapes file {path} has no {key!r} data set; expected {_SOURCE}")
        found[key] = item
    images, labels = found["images"], found["labels"]
    if len(images.shape) != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
        raise DataUnavailableError(f"3dshapes file {path}: 'images' must be (N, 64, 64, 3) uint8, got "
                                   f"{images.shape} {images.dtype}")
    if labels.shape != (images.shape[0], len(SHAPES3D_FACTORS)) or labels.dtype.kind != "f":
        raise DataUnavailableError(f"3dshapes file {path}: 'labels' must be ({images.shape[0]}, 6) float, got "
                                   f"{labels.shape} {labels.dtype}")
    if images.shape[0] == 0:
        raise DataUnavailableError(f"3dshapes file {path} holds no images")
    return images, labels


def _labels(values: np.ndarray, rows: np.ndarray, path: Path) -> np.ndarray:
    """``(N, 6)`` int64 labels from the stored factor values; a value off its grid raises."""
    out = np.empty(values.shape, dtype=np.int64)
    for column, (name, grid) in enumerate(_FACTOR_VALUES.items()):
        v = values[:, column]
        index = np.abs(v[:, None] - grid[None, :]).argmin(axis=1)
        off = ~(np.abs(v - grid[index]) <= _TOLERANCE * (grid[1] - grid[0]))  # NaN is off too
        if off.any():
            bad = int(np.flatnonzero(off)[0])
            raise DataUnavailableError(
                f"3dshapes file {path}: row {int(rows[bad])} has {name} = {float(v[bad])!r}, not one of "
                f"{np.round(grid, 4).tolist()}"
            )
        out[:, column] = index
    return out


def _read_rows(dataset, rows: np.ndarray):
    """``dataset[rows]`` for increasing ``rows``: one slice when they are contiguous (h5py reads a slice much
    faster than a list of rows)."""
    if int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return dataset[int(rows[0]):int(rows[-1]) + 1]
    return dataset[rows]
