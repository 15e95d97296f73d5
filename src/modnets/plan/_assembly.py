"""Assemblies: how modules, data sources, merges and losses connect.

An assembly is what :func:`modnets.analysis.dependencies` reads to classify the modules and derive a
:class:`~modnets.plan.TrainingPlan`.

An assembly is a static, acyclic graph of named nodes: the **data sources** a data set provides (images,
questions, programs), the **modules** (each reads some nodes), the **merges** that combine several outputs
(addition, averaging, concatenation, products ...) and the **losses**, each computed on one node's output
against a target of the data set. A model whose layout changes per example (NMN) is described by the
union of its layouts: an edge means "may read the output of".

An assembly round-trips through JSON (:meth:`Assembly.to_json`, :meth:`Assembly.from_json`), so one can be
written by hand and analysed with ``modnets analyze FILE.json``::

    {"format": "modnets-assembly/1", "name": "two-step",
     "sources": ["x"],
     "modules": [{"name": "enc", "inputs": ["x"]}, {"name": "head", "inputs": ["enc"]}],
     "merges": [],
     "losses": [{"name": "y", "on": "head"}]}

``format``, ``name``, ``merges`` and ``losses`` may be left out, and so may a module's ``inputs``,
``pretrained`` and ``description``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, UnknownNameError

__all__ = ["ASSEMBLY_FORMAT", "CODEPENDENT_MERGES", "SAFE_MERGES", "Assembly", "Loss", "Merge", "ModuleSpec"]

#: The format name written into an assembly's JSON form.
ASSEMBLY_FORMAT = "modnets-assembly/1"

#: Merges whose gradient reaches each operand only scaled by a constant (thesis 4.1): the operands train
#: independently. ``weighted_sum`` is ``a * x + b * y`` with scalar weights; ``select`` passes on one operand
#: per example (the layout's choice, as NMN's answering module), so each gets its own gradient unchanged.
SAFE_MERGES = ("add", "mean", "concat", "weighted_sum", "select")

#: Merges that make an operand's gradient depend on the other operands' values (codependent gradient):
#: ``x * y`` gives ``y * dx``; ``min`` / ``max`` route the gradient by comparing operands. ``custom`` stands
#: for any other merge, which is codependent unless shown otherwise.
CODEPENDENT_MERGES = ("product", "min", "max", "geometric_mean", "attention", "custom")


def _names(value: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"{what} must be a sequence of names, got the string {value!r}")
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ConfigError(f"{what} must hold non-empty names, got {bad}")
    return names


@dataclass(frozen=True)
class ModuleSpec:
    """A module of an assembly.

    Attributes:
        name: the module's name (unique in the assembly).
        inputs: the nodes it reads (data sources, modules or merges); empty for a module that reads
            nothing (a learned constant).
        pretrained: already trained and kept frozen (a reused module, an ImageNet CNN): its outputs can be
            computed right away, so they count as available data for the modules that read them.
        description: one line for the tables.
    """

    name: str
    inputs: Sequence[str] = ()
    pretrained: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"ModuleSpec.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "inputs", _names(self.inputs, f"ModuleSpec({self.name!r}).inputs"))


@dataclass(frozen=True)
class Merge:
    """A parameter-free combination of several nodes' outputs.

    Attributes:
        name: the merge's name (unique in the assembly).
        inputs: the merged nodes (at least one).
        op: one of :data:`SAFE_MERGES` or :data:`CODEPENDENT_MERGES`.
    """

    name: str
    inputs: Sequence[str]
    op: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Merge.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "inputs", _names(self.inputs, f"Merge({self.name!r}).inputs"))
        if not self.inputs:
            raise ConfigError(f"Merge({self.name!r}).inputs must name at least one node, got ()")
        if self.op not in SAFE_MERGES + CODEPENDENT_MERGES:
            raise ConfigError(
                f"Merge({self.name!r}).op must be one of {SAFE_MERGES + CODEPENDENT_MERGES}, got {self.op!r}"
            )

    @property
    def codependent(self) -> bool:
        """Whether the merge couples its operands' gradients."""
        return self.op not in SAFE_MERGES


@dataclass(frozen=True)
class Loss:
    """A loss computed on one node's output against a target the data set provides.

    Attributes:
        name: the loss's name, also the name of its target (``"answer"``); one target may be scored on
            several nodes.
        on: the node whose output it scores (a module or a merge).
    """

    name: str
    on: str

    def __post_init__(self) -> None:
        for key in ("name", "on"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"Loss.{key} must be a non-empty string, got {value!r}")


