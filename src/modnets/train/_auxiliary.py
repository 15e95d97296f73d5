"""Auxiliary data sets (thesis 4.1): a trained module's outputs cached on disk for the modules that read them.

A module with dependent input would otherwise need its upstream modules at every training step. Instead,
once the upstream module (the *producer*) is trained, :func:`cache_outputs` runs it once over the data and
stores its outputs with each example's sample id and the nearest targets (the answers the downstream
modules are trained on). :class:`AuxiliaryDataset` serves them to the downstream modules, which then train
without running the producer. The cache stays valid as long as the producer does not change: the manifest
records the producer's fingerprint (:func:`module_sha256`), and a cache made by another version of the
producer is refused.

On disk: ``manifest.json`` and ``shard-00000.safetensors``, ... (tensors only, never pickle), each shard
holding ``sample_id`` and every cached field for up to ``shard_size`` examples. A new cache is written and
synced in a staging folder and swapped in for the old one (:func:`modnets._files.swap_dir`): a writer that
dies at any point leaves the old cache or the new one readable, never none and never a mixture.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .._files import current_dir, recover_dir, staging_dir, swap_dir, write_durably
from ..errors import ConfigError, DataUnavailableError, ShapeError

__all__ = ["AuxiliaryDataset", "AuxiliaryManifest", "Shard", "cache_outputs", "module_sha256"]

FORMAT = 1
MANIFEST = "manifest.json"
SAMPLE_ID = "sample_id"

Batch = Mapping[str, Any]


def module_sha256(module: nn.Module) -> str:
    """A fingerprint of a module: its class and every state entry's name, dtype, shape and bytes.

    Two modules with the same class and equal weights and buffers hash the same; any change of a weight
    changes the hash.

    Example:
        >>> a = nn.Linear(3, 2)
        >>> b = nn.Linear(3, 2)
        >>> b.load_state_dict(a.state_dict())
        <All keys matched successfully>
        >>> module_sha256(a) == module_sha256(b)
        True
    """
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Shard:
    """One shard file: its name, how many examples it holds, and the sha256 of its bytes."""

    file: str
    n: int
    sha256: str


@dataclass(frozen=True)
class AuxiliaryManifest:
    """What an auxiliary data set holds and who made it.

    Attributes:
        producer: the producer's name.
        producer_sha256: the producer's :func:`module_sha256` when the cache was written.
        n_examples: examples cached.
        outputs: the cached output fields.
        targets: the cached target fields (taken from the data batches).
        fields: per field (``sample_id`` included), ``{"dtype": ..., "shape": [...]}`` of one example.
        shards: the shard files, in order.
        created: UTC time of writing (ISO 8601).
        format: the on-disk format version.
        seconds: what writing it took (0 in a manifest written before the time was recorded).
    """

    producer: str
    producer_sha256: str
    n_examples: int
    outputs: tuple[str, ...]
    targets: tuple[str, ...]
    fields: dict[str, dict[str, Any]]
    shards: tuple[Shard, ...]
    created: str
    format: int = FORMAT
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: str | Path) -> AuxiliaryManifest:
        """The manifest of an auxiliary data set folder (or of the cache it held before an interrupted swap).

        Raises:
            DataUnavailableError: no readable manifest there, or one of another format.
        """
        path = current_dir(directory) / MANIFEST
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise DataUnavailableError(
                    f"auxiliary data set {path.parent} has format {data.get('format')!r}, this modnets reads "
                    f"{FORMAT}; rebuild it with modnets.train.cache_outputs"
                )
            return cls(
                producer=data["producer"], producer_sha256=data["producer_sha256"], n_examples=data["n_examples"],
                outputs=tuple(data["outputs"]), targets=tuple(data["targets"]), fields=data["fields"],
                shards=tuple(Shard(**s) for s in data["shards"]), created=data["created"], format=data["format"],
                seconds=float(data.get("seconds", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataUnavailableError(
                f"no readable auxiliary data set at {path.parent} ({type(e).__name__}: {e}); write one with "
                "modnets.train.cache_outputs"
            ) from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_outputs(
    producer: nn.Module,
    dataset: Dataset,
    *,
    directory: str | Path,
    outputs: Callable[[Batch], Mapping[str, Tensor]],
    collate: Callable[[list], Batch],
    targets: Sequence[str] = (),
    ids: str | None = None,
    name: str | None = None,
    shard_size: int = 4096,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = False,
) -> AuxiliaryManifest:
    """Run a trained producer once over a data set and store its outputs as an auxiliary data set.

    The producer runs in eval mode without gradients. A cache already in ``directory`` from the same
    producer (same fingerprint and fields) is kept and its manifest returned, unless ``overwrite``; one
    from another producer version is replaced. The new cache is written into a temporary folder, synced and
    swapped in at the end, so an interrupted run leaves the old cache or the new one, never a half-written
    one. One writer at a time per ``directory``.

    Args:
        producer: the trained module (or a container of the modules that make the outputs, e.g. an
            ``nn.ModuleDict`` of a stem and a ``find``); its fingerprint goes into the manifest.
        dataset: the examples, read in order.
        directory: the cache folder.
        outputs: ``outputs(batch)`` runs the producer on a batch and returns named ``(B, ...)`` tensors.
        collate: turns a list of examples into a batch.
        targets: batch keys of ``(B, ...)`` tensors to store with the outputs (the nearest targets).
        ids: batch key of ``(B,)`` integer sample ids; ``None``: the examples' positions in ``dataset``.
        name: the producer's name in the manifest (default: its class name).
        shard_size: examples per shard file.
        batch_size: examples per forward pass.
        overwrite: rewrite even a cache that is still valid.
        progress: show a progress bar.

    Returns:
        the manifest of the cache.

    Raises:
        ConfigError: bad sizes, or a field named both as an output and a target (or ``sample_id``).
        ShapeError: outputs or targets whose first dimension is not the batch's, or whose shape changes
            between batches.
    """
    for key, value in (("shard_size", shard_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"cache_outputs {key} must be an int >= 1, got {value!r}")
    targets = tuple(targets)
    directory = Path(directory)
    fingerprint = module_sha256(producer)
    label = name or type(producer).__name__
    recover_dir(directory)  # what a writer that died here left behind
    if not overwrite and (directory / MANIFEST).exists():
        try:
            old = AuxiliaryManifest.read(directory)
        except DataUnavailableError:
            old = None
        if old is not None and old.producer_sha256 == fingerprint and old.targets == targets:
            return old

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(directory)
    was_training = producer.training
    producer.eval()
    try:
        manifest = _write(producer, dataset, staging, outputs, collate, targets, ids, label, fingerprint,
                          shard_size, batch_size, progress)
        swap_dir(staging, directory)
    finally:
        producer.train(was_training)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write(
    producer: nn.Module,
    dataset: Dataset,
    folder: Path,
    outputs: Callable[[Batch], Mapping[str, Tensor]],
    collate: Callable[[list], Batch],
    targets: tuple[str, ...],
    ids: str | None,
    label: str,
    fingerprint: str,
    shard_size: int,
    batch_size: int,
    progress: bool,
) -> AuxiliaryManifest:
    from safetensors.torch import save

    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    fields: dict[str, dict[str, Any]] = {}
    output_names: tuple[str, ...] | None = None
    pending: dict[str, list[Tensor]] = {}
    shards: list[Shard] = []
    seen = 0

    def flush(count: int) -> None:
        nonlocal pending
        joined = {k: torch.cat(v) for k, v in pending.items()}
        while joined and joined[SAMPLE_ID].shape[0] >= count > 0:
            part = {k: v[:count].contiguous() for k, v in joined.items()}
            joined = {k: v[count:] for k, v in joined.items()}
            file = f"shard-{len(shards):05d}.safetensors"
            data = save(part)
            write_durably(folder / file, data)
            shards.append(Shard(file, count, hashlib.sha256(data).hexdigest()))
        pending = {k: [v] for k, v in joined.items()}

    with torch.no_grad():
        for batch in tqdm(loader, desc=f"cache {label}", disable=not progress, leave=False):
            produced = dict(outputs(batch))
            if output_names is None:
                output_names = tuple(produced)
                clash = set(output_names) & (set(targets) | {SAMPLE_ID})
                if clash or SAMPLE_ID in targets:
                    raise ConfigError(
                        f"cache_outputs field names must be distinct from each other and from {SAMPLE_ID!r}; "
                        f"outputs {list(output_names)}, targets {list(targets)}"
                    )
            b = next(iter(produced.values())).shape[0] if produced else 0
            if ids is None:
                sample_ids = torch.arange(seen, seen + b)
            else:
                sample_ids = torch.as_tensor(batch[ids]).long()
            missing = [t for t in targets if t not in batch]
            if missing:
                raise ConfigError(f"cache_outputs targets {missing} are not keys of the batches ({list(batch)})")
            row = {SAMPLE_ID: sample_ids, **produced, **{t: torch.as_tensor(batch[t]) for t in targets}}
            for key, value in row.items():
                if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != b or b == 0:
                    shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                    raise ShapeError(f"cache_outputs field {key!r} must be a (batch={b}, ...) tensor, got {shape}")
                spec = {"dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape[1:])}
                if fields.setdefault(key, spec) != spec:
                    raise ShapeError(
                        f"cache_outputs field {key!r} changed from {fields[key]} to {spec} between batches"
                    )
                pending.setdefault(key, []).append(value.detach().cpu())
            seen += b
            if pending[SAMPLE_ID] and sum(v.shape[0] for v in pending[SAMPLE_ID]) >= shard_size:
                flush(shard_size)
    if seen == 0:
        raise ConfigError("cache_outputs got an empty data set")
    if pending:
        flush(sum(v.shape[0] for v in pending[SAMPLE_ID]))
    manifest = AuxiliaryManifest(
        producer=label, producer_sha256=fingerprint, n_examples=seen, outputs=output_names or (), targets=targets,
        fields=fields, shards=tuple(shards), created=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - start,
    )
    write_durably(folder / MANIFEST, (json.dumps(manifest.to_dict(), indent=2) + "\n").encode())
    return manifest


class AuxiliaryDataset(Dataset):
    """The examples of an auxiliary data set: dicts of tensors (``sample_id``, the outputs, the targets).

    Opening checks that the cache was made by the producer at hand and that no shard changed on disk.
    Every shard is loaded into memory (choose ``fields`` to load fewer); batches collate with
    ``torch.utils.data.default_collate``.

    Args:
        directory: the cache folder.
        producer: the producer as it is now; the cache is refused if its fingerprint differs.
        producer_sha256: the producer's fingerprint, when the module itself is not at hand.
        fields: the fields to load (``sample_id`` is always loaded); ``None``: all.
        verify: check every shard's sha256.

    Raises:
        ConfigError: neither ``producer`` nor ``producer_sha256`` given, or an unknown field.
        DataUnavailableError: no cache there, a stale cache (made by another version of the producer: the
            message says to rebuild it) or a shard that is missing or changed.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        producer: nn.Module | None = None,
        producer_sha256: str | None = None,
        fields: Sequence[str] | None = None,
        verify: bool = True,
    ) -> None:
        from safetensors.torch import load_file

        if (producer is None) == (producer_sha256 is None):
            raise ConfigError("AuxiliaryDataset needs exactly one of producer or producer_sha256 to check the cache")
        self.directory = Path(directory)
        folder = current_dir(self.directory)  # resolved once: the manifest and its shards come from one cache
        self.manifest = AuxiliaryManifest.read(folder)
        expected = producer_sha256 if producer is None else module_sha256(producer)
        if expected != self.manifest.producer_sha256:
            raise DataUnavailableError(
                f"stale auxiliary data set at {self.directory}: it was made by {self.manifest.producer} "
                f"{self.manifest.producer_sha256[:12]}, the producer given is {expected[:12]}; rebuild it with "
                "modnets.train.cache_outputs"
            )
        known = (*self.manifest.outputs, *self.manifest.targets)
        wanted = known if fields is None else tuple(fields)
        unknown = [f for f in wanted if f not in known]
        if unknown:
            raise ConfigError(f"AuxiliaryDataset fields {unknown} are not cached; cached: {', '.join(known)}")
        parts: dict[str, list[Tensor]] = {k: [] for k in (SAMPLE_ID, *wanted)}
        for shard in self.manifest.shards:
            path = folder / shard.file
            if not path.exists() or (verify and _sha256_file(path) != shard.sha256):
                raise DataUnavailableError(
                    f"auxiliary data set {self.directory}: shard {shard.file} is missing or changed on disk; "
                    "rebuild it with modnets.train.cache_outputs"
                )
            tensors = load_file(str(path))
            for k in parts:
                parts[k].append(tensors[k])
        self.tensors: dict[str, Tensor] = {k: torch.cat(v) for k, v in parts.items()}

    @property
    def sample_ids(self) -> Tensor:
        """``(N,)`` the sample id of every cached example, in order."""
        return self.tensors[SAMPLE_ID]

    def __len__(self) -> int:
        return self.manifest.n_examples

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __repr__(self) -> str:
        return (f"AuxiliaryDataset({str(self.directory)!r}, producer={self.manifest.producer}, "
                f"n={len(self)}, fields={list(self.tensors)})")
