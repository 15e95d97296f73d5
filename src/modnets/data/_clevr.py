"""The CLEVR-like visual question answering data set: config, generation with answer balancing, Dataset.

Example:
    >>> from modnets.data import ANSWERS, ClevrLikeConfig, execute, make_clevr_like
    >>> ds = make_clevr_like(ClevrLikeConfig(n_examples=8, depths=(2, 3), image_size=32))
    >>> item = ds[0]
    >>> item["image"].shape, ANSWERS[item["answer"]] == execute(item["program"], ds.scenes[0])
    (torch.Size([3, 32, 32]), True)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .._config import Config
from ..compose._program import Program
from ..errors import ConfigError
from ._clevr_families import ProgramSampler, program_sampler, root_arguments
from ._clevr_programs import ATTRIBUTE_VALUES, PROGRAM_FAMILIES, Candidate, encode_answer, program_to_question
from ._clevr_scene import COGENT_COLORS, Scene, render_scenes, sample_scene

__all__ = ["ClevrLikeConfig", "ClevrLikeDataset", "make_clevr_like", "collate_clevr_like"]

_TRIES = 6  # candidates tried for one question on one scene before the question moves to a new scene
_CAP_FACTOR = 2.0  # no answer of a (root, depth) group above this many times its uniform share
_RELAX_AFTER = 30  # scenes in a row that fail one question before its answer is left free
_GIVE_UP_AFTER = 300  # ... before a question becomes a count question (twice as many: no question at all)
_YES_NO = ("exist", "equal", "compare")  # root modules whose answers are yes / no


@dataclass
class ClevrLikeConfig(Config):
    """Configuration of :func:`make_clevr_like`.

    Attributes:
        n_examples: number of (image, program, answer) examples.
        depths: allowed program depths (root included, each >= 2), drawn per example uniformly or, with
            ``depth_weights``, in proportion to them.
        depth_weights: ``None`` (uniform) or one relative frequency > 0 per entry of ``depths``, e.g. falling
            with depth as in CLEVR, where deep programs are rarer.
        image_size: image side in pixels (>= 16).
        min_objects: fewest objects in a scene (1..10).
        max_objects: most objects in a scene (min_objects..10).
        balanced: balance the answers within each root module and depth (see :func:`make_clevr_like`).
        seed: seed of the numpy ``Generator`` that draws everything.
        questions_per_scene: most questions asked about one scene (they share its image).
        programs: the program family, a key of :data:`PROGRAM_FAMILIES`. ``"sets"`` (the default, whose
            data stay as they were): random set algebra under ``exist`` / ``count`` / ``describe``, where
            depth says little about difficulty. ``"chains"``: CLEVR-style reasoning chains (``relate``
            hops from one object, filters that pick the next object among distractors), where every level
            is one step of reasoning that the answer depends on, so error grows with depth as on CLEVR:
            the family for depth studies (thesis Figs 4.12-4.13). ``"clevr"``: ``chains`` with ``same``
            hops and the ``equal`` / ``compare`` roots too (harder to learn end to end). The chain
            families need ``max_objects >= 3`` (a hop needs its start, its end and a distractor).
        condition: ``None`` (every colour-shape pairing), or a CLEVR-CoGenT condition, ``"A"`` or ``"B"``:
            the colours each shape may take (:data:`~modnets.data.COGENT_COLORS`; see
            :func:`~modnets.data.cogent_split`).
    """

    n_examples: int = 1000
    depths: tuple[int, ...] = (2, 3, 4, 5)
    depth_weights: tuple[float, ...] | None = None
    image_size: int = 48
    min_objects: int = 2
    max_objects: int = 10
    balanced: bool = True
    seed: int = 0
    questions_per_scene: int = 4
    programs: str = "sets"
    condition: str | None = None

    def __post_init__(self) -> None:
        def is_int(v) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)

        def fail(name: str, accepted: str) -> ConfigError:
            value = getattr(self, name)
            return ConfigError(f"ClevrLikeConfig.{name}={value!r} is invalid; accepted: {accepted}")

        if not is_int(self.n_examples) or self.n_examples < 1:
            raise fail("n_examples", "an integer >= 1")
        if isinstance(self.depths, str | bytes) or not isinstance(self.depths, Sequence | np.ndarray):
            raise fail("depths", "a non-empty tuple of integers >= 2")
        if len(self.depths) == 0 or not all(is_int(d) and d >= 2 for d in self.depths):
            raise fail(
                "depths", "a non-empty tuple of integers >= 2 (the root counts: exist(find[red]) is 2)"
            )
        self.depths = tuple(int(d) for d in self.depths)
        if self.depth_weights is not None:
            weights = self.depth_weights
            if (isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray)
                    or len(weights) != len(self.depths)
                    or not all(isinstance(w, int | float | np.number) and not isinstance(w, bool)
                               and math.isfinite(w) and w > 0 for w in weights)):
                raise fail("depth_weights", f"None or {len(self.depths)} finite numbers > 0, one per depth")
            self.depth_weights = tuple(float(w) for w in weights)
        if not is_int(self.image_size) or self.image_size < 16:
            raise fail("image_size", "an integer >= 16 (e.g. 32, 48, 64)")
        if not is_int(self.min_objects) or not 1 <= self.min_objects <= 10:
            raise fail("min_objects", "an integer in 1..10")
        if not is_int(self.max_objects) or not self.min_objects <= self.max_objects <= 10:
            raise fail("max_objects", f"an integer in min_objects..10 = {self.min_objects}..10")
        if not isinstance(self.balanced, bool | np.bool_):
            raise fail("balanced", "True or False")
        if not is_int(self.seed) or self.seed < 0:
            raise fail("seed", "an integer >= 0")
        if not is_int(self.questions_per_scene) or self.questions_per_scene < 1:
            raise fail("questions_per_scene", "an integer >= 1")
        if self.programs not in PROGRAM_FAMILIES:
            raise fail("programs", " or ".join(repr(f) for f in PROGRAM_FAMILIES))
        if self.programs != "sets" and self.max_objects < 3:
            raise fail(
                "max_objects",
                f"an integer in 3..10 with programs={self.programs!r} (a hop needs a start, an end and a distractor)",
            )
        if self.condition is not None and self.condition not in COGENT_COLORS:
            raise fail("condition", "None or a CoGenT condition, " + " or ".join(map(repr, COGENT_COLORS)))
        for name in ("n_examples", "image_size", "min_objects", "max_objects", "seed", "questions_per_scene"):
            setattr(self, name, int(getattr(self, name)))
        self.balanced = bool(self.balanced)


def subset_index(indices) -> torch.Tensor:
    """``(n,)`` long row indices from ints, a long tensor or array, or a bool mask (the ``subset`` argument of
    the question data sets)."""
    idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
    if idx.dtype == torch.bool:
        idx = idx.nonzero().flatten()
    return idx.to(torch.long).flatten()


def collate_clevr_like(items: Sequence[Mapping]) -> dict:
    """Batch items of :class:`ClevrLikeDataset` (use as ``DataLoader(..., collate_fn=...)``).

    Returns:
        ``{"index": (B,) long, "image": (B, 3, H, W) float32, "answer": (B,) long, "depth": (B,) long,
        "program": list of B Programs, "question": list of B str}``.

    Raises:
        ConfigError: ``items`` is empty.
    """
    if len(items) == 0:
        raise ConfigError("collate_clevr_like needs at least one item, got an empty batch")
    return {
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "image": torch.stack([it["image"] for it in items]),
        "answer": torch.tensor([it["answer"] for it in items], dtype=torch.long),
        "depth": torch.tensor([it["depth"] for it in items], dtype=torch.long),
        "program": [it["program"] for it in items],
        "question": [it["question"] for it in items],
    }


class ClevrLikeDataset(Dataset):
    """Generated CLEVR-like examples: an image, a program, its question text and its answer.

    Several examples may ask about the same scene (up to ``config.questions_per_scene``); they then
    hold the same :class:`Scene` object, the same ``scene_ids`` entry and equal images.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in [0, 1].
        programs: ``N`` programs.
        answers: ``(N,)`` long, indices into :data:`ANSWERS`.
        questions: ``N`` question strings.
        depths: ``(N,)`` long, ``programs[i].depth``.
        scenes: ``N`` scenes, ``scenes[i]`` is the scene of example ``i`` (see :func:`execute`).
        scene_ids: ``(N,)`` long; examples with equal ids share one scene and image.
        config: the generating config (of the full data set, also for a :meth:`subset`).
    """

    def __init__(
        self,
        *,
        images: torch.Tensor,
        programs: Sequence[Program],
        answers: torch.Tensor,
        questions: Sequence[str],
        depths: torch.Tensor,
        scenes: Sequence[Scene],
        scene_ids: torch.Tensor,
        config: ClevrLikeConfig,
    ):
        n = len(programs)
        sizes = {
            "images": len(images),
            "answers": len(answers),
            "questions": len(questions),
            "depths": len(depths),
            "scenes": len(scenes),
            "scene_ids": len(scene_ids),
        }
        if any(v != n for v in sizes.values()):
            raise ConfigError(
                f"ClevrLikeDataset parts must have {n} entries each (one per program), got {sizes}"
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise ConfigError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
        self.images = images
        self.programs = list(programs)
        self.answers = answers
        self.questions = list(questions)
        self.depths = depths
        self.scenes = list(scenes)
        self.scene_ids = scene_ids
        self.config = config

    collate = staticmethod(collate_clevr_like)

    def __len__(self) -> int:
        return len(self.programs)

    def __getitem__(self, i: int) -> dict:
        """Example ``i``: ``{"index", "image" (3, H, W), "program", "answer", "depth", "question"}``."""
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a ClevrLikeDataset of {n} examples")
        i %= n
        return {
            "index": i,
            "image": self.images[i],
            "program": self.programs[i],
            "answer": int(self.answers[i]),
            "depth": int(self.depths[i]),
            "question": self.questions[i],
        }

    def subset(self, indices) -> ClevrLikeDataset:
        """A new data set of the examples at ``indices`` (ints, a long tensor or array, or a bool mask)."""
        idx = subset_index(indices)
        listed = idx.tolist()
        return ClevrLikeDataset(
            images=self.images[idx],
            programs=[self.programs[j] for j in listed],
            answers=self.answers[idx],
            questions=[self.questions[j] for j in listed],
            depths=self.depths[idx],
            scenes=[self.scenes[j] for j in listed],
            scene_ids=self.scene_ids[idx],
            config=self.config,
        )

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"ClevrLikeDataset(n={len(self)}, image={shape}, depths={sorted(set(self.depths.tolist()))})"


# ---------------------------------------------------------------------------------------------- generation
@dataclass
class _Slot:
    """One example to generate: its depth, root module, the root's argument and (yes / no roots) answer."""

    depth: int
    kind: str
    arg: str | None
    target: str | None


