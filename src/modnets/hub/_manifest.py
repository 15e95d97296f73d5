"""The manifest of a hub entry (``module.json``) and the summary row the index keeps of it."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import HubError
from ..modules import Signature
from ._codec import decode_signature, encode_signature
from ._names import parse_ref, validate_name
from ._registry import IMPORT_PATH

__all__ = ["FORMAT", "MANIFEST_FILE", "READ_FORMATS", "WEIGHTS_FILE", "HubEntry", "Manifest", "Provenance",
           "sha256_hex"]

#: The manifest format this version of modnets writes.
FORMAT = "modnets-hub-entry/2"
#: The formats it reads: version 1 has no ``class_import`` field.
READ_FORMATS = ("modnets-hub-entry/1", FORMAT)
#: the files of an entry folder
WEIGHTS_FILE = "module.safetensors"
MANIFEST_FILE = "module.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _json_value(value: Any, where: str) -> Any:
    """Check that ``value`` is plain, finite JSON (what provenance may hold)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HubError(f"{where} is {value}; only finite numbers can be stored")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise HubError(f"{where} must be plain JSON (None, bool, number, str, list, dict), got {type(value).__name__}")


@dataclass(frozen=True)
class Provenance:
    """How an entry's weights were obtained.

    Attributes:
        data: what it was trained on: a description or a JSON-ready data config.
        seed: the training seed.
        metrics: name -> number (``{"accuracy": 0.91}``).
        parents: the entries it was trained from or with, as ``name@version`` references.
    """

    data: Any = None
    seed: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    parents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _json_value(self.data, "provenance data"))
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise HubError(f"provenance seed must be an int or None, got {self.seed!r}")
        if not isinstance(self.metrics, Mapping):
            raise HubError(f"provenance metrics must map names to numbers, got {type(self.metrics).__name__}")
        metrics = {}
        for k, v in self.metrics.items():
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not isinstance(k, str) or not ok:
                raise HubError(f"provenance metric {k!r} must be a finite number under a string name, got {v!r}")
            metrics[k] = v
        object.__setattr__(self, "metrics", metrics)
        if isinstance(self.parents, str) or not isinstance(self.parents, Sequence):
            raise HubError(f"provenance parents must be a list of 'name@version' references, got {self.parents!r}")
        parents = []
        for p in self.parents:
            ref = parse_ref(p)
            if ref.version is None:
                raise HubError(f"provenance parent {p!r} needs a version: 'name@version'")
            parents.append(str(ref))
        object.__setattr__(self, "parents", tuple(parents))

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "seed": self.seed, "metrics": dict(self.metrics), "parents": list(self.parents)}


