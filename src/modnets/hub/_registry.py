"""The allow-list: the module classes and data types a hub entry may name.

A manifest names its module class by a registered name (``"modnets.models.Find"``), never by an
arbitrary import path: loading rebuilds only classes registered with :func:`register_module`, so a tampered
manifest cannot make the hub import or run anything else. Classes register themselves where they are
defined (the NMN modules in :mod:`modnets.models`, user classes in user code); the hub itself names only
the building blocks of :mod:`modnets.modules`, the layer below it. ``import modnets`` (which any
``import modnets.hub`` runs first) imports the presets, so their names are known before a manifest is read.

A registered module class must be rebuildable from keyword arguments: it provides them with a
``hub_config()`` method (or the ``config`` function given at registration), and a
:class:`~modnets.modules.Signature` as its ``signature`` attribute (or the ``signature`` function given
at registration, for plain ``nn.Module`` classes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import types as _types
from ..errors import HubError
from ..modules import CNNStem, Signature
from ..types import DataType

__all__ = [
    "ModuleClass",
    "module_class",
    "module_class_of",
    "register_module",
    "register_type",
    "registered_names",
    "type_class",
    "type_name",
]

SignatureFn = Callable[[nn.Module], Signature]
ConfigFn = Callable[[nn.Module], dict[str, Any]]


def _own_signature(module: nn.Module) -> Signature:
    signature = getattr(module, "signature", None)
    if not isinstance(signature, Signature):
        raise HubError(
            f"{type(module).__name__} has no Signature in its 'signature' attribute; register the class with "
            "register_module(cls, signature=...) to give it one"
        )
    return signature


def _own_config(module: nn.Module) -> dict[str, Any]:
    hub_config = getattr(module, "hub_config", None)
    if not callable(hub_config):
        raise HubError(
            f"{type(module).__name__} has no hub_config() method; register the class with "
            "register_module(cls, config=...) to say how it is rebuilt"
        )
    config = hub_config()
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise HubError(f"{type(module).__name__}.hub_config() must return a dict of keyword arguments, got {config!r}")
    return config


@dataclass(frozen=True)
class ModuleClass:
    """A module class the hub may store and rebuild.

    Attributes:
        name: the name written into manifests (``"modnets.models.Find"``).
        cls: the class.
        signature: returns an instance's signature.
        config: returns the keyword arguments that rebuild an instance (``cls(**config(module))``).
    """

    name: str
    cls: type[nn.Module]
    signature: SignatureFn = _own_signature
    config: ConfigFn = _own_config


_registered: dict[str, ModuleClass] = {}


def _builtin_types() -> dict[str, type[DataType]]:
    """The concrete data types of :mod:`modnets.types`, by class name."""
    found: dict[str, type[DataType]] = {}
    for name in dir(_types):
        obj = getattr(_types, name)
        if isinstance(obj, type) and issubclass(obj, DataType) and not getattr(obj, "__abstractmethods__", None):
            found[obj.__name__] = obj
    return found


_TYPES: dict[str, type[DataType]] = _builtin_types()


def register_module(
    cls: type[nn.Module],
    *,
    name: str | None = None,
    signature: SignatureFn | None = None,
    config: ConfigFn | None = None,
) -> str:
    """Allow a module class in hub entries.

    Args:
        cls: an ``nn.Module`` subclass rebuildable as ``cls(**kwargs)``.
        name: the name written into manifests (default ``"module.QualName"``).
        signature: ``module -> Signature`` (default: the instance's ``signature`` attribute).
        config: ``module -> kwargs`` (default: the instance's ``hub_config()``).

    Returns:
        the registered name.

    Raises:
        HubError: ``cls`` is not an ``nn.Module`` class, or ``name`` is taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise HubError(f"register_module needs an nn.Module subclass, got {cls!r}")
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(name, str) or not name:
        raise HubError(f"register_module: name must be a non-empty string, got {name!r}")
    taken = _registered.get(name)
    if taken is not None and taken.cls is not cls:
        raise HubError(f"register_module: the name {name!r} is already registered for another class")
    _registered[name] = ModuleClass(name, cls, signature or _own_signature, config or _own_config)
    return name


def registered_names() -> list[str]:
    """Every allowed module-class name, in the order of registration."""
    return list(_registered)


def module_class(name: str) -> ModuleClass:
    """The allowed class of a manifest name.

    Raises:
        HubError: the name is not on the allow-list (the message lists the allowed names).
    """
    if isinstance(name, str) and name in _registered:
        return _registered[name]
    raise HubError(f"unknown module class {name!r}; allowed classes: {', '.join(registered_names())}")


def module_class_of(module: nn.Module) -> ModuleClass:
    """The registration of a module's own class (a subclass of a registered class is not registered).

    Raises:
        HubError: the class is not registered.
    """
    for spec in _registered.values():
        if type(module) is spec.cls:
            return spec
    raise HubError(
        f"module class {type(module).__module__}.{type(module).__qualname__} is not registered with the hub; "
        f"register it with modnets.hub.register_module, or store one of: {', '.join(registered_names())}"
    )


def register_type(cls: type[DataType], *, name: str | None = None) -> str:
    """Allow a data type (a :class:`~modnets.types.DataType` dataclass) in signatures and configs.

    The types of :mod:`modnets.types` are allowed already, under their class names.

    Returns:
        the registered name (default ``"module.QualName"``).

    Raises:
        HubError: ``cls`` is not a concrete DataType subclass, or ``name`` is taken by another type.
    """
    if not (isinstance(cls, type) and issubclass(cls, DataType)) or getattr(cls, "__abstractmethods__", None):
        raise HubError(f"register_type needs a concrete DataType subclass, got {cls!r}")
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    if _TYPES.get(name, cls) is not cls:
        raise HubError(f"register_type: the name {name!r} is already registered for another type")
    _TYPES[name] = cls
    return name


def type_class(name: str) -> type[DataType]:
    """The allowed data type of a name.

    Raises:
        HubError: not on the allow-list (the message lists the allowed names).
    """
    if isinstance(name, str) and name in _TYPES:
        return _TYPES[name]
    raise HubError(f"unknown data type {name!r}; allowed types: {', '.join(sorted(_TYPES))}")


def type_name(dtype: DataType) -> str:
    """The name a data type is stored under.

    Raises:
        HubError: its class is not on the allow-list.
    """
    for name, cls in _TYPES.items():
        if type(dtype) is cls:
            return name
    raise HubError(
        f"data type {type(dtype).__qualname__} is not registered with the hub; register it with "
        "modnets.hub.register_type"
    )


register_module(CNNStem, name="modnets.modules.CNNStem")
