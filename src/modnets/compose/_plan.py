"""Batched execution of heterogeneous layouts.

A batch holds one program per example, all different. The plan finds every call of every program and
groups the calls that are the same module (and, for per-instance arguments, the same argument) at the
same height (distance from the leaves); each group runs once over all the examples that need it.
Groups run by height, so every call's inputs are ready when its group runs; roots wait for the last
height, so each answer module runs once per batch whatever the depths. Identical sub-programs within
one example run once.

Outputs are appended to one *pool* per output type; inputs are gathered from the pools with one row
gather per input position. Context tensors (image features ...) are gathered once for all groups and
split into views, so their backward pass accumulates one gradient, not one per group; modules that
index the context themselves (``TypedModule.indexes_context``) instead receive the whole batch, the
rows of their calls, and their ``share()`` of the batch, computed once for all their groups.

A plan is built from the programs alone, before any tensor is seen: its index tensors are built on the
CPU, and :meth:`ExecutionPlan.run` moves each to the device of the tensors it indexes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import InterfaceError, ShapeError
from ..modules import PerArgument, TypedModule
from ..types import DataType
from ._gather import gather_rows
from ._program import Program

if TYPE_CHECKING:
    from ._library import Library

__all__ = ["ExecutionPlan"]


@dataclass(frozen=True)
class _Gather:
    """Where the rows of one input come from: pool rows, possibly from several pools."""

    parts: tuple[tuple[int, Tensor], ...]  # (pool id, rows) per source pool
    order: Tensor | None  # permutation that restores call order after concatenating the parts
    top: int  # largest row index read from any pool, +1

    @staticmethod
    def build(sources: Sequence[tuple[int, int]]) -> _Gather:
        pools = sorted({p for p, _ in sources})
        top = 1 + max(r for _, r in sources)
        if len(pools) == 1:
            rows = torch.tensor([r for _, r in sources], dtype=torch.long, device="cpu")
            return _Gather(((pools[0], rows),), None, top)
        parts, positions = [], []
        for pool in pools:
            idx = [i for i, (p, _) in enumerate(sources) if p == pool]
            parts.append((pool, torch.tensor([sources[i][1] for i in idx], dtype=torch.long, device="cpu")))
            positions.extend(idx)
        order = torch.empty(len(sources), dtype=torch.long, device="cpu")
        order[torch.tensor(positions, device="cpu")] = torch.arange(len(sources), device="cpu")
        return _Gather(tuple(parts), order, top)


@dataclass(frozen=True)
class _Group:
    """One module call over many examples."""

    label: str
    module: TypedModule
    arg: Tensor | None  # (n,) embedded argument indices
    inputs: tuple[_Gather, ...]
    pool: int
    context: tuple[str, ...]


@dataclass(frozen=True)
class _ContextGather:
    """How one context tensor is handed to the groups that receive gathered copies of it."""

    examples: Tensor | None  # (calls,) example of each call of those groups in order; None: identity
    sizes: tuple[int, ...]  # calls per group
    groups: tuple[int, ...]  # the groups' positions in execution order


class _Pools:
    """Output pools: chunks appended group by group, concatenated lazily when read."""

    def __init__(self, types: Sequence[DataType]) -> None:
        self.types = types
        self.chunks: list[list[Tensor]] = [[] for _ in types]
        self.cat: list[Tensor | None] = [None] * len(types)

    def append(self, pool: int, value: Tensor) -> None:
        self.chunks[pool].append(value)

    def read(self, gather: _Gather) -> Tensor:
        values = []
        for pool, rows in gather.parts:
            cat = self.cat[pool]
            if cat is None or cat.shape[0] < gather.top:
                try:
                    cat = torch.cat(self.chunks[pool]) if len(self.chunks[pool]) > 1 else self.chunks[pool][0]
                except RuntimeError as e:
                    raise ShapeError(f"outputs of type {self.types[pool]} differ in shape: {e}") from None
                self.cat[pool] = cat
            values.append(gather_rows(cat, rows.to(cat.device)))
        if gather.order is None:
            return values[0]
        try:
            return gather_rows(torch.cat(values), gather.order.to(values[0].device))
        except RuntimeError as e:
            raise ShapeError(f"an input is fed outputs of different shapes: {e}") from None


class ExecutionPlan:
    """The grouped calls of a batch of programs, ready to run (built by :meth:`Library.plan`).

    Args:
        library: the modules.
        programs: one program per example; each is type-checked first.

    Attributes:
        batch: number of examples.
        n_calls: calls in all programs (after merging identical sub-programs within an example).
        n_groups: module invocations when run (the per-example execution makes ``n_calls``).
    """

    def __init__(self, library: Library, programs: Sequence[Program]) -> None:
        if isinstance(programs, Program) or not isinstance(programs, Sequence):
            raise ShapeError("programs must be a sequence with one Program per example")
        if len(programs) == 0:
            raise ShapeError("programs must hold at least one program")
        self.library = library
        self.batch = len(programs)
        types = library._checked_types()
        for p in programs:
            if p not in types:
                library._check(p, types)

        # Collect calls: key (height, group key) -> list of (example, call).
        per_instance = {name: isinstance(library[name], PerArgument) for name in library.names}
        # Each entry: (example, position of the call in its program's structure, call, input positions).
        buckets: dict[tuple[int, str, str | None], list[tuple[int, int, Program, tuple[int, ...]]]] = {}
        # A call runs at its height (leaves at 1), so its inputs are ready; roots, which nothing waits
        # for, all run at the last height, so each answer module runs once per batch.
        last = max(p.depth for p in programs)
        location: list[list[tuple[int, int]]] = []  # (pool, row) of each call, by example and position
        for b, program in enumerate(programs):
            structure = program.structure()
            root = len(structure) - 1
            location.append([(0, 0)] * len(structure))
            for i, (call, kids) in enumerate(structure):
                height = last if i == root else call.depth
                key = (height, call.name, call.arg if per_instance[call.name] else None)
                bucket = buckets.get(key)
                if bucket is None:
                    buckets[key] = bucket = []
                bucket.append((b, i, call, kids))

        pool_ids: dict[DataType, int] = {}
        pool_rows: list[int] = []
        groups: list[_Group] = []
        group_examples: list[list[int]] = []
        for key in sorted(buckets, key=lambda k: (k[0], k[1], k[2] or "")):
            calls = buckets[key]
            first = calls[0][2]
            module, _ = library.resolve(first)
            out_type = module.signature.output
            pool = pool_ids.setdefault(out_type, len(pool_ids))
            if pool == len(pool_rows):
                pool_rows.append(0)
            inputs = tuple(
                _Gather.build([location[b][kids[j]] for b, _, _, kids in calls]) for j in range(module.signature.arity)
            )
            arg = None
            if module.arguments is not None:
                arg = torch.tensor([module.arg_index(call.arg) for _, _, call, _ in calls], dtype=torch.long,
                                   device="cpu")
            label = first.key if per_instance[first.name] else first.name
            group = _Group(label, module, arg, inputs, pool, tuple(n for n, _ in module.signature.context))
            groups.append(group)
            group_examples.append([b for b, _, _, _ in calls])
            row = pool_rows[pool]
            for b, i, _, _ in calls:
                location[b][i] = (pool, row)
                row += 1
            pool_rows[pool] = row
        everyone = list(range(self.batch))

        def index(ex: list[int]) -> Tensor | None:
            return None if ex == everyone else torch.tensor(ex, dtype=torch.long, device="cpu")

        self.groups = groups
        # Modules that index the context get the whole tensors and their calls' example indices.
        self.group_examples = [
            index(ex) if g.module.indexes_context else None for g, ex in zip(groups, group_examples, strict=True)
        ]
        self.context_gathers: dict[str, _ContextGather] = {}
        for name in sorted({n for g in groups for n in g.context}):
            users = [i for i, g in enumerate(groups) if name in g.context and not g.module.indexes_context]
            if users:
                self.context_gathers[name] = _ContextGather(
                    examples=index([b for i in users for b in group_examples[i]]),
                    sizes=tuple(len(group_examples[i]) for i in users),
                    groups=tuple(users),
                )
        self.pool_types = list(pool_ids)
        self.roots = _Gather.build([rows[-1] for rows in location])
        self.context_names = sorted({n for g in groups for n in g.context})
        self.n_calls = sum(len(calls) for calls in buckets.values())
        self.n_groups = len(groups)

    def run(self, context: Mapping[str, Tensor]) -> Tensor:
        """Execute the plan.

        Args:
            context: per-example tensors ``(batch, ...)`` by name.

        Returns:
            ``(batch, ...)`` root outputs in example order.

        Raises:
            InterfaceError: a context tensor the modules need is missing.
            ShapeError: a context tensor's batch size differs from the number of programs.
        """
        missing = [n for n in self.context_names if n not in context]
        if missing:
            raise InterfaceError(f"missing context {missing}; the modules need {self.context_names}")
        for name in self.context_names:
            value = context[name]
            if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != self.batch:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ShapeError(f"context {name!r} must have batch dimension {self.batch}, got {shape}")
        pools = _Pools(self.pool_types)
        gathered: list[dict[str, Tensor]] = [{} for _ in self.groups]
        for name, cg in self.context_gathers.items():
            value = context[name]
            if cg.examples is not None:
                value = gather_rows(value, cg.examples.to(value.device))
            for i, part in zip(cg.groups, value.split(cg.sizes) if len(cg.sizes) > 1 else (value,), strict=True):
                gathered[i][name] = part
        shared: dict[int, dict[str, Tensor]] = {}  # per module, its share() of this batch
        for i, g in enumerate(self.groups):
            inputs = [pools.read(gather) for gather in g.inputs]
            ctx = {n: context[n] for n in g.context} if g.module.indexes_context else gathered[i]
            device = next(iter(ctx.values()), inputs[0] if inputs else None)
            device = device.device if device is not None else torch.device("cpu")
            arg = None if g.arg is None else g.arg.to(device)
            examples = self.group_examples[i]
            examples = None if examples is None else examples.to(device)
            common = None
            if g.module.indexes_context:
                common = shared.get(id(g.module))
                if common is None:
                    common = shared[id(g.module)] = g.module.share(**ctx)
            try:
                out = g.module(*inputs, arg=arg, examples=examples, shared=common, **ctx)
            except InterfaceError as e:
                if f"'{g.label}'" in str(e):
                    raise
                raise InterfaceError(f"in call '{g.label}': {e}") from None
            pools.append(g.pool, out)
        return pools.read(self.roots)