def _plan(rng: np.random.Generator, config: ClevrLikeConfig) -> list[_Slot]:
    """The examples to generate, in order.

    Balanced: the family's root modules, their arguments and the yes / no answers of each yes / no root
    are split evenly (to within one) in random order; otherwise they are drawn independently.
    """
    n = config.n_examples
    roots = PROGRAM_FAMILIES[config.programs]
    weights = None if config.depth_weights is None else np.asarray(config.depth_weights) / sum(config.depth_weights)
    depths = rng.choice(np.asarray(config.depths), size=n, p=weights).tolist()

    def spread(count: int, k: int) -> list[int]:  # count draws of 0..k-1
        if not config.balanced:
            return rng.integers(0, k, size=count).tolist()
        return rng.permutation(np.arange(count) % k).tolist()

    kinds = [roots[k] for k in spread(n, len(roots))]
    slots = [_Slot(d, kind, None, None) for d, kind in zip(depths, kinds, strict=True)]
    for kind in roots:
        args = root_arguments(kind)
        if args is not None:
            mine = [s for s in slots if s.kind == kind]
            for s, a in zip(mine, spread(len(mine), len(args)), strict=True):
                s.arg = args[a]
    if config.balanced:
        for kind in (k for k in roots if k in _YES_NO):
            mine = [s for s in slots if s.kind == kind]
            for s, y in zip(mine, spread(len(mine), 2), strict=True):
                s.target = ("no", "yes")[y]
    return slots


