"""A Library maps module names to typed modules; it type-checks and executes programs."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, TypeMismatchError, UnknownNameError
from ..modules import PerArgument, Signature, TypedModule
from ..types import DataType
from ._plan import ExecutionPlan
from ._program import Program

__all__ = ["Library"]


def _short(program: Program, limit: int = 80) -> str:
    text = str(program)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Library(nn.Module):
    """The modules a program may call, by name.

    A module is a :class:`~modnets.modules.TypedModule` (no argument, or an embedded argument) or a
    :class:`~modnets.modules.PerArgument` (one instance per argument value). Calling the library runs a
    batch of programs, one per example, all different, with every identical module call at the same
    depth grouped and run once (see :meth:`forward`).

    Args:
        modules: name -> module.

    Example:
        >>> from modnets.models import nmn_library
        >>> lib = nmn_library(typed=True)
        >>> lib.check(Program.parse("exist(find[red])"))
        Probs(size=26)
    """

    def __init__(self, modules: Mapping[str, TypedModule | PerArgument]) -> None:
        super().__init__()
        for name, module in modules.items():
            if not isinstance(module, TypedModule | PerArgument):
                raise ConfigError(
                    f"library module {name!r} must be a TypedModule or PerArgument, got {type(module).__name__}"
                )
            try:
                Program(name)
            except Exception:
                raise ConfigError(f"library module name {name!r} is not a valid identifier") from None
            if isinstance(module, PerArgument):
                module.set_label(name)
            else:
                module.label = name
        self.table = nn.ModuleDict(dict(modules))
        # Checked calls -> output type, valid while the registered modules stay the same objects.
        self._types: dict[Program, DataType] = {}
        self._types_for: tuple[int, ...] = ()

    # ------------------------------------------------------------------ lookup
    @property
    def names(self) -> tuple[str, ...]:
        """The module names, in registration order."""
        return tuple(self.table.keys())

    def __getitem__(self, name: str) -> TypedModule | PerArgument:
        try:
            return self.table[name]
        except KeyError:
            raise UnknownNameError(f"unknown module {name!r}; known modules: {', '.join(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.table

    def signature(self, name: str) -> Signature:
        """The signature of a module."""
        return self[name].signature

    def resolve(self, call: Program) -> tuple[TypedModule, int | None]:
        """The module instance that runs ``call`` and its embedded argument index (``None`` if not embedded).

        Raises:
            UnknownNameError: unknown module or argument value.
            TypeMismatchError: an argument given to a module that takes none, or missing where required.
        """
        module = self[call.name]
        if isinstance(module, PerArgument):
            if call.arg is None:
                raise TypeMismatchError(
                    f"'{call.name}' needs an argument, one of: {', '.join(module.arguments)} (in {_short(call)})"
                )
            return module.instance(call.arg), None
        if module.arguments is None:
            if call.arg is not None:
                raise TypeMismatchError(f"'{call.name}' takes no argument, got [{call.arg}] (in {_short(call)})")
            return module, None
        if call.arg is None:
            raise TypeMismatchError(
                f"'{call.name}' needs an argument, one of: {', '.join(module.arguments)} (in {_short(call)})"
            )
        return module, module.arg_index(call.arg)

    # ------------------------------------------------------------------ checking
    def check(self, program: Program) -> DataType:
        """Type-check a whole program before any tensor is touched; returns its output type.

        Raises:
            UnknownNameError: a module or argument the library does not know.
            TypeMismatchError: wrong number of inputs, or an input type that does not accept the output
                feeding it (the message names the call, the input position and both types).
        """
        return self._check(program, self._checked_types())

    def _check(self, program: Program, types: dict[Program, DataType]) -> DataType:
        """:meth:`check` against a memo of checked calls (see :meth:`_checked_types`)."""
        if not isinstance(program, Program):
            raise TypeMismatchError(f"expected a Program, got {type(program).__name__}")
        if program in types:
            return types[program]
        for call in program.unique_calls():
            if call in types:
                continue
            self.resolve(call)
            sig = self.signature(call.name)
            if len(call.children) != sig.arity:
                raise TypeMismatchError(
                    f"'{call.key}' takes {sig.arity} input(s) {sig}, got {len(call.children)} in {_short(call)}"
                )
            got = tuple(types[c] for c in call.children)
            bad = sig.accepts_inputs(got)
            if bad is not None:
                name, want = sig.inputs[bad]
                child = call.children[bad]
                raise TypeMismatchError(
                    f"input {bad + 1} ({name!r}) of '{call.key}' expects {want}, got {got[bad]} from "
                    f"'{child.key}' in {_short(call)}"
                )
            types[call] = sig.output
        return types[program]

    def _checked_types(self) -> dict[Program, DataType]:
        """The memo of checked calls, emptied when a module has been replaced since it was filled."""
        current = tuple(id(m) for m in self.table.values())
        if current != self._types_for:
            self._types = {}
            self._types_for = current
        if len(self._types) > 100_000:  # programs from an unbounded generator: keep memory bounded
            self._types.clear()
        return self._types

    # ------------------------------------------------------------------ execution
    def plan(self, programs: Sequence[Program]) -> ExecutionPlan:
        """Type-check the programs and group their calls for batched execution (no tensors touched)."""
        return ExecutionPlan(self, programs)

    def forward(self, programs: Sequence[Program], *, context_rows: Tensor | None = None, **context: Tensor) -> Tensor:
        """Run one program per example, batched across examples with different layouts.

        Args:
            programs: ``batch`` programs (or an :class:`ExecutionPlan` from :meth:`plan`).
            context_rows: ``(batch,)`` long, the context row each program runs on, when several programs share
                one example's context (S sampled programs per question): the context then holds one row per
                example and the modules that read it whole (``TypedModule.indexes_context``) do their shared
                work once per example, not once per program. ``None``: row ``i`` is program ``i``'s.
            context: per-example tensors ``(batch, ...)`` (or ``(examples, ...)`` with ``context_rows``) named as
                in the modules' signatures.

        Returns:
            ``(batch, ...)`` the root outputs, in program order.

        Raises:
            ShapeError: ``context_rows`` of the wrong shape or dtype, rows outside the context, or context
                tensors with different numbers of rows.
        """
        plan = programs if isinstance(programs, ExecutionPlan) else self.plan(programs)
        if context_rows is not None:
            plan = _over_rows(plan, _check_rows(context_rows, plan.batch, context), context)
        return plan.run(context)

    def execute_each(self, programs: Sequence[Program], *, context_rows: Tensor | None = None,
                     **context: Tensor) -> Tensor:
        """Reference execution: every example on its own, every call separately (slow; for testing).

        Same arguments and result as :meth:`forward`.
        """
        if context_rows is not None:
            rows = _check_rows(context_rows, len(programs), context).tolist()
            context = {k: v.index_select(0, torch.tensor(rows, device=v.device)) for k, v in context.items()}
        batch = _batch_size(programs, context)
        outs = []
        for b in range(batch):
            ctx = {k: v[b : b + 1] for k, v in context.items()}
            self.check(programs[b])
            values: dict[Program, Tensor] = {}
            for call in programs[b].postorder():
                if call in values:
                    continue
                module, arg = self.resolve(call)
                kids = [values[c] for c in call.children]
                arg_t = None if arg is None else torch.full((1,), arg, dtype=torch.long, device=_device(ctx, kids))
                values[call] = module(*kids, arg=arg_t, **{n: ctx[n] for n, _ in module.signature.context})
            outs.append(values[programs[b]])
        return torch.cat(outs)

    def extra_repr(self) -> str:
        return "\n".join(f"{n}: {m.signature}" for n, m in self.table.items())


def _device(context: Mapping[str, Tensor], values: Sequence[Tensor]) -> torch.device:
    """The device of an example's tensors (its context, else its inputs; the CPU for a bare leaf call)."""
    return next((t.device for t in (*context.values(), *values)), torch.device("cpu"))


