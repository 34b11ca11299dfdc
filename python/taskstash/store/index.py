"""The SQLite index: one row per cache record, a documented public schema (docs/schema.md).

Connections: one per thread and process (re-opened after a fork), in autocommit mode
(`isolation_level=None`) so that transactions are explicit: every write runs inside
`transaction()`, which takes the write lock up front with `BEGIN IMMEDIATE`. WAL mode lets readers
run while one writer writes, across threads and processes.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` brings a database from
version n to n + 1, and all missing steps run in one transaction when a connection opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from taskstash.exceptions import CacheCorruptedError, TaskstashError
from taskstash.store.schema import MIGRATIONS, SCHEMA_VERSION
from taskstash.store.storages import makedirs_private

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Index",
    "Record",
    "connect",
    "transaction",
    "user_version",
]

TIMEOUT_SECONDS: Final = 30.0

# Applied by connect() to every connection, in this order. Values are constants: PRAGMA takes no
# parameters, so nothing here is ever formatted from user input.
_PRAGMAS: Final = (
    # Wait up to this many ms for another connection's lock instead of failing at once with
    # "database is locked". Set first, so that the pragmas below wait too.
    ("busy_timeout", int(TIMEOUT_SECONDS * 1000)),
    # Write-ahead log: readers never block the writer nor the writer readers, and a commit is an
    # append. Persistent in the file; only the first connection ever really switches.
    ("journal_mode", "wal"),
    # With WAL, sync at checkpoints, not at every commit: a power loss may drop the last commits
    # but never corrupts the database. A lost row is a miss; its result file is an orphan that
    # `taskstash verify --fix` removes or `taskstash reindex` adopts.
    ("synchronous", "normal"),
    # Enforce the foreign keys that later schema versions may add (SQLite's default is off).
    ("foreign_keys", "on"),
)

COLUMNS: Final = (
    "key",
    "task_name",
    "task_qualname",
    "created_at",
    "expires_at",
    "last_hit_at",
    "hit_count",
    "size_bytes",
    "serializer",
    "storage",
    "location",
    "checksum",
    "compute_seconds",
    "run_id",
    "components",
)
"""The columns of `records`, in the order of `Record`'s fields."""


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the index: where a cached result is and what is known about it.

    Attributes:
        key: The cache key.
        task_name: The task's name.
        task_qualname: The function's `module.qualname`.
        created_at: When the result was stored, Unix seconds.
        expires_at: When it stops being a hit, Unix seconds; None for never.
        last_hit_at: The last hit flushed to the index, Unix seconds; None if never hit.
        hit_count: Hits flushed to the index so far.
        size_bytes: Size of the result file (header and payload).
        serializer: Name of the serializer of the payload.
        storage: `ResultStorage.url` of the storage holding the file.
        location: Path of the file relative to the storage root.
        checksum: XXH3-128 hex of the payload.
        compute_seconds: How long computing the result took.
        run_id: The flow run that computed it, if any.
        components: Hash of each cache-policy component, by component name.
    """

    key: str
    task_name: str
    task_qualname: str
    created_at: float
    expires_at: float | None
    last_hit_at: float | None
    hit_count: int
    size_bytes: int
    serializer: str
    storage: str
    location: str
    checksum: str
    compute_seconds: float
    run_id: str | None
    components: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Record:
        """Builds a record from a row of `SELECT <COLUMNS> FROM records`."""
        return cls(*row[:-1], _parse_components(row[-1]))  # type: ignore[call-arg]

    def to_row(self) -> tuple[Any, ...]:
        """The values of `COLUMNS` for this record."""
        components = json.dumps(self.components, sort_keys=True, separators=(",", ":"))
        return (*(getattr(self, name) for name in COLUMNS[:-1]), components)


_PARSED: dict[str, dict[str, str]] = {}


def _parse_components(text: str) -> dict[str, str]:
    # The same few JSON texts come back on every hit of a record: parse each once (a copy is
    # handed out, so that a caller mutating its record's dict changes nothing here).
    parsed = _PARSED.get(text)
    if parsed is None:
        parsed = json.loads(text)
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[text] = parsed
    return parsed.copy()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: `BEGIN IMMEDIATE`, then `COMMIT`, or `ROLLBACK` on any exception.

    `IMMEDIATE` takes the write lock at the start (waiting up to the busy timeout), so that a
    transaction that reads then writes cannot fail half-way with "database is locked".

    Args:
        conn: A connection from `connect()` (autocommit mode).

    Yields:
        `conn`.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database file."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _check_version(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise TaskstashError(
            f"the taskstash index {path} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this taskstash knows: upgrade taskstash, or point "
            "TASKSTASH_INDEX_PATH elsewhere"
        )


def migrate(conn: sqlite3.Connection, path: str) -> bool:
    """Brings the database up to `SCHEMA_VERSION`, in one transaction.

    Args:
        conn: A connection from `connect()`.
        path: The file, named in errors.

    Returns:
        Whether any migration ran.

    Raises:
        TaskstashError: The database is newer than this code.
    """
    version = user_version(conn)
    if version == SCHEMA_VERSION:
        return False  # the common case: a read, no lock taken
    _check_version(version, path)
    with transaction(conn):
        version = user_version(conn)  # another process may have migrated in the meantime
        _check_version(version, path)
        for step in MIGRATIONS[version:]:
            step(conn)
        # Not a parameter (PRAGMA takes none), but an int constant of this module.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    return version < SCHEMA_VERSION


def _create_private(path: str) -> None:
    """Creates the index file owner-only (0o600) if missing; SQLite gives -wal and -shm its mode."""
    parent = os.path.dirname(path)
    if parent:
        makedirs_private(parent)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)


def _set_wal(conn: sqlite3.Connection, path: str) -> None:
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    # Switching needs a moment alone with the file; several first connections at once may see
    # SQLITE_BUSY without waiting, so retry until the timeout.
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = wal").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":
            raise TaskstashError(f"cannot put the taskstash index {path} in WAL mode ({mode})")
        return


def connect(
    path: str | os.PathLike[str], *, timeout: float = TIMEOUT_SECONDS
) -> sqlite3.Connection:
    """Opens the index file with taskstash's settings (see `_PRAGMAS`), creating it if needed.

    Does not migrate: `Index` does.

    Args:
        path: The index file.
        timeout: Seconds to wait for another connection's lock.

    Returns:
        A connection in autocommit mode; use `transaction()` to write.

    Raises:
        CacheCorruptedError: The file is not an SQLite database.
    """
    name = os.fspath(path)
    _create_private(name)
    conn = sqlite3.connect(name, timeout=timeout, isolation_level=None)
    try:
        for pragma, value in _PRAGMAS:
            if pragma == "journal_mode":
                _set_wal(conn, name)
            else:
                conn.execute(f"PRAGMA {pragma} = {value}")  # constants from _PRAGMAS only
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError):
            raise
        raise CacheCorruptedError(f"the taskstash index {name} is not usable: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


# Connections inherited through fork() are never used nor closed in the child (closing could
# disturb the parent's locks); they are parked here instead of being garbage collected.
_INHERITED: list[sqlite3.Connection] = []

_SELECT_LIVE: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM records "
    "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_SELECT_ANY: Final = f"SELECT {', '.join(COLUMNS)} FROM records WHERE key = ?"
# The hit path reads only what it needs to find, verify and decode the result.
_SELECT_HIT: Final = (
    "SELECT storage, location, checksum, serializer, expires_at FROM records "
    "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_UPSERT: Final = (
    f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (key) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
)
_ADD_HITS: Final = (
    "UPDATE records SET hit_count = hit_count + ?, "
    "last_hit_at = max(coalesce(last_hit_at, 0), ?) WHERE key = ?"
)


class Index:
    """The index file, with one connection per thread and process.

    Opening it creates the file (0o600, its directory 0o700) and migrates the schema.

    Args:
        path: The index file.

    Raises:
        TaskstashError: The file's schema is newer than this taskstash.
        CacheCorruptedError: The file is not an SQLite database.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._local = threading.local()
        self._migrated = False
        self.connection()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema migrated) on first use."""
        local = self._local
        try:
            if local.pid == os.getpid():
                conn: sqlite3.Connection = local.conn
                return conn
            _INHERITED.append(local.conn)
        except AttributeError:
            pass
        conn = connect(self.path)
        try:
            if not self._migrated:
                migrate(conn, self.path)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        local.conn = conn
        local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Closes this thread's connection; the next use opens a new one."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            conn.close()
        local.__dict__.clear()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """`transaction()` on this thread's connection."""
        return transaction(self.connection())

    def get(self, key: str, now: float | None = None) -> Record | None:
        """The record for `key`; if `now` is given, only if it has not expired by then."""
        if now is None:
            row = self.connection().execute(_SELECT_ANY, (key,)).fetchone()
        else:
            row = self.connection().execute(_SELECT_LIVE, (key, now)).fetchone()
        return None if row is None else Record.from_row(row)

    def get_hit(self, key: str, now: float) -> tuple[str, str, str, str, float | None] | None:
        """`(storage, location, checksum, serializer, expires_at)` of the live record for `key`.

        The columns the hit path needs and no more: a narrow row is decoded in about half the
        time of a full `Record`.
        """
        row: tuple[str, str, str, str, float | None] | None = (
            self.connection().execute(_SELECT_HIT, (key, now)).fetchone()
        )
        return row

    def select(self, where: str = "", params: Iterable[Any] = ()) -> list[Record]:
        """Records matching a fixed SQL condition with `?` parameters (`"task_name = ?"`)."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM records"
        if where:
            sql += f" WHERE {where}"
        rows = self.connection().execute(sql + " ORDER BY created_at, key", tuple(params))
        return [Record.from_row(row) for row in rows]

    @staticmethod
    def upsert(conn: sqlite3.Connection, record: Record) -> None:
        """Inserts `record` or replaces the row with its key (inside a transaction)."""
        conn.execute(_UPSERT, record.to_row())

    @staticmethod
    def add_hits(conn: sqlite3.Connection, hits: Iterable[tuple[int, float, str]]) -> None:
        """Adds `(count, last hit time, key)` hits to their rows (inside a transaction)."""
        conn.executemany(_ADD_HITS, hits)
