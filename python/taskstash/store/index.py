"""The index: one row per cache record, a documented public schema (docs/schema.md).

It lives in SQLite or PostgreSQL (`taskstash.store.database`); the SQL here is written once for
both. Connections: one per thread and process (re-opened after a fork); every write runs inside
`transaction()`.

The schema is versioned (SQLite's `PRAGMA user_version`, PostgreSQL's `taskstash_schema`
table); the missing migration steps run in one transaction when the index is first opened.

A file that is not a database, truncated or malformed raises `CorruptIndexError`, whose message
names the file and `taskstash.store.rebuild_index`, which rebuilds it from the result files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from taskstash.store.results import ResultHeader, read_result_header
from taskstash.store.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from taskstash.store.base import ResultStorage
from taskstash.store.database import Connection, index_location, open_database, redact
from taskstash.store.sqlite import connect, transaction, user_version

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
    "parameters",
    "kind",
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
        parameters: A short text of the call's arguments (`x=1, path='a.csv'`), or None.
        kind: `"task"` for the result of a task's call, `"flow"` for a flow's.
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
    parameters: str | None = None
    kind: str = "task"
    components: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_header(cls, header: ResultHeader, storage: str, location: str, size: int) -> Record:
        """The new record of a result file: its header, where it is and its size in bytes."""
        return cls(
            key=header.key,
            task_name=header.task_name,
            task_qualname=header.task_qualname,
            created_at=header.created_at,
            expires_at=header.expires_at,
            last_hit_at=None,
            hit_count=0,
            size_bytes=size,
            serializer=header.serializer,
            storage=storage,
            location=location,
            checksum=header.checksum,
            compute_seconds=header.compute_seconds,
            run_id=header.run_id,
            parameters=header.parameters,
            kind=header.kind,
            components=dict(header.components),
        )

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


_SELECT_LIVE: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM records "
    "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_SELECT_ANY: Final = f"SELECT {', '.join(COLUMNS)} FROM records WHERE key = ?"
# The hit path reads only what it needs to find, verify and decode the result.
Hit = tuple[str, str, str, str, float | None, int, str | None]
"""The columns of a live record that the hit path reads (see `Index.get_hit`)."""
_SELECT_HIT: Final = (
    "SELECT storage, location, checksum, serializer, expires_at, size_bytes, verified FROM records "
    "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_UPSERT: Final = (
    f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    # Replacing a record means its key was computed again (see the task_stats hit rate).
    + ", computations = records.computations + 1"
    # and its file is another one, not yet checked.
    + ", verified = NULL"
)
_ADD_HITS: Final = (
    "UPDATE records SET hit_count = hit_count + ?, "
    "last_hit_at = CASE WHEN last_hit_at > ? THEN last_hit_at ELSE ? END WHERE key = ?"
)


def read_file_record(storage: ResultStorage, location: str) -> Record | None:
    """The record a result file describes, from its header alone; None if there is no file.

    Raises:
        CorruptResultError: The file is not a valid result file.
        OSError: It cannot be read.
    """
    file = storage.open_read(location)
    if file is None:
        return None
    with file:
        header = read_result_header(file)
        size = file.seek(0, os.SEEK_END)
    return Record.from_header(header, storage.url, location, size)


class Index:
    """The index: SQLite or PostgreSQL (`taskstash.store.database`), one connection per thread.

    Opening it creates the database if it is a file (0o600, its directory 0o700) and migrates
    the schema.

    Args:
        location: The index file (`~` expanded, links followed), `sqlite:///path`, or a
            `postgresql://user@host:port/db` URL.

    Once an operation finds the file damaged (`CorruptIndexError`), every thread's connection
    is dropped, so that the next operation opens the file again: after `rebuild_index` it is a
    new, sound file.

    Attributes:
        path: What messages name the index by: its file path, or its URL without the password.
        url: The index's canonical location (see `index_location`): a file path or a URL, with
            the password if it has one (for opening connections, never for messages).
        database: The database it lives in.

    Raises:
        IndexTooNewError: The index's schema is newer than this taskstash.
        CorruptIndexError: The file is not an SQLite database, or is damaged.
        IndexUnreachableError: The PostgreSQL server cannot be reached.
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.url = index_location(location)
        self.path = redact(self.url)
        self.database = open_database(self.url)

    def connection(self) -> Connection:
        """This thread's connection, opened (and the schema migrated) on first use."""
        return self.database.connection()

    def close(self) -> None:
        """Closes this thread's connection; the next use opens a new one."""
        self.database.close()

    def reset(self) -> None:
        """Drops every thread's connection; the next use opens (and checks) the index again."""
        self.database.reset()

    def _check(self, exc: Exception) -> None:
        """Raises `CorruptIndexError` (and drops the connections) if `exc` means damage."""
        self.database.check(exc)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on this thread's connection (see `IndexDatabase.transaction`).

        Raises:
            CorruptIndexError: The file is damaged.
        """
        try:
            with self.database.transaction() as conn:
                yield conn
        except self.database.errors as exc:
            self._check(exc)
            raise

    def lock_keys(self, conn: Connection, keys: Iterable[str]) -> None:
        """Inside `transaction()`: waits until no other transaction writes these keys' rows."""
        self.database.lock_keys(conn, keys)

    def get(self, key: str, now: float | None = None) -> Record | None:
        """The record for `key`; if `now` is given, only if it has not expired by then."""
        try:
            if now is None:
                row = self.connection().execute(_SELECT_ANY, (key,)).fetchone()
            else:
                row = self.connection().execute(_SELECT_LIVE, (key, now)).fetchone()
        except self.database.errors as exc:
            self._check(exc)
            raise
        return None if row is None else Record.from_row(row)

    def get_hit(self, key: str, now: float) -> Hit | None:
        """The `Hit` columns of a live record.

        `(storage, location, checksum, serializer, expires_at, size_bytes, verified)`: what the
        hit path needs and no more; a narrow row is decoded in half the time of a `Record`.
        """
        try:
            row: Hit | None = self.connection().execute(_SELECT_HIT, (key, now)).fetchone()
        except self.database.errors as exc:
            self._check(exc)
            raise
        return row

    def select(self, where: str = "", params: Iterable[Any] = ()) -> list[Record]:
        """Records matching a fixed SQL condition with `?` parameters (`"task_name = ?"`)."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM records"
        if where:
            sql += f" WHERE {where}"
        try:
            rows = self.connection().execute(sql + " ORDER BY created_at, key", tuple(params))
            return [Record.from_row(row) for row in rows]
        except self.database.errors as exc:
            self._check(exc)
            raise

    def note_verified(self, key: str, location: str, verified: str) -> None:
        """Records that the file of `key`'s record at `location` was checked (see mapped.py)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE records SET verified = ? WHERE key = ? AND location = ?",
                (verified, key, location),
            )

    @staticmethod
    def upsert(conn: Connection, record: Record) -> None:
        """Inserts `record` or replaces the row with its key (inside a transaction)."""
        conn.execute(_UPSERT, record.to_row())

    @staticmethod
    def add_hits(conn: Connection, hits: Iterable[tuple[int, float, str]]) -> None:
        """Adds `(count, last hit time, key)` hits to their rows (inside a transaction)."""
        conn.executemany(_ADD_HITS, ((count, last, last, key) for count, last, key in hits))