def _check_rows(rows: object, batch: int, context: Mapping[str, Tensor]) -> Tensor:
    """``context_rows`` checked: (batch,) long ids of rows that every context tensor has; on the CPU."""
    if not isinstance(rows, Tensor) or rows.dim() != 1 or rows.shape[0] != batch or rows.dtype != torch.long:
        got = f"{tuple(rows.shape)} {rows.dtype}" if isinstance(rows, Tensor) else type(rows).__name__
        raise ShapeError(f"context_rows must be a ({batch},) long tensor, one context row per program; got {got}")
    sizes = {name: v.shape[0] if isinstance(v, Tensor) and v.dim() else None for name, v in context.items()}
    if len(set(sizes.values())) > 1 or None in sizes.values():
        raise ShapeError(f"with context_rows, every context tensor must have the same number of rows; got {sizes}")
    n = next(iter(sizes.values()), 0)
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise ShapeError(f"context_rows must hold rows in [0, {n}) of the context, got [{int(rows.min())}, "
                         f"{int(rows.max())}]")
    return rows.cpu()


def _over_rows(plan: ExecutionPlan, rows: Tensor, context: Mapping[str, Tensor]) -> ExecutionPlan:
    """A copy of ``plan`` whose calls read the context at ``rows[program]`` instead of at their program's
    position (its ``batch``, which ``run`` checks the context against, is the context's number of rows)."""
    out = copy.copy(plan)
    out.batch = next((v.shape[0] for v in context.values()), plan.batch)
    out.group_examples = [
        (rows if ex is None else rows.index_select(0, ex)) if g.module.indexes_context else None
        for g, ex in zip(plan.groups, plan.group_examples, strict=True)
    ]
    out.context_gathers = {
        name: dataclasses.replace(cg, examples=rows if cg.examples is None else rows.index_select(0, cg.examples))
        for name, cg in plan.context_gathers.items()
    }
    return out


def _batch_size(programs: Sequence[Program], context: Mapping[str, Tensor]) -> int:
    batch = len(programs)
    for name, value in context.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != batch:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ShapeError(f"context {name!r} must be a tensor with batch dimension {batch}, got {shape}")
    return batch
