"""The hub as functions on the default store (``$MODNETS_HUB`` or the user's data folder), or on ``root``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..types import DataType
from ._compose import Composition
from ._manifest import HubEntry
from ._store import Hub
from ._verify import VerifyReport

__all__ = ["compose", "entries", "load", "remove", "save", "search", "verify"]


def save(
    module: nn.Module,
    name: str,
    *,
    root: str | Path | None = None,
    description: str = "",
    data: Any = None,
    seed: int | None = None,
    metrics: Mapping[str, float] | None = None,
    parents: Sequence[str] = (),
) -> HubEntry:
    """:meth:`Hub.save` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).save(
        module, name, description=description, data=data, seed=seed, metrics=metrics, parents=parents
    )


def load(
    name: str, version: int | str | None = None, *, root: str | Path | None = None, frozen: bool = False
) -> nn.Module:
    """:meth:`Hub.load` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).load(name, version, frozen=frozen)


def search(
    *,
    inputs: Sequence[DataType] | Mapping[str, DataType] | None = None,
    output: DataType | None = None,
    context: Mapping[str, DataType] | None = None,
    all_versions: bool = False,
    root: str | Path | None = None,
) -> list[HubEntry]:
    """:meth:`Hub.search` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).search(inputs=inputs, output=output, context=context, all_versions=all_versions)


def compose(
    *,
    inputs: Sequence[DataType] | Mapping[str, DataType] | None = None,
    output: DataType,
    context: Mapping[str, DataType] | None = None,
    max_size: int = 3,
    max_depth: int | None = None,
    use_all_inputs: bool = True,
    all_versions: bool = False,
    limit: int | None = None,
    root: str | Path | None = None,
) -> list[Composition]:
    """:meth:`Hub.compose` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).compose(inputs=inputs, output=output, context=context, max_size=max_size, max_depth=max_depth,
                             use_all_inputs=use_all_inputs, all_versions=all_versions, limit=limit)


def entries(name: str | None = None, *, root: str | Path | None = None) -> list[HubEntry]:
    """:meth:`Hub.entries` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).entries(name)


def verify(name: str | None = None, *, root: str | Path | None = None) -> VerifyReport:
    """:meth:`Hub.verify` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).verify(name)


def remove(
    name: str, version: int | str | None = None, *, all_versions: bool = False, root: str | Path | None = None
) -> list[str]:
    """:meth:`Hub.remove` on the hub at ``root`` (default: the default hub)."""
    return Hub(root).remove(name, version, all_versions=all_versions)
