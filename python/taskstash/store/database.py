"""The database an index lives in: one interface, a SQLite and a PostgreSQL implementation.

The store speaks one SQL to both: statements are written once, with `?` placeholders and the
syntax both databases accept (`INSERT ... ON CONFLICT (key) DO UPDATE SET c = excluded.c`,
`coalesce`, `CASE`, window functions). What truly differs lives in the implementations:
connections (one per thread and process, re-opened after a fork), how a write transaction
serialises writers (SQLite's `BEGIN IMMEDIATE`; PostgreSQL's row locks plus a per-key advisory
lock, see `lock_keys`), the schema's migrations, planner hints, and how driver errors map to
taskstash's (`CorruptIndexError` for a damaged file, `IndexUnreachableError` for a server that
cannot be reached).

An index is named by a location: a file path, `sqlite:///path`, or a
`postgresql://user@host:port/db` URL (`open_database`).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = [
    "Connection",
    "Cursor",
    "IndexDatabase",
    "index_location",
    "is_url",
    "open_database",
    "redact",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite://"


class Cursor(Protocol):
    """The rows of a statement, as `sqlite3` and psycopg cursors both give them."""

    def fetchone(self) -> Any:  # noqa: D102
        ...

    def fetchall(self) -> list[Any]:  # noqa: D102
        ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection to the index: statements with `?` placeholders and a sequence of values."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor:  # noqa: D102
        ...

    def executemany(  # noqa: D102
        self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /
    ) -> Any: ...


class IndexDatabase(ABC):
    """One index database, with a connection per thread and process.

    Attributes:
        location: The file path, or the URL without its password: what messages name.
        unindexed: Put before a column in a condition to keep the planner off its index
            (SQLite's unary `+`; PostgreSQL needs no hint).
        not_indexed: Put after a table name to scan it rather than walk an index.
    """

    location: str
    unindexed: str = ""
    not_indexed: str = ""

    @abstractmethod
    def connection(self) -> Connection:
        """This thread's connection, opened (and the schema migrated) on first use.

        Raises:
            IndexTooNewError: The schema is newer than this taskstash.
            CorruptIndexError: The file is damaged.
            IndexUnreachableError: The server cannot be reached.
        """

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction on this thread's connection: committed, or rolled back on error.

        Writers of the same keys are serialised (see `lock_keys`); a write never sees another's
        half-done work.
        """

    def lock_keys(self, conn: Connection, keys: Iterable[str]) -> None:  # noqa: B027
        """Inside a transaction, waits until no other transaction writes these keys' rows.

        Taken before a transaction reads a key's row and writes it on what it read. SQLite's
        write lock already covers the whole file, so its implementation does nothing.
        """

    def try_lock_keys(self, conn: Connection, keys: Sequence[str]) -> list[str]:
        """Like `lock_keys` without waiting: the keys locked, leaving those others write now."""
        return list(keys)

    def integrity_problems(self) -> list[str]:
        """What the database's own consistency check finds wrong; empty when sound.

        A server checks its own storage; only an index file has a check of its own to run.
        """
        return []

    @abstractmethod
    def close(self) -> None:
        """Closes this thread's connection; the next use opens a new one."""

    @abstractmethod
    def reset(self) -> None:
        """Drops every thread's connection; the next use opens (and checks) the index again."""

    @abstractmethod
    def check(self, exc: Exception) -> None:
        """Raises taskstash's error for a driver error that means the index is unusable.

        Returns if `exc` is an ordinary error (a constraint, a busy file), to be raised as is.
        """

    @property
    @abstractmethod
    def errors(self) -> tuple[type[Exception], ...]:
        """The driver's exception classes, which `check` maps."""


def is_url(name: str) -> bool:
    """Whether an index name is a PostgreSQL URL (rather than a file)."""
    return name.startswith(_POSTGRES_SCHEMES)


def redact(location: str) -> str:
    """An index's location as messages show it: a URL without its password, a path as is."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1@", location)


def index_location(name: str | os.PathLike[str]) -> str:
    """The canonical name of an index: a PostgreSQL URL as given, else a resolved file path.

    `sqlite:///` URLs are read as SQLAlchemy reads them: `sqlite:///index.db` is relative to
    the working directory, `sqlite:////srv/index.db` is the absolute path `/srv/index.db`.
    """
    text = os.fspath(name)
    if is_url(text):
        return text
    if text.startswith(_SQLITE_SCHEME):
        text = text[len(_SQLITE_SCHEME) :].removeprefix("/")
    return os.path.realpath(os.path.expanduser(text))


def open_database(location: str) -> IndexDatabase:
    """The database of a canonical location (see `index_location`), opened and migrated.

    Raises:
        ModuleNotFoundError: A PostgreSQL URL without psycopg installed
            (`pip install 'taskstash[postgres]'`).
    """
    if is_url(location):
        from taskstash.store.postgres import PostgresDatabase

        return PostgresDatabase(location)
    from taskstash.store.sqlite import SQLiteDatabase

    return SQLiteDatabase(location)
