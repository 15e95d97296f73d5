"""The real easy-vqa data set (PyPI ``easy-vqa``) as NMN examples: image, program, answer, question.

easy-vqa holds 64x64 PNG images of one coloured shape (4,000 train / 1,000 test images) and 38,575 /
9,673 questions about them (the shape, its colour, or whether a colour or shape is (not) there). Each
question is turned into a program by :func:`~modnets.data.parse_easy_vqa_question`, so that the NMN
modules run on it, and batches have the keys of the CLEVR-like ones.

Example:
    >>> from modnets.data import load_easy_vqa
    >>> ds = load_easy_vqa("test", image_size=32, limit=20)
    >>> item = ds[0]
    >>> item["image"].shape, str(item["program"])
    (torch.Size([3, 32, 32]), 'describe[shape](find[red])')
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..compose._program import Program
from ..errors import ConfigError, DataUnavailableError
from ._clevr import collate_clevr_like, subset_index
from ._easy_vqa_parser import EASY_VQA_ANSWERS, easy_vqa_kind, parse_easy_vqa_question

__all__ = ["EasyVQADataset", "collate_easy_vqa", "load_easy_vqa"]

SPLITS = ("train", "test")
_INSTALL = "install it with `pip install easy-vqa` (the images and questions ship inside the package)"


def collate_easy_vqa(items: Sequence[Mapping]) -> dict:
    """Batch items of :class:`EasyVQADataset` (use as ``DataLoader(..., collate_fn=...)``).

    Returns:
        ``{"index": (B,) long, "image": (B, 3, H, W) float32, "answer": (B,) long, "depth": (B,) long,
        "kind": (B,) long (indices into EASY_VQA_KINDS), "program": list of B Programs,
        "question": list of B str}``.

    Raises:
        ConfigError: ``items`` is empty.
    """
    if len(items) == 0:
        raise ConfigError("collate_easy_vqa needs at least one item, got an empty batch")
    # the CLEVR-like batch, plus the question kind
    return {**collate_clevr_like(items), "kind": torch.tensor([it["kind"] for it in items], dtype=torch.long)}


class EasyVQADataset(Dataset):
    """easy-vqa questions with their images and programs.

    Each image is stored once (as uint8) and shared by its questions.

    Attributes:
        images: ``(I, 3, S, S)`` uint8, the distinct images.
        image_rows: ``(N,)`` long, the row of ``images`` that question ``i`` is about.
        image_ids: ``(N,)`` long, easy-vqa's id of that image.
        programs: ``N`` programs (see :func:`~modnets.data.parse_easy_vqa_question`).
        answers: ``(N,)`` long, indices into :data:`~modnets.data.EASY_VQA_ANSWERS`.
        questions: ``N`` question strings.
        kinds: ``(N,)`` long, indices into :data:`~modnets.data.EASY_VQA_KINDS`.
        depths: ``(N,)`` long, ``programs[i].depth``.
        split: ``"train"`` or ``"test"``.
    """

    def __init__(
        self,
        *,
        images: torch.Tensor,
        image_rows: torch.Tensor,
        image_ids: torch.Tensor,
        programs: Sequence[Program],
        answers: torch.Tensor,
        questions: Sequence[str],
        split: str,
    ):
        n = len(programs)
        sizes = {"image_rows": len(image_rows), "image_ids": len(image_ids), "answers": len(answers),
                 "questions": len(questions)}
        if any(v != n for v in sizes.values()):
            raise ConfigError(f"EasyVQADataset parts must have {n} entries each (one per program), got {sizes}")
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ConfigError(f"images must be (I, 3, H, W) uint8, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.image_rows = image_rows
        self.image_ids = image_ids
        self.programs = list(programs)
        self.answers = answers
        self.questions = list(questions)
        self.kinds = torch.tensor([easy_vqa_kind(p) for p in self.programs], dtype=torch.long)
        self.depths = torch.tensor([p.depth for p in self.programs], dtype=torch.long)
        self.split = split

    collate = staticmethod(collate_easy_vqa)

    def __len__(self) -> int:
        return len(self.programs)

    def __getitem__(self, i: int) -> dict:
        """Question ``i``: ``{"index", "image" (3, S, S) float in [0, 1], "program", "answer", "depth",
        "kind", "question"}``."""
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for an EasyVQADataset of {n} questions")
        i %= n
        return {
            "index": i,
            "image": self.images[self.image_rows[i]].float() / 255.0,
            "program": self.programs[i],
            "answer": int(self.answers[i]),
            "depth": int(self.depths[i]),
            "kind": int(self.kinds[i]),
            "question": self.questions[i],
        }

    def subset(self, indices) -> EasyVQADataset:
        """A new data set of the questions at ``indices`` (ints, a long tensor or array, or a bool mask)."""
        listed = subset_index(indices).tolist()
        return EasyVQADataset(
            images=self.images, image_rows=self.image_rows[listed], image_ids=self.image_ids[listed],
            programs=[self.programs[j] for j in listed], answers=self.answers[listed],
            questions=[self.questions[j] for j in listed], split=self.split,
        )

    def majority_accuracy(self) -> float:
        """Accuracy of always giving this set's most frequent answer (the floor any model must beat)."""
        return float(torch.bincount(self.answers, minlength=len(EASY_VQA_ANSWERS)).max()) / max(1, len(self))

    def __repr__(self) -> str:
        return (f"EasyVQADataset(split={self.split!r}, n={len(self)}, images={self.images.shape[0]}, "
                f"image={tuple(self.images.shape[1:])})")


