"""SQLite connections to the index: taskstash's settings, write transactions, migrations.

Connections are in autocommit mode (`isolation_level=None`) so that transactions are explicit:
every write runs inside `transaction()`, which takes the write lock up front with
`BEGIN IMMEDIATE`. WAL mode lets readers run while one writer writes, across threads and
processes. `SQLiteDatabase` keeps one connection per thread and process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from taskstash.exceptions import CorruptIndexError, IndexTooNewError, TaskstashError
from taskstash.store.base import makedirs_private, temp_name
from taskstash.store.database import IndexDatabase
from taskstash.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "TIMEOUT_SECONDS",
    "SQLiteDatabase",
    "connect",
    "damaged",
    "is_corruption",
    "migrate",
    "transaction",
    "user_version",
]

TIMEOUT_SECONDS: Final = 30.0

_CREATE_FLAGS: Final = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)

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


# SQLITE_CORRUPT ("database disk image is malformed") and SQLITE_NOTADB ("file is not a
# database"), as primary result codes: the low byte of an extended code.
_CORRUPTION_CODES: Final = frozenset({11, 26})


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error means the database file is damaged (not busy, full or locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPTION_CODES


def damaged(path: str, exc: BaseException) -> CorruptIndexError:
    """The error for a damaged index file, naming it and how to rebuild it."""
    return CorruptIndexError(
        f"the taskstash index {path} is damaged ({exc}). The results themselves are safe in "
        "their storage: rebuild the index from them with "
        f"taskstash.store.rebuild_index({path!r}, <each result storage: a directory such as "
        "$TASKSTASH_HOME/storage, or a URL>), which moves the damaged file aside",
        path,
    )


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database file."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _check_version(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise IndexTooNewError(
            f"the taskstash index {path} has schema version {version}, written by a newer "
            f"taskstash; this one knows up to {SCHEMA_VERSION}: upgrade taskstash here, or give "
            "this environment an index of its own with TASKSTASH_INDEX_PATH (or TASKSTASH_HOME)",
            path,
            version,
            SCHEMA_VERSION,
        )


def migrate(conn: sqlite3.Connection, path: str) -> bool:
    """Brings the database up to `SCHEMA_VERSION`, in one transaction.

    Args:
        conn: A connection from `connect()`.
        path: The file, named in errors.

    Returns:
        Whether any migration ran.

    Raises:
        IndexTooNewError: The database is newer than this code.
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
    """Creates the index file owner-only (0o600) if missing; SQLite gives -wal and -shm its mode.

    The index itself is never opened here. POSIX advisory locks belong to the process, and
    closing any descriptor of a file drops all of the process's locks on it, those of its live
    SQLite connections included (another thread's, a lock manager's): another process would then
    find the database idle and checkpoint or delete the WAL under them, losing their commits. So
    an empty private file is made under a temporary name, closed, and hard-linked into place; a
    link never replaces a file that exists (and so may be in use).
    """
    if os.path.isfile(path):
        return  # the common case: a stat, no descriptor
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "the index path is a directory, not a file", path)
    path = os.path.realpath(path)  # a dangling link: create its target, as SQLite would
    parent = os.path.dirname(path)
    makedirs_private(parent)
    temp = os.path.join(parent, temp_name(os.path.basename(path)))
    os.close(os.open(temp, _CREATE_FLAGS, 0o600))
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # created meanwhile by another connection
    except OSError:
        # A filesystem without hard links: create the file in place. O_EXCL opens only a file
        # this call has just made, empty and not yet in use.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, _CREATE_FLAGS, 0o600))
    finally:
        os.unlink(temp)


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
        CorruptIndexError: The file is not an SQLite database, or is damaged.
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
        if is_corruption(exc):
            raise damaged(name, exc) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


# Connections inherited through fork() are never used nor closed in the child (closing could
# disturb the parent's locks); they are parked here instead of being garbage collected. So are
# other threads' connections to an index found damaged (only their own thread may close them).
_INHERITED: list[object] = []


class SQLiteDatabase(IndexDatabase):
    """An index file, with one connection per thread and process.

    Opening it creates the file (0o600, its directory 0o700) and migrates the schema.

    Args:
        path: The index file (an absolute path).

    Raises:
        IndexTooNewError: The file's schema is newer than this taskstash.
        CorruptIndexError: The file is not an SQLite database, or is damaged.
    """

    unindexed = "+"
    not_indexed = " NOT INDEXED"

    def __init__(self, path: str) -> None:
        self.location = path
        self._local = threading.local()
        self._migrated = False
        self.connection()

    @property
    def errors(self) -> tuple[type[Exception], ...]:  # noqa: D102
        return (sqlite3.DatabaseError,)

    def connection(self) -> sqlite3.Connection:  # noqa: D102
        local = self._local
        try:
            if local.pid == os.getpid():
                conn: sqlite3.Connection = local.conn
                return conn
            _INHERITED.append(local.conn)
        except AttributeError:
            pass
        conn = connect(self.location)
        try:
            if not self._migrated:
                migrate(conn, self.location)
                self._migrated = True
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc):
                raise damaged(self.location, exc) from exc
            raise
        local.conn = conn
        local.pid = os.getpid()
        return conn

    def close(self) -> None:  # noqa: D102
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            conn.close()
        local.__dict__.clear()

    def reset(self) -> None:  # noqa: D102
        self.close()
        _INHERITED.append(self._local)  # other threads' connections, parked (see _INHERITED)
        self._local = threading.local()
        self._migrated = False

    def integrity_problems(self) -> list[str]:  # noqa: D102
        rows = self.connection().execute("PRAGMA integrity_check")
        return [str(row[0]) for row in rows if row[0] != "ok"]

    def check(self, exc: Exception) -> None:  # noqa: D102
        if isinstance(exc, sqlite3.Error) and is_corruption(exc):
            self.reset()
            raise damaged(self.location, exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:  # noqa: D102
        with transaction(self.connection()) as conn:
            yield conn