class _Balancer:
    """Answer counts per group (root module, its argument, depth) and the choice of targets.

    Each question aims at the least frequent answer of its group that the scene allows, keeps the
    candidate whose answer is least frequent so far, and is refused (moved to another scene) when that
    answer already holds ``_CAP_FACTOR`` times its uniform share of the group.
    """

    def __init__(self, slots: Sequence[_Slot]):
        self.fill: dict[tuple, dict[str, int]] = {}
        self.cap: dict[tuple, int] = {}
        sizes: dict[tuple, int] = {}
        for s in slots:
            sizes[self.group(s)] = sizes.get(self.group(s), 0) + 1
        for g, size in sizes.items():
            answers = self.answers(g[0], g[1])
            self.fill[g] = dict.fromkeys(answers, 0)
            self.cap[g] = math.ceil(_CAP_FACTOR * size / len(answers)) + 1

    @staticmethod
    def group(slot: _Slot) -> tuple:
        return slot.kind, slot.arg, slot.depth

    @staticmethod
    def answers(kind: str, arg: str | None) -> tuple[str, ...]:
        if kind in _YES_NO:
            return "no", "yes"
        if kind == "count":
            return tuple(str(k) for k in range(11))
        return ATTRIBUTE_VALUES[arg]

    def target(self, slot: _Slot, sampler: ProgramSampler, pick) -> str | None:
        if slot.target is not None:
            return slot.target
        fill = self.fill[self.group(slot)]
        if slot.kind == "count":
            feasible = [str(k) for k in range(sampler.scene.n_objects + 1)]
        elif slot.kind == "describe":
            feasible = sorted(set(sampler.object_values(slot.arg)))
        else:
            feasible = ["no", "yes"]
        low = min(fill[a] for a in feasible)
        return pick([a for a in feasible if fill[a] == low])

    def record(self, slot: _Slot, answer: str) -> None:
        fill = self.fill.setdefault(self.group(slot), dict.fromkeys(self.answers(slot.kind, slot.arg), 0))
        fill[answer] += 1


