"""Held-out splits of the CLEVR-like data: CoGenT-style (unseen colour-shape pairings) and CLOSURE-style
(unseen program structures built from known modules).

- :func:`cogent_split`, after CLEVR-CoGenT (Johnson et al. 2017): training scenes and the in-distribution test
  follow condition A (cubes gray / blue / brown / yellow, cylinders red / green / purple / cyan, spheres any
  colour), the held-out test condition B (the cube and cylinder colours swapped). The programs, the modules
  and every single attribute value are shared; only the pairings of colour and shape are new.
- :func:`closure_split`, in the spirit of CLOSURE (Bahdanau et al. 2019): programs whose *structure* puts a
  known module where training never put it are held out. A rule ``(outer, inner)`` of :data:`CLOSURE_HELD_OUT`
  holds out every program in which a call of ``inner`` lies below (inside the inputs of) a call of ``outer``;
  training and the in-distribution test keep the other programs. Every module still occurs in training, only
  never in the held-out positions, so every held-out program's template (:func:`program_template`: the tree
  of module names with the arguments dropped) is absent from training.

Both draw every part from its own seeded stream of :func:`~modnets.data.make_clevr_like` calls: the training
part from ``config.seed`` (then further seeds if a part needs more examples), the test parts from seeds
derived from it, so no scene is shared between training and test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from ..compose._program import Program
from ..errors import ConfigError, UnknownNameError
from ._clevr import ClevrLikeConfig, ClevrLikeDataset, make_clevr_like
from ._clevr_programs import ROOT_MODULES

__all__ = ["CLOSURE_HELD_OUT", "ClevrLikeSplit", "closure_split", "cogent_split", "program_template",
           "structure_pairs"]

#: The default held-out structures of :func:`closure_split`, as ``(outer, inner)``: a program is held out when a
#: call of ``inner`` lies inside the inputs of a call of ``outer``. With the ``clevr`` family at depths 2-5 they
#: hold out about 17 % of the programs.
CLOSURE_HELD_OUT: tuple[tuple[str, str], ...] = (
    ("relate", "same"),  # a spatial hop from an object reached by a matching hop (cf. CLOSURE's embed_mat_spa)
    ("equal", "relate"),  # an attribute comparison of an object reached by a spatial hop (cf. compare_mat_spa)
    ("compare", "same"),  # a count comparison of a set reached by a matching hop (cf. compare_mat)
)
_MODULES = ("find", "relate", "same", "and", "or", *ROOT_MODULES)
_MAX_CHUNKS = 200  # data sets generated for one part of a split before its rules are declared too rare
_GIVE_UP_SEEN = 500  # programs generated without one kind (held out or not) before the rules are refused
_TRAIN, _TEST, _HELD_OUT = 0, 1, 2  # seed streams


class ClevrLikeSplit(NamedTuple):
    """A held-out split of CLEVR-like data.

    Attributes:
        train: the training examples.
        test: fresh examples from the training distribution (in-distribution test).
        held_out: fresh examples of the held-out combinations.
    """

    train: ClevrLikeDataset
    test: ClevrLikeDataset
    held_out: ClevrLikeDataset


def program_template(program: Program) -> str:
    """A program's structure: its tree of module names, the arguments dropped.

    Example:
        >>> program_template(Program.parse("exist(and(find[red], relate[left](find[cube])))"))
        'exist(and(find, relate(find)))'
    """
    stack: list[str] = []
    for call in program.postorder():
        n = len(call.children)
        inputs = stack[len(stack) - n:] if n else []
        del stack[len(stack) - n:]
        stack.append(f"{call.name}({', '.join(inputs)})" if n else call.name)
    (template,) = stack
    return template


def structure_pairs(program: Program) -> set[tuple[str, str]]:
    """Every ``(outer, inner)`` pair of module names of a program where a call of ``inner`` lies inside the
    inputs of a call of ``outer`` (what a rule of :data:`CLOSURE_HELD_OUT` matches).

    Example:
        >>> sorted(structure_pairs(Program.parse("relate[left](same[color](find[cube]))")))
        [('relate', 'find'), ('relate', 'same'), ('same', 'find')]
    """
    below: list[frozenset[str]] = []  # names at or below each finished call
    pairs: set[tuple[str, str]] = set()
    for call in program.postorder():
        n = len(call.children)
        inner = frozenset().union(*below[len(below) - n:]) if n else frozenset()
        del below[len(below) - n:]
        pairs.update((call.name, name) for name in inner)
        below.append(inner | {call.name})
    return pairs


def _seed(seed: int, stream: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of a part's stream; the training part starts from ``seed`` itself."""
    if stream == _TRAIN and chunk == 0:
        return seed
    return int(np.random.SeedSequence([seed, stream, chunk]).generate_state(1)[0])


