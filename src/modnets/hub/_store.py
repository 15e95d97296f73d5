"""The module store: entry folders with weights and manifest, their index, and every hub operation (checking
the hub and rebuilding its index are in ``_verify``).

Layout of a hub folder::

    ROOT/index.sqlite                          the index (a cache of the manifests; rebuildable)
    ROOT/modules/NAME/VERSION/module.safetensors   the weights (safetensors, never pickle)
    ROOT/modules/NAME/VERSION/module.json          the manifest
    ROOT/modules/NAME/VERSION.removed           marks a removed version, so its number is never reused
    ROOT/tmp/                                  staging folders of saves in progress

A save writes both files into a staging folder, syncs them, and then, holding the index's write lock,
picks the next version, publishes the folder with one atomic rename and records it in the index. A
crash leaves either no entry (the staging folder is ignored and :meth:`Hub.clean` removes it) or the
whole entry; if it comes after the rename but before the index commit, the entry loads but is not
listed until :meth:`Hub.rebuild_index` (``verify`` reports it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from .._files import fsync_dir, publish_dir, write_durably
from ..errors import HubError, ModnetsError
from ..modules import Signature, freeze
from ..types import DataType
from ._codec import decode_config, encode_config
from ._compose import Composition, compose_entries
from ._index import HubIndex
from ._location import default_root
from ._manifest import MANIFEST_FILE, WEIGHTS_FILE, HubEntry, Manifest, Provenance, sha256_hex
from ._names import NAME_PATTERN, parse_ref, validate_name, validate_version
from ._query import SignatureQuery
from ._registry import ModuleClass, module_class, module_class_of
from ._verify import Problem, VerifyReport, rebuild_hub_index, verify_hub

__all__ = ["Hub", "Problem", "VerifyReport"]

_MAX_MANIFEST_BYTES = 16 * 2**20


class _Opened(NamedTuple):
    manifest: Manifest
    manifest_sha256: str
    weights: bytes


class Hub:
    """A local store of trained modules (thesis 5.3): save, load, search by signature, verify, remove.

    Args:
        root: the hub folder (default :func:`~modnets.hub.default_root`: ``$MODNETS_HUB`` or the user's
            data folder). Created on the first save.
        index: the SQLite index file (default ``root / "index.sqlite"``).

    Example:
        >>> import tempfile, torch
        >>> from modnets.hub import Hub
        >>> from modnets.models import Find
        >>> from modnets.types import Mask
        >>> folder = tempfile.TemporaryDirectory()
        >>> hub = Hub(folder.name)
        >>> find = Find(["red", "cube"], channels=8, mask=Mask())
        >>> hub.save(find, "find", metrics={"accuracy": 0.9}).ref
        'find@1'
        >>> [e.ref for e in hub.search(inputs=[], output=Mask())]
        ['find@1']
        >>> again = hub.load("find")
        >>> torch.equal(again.weight.weight, find.weight.weight)
        True
        >>> folder.cleanup()
    """

    def __init__(self, root: str | Path | None = None, *, index: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.index = HubIndex(Path(index).expanduser() if index is not None else self.root / "index.sqlite")

    def __repr__(self) -> str:
        return f"Hub({str(self.root)!r})"

    @property
    def modules_dir(self) -> Path:
        return self.root / "modules"

    @property
    def staging_dir(self) -> Path:
        return self.root / "tmp"

    # ------------------------------------------------------------------ names and versions on disk
    def names(self) -> list[str]:
        """Names with at least one stored version (from the folders), sorted."""
        if not self.modules_dir.is_dir():
            return []
        folders = (p.name for p in self.modules_dir.iterdir() if NAME_PATTERN.fullmatch(p.name))
        return sorted(n for n in folders if self.versions(n))

    def versions(self, name: str) -> list[int]:
        """The stored versions of a name (from its folders), ascending; empty when there are none."""
        folder = self.modules_dir / validate_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if _is_version(p.name) and p.is_dir())

    def _issued(self, name: str, conn) -> int:
        """The highest version ever given to a name: folders, removal marks and index rows."""
        folder = self.modules_dir / name
        seen = [0, *self.versions(name), *(e.version for e in self.index.entries(name=name, conn=conn))]
        if folder.is_dir():
            seen += [int(p.stem) for p in folder.glob("*.removed") if _is_version(p.stem)]
        return max(seen)

    def _resolve(self, name: str, version: int | str | None) -> tuple[str, int]:
        name = validate_name(name)
        if version is not None:
            version = validate_version(version)
            if not (self.modules_dir / name / str(version)).is_dir():
                known = self.versions(name)
                raise HubError(
                    f"no entry {name}@{version} in the hub at {self.root}; "
                    + (f"versions of {name!r}: {', '.join(map(str, known))}" if known else "no versions of that name")
                )
            return name, version
        known = self.versions(name)
        if not known:
            names = self.names()
            listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            raise HubError(f"no entry named {name!r} in the hub at {self.root}; entries: {listed or 'none'}")
        return name, known[-1]

    # ------------------------------------------------------------------ save
    def save(
        self,
        module: nn.Module,
        name: str,
        *,
        description: str = "",
        data: Any = None,
        seed: int | None = None,
        metrics: Mapping[str, float] | None = None,
        parents: Sequence[str] = (),
    ) -> HubEntry:
        """Store a module as the next version of ``name`` (1 for a new name). Entries are immutable.

        Args:
            module: an instance of a registered class (see :func:`~modnets.hub.register_module`).
            name: entry name (see :func:`~modnets.hub.validate_name`).
            description: free text.
            data: what it was trained on (a description or a JSON-ready data config).
            seed: the training seed.
            metrics: name -> number.
            parents: entries it was trained from or with, as ``name@version``; each must exist.

        Returns:
            the new entry.

        Raises:
            HubError: a bad name, an unregistered class, a config that does not rebuild the module, a
                missing parent, or provenance that is not plain JSON.
        """
        name = validate_name(name)
        if not isinstance(description, str):
            raise HubError(f"description must be a string, got {type(description).__name__}")
        provenance = Provenance(data=data, seed=seed, metrics=dict(metrics or {}), parents=tuple(parents))
        for parent in provenance.parents:
            ref = parse_ref(parent)
            try:
                self._resolve(ref.name, ref.version)
            except HubError as e:
                raise HubError(f"parent {parent}: {e}") from None
        spec = module_class_of(module)
        signature = spec.signature(module)
        config = encode_config(spec.config(module), owner=spec.name)
        _check_rebuilds(spec, config, module, signature)
        weights = _serialize(module, spec.name)

        self.staging_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"save-{name}-", dir=self.staging_dir))
        try:
            write_durably(staging / WEIGHTS_FILE, weights)
            with self.index.write() as conn:  # one writer at a time from here to the commit
                version = self._issued(name, conn) + 1
                manifest = Manifest(
                    name=name,
                    version=version,
                    class_name=spec.name,
                    class_import=spec.import_path,
                    config=config,
                    signature=signature,
                    weights_sha256=sha256_hex(weights),
                    weights_bytes=len(weights),
                    created=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    provenance=provenance,
                    description=description,
                    versions=_library_versions(),
                )
                text = manifest.to_json().encode()
                write_durably(staging / MANIFEST_FILE, text)
                final = self.modules_dir / name / str(version)
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # only a writer that bypassed the lock could have made it
                    raise HubError(f"{name}@{version} appeared while it was being saved; try again")
                publish_dir(staging, final)
                entry = manifest.entry(sha256_hex(text))
                self.index.insert(conn, entry)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return entry

    # ------------------------------------------------------------------ load
    def load(self, name: str, version: int | str | None = None, *, frozen: bool = False) -> nn.Module:
        """Rebuild a stored module and load its weights, after checking everything.

        Args:
            name: entry name.
            version: a version number; ``None`` for the latest.
            frozen: make the module's parameters not require gradients and keep it in evaluation mode,
                also when a parent module is put in training mode (batch-norm statistics and dropout stay
                as stored).

        Returns:
            the module, on the CPU, in evaluation mode.

        Raises:
            HubError: no such entry; or a manifest that is malformed, changed since it was indexed, or
                names a class not registered in this process (the message names the module to import); a
                weights file that is truncated, or whose sha256
                differs from the manifest's; a config that does not rebuild the class; a rebuilt module
                whose signature differs from the manifest's; weights that do not fit the module.
        """
        name, version = self._resolve(name, version)
        module = self._build(self._open(name, version))
        if frozen:
            freeze(module)
        return module

    def manifest(self, name: str, version: int | str | None = None) -> Manifest:
        """The manifest of an entry (``None``: the latest version), checked as far as it goes without
        reading the weights.

        Raises:
            HubError: no such entry, or a malformed or changed manifest.
        """
        name, version = self._resolve(name, version)
        return self._read_manifest(name, version)[0]

    def _read_manifest(self, name: str, version: int, *, against_index: bool = True) -> tuple[Manifest, str]:
        ref = f"{name}@{version}"
        path = self.modules_dir / name / str(version) / MANIFEST_FILE
        if not path.is_file():
            raise HubError(f"{ref}: {MANIFEST_FILE} is missing from {path.parent}")
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise HubError(f"{ref}: {MANIFEST_FILE} is larger than {_MAX_MANIFEST_BYTES} bytes")
        text = path.read_bytes()
        digest = sha256_hex(text)
        if against_index:
            row = self.index.entry(name, version)
            if row is not None and row.manifest_sha256 != digest:
                raise HubError(
                    f"{ref}: {MANIFEST_FILE} changed since it was saved (sha256 {digest[:12]}..., "
                    f"the index recorded {row.manifest_sha256[:12]}...)"
                )
        manifest = Manifest.from_json(text, where=f"{ref}: {MANIFEST_FILE}")
        if (manifest.name, manifest.version) != (name, version):
            raise HubError(f"{ref}: {MANIFEST_FILE} describes {manifest.ref}, not the entry of its folder")
        return manifest, digest

    def _open(self, name: str, version: int, *, against_index: bool = True, check_class: bool = True) -> _Opened:
        """Read an entry's manifest and weights and check the weights' size and hash.

        With ``check_class`` an unregistered class fails before the weights are read; without it (verify,
        rebuilding the index) the weights are checked whatever the class.
        """
        manifest, digest = self._read_manifest(name, version, against_index=against_index)
        ref = manifest.ref
        if check_class:
            try:
                module_class(manifest.class_name, import_path=manifest.class_import)
            except HubError as e:
                raise HubError(f"{ref}: {e}") from None
        path = self.modules_dir / name / str(version) / WEIGHTS_FILE
        if not path.is_file():
            raise HubError(f"{ref}: {WEIGHTS_FILE} is missing from {path.parent}")
        size = path.stat().st_size
        if size < manifest.weights_bytes:
            raise HubError(f"{ref}: {WEIGHTS_FILE} is truncated: {size} of {manifest.weights_bytes} bytes")
        if size > manifest.weights_bytes:
            raise HubError(f"{ref}: {WEIGHTS_FILE} has {size} bytes, the manifest says {manifest.weights_bytes}")
        weights = path.read_bytes()
        found = sha256_hex(weights)
        if found != manifest.weights_sha256:
            raise HubError(
                f"{ref}: {WEIGHTS_FILE} does not match its manifest (sha256 {found[:12]}..., "
                f"expected {manifest.weights_sha256[:12]}...): the file is corrupt or was replaced"
            )
        return _Opened(manifest, digest, weights)

    def _build(self, opened: _Opened) -> nn.Module:
        manifest = opened.manifest
        try:
            spec = module_class(manifest.class_name, import_path=manifest.class_import)
        except HubError as e:
            raise HubError(f"{manifest.ref}: {e}") from None
        module = _construct(spec, decode_config(manifest.config), manifest.ref)
        signature = spec.signature(module)
        if signature != manifest.signature:
            raise HubError(
                f"{manifest.ref}: the manifest's signature {manifest.signature} does not match the signature "
                f"{signature} of {spec.name} rebuilt from its config"
            )
        try:
            tensors = safetensors.torch.load(opened.weights)
        except (safetensors.SafetensorError, ValueError, RuntimeError) as e:
            raise HubError(f"{manifest.ref}: {WEIGHTS_FILE} is not a readable safetensors file ({e})") from None
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split())
            raise HubError(
                f"{manifest.ref}: the weights do not fit {spec.name} rebuilt from its config ({detail})"
            ) from None
        return module.eval()

    # ------------------------------------------------------------------ list and search
    def entries(self, name: str | None = None) -> list[HubEntry]:
        """Every indexed entry (or every version of one name), in (name, version) order."""
        return self.index.entries(name=None if name is None else validate_name(name))

    def search(
        self,
        *,
        inputs: Sequence[DataType] | Mapping[str, DataType] | None = None,
        output: DataType | None = None,
        context: Mapping[str, DataType] | None = None,
        all_versions: bool = False,
    ) -> list[HubEntry]:
        """Entries whose signature fits: each module input accepts the value offered for it, ``output``
        accepts the module's output, and each module context entry accepts what ``context`` offers.
        Parts left ``None`` match anything (see :class:`~modnets.hub.SignatureQuery`).

        Args:
            inputs: the values the caller will feed, in order or by input name.
            output: the type the caller needs.
            context: the context the caller can supply, by name.
            all_versions: consider every version; by default only each name's latest.

        Returns:
            the matching entries in (name, version) order.
        """
        query = SignatureQuery(inputs=inputs, output=output, context=context)
        rows = self.index.entries()
        if not all_versions:
            latest = {e.name: e for e in rows}  # rows come in version order
            rows = list(latest.values())
        return [e for e in rows if query.matches(e.signature)]

    def compose(
        self,
        *,
        inputs: Sequence[DataType] | Mapping[str, DataType] | None = None,
        output: DataType,
        context: Mapping[str, DataType] | None = None,
        max_size: int = 3,
        max_depth: int | None = None,
        use_all_inputs: bool = True,
        all_versions: bool = False,
        limit: int | None = None,
    ) -> list[Composition]:
        """Every type-correct program of stored modules (and the caller's ``inputs`` as leaves) whose output
        ``output`` accepts, with at most ``max_size`` calls, smallest first (see :mod:`modnets.hub._compose`).

        Args:
            inputs: the values the caller will feed, in order (leaves ``input0``, ``input1`` ...) or by name.
            output: the type the caller needs.
            context: the per-example context the caller can supply, by name; modules that need context it
                does not offer are left out (``None``: none offered).
            max_size: most calls in a program, the inputs' leaves included.
            max_depth: most calls on a root-to-leaf path (``None``: ``max_size``).
            use_all_inputs: keep only the programs that use every input.
            all_versions: compose every version; by default only each name's latest.
            limit: stop after this many compositions.

        Returns:
            :class:`~modnets.hub.Composition` objects; ``composition.load()`` gives the library that runs one.

        Raises:
            HubError: an argument that is not a data type, or a bad bound.
        """
        rows = self.index.entries()
        if not all_versions:
            rows = list({e.name: e for e in rows}.values())  # rows come in version order
        return compose_entries(self, rows, inputs=inputs, output=output, context=context, max_size=max_size,
                               max_depth=max_depth, use_all_inputs=use_all_inputs, limit=limit)

    # ------------------------------------------------------------------ verify, rebuild, clean
    def verify(self, name: str | None = None) -> VerifyReport:
        """Load every entry (or every version of one name) as :meth:`load` would, and compare the
        folders with the index.

        An entry whose class is not registered in this process is checked as far as that goes (its
        manifest, against the index, and the size and sha256 of its weights) and listed in
        ``unregistered`` rather than ``problems``, unless one of those checks fails.

        Returns:
            the number of entry folders checked, one :class:`Problem` per failure, and one per entry of an
            unregistered class.
        """
        return verify_hub(self, name)

    def rebuild_index(self) -> VerifyReport:
        """Rebuild the index from the entry folders; folders that fail their checks are left out (an
        entry of a class not registered in this process is kept: the index does not need the class). An
        index file that SQLite cannot read at all is deleted and made anew.

        Returns:
            the folders examined and one :class:`Problem` per folder left out.
        """
        return rebuild_hub_index(self)

    def _staging_folders(self) -> list[Path]:
        return sorted(p for p in self.staging_dir.iterdir()) if self.staging_dir.is_dir() else []

    def clean(self, *, min_age_s: float = 3600.0) -> int:
        """Remove staging folders left by interrupted saves, when older than ``min_age_s`` seconds (a
        younger one may belong to a save in progress).

        Returns:
            the number of folders removed.
        """
        now, removed = time.time(), 0
        for path in self._staging_folders():
            if now - path.stat().st_mtime >= min_age_s:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ------------------------------------------------------------------ remove
    def remove(self, name: str, version: int | str | None = None, *, all_versions: bool = False) -> list[str]:
        """Remove one version of an entry, or every version with ``all_versions=True``.

        A removed version's number is never given again.

        Returns:
            the removed references (``name@version``).

        Raises:
            HubError: a bad name or version, no such entry, or neither ``version`` nor ``all_versions``.
        """
        name = validate_name(name)
        if (version is None) == (not all_versions):
            raise HubError("remove needs either a version or all_versions=True (not both)")
        version = None if version is None else validate_version(version)
        trash: list[Path] = []
        with self.index.write() as conn:
            present = set(self.versions(name))
            indexed = {e.version for e in self.index.entries(name=name, conn=conn)}
            targets = sorted(present | indexed) if version is None else [version]
            if not targets or (version is not None and version not in present | indexed):
                self._resolve(name, version)  # raises the not-found message
            folder = self.modules_dir / name
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            for v in targets:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{v}.removed").touch()
                if v in present:
                    target = self.staging_dir / f"removed-{name}-{v}-{uuid.uuid4().hex[:8]}"
                    (folder / str(v)).rename(target)
                    trash.append(target)
                self.index.delete(conn, name, v)
            fsync_dir(folder)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
        return [f"{name}@{v}" for v in targets]


# ---------------------------------------------------------------------------------------------- helpers
def _is_version(text: str) -> bool:
    return text.isascii() and text.isdigit() and not text.startswith("0")


def _library_versions() -> dict[str, str]:
    import modnets

    return {"modnets": modnets.__version__, "torch": torch.__version__, "safetensors": safetensors.__version__}


def _serialize(module: nn.Module, owner: str) -> bytes:
    """The module's state dict as safetensors bytes (tensors copied, so tied weights store fine)."""
    state: dict[str, Tensor] = {}
    for key, value in module.state_dict().items():
        if not isinstance(value, Tensor):
            raise HubError(f"{owner} state entry {key!r} is a {type(value).__name__}; only tensors can be stored")
        state[key] = value.detach().to("cpu").contiguous().clone()
    return safetensors.torch.save(state, metadata={"format": "pt"})


def _construct(spec: ModuleClass, config: dict[str, Any], ref: str) -> nn.Module:
    """``spec.cls(**config)`` without touching the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        try:
            return spec.cls(**config)
        except (ModnetsError, TypeError, ValueError, RuntimeError) as e:
            raise HubError(f"{ref}: {spec.name} cannot be rebuilt from its config ({e})") from None


def _check_rebuilds(spec: ModuleClass, config: dict[str, Any], module: nn.Module, signature: Signature) -> None:
    """At save time: the stored config must rebuild a module of the same signature and weight shapes."""
    rebuilt = _construct(spec, decode_config(config), f"{spec.name} config")
    if spec.signature(rebuilt) != signature:
        raise HubError(
            f"{spec.name} rebuilt from its config has signature {spec.signature(rebuilt)}, not {signature}; "
            "its config does not describe the module"
        )
    want = {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    got = {k: (tuple(v.shape), v.dtype) for k, v in rebuilt.state_dict().items() if isinstance(v, Tensor)}
    if want != got:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise HubError(f"{spec.name} rebuilt from its config has other weights ({', '.join(diff[:5])}); "
                       "its config does not describe the module")