@dataclass(frozen=True)
class HubEntry:
    """One stored version of a module, as listed and searched (a summary of its manifest).

    Attributes:
        name: entry name.
        version: version number (1, 2, ...).
        class_name: the registered module class (``"modnets.models.Find"``).
        signature: the module's signature.
        created: UTC creation time, ISO 8601.
        description: free text.
        metrics: the provenance metrics.
        weights_sha256: hash of ``module.safetensors``.
        manifest_sha256: hash of ``module.json`` as written.
    """

    name: str
    version: int
    class_name: str
    signature: Signature
    created: str
    description: str
    metrics: Mapping[str, float]
    weights_sha256: str
    manifest_sha256: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the signature as text and as a record)."""
        return {
            "name": self.name,
            "version": self.version,
            "class": self.class_name,
            "signature": str(self.signature),
            "signature_types": encode_signature(self.signature),
            "created": self.created,
            "description": self.description,
            "metrics": dict(self.metrics),
            "weights_sha256": self.weights_sha256,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclass(frozen=True)
class Manifest:
    """What ``module.json`` holds.

    Attributes:
        name: entry name.
        version: version number.
        class_name: the registered module class that rebuilds the module.
        config: the class's constructor keyword arguments, in their JSON form (see ``encode_config``).
        signature: the module's signature, checked against the rebuilt module on load.
        weights_sha256: sha256 of ``module.safetensors``.
        weights_bytes: size of ``module.safetensors``.
        created: UTC creation time, ISO 8601.
        provenance: data, seed, metrics and parent entries.
        description: free text.
        versions: library versions at save time (``{"modnets": ..., "torch": ...}``).
        class_import: where the class was defined, ``"module:QualName"`` (``None`` when it was not
            importable, e.g. a class of ``__main__``, or the entry was saved by an older modnets). Only
            named in messages about an unregistered class; the hub never imports it.
    """

    name: str
    version: int
    class_name: str
    config: Mapping[str, Any]
    signature: Signature
    weights_sha256: str
    weights_bytes: int
    created: str
    provenance: Provenance = field(default_factory=Provenance)
    description: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    class_import: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise HubError(f"manifest version must be an int >= 1, got {self.version!r}")
        if not isinstance(self.class_name, str) or not self.class_name:
            raise HubError(f"manifest class must be a non-empty string, got {self.class_name!r}")
        if self.class_import is not None and (
            not isinstance(self.class_import, str) or IMPORT_PATH.fullmatch(self.class_import) is None
        ):
            raise HubError(f"manifest class_import must be 'module:QualName' or null, got {self.class_import!r}")
        if not isinstance(self.config, Mapping):
            raise HubError(f"manifest config must be a JSON object, got {type(self.config).__name__}")
        if not isinstance(self.signature, Signature):
            raise HubError(f"manifest signature must be a Signature, got {type(self.signature).__name__}")
        if not isinstance(self.weights_sha256, str) or _SHA256.fullmatch(self.weights_sha256) is None:
            raise HubError(f"manifest weights_sha256 must be 64 lower-case hex digits, got {self.weights_sha256!r}")
        if not isinstance(self.weights_bytes, int) or isinstance(self.weights_bytes, bool) or self.weights_bytes < 0:
            raise HubError(f"manifest weights_bytes must be an int >= 0, got {self.weights_bytes!r}")
        for name in ("created", "description"):
            if not isinstance(getattr(self, name), str):
                raise HubError(f"manifest {name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.provenance, Provenance):
            raise HubError(f"manifest provenance must be a Provenance, got {type(self.provenance).__name__}")

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "class": self.class_name,
            "class_import": self.class_import,
            "config": dict(self.config),
            "signature": encode_signature(self.signature),
            "weights": {"file": "module.safetensors", "sha256": self.weights_sha256, "bytes": self.weights_bytes},
            "created": self.created,
            "description": self.description,
            "provenance": self.provenance.to_dict(),
            "versions": dict(self.versions),
        }

    def to_json(self) -> str:
        """The text of ``module.json`` (sorted keys, so equal manifests give equal text)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = "module.json") -> Manifest:
        """Parse and validate ``module.json``.

        Reads every format of :data:`READ_FORMATS`.

        Raises:
            HubError: not JSON, another format, or a missing or malformed field (named in the message).
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise HubError(f"{where} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise HubError(f"{where} must hold a JSON object, got {type(data).__name__}")
        if data.get("format") not in READ_FORMATS:
            raise HubError(
                f"{where} has format {data.get('format')!r}; this modnets reads {' and '.join(map(repr, READ_FORMATS))}"
            )
        expected = {"format", "name", "version", "class", "config", "signature", "weights", "created",
                    "description", "provenance", "versions"}
        if data["format"] != READ_FORMATS[0]:
            expected.add("class_import")
        missing, unknown = sorted(expected - set(data)), sorted(set(data) - expected)
        if missing or unknown:
            raise HubError(f"{where} has missing fields {missing} and unknown fields {unknown}")
        weights, prov = data["weights"], data["provenance"]
        if not isinstance(weights, dict) or set(weights) != {"file", "sha256", "bytes"}:
            raise HubError(f"{where} field 'weights' must hold file, sha256 and bytes, got {weights!r}")
        if weights["file"] != "module.safetensors":
            raise HubError(f"{where} names weights file {weights['file']!r}; expected 'module.safetensors'")
        if not isinstance(prov, dict) or set(prov) != {"data", "seed", "metrics", "parents"}:
            raise HubError(f"{where} field 'provenance' must hold data, seed, metrics and parents, got {prov!r}")
        versions = data["versions"]
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise HubError(f"{where} field 'versions' must map names to strings, got {versions!r}")
        try:
            return cls(
                name=data["name"],
                version=data["version"],
                class_name=data["class"],
                config=data["config"],
                signature=decode_signature(data["signature"]),
                weights_sha256=weights["sha256"],
                weights_bytes=weights["bytes"],
                created=data["created"],
                description=data["description"],
                provenance=Provenance(**prov),
                versions=versions,
                class_import=data.get("class_import"),
            )
        except HubError as e:
            raise HubError(f"{where}: {e}") from None

    def entry(self, manifest_sha256: str) -> HubEntry:
        """The summary the index keeps, given the hash of the manifest text."""
        return HubEntry(
            name=self.name,
            version=self.version,
            class_name=self.class_name,
            signature=self.signature,
            created=self.created,
            description=self.description,
            metrics=dict(self.provenance.metrics),
            weights_sha256=self.weights_sha256,
            manifest_sha256=manifest_sha256,
        )


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()