def _concat(parts: Sequence[ClevrLikeDataset]) -> ClevrLikeDataset:
    """One data set of the examples of ``parts`` in order; scene ids are offset so that parts share none."""
    ids, offset = [], 0
    for part in parts:
        ids.append(part.scene_ids + offset)
        offset += int(part.scene_ids.max()) + 1 if len(part) else 0
    return ClevrLikeDataset(
        images=torch.cat([p.images for p in parts]),
        programs=[q for p in parts for q in p.programs],
        answers=torch.cat([p.answers for p in parts]),
        questions=[q for p in parts for q in p.questions],
        depths=torch.cat([p.depths for p in parts]),
        scenes=[s for p in parts for s in p.scenes],
        scene_ids=torch.cat(ids),
        config=parts[0].config,
    )


def _check_n_test(config: ClevrLikeConfig, n_test: int | None) -> int:
    if not isinstance(config, ClevrLikeConfig):
        raise ConfigError(f"a CLEVR-like split needs a ClevrLikeConfig, got {type(config).__name__}")
    if n_test is None:
        return config.n_examples
    if not isinstance(n_test, int) or isinstance(n_test, bool) or n_test < 1:
        raise ConfigError(f"n_test must be None or an int >= 1, got n_test={n_test!r}")
    return n_test


def cogent_split(config: ClevrLikeConfig, *, n_test: int | None = None) -> ClevrLikeSplit:
    """A CLEVR-CoGenT-style split: train and test in condition A, held out in condition B.

    In condition A cubes are gray, blue, brown or yellow and cylinders red, green, purple or cyan; condition B
    swaps the two colour sets; spheres take any colour in both (:data:`~modnets.data.COGENT_COLORS`). Every
    other setting (program family, depths, objects, balancing) is ``config``'s.

    Args:
        config: the data settings; ``config.condition`` must be ``None`` (the split sets it);
            ``config.n_examples`` training examples, drawn from ``config.seed``.
        n_test: examples of the in-distribution test and of the held-out test each (``None``:
            ``config.n_examples``), drawn from seeds derived from ``config.seed``.

    Returns:
        :class:`ClevrLikeSplit` ``(train, test, held_out)``: condition A (train), A (valA), B (valB).

    Raises:
        ConfigError: ``config`` is not a :class:`ClevrLikeConfig` or already has a condition; a bad ``n_test``.

    Example:
        >>> split = cogent_split(ClevrLikeConfig(n_examples=20, image_size=16, depths=(2,)), n_test=10)
        >>> len(split.train), len(split.test), len(split.held_out), split.held_out.config.condition
        (20, 10, 10, 'B')
    """
    n_test = _check_n_test(config, n_test)
    if config.condition is not None:
        raise ConfigError(f"cogent_split sets the condition of each part itself; give a config with condition=None, "
                          f"got condition={config.condition!r}")
    return ClevrLikeSplit(
        train=make_clevr_like(replace(config, condition="A")),
        test=make_clevr_like(replace(config, condition="A", n_examples=n_test, seed=_seed(config.seed, _TEST, 0))),
        held_out=make_clevr_like(replace(config, condition="B", n_examples=n_test,
                                         seed=_seed(config.seed, _HELD_OUT, 0))),
    )


