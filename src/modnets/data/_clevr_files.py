"""The real CLEVR data set (v1.0, and CoGenT / CLOSURE in the same format) as NMN examples.

A CLEVR folder holds, for a split such as ``train``, ``val``, ``trainA`` or ``valB``::

    ROOT/questions/CLEVR_{split}_questions.json   {"questions": [{"question", "answer", "image_filename",
                                                                   "image_index", "program": [nodes]}, ...]}
    ROOT/scenes/CLEVR_{split}_scenes.json         optional: {"scenes": [{"image_index", "objects"}, ...]}
    ROOT/images/{split}/CLEVR_{split}_000000.png  the rendered images (480 x 320 RGB)

Each question's functional program becomes an NMN :class:`~modnets.compose.Program` by
:func:`~modnets.data.clevr_program` (the mapping table is in its module), its answer an index into
:data:`~modnets.data.ANSWERS`. Images are read when an example is taken, squashed to ``image_size`` x
``image_size``, so that a data set of 700,000 questions costs only its programs in memory. The examples
and batches have the keys of :class:`~modnets.data.ClevrLikeDataset`, so models and training loops take
either.

The test split of CLEVR v1.0 ships without programs and answers and cannot be loaded. Real CLEVR asks
questions the NMN library cannot express (materials, comparisons, ``same_*``): ``skip_unmapped=True``
leaves them out, the default raises on the first one.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..compose._program import Program
from ..errors import ConfigError, DataUnavailableError, ProgramSyntaxError, UnknownNameError
from ._clevr import collate_clevr_like, subset_index
from ._clevr_functions import clevr_program
from ._clevr_programs import ANSWERS
from ._clevr_scene import COLORS, SHAPES, SIZES, Scene

__all__ = ["ClevrDataset", "load_clevr"]

_SOURCE = "CLEVR v1.0 from https://cs.stanford.edu/people/jcjohns/clevr/ (CoGenT and CLOSURE use the same layout)"
_RENDER_SIZE = (480.0, 320.0)  # (width, height) of CLEVR's renders: scene pixel_coords are in this frame
_ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}


class ClevrDataset(Dataset):
    """CLEVR questions with their programs and answers; images read from disk on access.

    Attributes:
        image_paths: the distinct image files, in order of first use.
        image_rows: ``(N,)`` long, the entry of ``image_paths`` that question ``i`` is about.
        image_indices: ``(N,)`` long, CLEVR's ``image_index`` of that image.
        programs: ``N`` NMN programs (see :func:`~modnets.data.clevr_program`).
        answers: ``(N,)`` long, indices into :data:`~modnets.data.ANSWERS`.
        questions: ``N`` question strings.
        depths: ``(N,)`` long, ``programs[i].depth``.
        scenes: ``N`` scenes (``scenes[i]`` of question ``i``, x and y from the objects' ``pixel_coords``),
            or ``None`` without a scenes file.
        image_size: side of the square images the examples hold.
        split: the CLEVR split.
        skipped: how many questions of the file were left out because they cannot be mapped.
    """

    def __init__(
        self,
        *,
        image_paths: Sequence[Path],
        image_rows: torch.Tensor,
        image_indices: torch.Tensor,
        programs: Sequence[Program],
        answers: torch.Tensor,
        questions: Sequence[str],
        scenes: Sequence[Scene] | None,
        image_size: int,
        split: str,
        skipped: int = 0,
    ):
        n = len(programs)
        sizes = {"image_rows": len(image_rows), "image_indices": len(image_indices), "answers": len(answers),
                 "questions": len(questions), **({} if scenes is None else {"scenes": len(scenes)})}
        if any(v != n for v in sizes.values()):
            raise ConfigError(f"ClevrDataset parts must have {n} entries each (one per program), got {sizes}")
        self.image_paths = [Path(p) for p in image_paths]
        self.image_rows = image_rows
        self.image_indices = image_indices
        self.programs = list(programs)
        self.answers = answers
        self.questions = list(questions)
        self.depths = torch.tensor([p.depth for p in self.programs], dtype=torch.long)
        self.scenes = None if scenes is None else list(scenes)
        self.image_size = image_size
        self.split = split
        self.skipped = skipped

    collate = staticmethod(collate_clevr_like)

    def __len__(self) -> int:
        return len(self.programs)

    def __getitem__(self, i: int) -> dict:
        """Question ``i``: ``{"index", "image" (3, S, S) float32 in [0, 1], "program", "answer", "depth",
        "question"}``; the image is read from its file now.

        Raises:
            DataUnavailableError: the image file is missing or not an image.
        """
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a ClevrDataset of {n} questions")
        i %= n
        return {
            "index": i,
            "image": _read_image(self.image_paths[int(self.image_rows[i])], self.image_size),
            "program": self.programs[i],
            "answer": int(self.answers[i]),
            "depth": int(self.depths[i]),
            "question": self.questions[i],
        }

    def subset(self, indices) -> ClevrDataset:
        """A new data set of the questions at ``indices`` (ints, a long tensor or array, or a bool mask)."""
        listed = subset_index(indices).tolist()
        return ClevrDataset(
            image_paths=self.image_paths, image_rows=self.image_rows[listed],
            image_indices=self.image_indices[listed], programs=[self.programs[j] for j in listed],
            answers=self.answers[listed], questions=[self.questions[j] for j in listed],
            scenes=None if self.scenes is None else [self.scenes[j] for j in listed],
            image_size=self.image_size, split=self.split, skipped=self.skipped,
        )

    def __repr__(self) -> str:
        return (f"ClevrDataset(split={self.split!r}, n={len(self)}, images={len(self.image_paths)}, "
                f"image_size={self.image_size}, skipped={self.skipped})")


def load_clevr(
    root: str | Path,
    split: str,
    *,
    image_size: int = 64,
    limit: int | None = None,
    skip_unmapped: bool = False,
    image_split: str | None = None,
) -> ClevrDataset:
    """Load a CLEVR split: its questions, their programs converted to NMN programs, answers and scenes.

    Args:
        root: the CLEVR folder (holding ``questions/``, ``images/`` and optionally ``scenes/``).
        split: the split's name in the file names: ``"train"``, ``"val"``, ``"trainA"``, ``"valB"``, ...
        image_size: side of the square images the examples hold (>= 8; the NMN preset needs a multiple
            of 4 with its two-stage stem). CLEVR's 480 x 320 renders are squashed to it.
        limit: keep only the first ``limit`` questions that are kept; ``None``: all.
        skip_unmapped: leave out questions whose program uses a CLEVR function the NMN library cannot
            express (:class:`UnknownNameError` from :func:`~modnets.data.clevr_program`) or whose answer
            is not in :data:`~modnets.data.ANSWERS`; ``skipped`` counts them. ``False``: raise.
        image_split: the folder under ``images/`` (default: ``split``), for question files that refer to
            another split's images, as CLOSURE's refer to ``val``.

    Raises:
        DataUnavailableError: a missing or malformed questions or scenes file, a malformed question or
            program, a missing image folder or file; the message names the file and what was expected.
        UnknownNameError: (``skip_unmapped=False``) a program with an unmapped CLEVR function or an answer
            outside :data:`~modnets.data.ANSWERS`; the message names the file and the question.
        ConfigError: a bad ``image_size``, ``limit`` or ``split``.
    """
    if not isinstance(split, str) or not split or "/" in split:
        raise ConfigError(f"load_clevr split must be a split name such as 'train' or 'valA', got {split!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ConfigError(f"load_clevr image_size must be an int >= 8, got {image_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"load_clevr limit must be an int >= 1 or None, got {limit!r}")
    root = Path(root)
    questions_file = root / "questions" / f"CLEVR_{split}_questions.json"
    image_dir = root / "images" / (image_split or split)
    records = _read_json_list(questions_file, "questions")
    if not image_dir.is_dir():
        raise DataUnavailableError(f"CLEVR image folder {image_dir} is missing; expected the {split} PNG files "
                                   f"there ({_SOURCE})")

    programs, answers, texts, image_files, image_indices = [], [], [], [], []
    skipped = 0
    for q, record in enumerate(records):
        if limit is not None and len(programs) == limit:
            break
        where = f"{questions_file}: question {q}"
        fields = _question_fields(record, where)
        try:
            program = clevr_program(fields["program"])
            answer = _answer_index(fields["answer"], where)
        except UnknownNameError as e:
            if skip_unmapped:
                skipped += 1
                continue
            raise UnknownNameError(f"{where}: {e}; pass skip_unmapped=True to leave such questions out") from None
        except ProgramSyntaxError as e:
            raise DataUnavailableError(f"{where} has a malformed program: {e.args[0]}") from None
        programs.append(program)
        answers.append(answer)
        texts.append(fields["question"])
        image_files.append(fields["image_filename"])
        image_indices.append(fields["image_index"])

    paths: list[Path] = []
    row_of: dict[str, int] = {}
    for name in image_files:
        if name not in row_of:
            path = image_dir / name
            if not path.is_file():
                raise DataUnavailableError(f"CLEVR image {path} is missing (named by {questions_file}); "
                                           f"expected a PNG file from {_SOURCE}")
            row_of[name] = len(paths)
            paths.append(path)
    scenes_file = root / "scenes" / f"CLEVR_{split}_scenes.json"
    scenes = _read_scenes(scenes_file, image_indices) if scenes_file.exists() else None
    return ClevrDataset(
        image_paths=paths,
        image_rows=torch.tensor([row_of[name] for name in image_files], dtype=torch.long),
        image_indices=torch.tensor(image_indices, dtype=torch.long),
        programs=programs,
        answers=torch.tensor(answers, dtype=torch.long),
        questions=texts,
        scenes=scenes,
        image_size=image_size,
        split=split,
        skipped=skipped,
    )


def _read_json_list(path: Path, key: str) -> list:
    """``data[key]`` of a JSON file holding ``{key: [...]}``."""
    if not path.is_file():
        raise DataUnavailableError(f"CLEVR {key} file {path} is missing; expected {{\"{key}\": [...]}} from {_SOURCE}")
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataUnavailableError(f"CLEVR {key} file {path} is not readable JSON ({e})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
        raise DataUnavailableError(f"CLEVR {key} file {path} must hold an object with a {key!r} list")
    return data[key]


def _question_fields(record: object, where: str) -> dict:
    """The fields of one question record, checked."""
    if not isinstance(record, Mapping):
        raise DataUnavailableError(f"{where} must be an object, got {type(record).__name__}")
    missing = [k for k in ("question", "answer", "image_filename", "image_index", "program") if k not in record]
    if missing:
        hint = " (CLEVR's test split ships without programs and answers)" if "program" in missing else ""
        raise DataUnavailableError(f"{where} lacks {missing}{hint}")
    if not isinstance(record["question"], str) or not isinstance(record["image_filename"], str):
        raise DataUnavailableError(f"{where}: 'question' and 'image_filename' must be strings")
    name = record["image_filename"]
    if not name or Path(name).name != name:
        raise DataUnavailableError(f"{where}: 'image_filename' must be a file name, got {name!r}")
    index = record["image_index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise DataUnavailableError(f"{where}: 'image_index' must be an int >= 0, got {index!r}")
    return dict(record)


def _answer_index(answer: object, where: str) -> int:
    """Index of a CLEVR answer in :data:`ANSWERS` (booleans as yes / no, integers as their digits)."""
    if isinstance(answer, bool):
        answer = "yes" if answer else "no"
    elif isinstance(answer, int):
        answer = str(answer)
    if not isinstance(answer, str) or answer not in _ANSWER_INDEX:
        raise UnknownNameError(f"answer {answer!r} is not in the NMN answer vocabulary: {', '.join(ANSWERS)}")
    return _ANSWER_INDEX[answer]


def _read_scenes(path: Path, image_indices: Sequence[int]) -> list[Scene]:
    """The scene of each question, by its ``image_index``."""
    by_index: dict[int, list] = {}
    for s, record in enumerate(_read_json_list(path, "scenes")):
        if not isinstance(record, Mapping) or not isinstance(record.get("objects"), list) or not isinstance(
            record.get("image_index"), int
        ):
            raise DataUnavailableError(f"{path}: scene {s} must be an object with 'image_index' and 'objects'")
        by_index[record["image_index"]] = record["objects"]
    built: dict[int, Scene] = {}
    for index in image_indices:
        if index in built:
            continue
        if index not in by_index:
            raise DataUnavailableError(f"{path} has no scene with image_index {index}")
        built[index] = _scene(by_index[index], f"{path}: scene of image {index}")
    return [built[i] for i in image_indices]


def _scene(objects: list, where: str) -> Scene:
    """A :class:`Scene` from CLEVR objects (colour, shape, size and the centre's ``pixel_coords``)."""
    rows = []
    for k, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or any(key not in obj for key in ("color", "shape", "size", "pixel_coords")):
            raise DataUnavailableError(f"{where}: object {k} needs 'color', 'shape', 'size' and 'pixel_coords'")
        for key, accepted in (("color", COLORS), ("shape", SHAPES), ("size", SIZES)):
            if obj[key] not in accepted:
                raise DataUnavailableError(
                    f"{where}: object {k} has {key} {obj[key]!r}; accepted: {', '.join(accepted)}"
                )
        coords = obj["pixel_coords"]
        if not isinstance(coords, Sequence) or len(coords) < 2 or not all(
            isinstance(c, int | float) for c in coords[:2]
        ):
            raise DataUnavailableError(f"{where}: object {k} has pixel_coords {coords!r}; expected [x, y, depth]")
        x, y = (min(max(float(c) / size, 0.0), 1.0) for c, size in zip(coords[:2], _RENDER_SIZE, strict=True))
        rows.append({"color": obj["color"], "shape": obj["shape"], "size": obj["size"], "x": x, "y": y})
    return Scene.from_objects(rows)


def _read_image(path: Path, size: int) -> torch.Tensor:
    """``(3, size, size)`` float32 in [0, 1]: the image file as RGB, resized with antialiasing."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except OSError as e:
        raise DataUnavailableError(f"CLEVR image {path} cannot be read as an image ({e})") from None
    x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().unsqueeze(0)  # (1, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x[0] / 255.0).clamp(0.0, 1.0)