@dataclass(frozen=True)
class Assembly:
    """Data sources, modules, merges and losses of a modular model, as a checked acyclic graph.

    Attributes:
        sources: names of the inputs the data set provides.
        modules: the modules.
        merges: the merges.
        losses: the losses.
        name: a label for tables.

    Raises:
        ConfigError: a duplicate name, an input or loss naming an unknown node, or a cycle.

    Example:
        >>> a = Assembly(sources=("x",), modules=(ModuleSpec("enc", ("x",)), ModuleSpec("head", ("enc",))),
        ...              losses=(Loss("y", on="head"),))
        >>> a.consumers("enc")
        ('head',)
    """

    sources: Sequence[str]
    modules: Sequence[ModuleSpec]
    merges: Sequence[Merge] = ()
    losses: Sequence[Loss] = ()
    name: str = "assembly"
    _nodes: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", _names(self.sources, "Assembly.sources"))
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "merges", tuple(self.merges))
        object.__setattr__(self, "losses", tuple(self.losses))
        for what, items, kind in (("modules", self.modules, ModuleSpec), ("merges", self.merges, Merge),
                                  ("losses", self.losses, Loss)):
            bad = [type(x).__name__ for x in items if not isinstance(x, kind)]
            if bad:
                raise ConfigError(f"Assembly.{what} must hold {kind.__name__} objects, got {bad}")
        if not self.modules:
            raise ConfigError("Assembly.modules must hold at least one ModuleSpec, got ()")
        nodes: dict[str, object] = {}
        for node in (*self.sources, *self.modules, *self.merges):
            key = node if isinstance(node, str) else node.name
            if key in nodes:
                raise ConfigError(f"Assembly node names must be unique, got {key!r} twice")
            nodes[key] = node
        object.__setattr__(self, "_nodes", nodes)
        for node in (*self.modules, *self.merges):
            unknown = [n for n in node.inputs if n not in nodes]
            if unknown:
                raise ConfigError(
                    f"{type(node).__name__} {node.name!r} reads unknown nodes {unknown}; known: {', '.join(nodes)}"
                )
        pairs = [(loss.name, loss.on) for loss in self.losses]
        if len(set(pairs)) != len(pairs):
            raise ConfigError(f"Assembly losses must differ in name or node, got {pairs}")
        for loss in self.losses:
            if loss.on not in nodes or loss.on in self.sources:
                raise ConfigError(
                    f"Loss {loss.name!r} is on {loss.on!r}, which is not a module or merge of the assembly"
                )
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name):] + [name]
                raise ConfigError(
                    f"Assembly must be acyclic, got the cycle {' -> '.join(cycle)}; unroll a recursive layout "
                    "to the depths it is used at"
                )
            state[name] = 1
            for child in self.inputs_of(name):
                visit(child, [*path, name])
            state[name] = 2

        for name in self._nodes:
            visit(name, [])

    # ------------------------------------------------------------------------------------------ queries
    def kind(self, name: str) -> str:
        """``"source"``, ``"module"`` or ``"merge"``.

        Raises:
            UnknownNameError: no node of that name (the message lists the known ones).
        """
        node = self.node(name)
        return "source" if isinstance(node, str) else ("module" if isinstance(node, ModuleSpec) else "merge")

    def node(self, name: str) -> str | ModuleSpec | Merge:
        """The node of a name (a source is its name).

        Raises:
            UnknownNameError: no node of that name.
        """
        try:
            return self._nodes[name]
        except KeyError:
            raise UnknownNameError(
                f"assembly {self.name!r} has no node {name!r}; known: {', '.join(self._nodes)}"
            ) from None

    def inputs_of(self, name: str) -> tuple[str, ...]:
        """The nodes a node reads (empty for a source)."""
        node = self.node(name)
        return () if isinstance(node, str) else tuple(node.inputs)

    def consumers(self, name: str) -> tuple[str, ...]:
        """The modules and merges that read a node, in declaration order."""
        self.node(name)
        return tuple(n.name for n in (*self.modules, *self.merges) if name in n.inputs)

    def losses_on(self, name: str) -> tuple[Loss, ...]:
        """The losses computed directly on a node's output."""
        return tuple(loss for loss in self.losses if loss.on == name)

    @property
    def module_names(self) -> tuple[str, ...]:
        """The modules' names, in declaration order."""
        return tuple(m.name for m in self.modules)

    # ------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (see the module docstring); :meth:`from_dict` rebuilds an equal assembly."""
        return {
            "format": ASSEMBLY_FORMAT,
            "name": self.name,
            "sources": list(self.sources),
            "modules": [{"name": m.name, "inputs": list(m.inputs), "pretrained": m.pretrained,
                         "description": m.description} for m in self.modules],
            "merges": [{"name": m.name, "inputs": list(m.inputs), "op": m.op} for m in self.merges],
            "losses": [{"name": loss.name, "on": loss.on} for loss in self.losses],
        }

    def to_json(self) -> str:
        """The JSON text of :meth:`to_dict`, indented; ``Assembly.from_json(a.to_json()) == a``."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "assembly") -> Assembly:
        """An assembly from its JSON-ready form, checked field by field.

        Args:
            data: as :meth:`to_dict` writes it; ``format``, ``name``, ``merges``, ``losses`` and a module's
                ``inputs``, ``pretrained`` and ``description`` may be left out.
            where: how messages name the data (a file name).

        Raises:
            ConfigError: an unknown or missing field, a value of the wrong type, or an assembly that fails
                the checks of :class:`Assembly`; the message names the field's path.
        """
        _check_fields(data, where, required=("sources", "modules"),
                      optional=("format", "name", "merges", "losses"))
        if "format" in data and data["format"] != ASSEMBLY_FORMAT:
            raise ConfigError(f"{where}.format must be {ASSEMBLY_FORMAT!r}, got {data['format']!r}")
        name = data.get("name", "assembly")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name must be a non-empty string, got {name!r}")
        sources = _strings(data["sources"], f"{where}.sources")
        modules, merges, losses = [], [], []
        for i, item in enumerate(_objects(data["modules"], f"{where}.modules")):
            at = f"{where}.modules[{i}]"
            _check_fields(item, at, required=("name",), optional=("inputs", "pretrained", "description"))
            pretrained, description = item.get("pretrained", False), item.get("description", "")
            if not isinstance(pretrained, bool):
                raise ConfigError(f"{at}.pretrained must be true or false, got {pretrained!r}")
            if not isinstance(description, str):
                raise ConfigError(f"{at}.description must be a string, got {description!r}")
            label, inputs = _string(item["name"], f"{at}.name"), _strings(item.get("inputs", []), f"{at}.inputs")
            modules.append(_made(at, ModuleSpec, label, inputs, pretrained, description))
        for i, item in enumerate(_objects(data.get("merges", []), f"{where}.merges")):
            at = f"{where}.merges[{i}]"
            _check_fields(item, at, required=("name", "inputs", "op"), optional=())
            merges.append(_made(at, Merge, _string(item["name"], f"{at}.name"),
                                _strings(item["inputs"], f"{at}.inputs"), _string(item["op"], f"{at}.op")))
        for i, item in enumerate(_objects(data.get("losses", []), f"{where}.losses")):
            at = f"{where}.losses[{i}]"
            _check_fields(item, at, required=("name", "on"), optional=())
            losses.append(_made(at, Loss, _string(item["name"], f"{at}.name"), _string(item["on"], f"{at}.on")))
        return _made(where, cls, sources=sources, modules=tuple(modules), merges=tuple(merges),
                     losses=tuple(losses), name=name)

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = "assembly") -> Assembly:
        """An assembly from the JSON text :meth:`to_json` writes (or one written by hand).

        Args:
            text: the JSON text.
            where: how messages name the text (a file name).

        Raises:
            ConfigError: text that is not JSON (the message gives the line and column), or any error of
                :meth:`from_dict`.

        Example:
            >>> a = Assembly(sources=("x",), modules=(ModuleSpec("enc", ("x",)),), losses=(Loss("y", on="enc"),))
            >>> Assembly.from_json(a.to_json()) == a
            True
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        except (UnicodeDecodeError, TypeError) as e:
            raise ConfigError(f"{where} is not JSON text ({e})") from None
        return cls.from_dict(data, where=where)


def _made(where: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``, its ConfigError prefixed with where the data came from."""
    try:
        return factory(*args, **kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_fields(data: Any, where: str, *, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    accepted = (*required, *optional)
    unknown = [k for k in data if k not in accepted]
    if unknown:
        raise ConfigError(f"{where} has unknown fields {unknown}; accepted: {', '.join(accepted)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where} lacks the fields {missing}")


def _objects(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a JSON list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_string(v, f"{where}[{i}]") for i, v in enumerate(_objects(value, where)))
