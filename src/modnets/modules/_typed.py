"""TypedModule: an nn.Module with a signature, optional arguments and checked interfaces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, InterfaceError, ShapeError, UnknownNameError
from ..types import interfaces_checked
from ._signature import Signature

__all__ = ["PerArgument", "TypedModule", "Typed"]


class TypedModule(nn.Module, ABC):
    """A module with a :class:`Signature` whose output goes through the output type's ``constrain``.

    Subclasses implement :meth:`compute`, which returns the *raw* (unconstrained) output. A module can
    take an argument (``find[red]``) in two ways:

    - as an **argument embedding**: pass ``arguments=("red", "blue", ...)``; calls then receive
      ``arg``, a ``(batch,)`` long tensor of argument indices, so calls with different arguments run
      together in one batch;
    - as **one instance per value**: wrap one module per value in :class:`PerArgument`.

    Args:
        signature: input, context and output types.
        arguments: the argument vocabulary when the argument is embedded; ``None`` for no argument.

    Example:
        >>> import torch
        >>> from modnets.types import Latent, Mask
        >>> class Threshold(TypedModule):
        ...     def __init__(self):
        ...         super().__init__(Signature(inputs={"x": Latent()}, output=Mask()))
        ...     def compute(self, x, *, arg=None):
        ...         return x
        >>> Threshold()(torch.zeros(2, 3))
        tensor([[0.5000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.5000]])
    """

    def __init__(self, signature: Signature, *, arguments: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(signature, Signature):
            raise ConfigError(f"signature must be a Signature, got {type(signature).__name__}")
        self.signature = signature
        if arguments is not None:
            arguments = tuple(arguments)
            if not arguments or len(set(arguments)) != len(arguments):
                raise ConfigError(f"arguments must be a non-empty list of distinct names, got {arguments}")
        self.arguments: tuple[str, ...] | None = arguments
        self._arg_index = {a: i for i, a in enumerate(arguments or ())}
        self.label = type(self).__name__

    #: Whether ``forward`` passes the raw output through the output type's ``constrain``. Modules whose
    #: computation already stays in the output domain (e.g. ``min`` of two masks) set this to ``False``.
    constrains_output: bool = True

    #: Whether ``compute`` accepts ``examples`` and ``shared`` with the whole batch's context: the
    #: module then picks the rows of its calls itself from ``shared``, work that :meth:`share` does
    #: once per batch for every call of the module (e.g. a read-out of every argument value at every
    #: cell), instead of being handed gathered copies of large context tensors at every call.
    indexes_context: bool = False

    def share(self, **context: Tensor) -> dict[str, Tensor]:
        """Work on the whole batch's context that every call of this module can share.

        Only used when :attr:`indexes_context` is true. The executor calls it once per batch and hands
        the result to every call's ``compute`` as ``shared``.

        Args:
            context: ``(batch, ...)`` tensors named as in the signature.

        Returns:
            ``(batch, ...)`` tensors by name.
        """
        return {}

    @abstractmethod
    def compute(self, *inputs: Tensor, arg: Tensor | None = None, **context: Tensor) -> Tensor:
        """The raw output, before the output type's ``constrain``.

        Args:
            inputs: one ``(batch, ...)`` tensor per signature input, in order.
            arg: ``(batch,)`` argument indices when the module embeds its argument, else ``None``.
            context: one ``(batch, ...)`` tensor per signature context entry.
        """

    def arg_index(self, value: str) -> int:
        """Index of an argument value in this module's vocabulary.

        Raises:
            UnknownNameError: the value is not in the vocabulary (the message lists it).
        """
        if self.arguments is None:
            raise UnknownNameError(f"module {self.label!r} takes no argument, got {value!r}")
        try:
            return self._arg_index[value]
        except KeyError:
            raise UnknownNameError(
                f"module {self.label!r} has no argument {value!r}; known: {', '.join(self.arguments)}"
            ) from None

    def forward(
        self,
        *inputs: Tensor,
        arg: Tensor | None = None,
        examples: Tensor | None = None,
        shared: dict[str, Tensor] | None = None,
        **context: Tensor,
    ) -> Tensor:
        """Run the module: ``constrain(compute(...))``, validating every interface when checking is on.

        Args:
            inputs: one ``(n, ...)`` tensor per signature input.
            arg: ``(n,)`` embedded argument indices, when the module embeds its argument.
            examples: ``(n,)`` row of the context that belongs to each call; ``None`` when the context
                rows already correspond to the calls one to one.
            shared: the result of :meth:`share` on this context, when the caller computed it already.
            context: ``(batch, ...)`` tensors named as in the signature.

        Raises:
            InterfaceError: wrong number of inputs or context entries, or (with checking on) a value
                that violates its data type.
        """
        sig = self.signature
        if len(inputs) != sig.arity:
            raise InterfaceError(f"module {self.label!r} expects {sig.arity} inputs {sig}, got {len(inputs)}")
        missing = [n for n, _ in sig.context if n not in context]
        if missing:
            raise InterfaceError(f"module {self.label!r} is missing context {missing} {sig}")
        check = interfaces_checked()
        if check:
            for (name, t), x in zip(sig.inputs, inputs, strict=True):
                t.validate(x, where=f"module {self.label!r} input {name!r}")
            for name, t in sig.context:
                t.validate(context[name], where=f"module {self.label!r} context {name!r}")
        ctx = {n: context[n] for n, _ in sig.context}
        if self.indexes_context:
            if shared is None:
                shared = self.share(**ctx)
            if examples is None:
                if not ctx:
                    raise InterfaceError(f"module {self.label!r} indexes its context but has none {sig}")
                first = next(iter(ctx.values()))
                examples = torch.arange(first.shape[0], device=first.device)
            out = self.compute(*inputs, arg=arg, examples=examples, shared=shared, **ctx)
        else:
            if examples is not None:
                ctx = {n: v.index_select(0, examples) for n, v in ctx.items()}  # (n, ...) rows of the calls
            out = self.compute(*inputs, arg=arg, **ctx)
        if self.constrains_output:
            out = sig.output.constrain(out)
        if check:
            sig.output.validate(out, where=f"module {self.label!r} output")
        return out

    def extra_repr(self) -> str:
        args = "" if self.arguments is None else f", arguments={list(self.arguments)}"
        return f"signature={self.signature}{args}"


class Typed(TypedModule):
    """Give any ``nn.Module`` (or function of tensors) a signature.

    Args:
        fn: called as ``fn(*inputs, **context)``; returns the raw output.
        signature: the types.

    Example:
        >>> from modnets.types import Latent, Probs
        >>> head = Typed(nn.Linear(8, 3), Signature(inputs={"h": Latent(8)}, output=Probs(3)))
        >>> torch.allclose(head(torch.randn(4, 8)).sum(-1), torch.ones(4))  # each row a distribution
        True
    """

    def __init__(self, fn: nn.Module | Callable[..., Tensor], signature: Signature) -> None:
        super().__init__(signature)
        self.fn = fn
        self.label = type(fn).__name__

    def compute(self, *inputs: Tensor, arg: Tensor | None = None, **context: Tensor) -> Tensor:
        return self.fn(*inputs, **context)


class PerArgument(nn.Module):
    """One module instance per argument value (``find[red]``, ``find[blue]`` ... each with own weights).

    All instances share one signature. Calls are routed by value with :meth:`instance`; the program
    executor groups calls by (name, argument) so each instance runs once per batch.

    Args:
        factory: builds the instance for one argument value.
        values: the argument vocabulary.

    Example:
        >>> from modnets.types import Latent
        >>> heads = PerArgument(lambda v: Typed(nn.Linear(4, 4), Signature(inputs={"x": Latent()},
        ...     output=Latent())), ["left", "right"])
        >>> heads.instance("left")(torch.zeros(1, 4)).shape
        torch.Size([1, 4])
    """

    def __init__(self, factory: Callable[[str], TypedModule], values: Iterable[str]) -> None:
        super().__init__()
        self.arguments = tuple(values)
        if not self.arguments or len(set(self.arguments)) != len(self.arguments):
            raise ConfigError(f"values must be a non-empty list of distinct names, got {self.arguments}")
        # ModuleDict keys cannot hold every argument spelling ('.'), so instances are keyed by index.
        self.instances = nn.ModuleList(factory(v) for v in self.arguments)
        sigs = {m.signature for m in self.instances}
        if not all(isinstance(m, TypedModule) for m in self.instances) or len(sigs) != 1:
            raise ConfigError("PerArgument factory must build TypedModules that share one signature")
        self.signature: Signature = sigs.pop()
        self._index = {v: i for i, v in enumerate(self.arguments)}
        self.label = type(self.instances[0]).__name__

    def set_label(self, label: str) -> None:
        """Name this module (and ``label[value]`` each instance) in error messages."""
        self.label = label
        for v, m in zip(self.arguments, self.instances, strict=True):
            m.label = f"{label}[{v}]"

    def instance(self, value: str) -> TypedModule:
        """The instance for one argument value.

        Raises:
            UnknownNameError: unknown value (the message lists the known ones).
        """
        try:
            return self.instances[self._index[value]]
        except KeyError:
            raise UnknownNameError(
                f"module {self.label!r} has no argument {value!r}; known: {', '.join(self.arguments)}"
            ) from None

    def forward(self, *inputs: Tensor, arg: Tensor, **context: Tensor) -> Tensor:
        """Run each used instance once on the rows that carry its argument.

        Args:
            inputs: ``(batch, ...)`` tensors.
            arg: ``(batch,)`` long argument indices.
        """
        if arg.dim() != 1 or arg.shape[0] == 0:
            shape = tuple(arg.shape)
            raise ShapeError(f"module {self.label!r} needs a non-empty (batch,) argument tensor, got {shape}")
        out: Tensor | None = None
        for value in torch.unique(arg).tolist():
            rows = (arg == value).nonzero().squeeze(1)
            y = self.instances[value](*(x[rows] for x in inputs), **{k: v[rows] for k, v in context.items()})
            if out is None:
                out = y.new_empty((arg.shape[0], *y.shape[1:]))
            out = out.index_copy(0, rows, y)
        return out
