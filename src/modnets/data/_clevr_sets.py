"""The ``sets`` program family: random set algebra over a scene, executed while it grows.

A set sub-program of depth ``d >= 2`` is an operation on top of a sub-program of depth ``d - 1``: ``relate``,
``and`` or ``or``, with the shorter input of ``and`` / ``or`` drawn at random. Deep programs are long
chains of set operations; their sets tend to grow large (``relate`` from *some* object of a set), so
depth says little about difficulty here (it does in the ``chains`` family).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ._clevr_programs import FIND_VALUES, RELATIONS, Candidate, Node, Uniforms, determines, object_values
from ._clevr_scene import Scene

__all__ = ["SceneProgramSampler"]

# Generator knobs. Probabilities of the operation at an inner set node (the rest is `or`).
_P_RELATE = 0.4
_P_AND = 0.35
_P_PRESENT = 0.8  # a leaf names a value that selects some but not all objects
_P_DEEPER = 0.35  # the short input of and/or grows one level deeper with this probability
_RETRIES = 4  # attempts at a non-degenerate operation on top of a fixed deep input
_GOAL_RETRIES = 8  # attempts at an answer-module input that meets a goal


class SceneProgramSampler:
    """Draws random programs for one scene, executing them while they grow.

    Sets are Python ints used as bit masks over the scene's objects, so a candidate costs microseconds.

    A set sub-program of depth ``d >= 2`` is an operation on top of a sub-program of depth ``d - 1``:
    ``relate[r]`` of it, or ``and`` / ``or`` of it with a shorter random sub-program (depth ``1..d-2``,
    mostly 1), in random order. Intermediate sets that are empty, hold every object, or where an
    ``and`` / ``or`` equals one of its inputs are redrawn a few times (only the operation and its short
    input, so the cost stays linear in the depth); the set fed to the answer module may be empty or full
    (``exist`` needs "no" answers) but not a redundant ``and`` / ``or``.

    Args:
        scene: the scene.
        rng: the random generator (consumed).
    """

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        self._uniforms = Uniforms(rng)
        n = scene.n_objects
        self.full = (1 << n) - 1
        self._values, bits = object_values(scene)
        self._leaves = [Node("find", v, (), bits[v]) for v in FIND_VALUES]
        self._good_leaves = [leaf for leaf in self._leaves if 0 < leaf.bits < self.full]
        # relate[r](s) is decided by one object of s: for `left`, the rightmost one (everything left of it
        # is left of some object of s). Per relation: the order in which to look for that object, and for
        # each object the set it relates to.
        x, y = scene.x.tolist(), scene.y.tolist()
        self._relate = {
            "left": self._relation(x, descending=True),
            "right": self._relation(x, descending=False),
            "above": self._relation(y, descending=True),
            "below": self._relation(y, descending=False),
        }

    @staticmethod
    def _relation(coord: list[float], *, descending: bool) -> tuple[list[int], list[int]]:
        """Scan order and, per object ``t``, the objects strictly below (``descending``) or above ``t``."""
        scan = sorted(range(len(coord)), key=coord.__getitem__, reverse=descending)
        masks = [0] * len(coord)
        acc, prev = 0, None
        for t in reversed(scan):  # from the far end: accumulate the objects passed so far
            masks[t] = masks[prev] if prev is not None and coord[t] == coord[prev] else acc
            acc |= 1 << t
            prev = t
        return scan, masks

    def _relate_bits(self, rel: str, bits: int) -> int:
        scan, masks = self._relate[rel]
        for t in scan:
            if bits >> t & 1:
                return masks[t]
        return 0

    def object_values(self, attr: str) -> list[str]:
        """The value of ``attr`` of each object, e.g. ``["red", "blue"]`` for ``"color"``."""
        return self._values[attr]

    def _random(self) -> float:
        return self._uniforms.random()

    def choice(self, items: Sequence):
        """A uniformly random element of ``items``."""
        return self._uniforms.choice(items)

    def _leaf(self) -> Node:
        if self._good_leaves and self._random() < _P_PRESENT:
            return self.choice(self._good_leaves)
        return self.choice(self._leaves)

    def _degenerate(self, node: Node, top: bool) -> bool:
        if not top and (node.bits == 0 or node.bits == self.full):
            return True
        return node.name in ("and", "or") and node.bits in (node.children[0].bits, node.children[1].bits)

    def _operation(self, deep: Node, depth: int) -> Node:
        """A random operation of depth ``depth`` on top of ``deep`` (depth ``depth - 1``)."""
        u = self._random()
        if u < _P_RELATE:
            rel = self.choice(RELATIONS)
            return Node("relate", rel, (deep,), self._relate_bits(rel, deep.bits))
        short_depth = 1
        while short_depth < depth - 2 and self._random() < _P_DEEPER:
            short_depth += 1
        short = self.grow(short_depth)
        if short.bits == deep.bits and short == deep:  # `and(x, x)` says nothing: relate instead
            rel = self.choice(RELATIONS)
            return Node("relate", rel, (deep,), self._relate_bits(rel, deep.bits))
        pair = (deep, short) if self._random() < 0.5 else (short, deep)
        if u < _P_RELATE + _P_AND:
            return Node("and", None, pair, deep.bits & short.bits)
        return Node("or", None, pair, deep.bits | short.bits)

    def grow(self, depth: int, *, top: bool = False, goal: Callable[[Node], bool] | None = None) -> Node:
        """A set sub-program of exactly ``depth`` calls on its longest path.

        Args:
            depth: at least 1.
            top: the sub-program feeds the answer module (empty and full sets allowed).
            goal: a wish on the sub-program (e.g. "selects exactly 3 objects"): its last operation is
                redrawn up to a few times to meet it; the result may still miss it.
        """
        if depth == 1:
            if goal is not None:
                fits = [leaf for leaf in self._leaves if goal(leaf)]
                if fits:
                    return self.choice(fits)
            return self._leaf()
        deep = self.grow(depth - 1)
        node = deep
        for _ in range(_RETRIES if goal is None else _GOAL_RETRIES):
            node = self._operation(deep, depth)
            if not self._degenerate(node, top) and (goal is None or goal(node)):
                break
        return node

    def answer(self, kind: str, attr: str | None, child: Node) -> str | None:
        """The answer of ``kind[attr](child)``, or ``None`` for an ill-posed or trivial ``describe``."""
        bits = child.bits
        if kind == "exist":
            return "yes" if bits else "no"
        if kind == "count":
            return str(bits.bit_count())
        if bits == 0 or bits & (bits - 1) or determines(child, attr):
            return None
        return self._values[attr][bits.bit_length() - 1]

    def goal(self, kind: str, attr: str | None = None, answer: str | None = None) -> Callable[[Node], bool]:
        """The wish on the answer module's input set for a ``kind[attr]`` question with this ``answer``.

        ``answer=None`` asks for any well-posed question (only ``describe`` has ill-posed ones).
        """
        if kind == "describe":
            values = self._values[attr]
            if answer is None:
                return lambda n: n.bits.bit_count() == 1 and not determines(n, attr)
            return lambda n: (
                n.bits.bit_count() == 1
                and values[n.bits.bit_length() - 1] == answer
                and not determines(n, attr)
            )
        if answer is None:
            return lambda n: True
        if kind == "exist":
            return (lambda n: n.bits != 0) if answer == "yes" else (lambda n: n.bits == 0)
        k = int(answer)
        return lambda n: n.bits.bit_count() == k

    def candidate(
        self, depth: int, kind: str, attr: str | None = None, answer: str | None = None
    ) -> Candidate | None:
        """One random question of exactly ``depth`` calls with root ``kind[attr]``, or ``None``.

        Args:
            depth: at least 2.
            kind: one of ``ANSWER_MODULES``.
            attr: the attribute of ``describe``.
            answer: the answer to aim at (see :meth:`grow`'s ``goal``); the candidate may miss it.

        Returns:
            The candidate, or ``None`` when the drawn set does not suit a ``describe`` (not exactly one
            object, or the program names the described attribute).
        """
        child = self.grow(depth - 1, top=True, goal=self.goal(kind, attr, answer))
        result = self.answer(kind, attr, child)
        if result is None:
            return None
        return Candidate(Node(kind, attr, (child,), 0), result)