def _check_rules(held_out) -> tuple[tuple[str, str], ...]:
    if isinstance(held_out, str | bytes) or not isinstance(held_out, Sequence) or not held_out:
        raise ConfigError(f"held_out must be a non-empty sequence of (outer, inner) module-name pairs, got "
                          f"{held_out!r}")
    rules = []
    for rule in held_out:
        if isinstance(rule, str | bytes) or not isinstance(rule, Sequence) or len(rule) != 2:
            raise ConfigError(f"each held_out rule must be an (outer, inner) pair of module names, got {rule!r}")
        for name in rule:
            if name not in _MODULES:
                raise UnknownNameError(f"held_out rule {tuple(rule)!r}: unknown module {name!r}; known modules: "
                                       f"{', '.join(_MODULES)}")
        rules.append((rule[0], rule[1]))
    return tuple(rules)


def _collect(config: ClevrLikeConfig, stream: int, wanted: dict[bool, int], rules: frozenset) -> dict[bool, list]:
    """Examples of ``config``'s distribution from the seeds of ``stream`` until each kind (``True``: held out)
    has its ``wanted`` count; returns kind -> data sets to concatenate."""
    got: dict[bool, list[ClevrLikeDataset]] = {kind: [] for kind in wanted}
    need = dict(wanted)
    seen = held = 0
    for chunk in range(_MAX_CHUNKS):
        data = make_clevr_like(replace(config, seed=_seed(config.seed, stream, chunk)))
        is_held = torch.tensor([bool(structure_pairs(p) & rules) for p in data.programs], dtype=torch.bool)
        seen, held = seen + len(data), held + int(is_held.sum())
        for kind in wanted:
            where = (is_held == kind).nonzero().flatten()[: need[kind]]
            if len(where):
                got[kind].append(data.subset(where))
                need[kind] -= len(where)
        if not any(need.values()):
            return got
        if seen >= _GIVE_UP_SEEN and (held == 0 and need.get(True) or held == seen and need.get(False)):
            break  # one kind never comes up
    raise ConfigError(
        f"the held_out rules {sorted(rules)} select {held} of {seen} generated programs of family "
        f"{config.programs!r} (depths {config.depths}); examples still missing (held out: count) {need}: choose "
        "rules whose structures the family produces, and that leave programs without them"
    )


def closure_split(
    config: ClevrLikeConfig, *, n_test: int | None = None, held_out: Sequence[tuple[str, str]] = CLOSURE_HELD_OUT
) -> ClevrLikeSplit:
    """A CLOSURE-style split: programs with held-out structures are only tested (see the module docstring).

    The default rules need the ``clevr`` program family (``same`` hops, ``equal`` and ``compare`` roots), e.g.
    ``ClevrLikeConfig(programs="clevr")``. Parts are filtered from whole generated data sets, so their answers
    are balanced only as far as the filtering leaves them.

    Args:
        config: the data settings; ``config.n_examples`` training examples, drawn from ``config.seed``.
        n_test: examples of the in-distribution test and of the held-out test each (``None``:
            ``config.n_examples``), drawn from seeds derived from ``config.seed``.
        held_out: the ``(outer, inner)`` rules (default :data:`CLOSURE_HELD_OUT`).

    Returns:
        :class:`ClevrLikeSplit` ``(train, test, held_out)``.

    Raises:
        ConfigError: a bad ``config``, ``n_test`` or rule; rules that the family's programs (almost) never match
            or always match; rules that keep a module out of training altogether (the message names it).
        UnknownNameError: a rule names an unknown module.

    Example:
        >>> config = ClevrLikeConfig(n_examples=40, image_size=16, depths=(3, 4), programs="clevr")
        >>> split = closure_split(config, n_test=10)
        >>> train = {program_template(p) for p in split.train.programs}
        >>> any(program_template(p) in train for p in split.held_out.programs)
        False
    """
    n_test = _check_n_test(config, n_test)
    rules = frozenset(_check_rules(held_out))
    train = _collect(config, _TRAIN, {False: config.n_examples}, rules)[False]
    tests = _collect(config, _TEST, {False: n_test, True: n_test}, rules)
    split = ClevrLikeSplit(_concat(train), _concat(tests[False]), _concat(tests[True]))
    trained = {call.name for p in split.train.programs for call in p.postorder()}
    missing = sorted({call.name for p in split.held_out.programs for call in p.postorder()} - trained)
    if missing:
        raise ConfigError(f"the held_out rules {sorted(rules)} keep module(s) {', '.join(missing)} out of training "
                          "altogether; a held-out structure must recombine modules that training shows")
    return split
