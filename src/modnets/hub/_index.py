"""The hub's SQLite index: one row per entry, for listing and search by signature.

The entry folders are the truth; the index is a cache of their manifests that :meth:`Hub.rebuild_index`
can rebuild at any time. It is written in WAL mode, and every write runs in a ``BEGIN IMMEDIATE``
transaction, which also serialises the hub's writers: a process that saves allocates its version and
publishes its folder while it holds the write lock, so concurrent saves neither collide nor get lost.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from ..errors import HubError
from ._codec import decode_signature, encode_signature
from ._manifest import HubEntry

__all__ = ["HubIndex"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    class TEXT NOT NULL,
    signature TEXT NOT NULL,
    arity INTEGER NOT NULL,
    created TEXT NOT NULL,
    description TEXT NOT NULL,
    metrics TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"""
_COLUMNS = "name, version, class, signature, arity, created, description, metrics, weights_sha256, manifest_sha256"
_BUSY_TIMEOUT_S = 60.0


class HubIndex:
    """The SQLite index of a hub.

    Args:
        path: the database file (created, with its folder, on the first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; every write names its own.
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise HubError(f"cannot open the hub index {self.path}: {e}") from None
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the index's (and so the hub's) write lock until it ends.

        Commits when the block ends normally, rolls back when it raises.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:  # closing an open transaction rolls it back
            self._begin(conn)
            try:
                yield conn
            except sqlite3.DatabaseError as e:
                raise HubError(f"cannot write the hub index {self.path} ({e})") from None
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                raise HubError(f"cannot commit to the hub index {self.path} ({e})") from None

    def _begin(self, conn: sqlite3.Connection) -> None:
        """WAL mode, then ``BEGIN IMMEDIATE`` and the schema. SQLite answers "database is locked" at once,
        without waiting for the busy timeout, when two processes switch a new database to WAL together or
        one upgrades a read lock while another writes; those attempts are retried until the timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                self._ensure_schema(conn)
                return
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise HubError(f"cannot write the hub index {self.path} ({e})") from None
                time.sleep(random.uniform(0.005, 0.05))
            except sqlite3.DatabaseError as e:
                raise HubError(f"cannot write the hub index {self.path} ({e}); rebuild it from the folders") from None

    def reset(self) -> None:
        """Delete the index files (the database and its WAL and shared-memory files)."""
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or ``None`` when the index does not exist yet."""
        if not self.path.exists():
            yield None
            return
        with closing(self._connect()) as conn:
            yield conn

    @staticmethod
    def _ensure_schema(conn: sqlite3.Connection) -> None:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == 0:
            conn.execute(_SCHEMA)  # executescript would commit the open transaction
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        elif found != _SCHEMA_VERSION:
            raise HubError(f"the hub index has schema version {found}; this modnets reads {_SCHEMA_VERSION}")

    # ------------------------------------------------------------------ writes (inside write())
    @staticmethod
    def insert(conn: sqlite3.Connection, entry: HubEntry) -> None:
        """Add (or replace) the row of one entry."""
        conn.execute(
            f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.name,
                entry.version,
                entry.class_name,
                json.dumps(encode_signature(entry.signature), sort_keys=True),
                entry.signature.arity,
                entry.created,
                entry.description,
                json.dumps(dict(entry.metrics), sort_keys=True),
                entry.weights_sha256,
                entry.manifest_sha256,
            ),
        )

    @staticmethod
    def delete(conn: sqlite3.Connection, name: str, version: int) -> None:
        """Remove the row of one entry (if any)."""
        conn.execute("DELETE FROM entries WHERE name = ? AND version = ?", (name, version))

    @classmethod
    def replace_all(cls, conn: sqlite3.Connection, entries: Iterable[HubEntry]) -> None:
        """Make the index hold exactly ``entries``."""
        conn.execute("DELETE FROM entries")
        for entry in entries:
            cls.insert(conn, entry)

    # ------------------------------------------------------------------ reads
    def entries(
        self, *, name: str | None = None, arity: int | None = None, conn: sqlite3.Connection | None = None
    ) -> list[HubEntry]:
        """Rows in (name, version) order, optionally of one name and of one input arity."""
        where, params = [], []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if arity is not None:
            where.append("arity = ?")
            params.append(arity)
        sql = f"SELECT {_COLUMNS} FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY name, version"
        if conn is not None:
            return [self._entry(row) for row in conn.execute(sql, params)]
        with self.read() as reader:
            if reader is None:
                return []
            try:
                rows = reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return []
                raise HubError(f"cannot read the hub index {self.path}: {e}") from None
            except sqlite3.DatabaseError as e:
                raise HubError(f"the hub index {self.path} is unreadable ({e}); rebuild it from the folders") from None
        return [self._entry(row) for row in rows]

    def entry(self, name: str, version: int) -> HubEntry | None:
        """The row of one entry, or ``None``."""
        found = [e for e in self.entries(name=name) if e.version == version]
        return found[0] if found else None

    def _entry(self, row: tuple) -> HubEntry:
        name, version, class_name, signature, _arity, created, description, metrics, wsha, msha = row
        try:
            return HubEntry(
                name=name,
                version=version,
                class_name=class_name,
                signature=decode_signature(json.loads(signature)),
                created=created,
                description=description,
                metrics=json.loads(metrics),
                weights_sha256=wsha,
                manifest_sha256=msha,
            )
        except (HubError, ValueError) as e:
            raise HubError(f"the hub index {self.path} has a bad row for {name}@{version} ({e}); rebuild it") from None