def load_easy_vqa(split: str = "train", *, image_size: int = 32, limit: int | None = None) -> EasyVQADataset:
    """Load easy-vqa's ``split``, its images resized to ``image_size`` and its questions parsed.

    Args:
        split: ``"train"`` (38,575 questions, 4,000 images) or ``"test"`` (9,673, 1,000).
        image_size: side of the resized images (>= 8; 32 or 48 fit the NMN preset's two-stage stem, 64
            keeps them as they are).
        limit: keep only the first ``limit`` questions (and load only their images); ``None``: all.

    Raises:
        DataUnavailableError: the ``easy-vqa`` package (or an image file) is missing; the message says
            how to install it.
        ConfigError: an unknown ``split``, a bad ``image_size`` or ``limit``.
        ProgramSyntaxError: a question the parser cannot read (none in the released data).
    """
    if split not in SPLITS:
        raise ConfigError(f"load_easy_vqa split must be one of {SPLITS}, got {split!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ConfigError(f"load_easy_vqa image_size must be an int >= 8, got {image_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"load_easy_vqa limit must be an int >= 1 or None, got {limit!r}")
    try:
        import easy_vqa
    except ImportError:
        raise DataUnavailableError(f"the easy-vqa data set is not installed; {_INSTALL}") from None
    try:
        if split == "train":
            texts, answers, ids = easy_vqa.get_train_questions()
            paths = easy_vqa.get_train_image_paths()
        else:
            texts, answers, ids = easy_vqa.get_test_questions()
            paths = easy_vqa.get_test_image_paths()
    except (OSError, ValueError) as e:
        raise DataUnavailableError(f"the easy-vqa {split} data cannot be read ({e}); {_INSTALL}") from None
    if limit is not None:
        texts, answers, ids = texts[:limit], answers[:limit], ids[:limit]
    unknown = sorted(set(answers) - set(EASY_VQA_ANSWERS))
    if unknown:
        raise DataUnavailableError(f"easy-vqa answers {unknown} are not in EASY_VQA_ANSWERS; {_INSTALL}")
    distinct = sorted(set(ids))
    missing = [i for i in distinct if i not in paths]
    if missing:
        raise DataUnavailableError(f"easy-vqa {split} images {missing[:5]} are missing; {_INSTALL}")
    row_of = {image_id: row for row, image_id in enumerate(distinct)}
    return EasyVQADataset(
        images=_read_images([paths[i] for i in distinct], image_size),
        image_rows=torch.tensor([row_of[i] for i in ids], dtype=torch.long),
        image_ids=torch.tensor(ids, dtype=torch.long),
        programs=[parse_easy_vqa_question(q) for q in texts],
        answers=torch.tensor([EASY_VQA_ANSWERS.index(a) for a in answers], dtype=torch.long),
        questions=list(texts),
        split=split,
    )


def _read_images(paths: Sequence[str], size: int) -> torch.Tensor:
    """``(len(paths), 3, size, size)`` uint8: the PNG files as RGB, resized with antialiasing."""
    from PIL import Image

    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    chunk = 256
    for start in range(0, len(paths), chunk):
        arrays = []
        for path in paths[start:start + chunk]:
            try:
                with Image.open(path) as im:
                    arrays.append(np.asarray(im.convert("RGB")))
            except OSError as e:
                raise DataUnavailableError(f"easy-vqa image {path} cannot be read ({e}); {_INSTALL}") from None
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # (n, 3, 64, 64)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = x.round().clamp(0, 255).to(torch.uint8)
    return out
