"""Program families: which sampler draws a family's programs, and one random program for one scene."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..compose._program import Program
from ..errors import ConfigError
from ._clevr_chains import ChainProgramSampler
from ._clevr_programs import ATTRIBUTES, COMPARISONS, PROGRAM_FAMILIES
from ._clevr_scene import Scene
from ._clevr_sets import SceneProgramSampler

__all__ = ["ProgramSampler", "program_sampler", "root_arguments", "generate_program"]

ProgramSampler = SceneProgramSampler | ChainProgramSampler

_SAMPLERS = {
    "sets": SceneProgramSampler,
    "chains": partial(ChainProgramSampler, same=False),
    "clevr": partial(ChainProgramSampler, same=True),
}
_GENERATE_TRIES = 200


def program_sampler(family: str, scene: Scene, rng: np.random.Generator) -> ProgramSampler:
    """The sampler of a program family's questions on one scene (``candidate(depth, kind, arg, answer)``).

    Raises:
        ConfigError: ``family`` is not in :data:`PROGRAM_FAMILIES`.
    """
    if family not in _SAMPLERS:
        raise ConfigError(f"unknown program family {family!r}; accepted: {', '.join(PROGRAM_FAMILIES)}")
    return _SAMPLERS[family](scene, rng)


def root_arguments(kind: str) -> tuple[str, ...] | None:
    """The arguments of a root module (``describe``, ``equal``: attributes; ``compare``: comparisons), or
    ``None`` when it takes none."""
    if kind in ("describe", "equal"):
        return ATTRIBUTES
    if kind == "compare":
        return COMPARISONS
    return None


def generate_program(
    rng: np.random.Generator,
    scene: Scene,
    depth: int,
    *,
    kind: str | None = None,
    attr: str | None = None,
    family: str = "sets",
) -> Program:
    """A random answerable program of exactly ``depth`` calls (``Program.depth``) for ``scene``.

    Args:
        rng: random generator (consumed).
        scene: the scene the program must be answerable on (``describe`` sees exactly one object).
        depth: tree depth, root included (``exist(find[red])`` has depth 2); at least 2.
        kind: root module, one of the family's (:data:`PROGRAM_FAMILIES`); random when ``None``.
        attr: argument of the root: the attribute of ``describe`` / ``equal``, the comparison of
            ``compare``; random when ``None`` (or, with ``kind=None``, for a root that does not take it).
        family: the program family, a key of :data:`PROGRAM_FAMILIES`.

    Returns:
        The program; its answer is ``execute(program, scene)``.

    Raises:
        ConfigError: ``depth`` below 2, an unknown ``family``, a bad ``kind`` / ``attr``, or a question
            that this scene cannot pose (no program found in 200 tries).

    Example:
        >>> from modnets.data import sample_scene
        >>> rng = np.random.default_rng(0)
        >>> program = generate_program(rng, sample_scene(rng, min_objects=6), 9, family="chains")
        >>> program.depth
        9
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
        raise ConfigError(f"depth must be an integer >= 2 (an answer module over a find), got {depth!r}")
    if family not in PROGRAM_FAMILIES:
        raise ConfigError(f"family={family!r}; accepted: {', '.join(PROGRAM_FAMILIES)}")
    roots = PROGRAM_FAMILIES[family]
    if kind is not None and kind not in roots:
        raise ConfigError(f"kind={kind!r}; accepted for family {family!r}: {', '.join(roots)} or None")
    if attr is not None:
        accepted = {a: None for k in ((kind,) if kind else roots) for a in root_arguments(k) or ()}
        if attr not in accepted:
            raise ConfigError(f"attr={attr!r}; accepted with kind={kind!r}: {', '.join(accepted) or 'none'} or None")
    sampler = program_sampler(family, scene, rng)
    for _ in range(_GENERATE_TRIES):
        k = kind if kind is not None else roots[int(rng.integers(len(roots)))]
        args = root_arguments(k)
        a = None if args is None else (attr if attr in args else args[int(rng.integers(len(args)))])
        cand = sampler.candidate(depth, k, a)
        if cand is not None:
            return cand.program()
    if family == "sets" and kind != "describe":
        return sampler.candidate(depth, "count").program()
    raise ConfigError(
        f"found no {kind or 'question'} of family {family!r} and depth {depth} for this scene of "
        f"{scene.n_objects} objects in {_GENERATE_TRIES} tries"
    )
