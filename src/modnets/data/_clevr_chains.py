"""Reasoning chains: the ``chains`` and ``clevr`` program families, where a program's depth is its difficulty.

A chain starts from a *reference*: one to three ``find`` filters that pick one object of the scene
(``and(find[red], find[cube])``, the red cube). It then takes *hops*: ``relate[r]`` (the objects in
relation ``r`` to that object) or, in the ``clevr`` family, ``same[a]`` (the other objects that share its
attribute ``a``), each followed by zero to three filters ``and(find[v], s)`` that pick one object of the
hop's result among the others. Every level of a program is one step of reasoning over the scene, and a
mistake at any step changes the answer:

- every hop starts from exactly one object (CLEVR's ``unique``), so ``relate`` means "in relation to
  *that* object" and ``same`` is well posed;
- every filter strictly shrinks its set, and a hop's filters never pick its object on their own: at
  least two objects of the scene pass them (the *distractors* the hop rules out), so the hop is needed;
- every ``relate`` hop rules out a distractor close to its referent: one whose centre lies less than
  ``0.4 (r_d + r_t)`` from the referent's along the relation's axis (their footprints overlap along it),
  so the hop needs the referent located precisely;
- every hop after the first is *sensitive*: started from any distractor of the previous hop instead of
  its object, it would end elsewhere, and at the end on another answer. Errors propagate along the chain
  instead of being absorbed, so they compound with depth;
- the last step may end on any set (under ``exist``, ``count`` and ``compare``), but never on the set its
  filters alone would select (the hop must change the answer), and only there may a set be empty;
- ``describe[a]`` and ``equal[a]`` never read an attribute that a filter of the last step names, and
  after a hop the objects that pass the last filters do not all share ``a``: the chain decides the answer.

``equal`` and ``compare`` read two chains: one of the full depth and one of a random depth up to it, in
random order.

Sets are Python ints used as bit masks over the scene's objects (bit ``i`` is object ``i``). The steps that
can leave an object are enumerated once per scene and object and cached, so a chain of any depth costs a
few look-ups per level.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from itertools import permutations
from typing import NamedTuple

import numpy as np

from ._clevr_programs import (
    ATTRIBUTE_OF,
    ATTRIBUTES,
    FIND_VALUES,
    RELATIONS,
    Candidate,
    Node,
    Uniforms,
    compares,
    object_values,
)
from ._clevr_scene import SIZE_RADIUS, Scene

__all__ = ["ChainProgramSampler"]

#: The hops, by index: ``relate`` over every relation, then ``same`` over every attribute.
_HOPS = (*(("relate", r) for r in RELATIONS), *(("same", a) for a in ATTRIBUTES))
#: Filter orders by length: ordered tuples of distinct attribute indices.
_ORDERS = tuple(tuple(permutations(range(len(ATTRIBUTES)), k)) for k in range(len(ATTRIBUTES) + 1))
_MAX_BASE = {True: 3, False: 2}  # most filters of a reference alone: unique, any set
_MAX_FINAL_FILTERS = {True: 3, False: 2}  # most filters after the last hop: unique, any set
_WALKS = 8  # random walks tried for a chain that meets a wish, then as many without it
_P_RELATE = 0.75  # a hop is a relate (when both kinds can go on), as most of CLEVR's hops are
_TIGHT = 0.4  # a relate hop's nearest distractor lies within this many radius sums of its referent
_TRIES_ONWARD = 8  # steps drawn to go on from an object before the walk gives up
_P_FINISH = 0.5  # the walk ends as soon as it can with this probability, when it could also go on

#: A predicate on the end of a chain: ``(bits, filter values of the last step, whether it is a hop)``.
Goal = Callable[[int, tuple[str, ...], bool], bool]
#: What the answer reads of the set a chain ends on (its size, whether it is empty, the described value).
Key = Callable[[int], object]


class _Step(NamedTuple):
    """A way to leave an object: a hop, then filters; it ends on ``bits``."""

    hop: int  # index into _HOPS
    values: tuple[str, ...]  # filter values, in the order they apply
    bits: int
    passing: int  # the objects of the scene that pass the filters (the hop's result among them is bits)


class ChainProgramSampler:
    """Draws random reasoning chains for one scene (see the module docstring for what they are).

    Args:
        scene: the scene (at least two objects, or no chain has a hop).
        rng: the random generator (consumed).
        same: hop with ``same[a]`` too (the ``clevr`` family), else with ``relate`` only (``chains``).
    """

    def __init__(self, scene: Scene, rng: np.random.Generator, *, same: bool):
        self.scene = scene
        self._uniforms = Uniforms(rng)
        n = scene.n_objects
        self.full = (1 << n) - 1
        self._values, self._bits = object_values(scene)
        self._leaves = {v: Node("find", v, (), self._bits[v]) for v in FIND_VALUES}
        # own[o][a]: (value, bits of the objects sharing it) of attribute a of object o
        self._own = [
            tuple((self._values[a][o], self._bits[self._values[a][o]]) for a in ATTRIBUTES) for o in range(n)
        ]
        x, y = scene.x.tolist(), scene.y.tolist()
        # Each relation's axis, and whether it selects the objects with the smaller coordinate.
        axes = {"left": (x, True), "right": (x, False), "above": (y, True), "below": (y, False)}
        # hop_bits[h][t]: where hop h leads from object t
        self._hop_bits = [
            [
                sum(1 << o for o in range(n) if (c[o] < c[t] if smaller else c[o] > c[t]))
                for t in range(n)
            ]
            for c, smaller in (axes[r] for r in RELATIONS)
        ]
        if same:
            self._hop_bits += [
                [self._bits[self._values[a][t]] & ~(1 << t) for t in range(n)] for a in ATTRIBUTES
            ]
        # near[h][t], relations only: the objects close to object t along relation h's axis
        radius = [SIZE_RADIUS[z] for z in scene.size.tolist()]
        self._near = [
            [
                sum(1 << o for o in range(n) if o != t and abs(c[o] - c[t]) < _TIGHT * (radius[o] + radius[t]))
                for t in range(n)
            ]
            for c, _ in (axes[r] for r in RELATIONS)
        ]
        self._base_refs = self._enumerate_base_refs()
        self._base_sets = self._enumerate_base_sets()
        self._unique_steps: dict[int, list[list[_Step]]] = {}
        self._set_steps: dict[int, list[list[_Step]]] = {}

    # ------------------------------------------------------------------ enumeration (cached per scene)
    def _filters(self, o: int, start: int, order: tuple[int, ...]) -> tuple[tuple[str, ...], int] | None:
        """Filters of object ``o``'s values in attribute ``order`` applied to ``start``: their values and
        the scene's objects that pass them all, or ``None`` unless each one strictly shrinks the set and the
        last leaves only ``o``."""
        cur, passing = start, self.full
        for a in order:
            bits = self._own[o][a][1]
            if cur & bits == cur:
                return None
            cur &= bits
            passing &= bits
        if cur != 1 << o:
            return None
        return tuple(self._own[o][a][0] for a in order), passing

    def _enumerate_base_refs(self) -> list[list[tuple[int, tuple[str, ...]]]]:
        """By number of filters: ``(object, filter values)`` of every reference made of filters alone."""
        refs: list[list[tuple[int, tuple[str, ...]]]] = [[] for _ in _ORDERS]
        for k in range(1, len(_ORDERS)):
            for o in range(self.scene.n_objects):
                for order in _ORDERS[k]:
                    found = self._filters(o, self.full, order)
                    if found is not None:
                        refs[k].append((o, found[0]))
        return refs

    def _enumerate_base_sets(self) -> list[list[tuple[tuple[str, ...], int]]]:
        """By number of filters (1, 2): ``(filter values, bits)`` of every set made of filters alone.

        The first filter selects anything but every object (nothing is allowed: "is there a yellow thing?"),
        the second one of another attribute shrinks a non-empty set and selects something else than itself.
        """
        sets: list[list[tuple[tuple[str, ...], int]]] = [[], [], []]
        for v1 in FIND_VALUES:
            b1 = self._bits[v1]
            if b1 == self.full:
                continue
            sets[1].append(((v1,), b1))
            if not b1:
                continue
            for v2 in FIND_VALUES:
                b2 = self._bits[v2]
                if ATTRIBUTE_OF[v2] != ATTRIBUTE_OF[v1] and b1 & b2 not in (b1, b2):
                    sets[2].append(((v1, v2), b1 & b2))
        return sets

    def _steps_to_one(self, t: int) -> list[list[_Step]]:
        """By number of filters: every step from object ``t`` that ends on one object among distractors
        (tight ones for a relate hop), relate hops first (cached)."""
        steps = self._unique_steps.get(t)
        if steps is None:
            steps = [[] for _ in _ORDERS]
            for h, row in enumerate(self._hop_bits):
                start = row[t]
                rest = start
                while rest:
                    o = rest.bit_length() - 1
                    rest &= ~(1 << o)
                    for k, orders in enumerate(_ORDERS):
                        for order in orders:
                            found = self._filters(o, start, order)
                            if found is None:
                                continue
                            values, passing = found
                            # At least two objects pass the filters: the hop is needed to pick o.
                            if passing & (passing - 1) and self._is_tight(h, t, passing & ~start):
                                steps[k].append(_Step(h, values, 1 << o, passing))
            self._unique_steps[t] = steps
        return steps

    def _steps_to_any(self, t: int) -> list[list[_Step]]:
        """By number of filters (0-2): every step from object ``t`` that ends on any set, relate hops first
        (cached).

        A hop may land on nothing only without filters; each filter strictly shrinks a non-empty set, the
        objects that pass the filters are never all in the hop's result (else the hop would not matter), and
        a relate hop rules out a distractor close to ``t``.
        """
        steps = self._set_steps.get(t)
        if steps is None:
            steps = [[], [], []]
            for h, row in enumerate(self._hop_bits):
                start = row[t]
                if self._is_tight(h, t, ~start):
                    steps[0].append(_Step(h, (), start, self.full))
                if not start:
                    continue
                for v1 in FIND_VALUES:
                    b1 = self._bits[v1]
                    s1 = start & b1
                    if s1 == start or not b1 & ~start:
                        continue
                    if self._is_tight(h, t, b1 & ~start):
                        steps[1].append(_Step(h, (v1,), s1, b1))
                    if not s1:
                        continue
                    for v2 in FIND_VALUES:
                        b2 = self._bits[v2]
                        if ATTRIBUTE_OF[v2] != ATTRIBUTE_OF[v1] and s1 & b2 != s1 and b1 & b2 & ~start:
                            if self._is_tight(h, t, b1 & b2 & ~start):
                                steps[2].append(_Step(h, (v1, v2), s1 & b2, b1 & b2))
            self._set_steps[t] = steps
        return steps

    def _is_tight(self, h: int, t: int, distractors: int) -> bool:
        """Whether hop ``h`` from object ``t`` rules out a distractor close to ``t`` (any ``same`` hop does)."""
        return h >= len(RELATIONS) or bool(distractors & self._near[h][t])

    # ------------------------------------------------------------------ building nodes
    def _filtered(self, node: Node, values: tuple[str, ...]) -> Node:
        """``and(find[v_k], ... and(find[v_1], node))``: one level per filter."""
        for v in values:
            node = Node("and", None, (self._leaves[v], node), node.bits & self._bits[v])
        return node

    def _base(self, values: tuple[str, ...]) -> Node:
        return self._filtered(self._leaves[values[0]], values[1:])

    def _hop(self, node: Node, step: _Step) -> Node:
        name, arg = _HOPS[step.hop]
        t = node.bits.bit_length() - 1
        return self._filtered(Node(name, arg, (node,), self._hop_bits[step.hop][t]), step.values)

    # ------------------------------------------------------------------ chains
    def _sensitive(self, step: _Step, confusable: int, key: Key) -> bool:
        """Whether ``step`` would end elsewhere (``key`` tells them apart) from every object of
        ``confusable``, the objects that the step's start could be mistaken for."""
        row, same_end = self._hop_bits[step.hop], key(step.bits)
        while confusable:
            d = confusable.bit_length() - 1
            confusable ^= 1 << d
            if key(row[d] & step.passing) == same_end:
                return False
        return True

    def _walk(self, depth: int, unique: bool, goal: Goal, key: Key) -> Node | None:
        """One random chain of exactly ``depth`` levels whose end meets ``goal``, or ``None`` at a dead end.

        Short chains are references made of filters alone with probability ``1 / depth``; otherwise the
        chain starts from a reference of 1-3 filters and hops, each hop with a number of filters drawn
        uniformly among those that fit, finishing (with probability ``_P_FINISH`` when it could also go on)
        as soon as one last step meets the goal in exactly the levels that are left.

        Every hop after the first is *sensitive*: the objects that pass the previous step's filters but
        are not its object (the distractors that the previous hop ruled out) would each lead this step
        elsewhere, and at the end to another answer (``key``). A mistake at any hop therefore changes what
        follows, and errors compound along the chain instead of being absorbed.
        """
        u = self._uniforms
        if depth <= _MAX_BASE[unique] and (depth == 1 or u.random() * depth < 1):
            if unique:
                ends = [vals for o, vals in self._base_refs[depth] if goal(1 << o, vals, False)]
            else:
                ends = [vals for vals, bits in self._base_sets[depth] if goal(bits, vals, False)]
            return self._base(u.choice(ends)) if ends else None
        size = 1 + int(u.random() * min(3, depth - 1))
        if not self._base_refs[size]:
            return None
        node = self._base(u.choice(self._base_refs[size])[1])
        left, confusable = depth - size, 0
        while True:
            t = node.bits.bit_length() - 1
            onward = self._steps_to_one(t)
            ends: list[_Step] = []
            if left - 1 <= _MAX_FINAL_FILTERS[unique]:
                last = onward if unique else self._steps_to_any(t)
                ends = [
                    s for s in last[left - 1] if goal(s.bits, s.values, True) and self._sensitive(s, confusable, key)
                ]
            ks = [k for k in range(min(3, left - 2) + 1) if onward[k]]
            if ends and (not ks or u.random() < _P_FINISH):
                return self._hop(node, self._pick(ends))
            for _ in range(_TRIES_ONWARD if ks else 0):
                step = self._pick(onward[u.choice(ks)])
                if self._sensitive(step, confusable, _same_set):
                    break
            else:
                return None
            node = self._hop(node, step)
            left -= 1 + len(step.values)
            confusable = step.passing & ~step.bits

    def _pick(self, steps: list[_Step]) -> _Step:
        """A random step of ``steps`` (relate hops first, then same hops): a relate hop with probability
        ``_P_RELATE`` when there are both kinds, uniform within the kind."""
        n_relate = bisect_left(steps, len(RELATIONS), key=lambda s: s.hop)
        if n_relate == 0 or n_relate == len(steps):
            return self._uniforms.choice(steps)
        if self._uniforms.random() < _P_RELATE:
            return self._uniforms.choice(steps[:n_relate])
        return self._uniforms.choice(steps[n_relate:])

    def chain(
        self, depth: int, *, unique: bool, goal: Goal, key: Key, wish: Goal | None = None
    ) -> Node | None:
        """A random chain of exactly ``depth`` levels (at least 1), or ``None`` when none was found.

        Args:
            depth: levels of the chain (its program depth).
            unique: end on exactly one object (a reference), else on any set.
            goal: what the end must meet.
            key: what the answer reads of the end (see :meth:`_walk`: a mistaken hop must change it).
            wish: what the end should also meet (an answer to aim at); given up after a few walks.
        """
        if wish is not None:
            both: Goal = lambda bits, vals, hop: goal(bits, vals, hop) and wish(bits, vals, hop)  # noqa: E731
            for _ in range(_WALKS):
                node = self._walk(depth, unique, both, key)
                if node is not None:
                    return node
        for _ in range(_WALKS):
            node = self._walk(depth, unique, goal, key)
            if node is not None:
                return node
        return None

    # ------------------------------------------------------------------ questions
    def object_values(self, attr: str) -> list[str]:
        """The value of ``attr`` of each object, e.g. ``["red", "blue"]`` for ``"color"``."""
        return self._values[attr]

    def choice(self, items):
        """A uniformly random element of ``items``."""
        return self._uniforms.choice(items)

    def _value_key(self, attr: str) -> Key:
        """The ``attr`` value of a set's single object (``None`` for any other set)."""
        values = self._values[attr]
        return lambda bits: values[bits.bit_length() - 1] if bits and not bits & (bits - 1) else None

    def _describable(self, attr: str) -> Goal:
        """Ends on one object whose ``attr`` the chain decides: no filter of the last step names ``attr``,
        and after a hop the objects that pass the last filters do not all share it."""
        values, bits, full = self._values[attr], self._bits, self.full

        def goal(end: int, filters: tuple[str, ...], hop: bool) -> bool:
            if any(ATTRIBUTE_OF[v] == attr for v in filters):
                return False
            if not hop:
                return True
            passing = full
            for v in filters:
                passing &= bits[v]
            return bool(passing & ~bits[values[end.bit_length() - 1]])

        return goal

    def candidate(self, depth: int, kind: str, arg: str | None = None, answer: str | None = None) -> Candidate | None:
        """One random question of exactly ``depth`` levels with root ``kind[arg]``, or ``None``.

        Args:
            depth: at least 2 (the root and a chain of ``depth - 1`` levels).
            kind: a root module of the sampler's family (see ``PROGRAM_FAMILIES``).
            arg: the attribute of ``describe`` / ``equal``, the comparison of ``compare``.
            answer: the answer to aim at; the candidate may miss it.

        Returns:
            The candidate, or ``None`` when no chain of this depth was found on the scene.
        """
        inner = depth - 1
        if kind in ("exist", "count"):
            wish = None if answer is None else _size_wish(kind, answer)
            key = bool if kind == "exist" else int.bit_count
            node = self.chain(inner, unique=False, goal=_any, key=key, wish=wish)
            if node is None:
                return None
            result = ("yes" if node.bits else "no") if kind == "exist" else str(node.bits.bit_count())
            return Candidate(Node(kind, None, (node,), 0), result)
        if kind == "describe":
            values = self._values[arg]
            wish = None if answer is None else lambda end, f, h: values[end.bit_length() - 1] == answer
            node = self.chain(inner, unique=True, goal=self._describable(arg), key=self._value_key(arg), wish=wish)
            if node is None:
                return None
            return Candidate(Node(kind, arg, (node,), 0), values[node.bits.bit_length() - 1])
        return self._pair(inner, kind, arg, answer)

    def _pair(self, inner: int, kind: str, arg: str, answer: str | None) -> Candidate | None:
        """``equal[arg]`` of two references or ``compare[arg]`` of two sets: one chain of ``inner`` levels and
        one of a random depth up to it, in random order."""
        unique = kind == "equal"
        goal = self._describable(arg) if unique else _any
        key = self._value_key(arg) if unique else int.bit_count
        first = self.chain(inner, unique=unique, goal=goal, key=key)
        if first is None:
            return None
        first_left = self._uniforms.random() < 0.5
        if unique:
            values = self._values[arg]
            mine = values[first.bits.bit_length() - 1]

            def holds(end: int) -> bool:
                return values[end.bit_length() - 1] == mine

            def other(end: int, filters: tuple[str, ...], hop: bool) -> bool:
                return end != first.bits and goal(end, filters, hop)
        else:
            mine_count = first.bits.bit_count()

            def holds(end: int) -> bool:
                counts = (mine_count, end.bit_count()) if first_left else (end.bit_count(), mine_count)
                return compares(arg, *counts)

            other = _any
        wish = None if answer is None else lambda end, f, h: holds(end) == (answer == "yes")
        second = self.chain(1 + int(self._uniforms.random() * inner), unique=unique, goal=other, key=key, wish=wish)
        if second is None or second == first:
            return None
        pair = (first, second) if first_left else (second, first)
        return Candidate(Node(kind, arg, pair, 0), "yes" if holds(second.bits) else "no")


def _any(end: int, filters: tuple[str, ...], hop: bool) -> bool:
    """The goal that every end meets."""
    return True


def _same_set(bits: int) -> int:
    """The key of an inner step: the set itself (a mistaken hop must end on another set)."""
    return bits


def _size_wish(kind: str, answer: str) -> Goal:
    """The wish on the set under ``exist`` / ``count`` for this answer."""
    if kind == "exist":
        yes = answer == "yes"
        return lambda end, f, h: bool(end) == yes
    k = int(answer)
    return lambda end, f, h: end.bit_count() == k
