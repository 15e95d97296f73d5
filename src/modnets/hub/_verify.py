"""Checking a hub and rebuilding its index from the entry folders.

:func:`verify_hub` opens every entry as :meth:`~modnets.hub.Hub.load` would (manifest against the index,
size and sha256 of the weights, and, for a class registered in this process, the rebuilt module's
signature and weight shapes) and compares the folders with the index. :func:`rebuild_hub_index` makes the
index anew from the folders that pass the checks that need no class. Both report what they found as a
:class:`VerifyReport`; :meth:`Hub.verify <modnets.hub.Hub.verify>` and :meth:`Hub.rebuild_index
<modnets.hub.Hub.rebuild_index>` are the public way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..errors import HubError
from ._manifest import MANIFEST_FILE
from ._names import NAME_PATTERN, validate_name
from ._registry import find_module_class, registered_at, unregistered_message

if TYPE_CHECKING:
    from ._store import Hub

__all__ = ["Problem", "VerifyReport", "rebuild_hub_index", "verify_hub"]


class Problem(NamedTuple):
    """Something wrong with one entry (or one folder) of a hub."""

    ref: str
    problem: str


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Hub.verify` (or :meth:`Hub.rebuild_index`) found.

    Attributes:
        checked: entry folders examined.
        problems: one per entry that fails to load or disagrees with the index.
        temporary: staging folders left by interrupted saves (harmless; :meth:`Hub.clean` removes them).
        unregistered: one per entry whose class is not registered in this process: its manifest and the
            hash of its weights were checked, but the module could not be rebuilt to check its signature
            and weight shapes. Importing the class's module (``--import``) lets verify check them too.
    """

    checked: int
    problems: tuple[Problem, ...]
    temporary: int = 0
    unregistered: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """No problems (entries of unregistered classes are not problems: their files are intact)."""
        return not self.problems


def verify_hub(hub: Hub, name: str | None = None) -> VerifyReport:
    """Check every entry of ``hub`` (or every version of one name) and compare the folders with the index.

    Args:
        hub: the hub to check.
        name: only the versions of this entry name; ``None``: every entry.

    Returns:
        the number of entry folders checked, one :class:`Problem` per failure, and one per entry of an
        unregistered class (its manifest and weights' hash checked, not its signature).

    Raises:
        HubError: ``name`` is not a valid entry name.
    """
    if name is not None:
        names = [validate_name(name)]
    else:
        names = sorted({*hub.names(), *(e.name for e in hub.entries())})
    indexed = {(e.name, e.version) for e in hub.index.entries(name=name)}
    problems, unregistered, checked = [], [], 0
    for n in names:
        for v in hub.versions(n):
            checked += 1
            try:
                opened = hub._open(n, v, check_class=False)
                manifest = opened.manifest
                if find_module_class(manifest.class_name) is not None:
                    hub._build(opened)
                elif (known := registered_at(manifest.class_import)) is not None:
                    raise HubError(
                        f"{manifest.ref}: {MANIFEST_FILE} names the class {manifest.class_name!r}, which is "
                        f"not registered, with the import path of the registered {known.name}; the manifest "
                        "was edited"
                    )
                else:
                    message = unregistered_message(manifest.class_name, manifest.class_import)
                    unregistered.append(Problem(f"{n}@{v}", message))
            except HubError as e:
                problems.append(Problem(f"{n}@{v}", str(e)))
                continue
            if (n, v) not in indexed:
                problems.append(Problem(f"{n}@{v}", "stored but not in the index (an interrupted save?); "
                                                    "rebuild the index"))
        for v in sorted(v for m, v in indexed if m == n and v not in hub.versions(n)):
            problems.append(Problem(f"{n}@{v}", "in the index but its folder is missing; rebuild the index"))
    return VerifyReport(checked, tuple(problems), temporary=len(hub._staging_folders()),
                        unregistered=tuple(unregistered))


def rebuild_hub_index(hub: Hub) -> VerifyReport:
    """Rebuild the index of ``hub`` from its entry folders, leaving out the folders that fail their checks.

    An entry of a class not registered in this process is kept (the index does not need the class). An
    index file that SQLite cannot read at all is deleted and made anew.

    Returns:
        the folders examined and one :class:`Problem` per folder left out.
    """
    try:
        hub.index.entries()
    except HubError:
        hub.index.reset()
    problems, found, checked = [], [], 0
    with hub.index.write() as conn:
        folders = sorted(hub.modules_dir.iterdir()) if hub.modules_dir.is_dir() else []
        for folder in folders:
            if not folder.is_dir():
                continue
            if NAME_PATTERN.fullmatch(folder.name) is None:
                problems.append(Problem(folder.name, "not a valid entry name; folder ignored"))
                continue
            for v in hub.versions(folder.name):
                checked += 1
                try:
                    opened = hub._open(folder.name, v, against_index=False, check_class=False)
                except HubError as e:
                    problems.append(Problem(f"{folder.name}@{v}", str(e)))
                    continue
                found.append(opened.manifest.entry(opened.manifest_sha256))
        hub.index.replace_all(conn, found)
    return VerifyReport(checked, tuple(problems), temporary=len(hub._staging_folders()))