def _ask(
    sampler: ProgramSampler, slot: _Slot, balancer: _Balancer | None, seen: set, relaxed: bool
) -> Candidate | None:
    """A question for ``slot`` on the sampler's scene, or ``None`` to move the slot to a new scene."""
    free = balancer is None or relaxed
    target = None if free else balancer.target(slot, sampler, sampler.choice)
    fill = None if free else balancer.fill[balancer.group(slot)]
    best = None
    for _ in range(_TRIES):
        cand = sampler.candidate(slot.depth, slot.kind, slot.arg, target)
        if cand is None or cand.node in seen:
            continue
        if free or cand.answer == target:
            return cand
        if slot.target is None and (best is None or fill[cand.answer] < fill[best.answer]):
            best = cand
    if best is not None and fill[best.answer] < balancer.cap[balancer.group(slot)]:
        return best
    return None


def make_clevr_like(config: ClevrLikeConfig) -> ClevrLikeDataset:
    """Generate a CLEVR-like data set: random scenes, rendered images, random programs, their answers.

    Each example's depth is drawn from ``config.depths`` (uniformly, or by ``config.depth_weights``) and its
    root module uniformly from the program family's (``config.programs``, see :data:`PROGRAM_FAMILIES`); a
    scene serves up to
    ``config.questions_per_scene`` consecutive examples. With ``balanced=True``, the root modules and
    their arguments are split exactly evenly, the answers of each yes / no root (``exist``, ``equal``,
    ``compare``) are exactly half yes and half no, and within each (root module, argument, depth) group
    every question aims at the least frequent answer the scene allows; no answer exceeds twice its
    uniform share of its group (counts near 10 are rarer: few scenes and sets allow them). Everything is
    drawn from one numpy ``Generator`` seeded with ``config.seed``: the same config gives identical data.

    Raises:
        ConfigError: ``config`` is not a :class:`ClevrLikeConfig`, or its scenes cannot pose a question
            of some depth (e.g. ``programs="chains"`` with too few objects for the depth).
    """
    if not isinstance(config, ClevrLikeConfig):
        raise ConfigError(f"make_clevr_like needs a ClevrLikeConfig, got {type(config).__name__}")
    rng = np.random.default_rng(config.seed)
    slots = _plan(rng, config)
    balancer = _Balancer(slots) if config.balanced else None
    scenes: list[Scene] = []
    scene_of: list[int] = []
    chosen: list[Candidate] = []
    i, failures = 0, 0
    while i < len(slots):
        scene = sample_scene(rng, min_objects=config.min_objects, max_objects=config.max_objects,
                             condition=config.condition)
        sampler = program_sampler(config.programs, scene, rng)
        seen: set = set()
        asked = 0
        while i < len(slots) and asked < config.questions_per_scene:
            slot = slots[i]
            cand = _ask(sampler, slot, balancer, seen, relaxed=failures >= _RELAX_AFTER)
            if cand is None:
                failures += 1
                if failures >= 2 * _GIVE_UP_AFTER:
                    raise ConfigError(
                        f"found no question of depth {slot.depth} in {failures} scenes of {config.min_objects}.."
                        f"{config.max_objects} objects (programs={config.programs!r}); allow more objects or "
                        "shallower depths"
                    )
                if failures >= _GIVE_UP_AFTER and slot.kind != "count":
                    slot.kind, slot.arg, slot.target = "count", None, None  # this config's scenes cannot pose it
                break
            failures = 0
            seen.add(cand.node)
            chosen.append(cand)
            scene_of.append(len(scenes))
            if balancer is not None:
                balancer.record(slot, cand.answer)
            asked += 1
            i += 1
        if asked:
            scenes.append(scene)

    programs = [c.program() for c in chosen]
    unique_images = torch.from_numpy(render_scenes(scenes, config.image_size, rng=rng))
    scene_ids = torch.tensor(scene_of, dtype=torch.long)
    return ClevrLikeDataset(
        images=unique_images[scene_ids],
        programs=programs,
        answers=torch.tensor([encode_answer(c.answer) for c in chosen], dtype=torch.long),
        questions=[program_to_question(p) for p in programs],
        depths=torch.tensor([p.depth for p in programs], dtype=torch.long),
        scenes=[scenes[k] for k in scene_of],
        scene_ids=scene_ids,
        config=config,
    )
