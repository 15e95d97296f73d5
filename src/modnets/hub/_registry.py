"""The allow-list: the module classes and data types a hub entry may name.

A manifest names its module class by a registered name (``"modnets.models.Find"``): loading rebuilds
only classes registered with :func:`register_module`, so a tampered manifest cannot make the hub import or
run anything else. The manifest also records where the class was defined (``"mypkg.layers:MyModule"``),
but only to tell the user what to import; the hub never imports it by itself. Classes register themselves
where they are defined (the NMN modules in :mod:`modnets.models`, user classes in user code); the hub
itself names only the building blocks of :mod:`modnets.modules`, the layer below it. ``import modnets``
(which any ``import modnets.hub`` runs first) imports the presets, so their names are known before a
manifest is read.

Classes of other packages reach the allow-list in three ways, all chosen by the user, never by a manifest:
importing their module (in Python, or with ``modnets hub ... --import mypkg``, see :func:`import_modules`),
or an installed package's entry points in the group ``"modnets.modules"`` (:data:`ENTRY_POINT_GROUP`),
which the hub loads once, at its first look-up of a class. An entry point names a module, whose import
registers its classes, or a module class, which is registered under its default name::

    [project.entry-points."modnets.modules"]
    mypkg = "mypkg.layers"                  # importing mypkg.layers calls register_module
    scale = "mypkg.layers:Scale"            # registered as "mypkg.layers.Scale"

A registered module class must be rebuildable from keyword arguments: it provides them with a
``hub_config()`` method (or the ``config`` function given at registration), and a
:class:`~modnets.modules.Signature` as its ``signature`` attribute (or the ``signature`` function given
at registration, for plain ``nn.Module`` classes).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import types as _types
from ..errors import HubError
from ..modules import CNNStem, Signature
from ..types import DataType

__all__ = [
    "ENTRY_POINT_GROUP",
    "IMPORT_PATH",
    "ModuleClass",
    "find_module_class",
    "import_modules",
    "module_class",
    "registered_at",
    "module_class_of",
    "register_module",
    "register_type",
    "registered_names",
    "type_class",
    "type_name",
    "unregistered_message",
]

#: The entry-point group through which installed packages declare their module classes.
ENTRY_POINT_GROUP = "modnets.modules"

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: ``module:QualName``, as a manifest records where its class was defined.
IMPORT_PATH = re.compile(rf"({_DOTTED}):({_DOTTED})")
_MODULE_NAME = re.compile(_DOTTED)

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

    @property
    def import_path(self) -> str | None:
        """Where the class is defined, ``"module:QualName"``; ``None`` when another process could not
        import it from there (a class of ``__main__``, or one defined inside a function)."""
        module, qualname = self.cls.__module__, self.cls.__qualname__
        path = f"{module}:{qualname}"
        if module == "__main__" or IMPORT_PATH.fullmatch(path) is None:
            return None
        return path


_registered: dict[str, ModuleClass] = {}
_entry_points_lock = threading.RLock()
_entry_points_loaded = False


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


def import_modules(names: Iterable[str]) -> list[str]:
    """Import modules so that their :func:`register_module` calls run (``modnets hub ... --import``).

    Args:
        names: absolute module names (``"mypkg"``, ``"mypkg.layers"``).

    Returns:
        the module-class names registered by these imports, in the order of registration.

    Raises:
        HubError: a name that is not a dotted module name, or a module that cannot be found or imported.
    """
    if isinstance(names, str):
        raise HubError(f"import_modules needs a list of module names, got the string {names!r}")
    _load_entry_points()
    before = set(_registered)
    for name in names:
        if not isinstance(name, str) or _MODULE_NAME.fullmatch(name) is None:
            raise HubError(f"invalid module name {name!r} to import; expected a dotted name such as mypkg.layers")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise HubError(f"cannot import module {name!r} ({e})") from None
    return [n for n in _registered if n not in before]


def _load_entry_points() -> None:
    """Load the ``modnets.modules`` entry points of the installed packages, once per process.

    A package whose entry point fails to load is skipped with a warning: one broken package must not make
    every other entry unusable.
    """
    global _entry_points_loaded
    with _entry_points_lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True  # first: a loaded module may look up classes itself
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                target = point.load()
                if isinstance(target, type) and not any(spec.cls is target for spec in _registered.values()):
                    register_module(target)
            except Exception as e:  # a broken plugin is reported, not fatal
                warnings.warn(
                    f"modnets: the {ENTRY_POINT_GROUP!r} entry point {point.name!r} ({point.value}) failed to "
                    f"load and was skipped: {type(e).__name__}: {e}",
                    RuntimeWarning,
                    stacklevel=2,
                )


def registered_names() -> list[str]:
    """Every allowed module-class name, in the order of registration (after loading the entry points)."""
    _load_entry_points()
    return list(_registered)


def find_module_class(name: str) -> ModuleClass | None:
    """The allowed class of a manifest name, or ``None`` when it is not registered in this process."""
    _load_entry_points()
    return _registered.get(name) if isinstance(name, str) else None


def registered_at(import_path: str | None) -> ModuleClass | None:
    """The registered class defined at ``"module:QualName"``, if any (nothing is imported)."""
    if import_path is None:
        return None
    _load_entry_points()
    return next((spec for spec in _registered.values() if spec.import_path == import_path), None)


def unregistered_message(name: str, import_path: str | None = None) -> str:
    """What to tell a user about a class that is not registered in this process.

    Args:
        name: the class name in the manifest.
        import_path: where the manifest says the class was defined (``"mypkg.layers:MyModule"``), if known.
    """
    if import_path is not None and IMPORT_PATH.fullmatch(import_path):
        module = import_path.partition(":")[0]
        return (
            f"class not registered in this process: {name!r} (defined in {import_path}); import {module} first "
            f"(--import {module} on the command line) so that it registers itself"
        )
    return (
        f"class not registered in this process: {name!r}; import the module that registers it first "
        "(--import MODULE on the command line)"
    )


def module_class(name: str, *, import_path: str | None = None) -> ModuleClass:
    """The allowed class of a manifest name.

    Args:
        name: the class name in the manifest.
        import_path: where the manifest says the class was defined; only named in the error message.

    Raises:
        HubError: the name is not on the allow-list (the message says what to import and lists the
            registered names).
    """
    spec = find_module_class(name)
    if spec is not None:
        return spec
    raise HubError(f"{unregistered_message(str(name), import_path)}; registered classes: "
                   f"{', '.join(registered_names())}")


def module_class_of(module: nn.Module) -> ModuleClass:
    """The registration of a module's own class (a subclass of a registered class is not registered).

    Raises:
        HubError: the class is not registered.
    """
    _load_entry_points()
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
