"""The index on a PostgreSQL server (psycopg 3, `pip install 'taskstash[postgres]'`).

Connections are in autocommit mode, one per thread and process; a child process after a fork
opens its own and never touches (nor closes) its parent's, whose socket it shares. Statements
are the store's shared SQL: `?` placeholders become psycopg's `%s` (a literal `%` is doubled),
and psycopg prepares a statement on the server once it has run a few times, so a hit is one
round trip of an already planned `SELECT`.

Write transactions run at READ COMMITTED. Two writers of the same key are serialised by a
transaction-scoped advisory lock on the key's hash (`lock_keys`), taken before the row is read;
writers of different keys never wait for each other, and no single row is written by every
save (see `taskstash.store.pg_schema`).

Errors: a server that cannot be reached, or that drops the connection (restarted, connection
terminated), raises `IndexUnreachableError`. A statement outside a transaction that finds its
connection dropped is retried once on a new connection, so a restarted server costs no error
once it is back.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from taskstash.exceptions import IndexTooNewError, IndexUnreachableError
from taskstash.store.database import IndexDatabase, redact
from taskstash.store.pg_schema import BASELINE, LOCK_CLASS, MIGRATIONS, create_baseline
from taskstash.store.schema import SCHEMA_VERSION

__all__ = ["CONNECT_TIMEOUT_SECONDS", "PostgresConnection", "PostgresDatabase"]

CONNECT_TIMEOUT_SECONDS: Final = 5
"""How long opening a connection may take before the index counts as unreachable."""

_log = logging.getLogger("taskstash")

_TRANSLATED: dict[str, str] = {}


def _translate(sql: str) -> str:
    """The shared SQL in psycopg's placeholder style (cached: the same few statements recur)."""
    text = _TRANSLATED.get(sql)
    if text is None:
        text = _TRANSLATED[sql] = sql.replace("%", "%%").replace("?", "%s")
    return text


class _Number(Loader):
    """Loads `numeric` (what PostgreSQL's `sum()` of integers gives) as int or float.

    SQLite gives Python numbers for the same queries; `Decimal` would leak into the store's
    arithmetic and the CLI's JSON.
    """

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        try:
            return int(text)
        except ValueError:
            return float(text)


class PostgresConnection:
    """One psycopg connection speaking the store's shared SQL (see `taskstash.store.database`).

    Args:
        raw: The psycopg connection (autocommit).
        database: Its database, which maps errors and reconnects.
    """

    def __init__(self, raw: psycopg.Connection[Any], database: PostgresDatabase) -> None:
        self.raw = raw
        self._database = weakref.proxy(database)  # no cycle: the database goes first

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        """Runs one statement; see the module's documentation for errors and the retry."""
        try:
            return self.raw.execute(_translate(sql), parameters)
        except psycopg.Error as exc:
            if not self.raw.broken or self._database.in_transaction(self):
                self._database.check(exc)
                raise
            self._database.drop(self)
        # The connection was dropped between statements: try once on a new one.
        again: psycopg.Cursor[Any] = self._database.connection().execute(sql, parameters)
        return again

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> None:
        """Runs one statement for each set of parameters (in a transaction, as the store does)."""
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(_translate(sql), list(seq_of_parameters))
        except psycopg.Error as exc:
            self._database.check(exc)
            raise


# Connections inherited through fork() are never used nor closed in the child: closing would
# end the parent's session on the socket they share. They are parked here instead.
_INHERITED: list[object] = []

# The databases of this process, whose connections are closed when it exits: a session ended
# by its client rather than dropped (the server logs no "unexpected EOF"; psycopg no warning).
_OPEN: weakref.WeakSet[PostgresDatabase] = weakref.WeakSet()


def _close_all() -> None:
    # Exit handlers run last registered first, and this module is imported after the hit
    # counter's: write the pending hits before their connections go.
    from taskstash.store.hits import flush_all_hits

    flush_all_hits()
    for database in list(_OPEN):
        database._close_opened()


atexit.register(_close_all)


class PostgresDatabase(IndexDatabase):
    """An index in a PostgreSQL database, with one connection per thread and process.

    Args:
        url: `postgresql://user[:password]@host[:port]/database[?options]` (libpq's URL form;
            a password is better kept in `PGPASSWORD` or `~/.pgpass`).

    Raises:
        IndexUnreachableError: The server cannot be reached.
        IndexTooNewError: The index's schema is newer than this taskstash.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redact(url)
        self._local = threading.local()
        self._migrated = False
        # Every connection this process opened, by thread: a thread's is closed once the thread
        # has ended (when another is opened), and all of them when the database goes.
        self._opened: list[tuple[weakref.ref[threading.Thread], PostgresConnection]] = []
        self._pid = os.getpid()
        _OPEN.add(self)
        self.connection()

    def __del__(self) -> None:
        # At interpreter shutdown, module globals may be gone already: nothing to close then.
        if os is not None:
            self._close_opened()

    def _close_opened(self) -> None:
        """Closes every connection this process opened (never a parent's, after a fork)."""
        if getattr(self, "_pid", None) == os.getpid():
            for _, conn in self._opened:
                conn.raw.close()
            self._opened = []

    def _keep(self, conn: PostgresConnection) -> None:
        if self._pid != os.getpid():  # forked: the parent's are its own (see _INHERITED)
            _INHERITED.append(self._opened)
            self._opened, self._pid = [], os.getpid()
        alive = []
        for thread, each in self._opened:
            if thread() is None or not thread().is_alive():  # type: ignore[union-attr]
                each.raw.close()
            else:
                alive.append((thread, each))
        alive.append((weakref.ref(threading.current_thread()), conn))
        self._opened = alive

    @property
    def errors(self) -> tuple[type[Exception], ...]:  # noqa: D102
        return (psycopg.Error,)

    def _open(self) -> psycopg.Connection[Any]:
        try:
            raw = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc
        raw.adapters.register_loader("numeric", _Number)
        return raw

    def connection(self) -> PostgresConnection:  # noqa: D102
        local = self._local
        conn: PostgresConnection | None = getattr(local, "conn", None)
        if conn is not None:
            if local.pid == os.getpid() and not conn.raw.closed:
                return conn
            if local.pid != os.getpid():
                _INHERITED.append(conn)
        conn = PostgresConnection(self._open(), self)
        if not self._migrated:
            try:
                _migrate(conn.raw, self.location)
            except psycopg.Error as exc:
                conn.raw.close()
                self.check(exc)
                raise
            except BaseException:
                conn.raw.close()
                raise
            self._migrated = True
        self._keep(conn)
        local.conn = conn
        local.pid = os.getpid()
        return conn

    def in_transaction(self, conn: PostgresConnection) -> bool:
        """Whether `conn` is inside `transaction()` (so a dropped connection cannot be retried)."""
        return getattr(self._local, "depth", 0) > 0 and getattr(self._local, "conn", None) is conn

    def close(self) -> None:  # noqa: D102
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            conn.raw.close()
        local.__dict__.clear()

    def reset(self) -> None:  # noqa: D102
        self.close()
        _INHERITED.append(self._local)  # other threads' connections: only they may close them
        self._local = threading.local()
        self._migrated = False

    def _unreachable(self, exc: BaseException) -> IndexUnreachableError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return IndexUnreachableError(
            f"the taskstash index {self.location} cannot be reached ({reason}); calls run "
            "uncached until it answers again",
            self.location,
        )

    def check(self, exc: Exception) -> None:  # noqa: D102
        if isinstance(exc, IndexUnreachableError):
            raise exc
        local = self._local
        conn: PostgresConnection | None = getattr(local, "conn", None)
        dropped = conn is not None and (conn.raw.broken or conn.raw.closed)
        if dropped or isinstance(
            exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow
        ):
            if conn is not None:
                self.drop(conn)
            raise self._unreachable(exc) from exc

    def drop(self, conn: PostgresConnection) -> None:
        """Forgets this thread's connection `conn`, which the server dropped."""
        conn.raw.close()
        if getattr(self._local, "conn", None) is conn:
            del self._local.conn

    def _begin(self) -> PostgresConnection:
        conn = self.connection()
        try:
            conn.raw.execute("BEGIN")
        except psycopg.Error as exc:
            if not conn.raw.broken:
                self.check(exc)
                raise
            self.drop(conn)  # dropped since its last use: begin on a new connection
            conn = self.connection()
            try:
                conn.raw.execute("BEGIN")
            except psycopg.Error as again:
                self.check(again)
                raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[PostgresConnection]:  # noqa: D102
        conn = self._begin()
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if not conn.raw.closed and conn.in_transaction:
                try:
                    conn.raw.execute("ROLLBACK")
                except psycopg.Error as exc:
                    _log.debug("rollback failed on %s: %s", self.location, exc)
            raise
        finally:
            local.depth -= 1

    def lock_keys(self, conn: Any, keys: Iterable[str]) -> None:  # noqa: D102
        # In hash order, so that two transactions locking several keys cannot deadlock.
        conn.execute(
            "SELECT pg_advisory_xact_lock(?, h) FROM "
            "(SELECT DISTINCT hashtext(k) AS h FROM unnest(?::text[]) AS k) AS hashes ORDER BY h",
            (LOCK_CLASS, list(keys)),
        )

    def try_lock_keys(self, conn: Any, keys: Sequence[str]) -> list[str]:  # noqa: D102
        rows = conn.execute(
            "SELECT k FROM unnest(?::text[]) AS k WHERE pg_try_advisory_xact_lock(?, hashtext(k))",
            (list(keys), LOCK_CLASS),
        ).fetchall()
        return [str(row[0]) for row in rows]


def _version(raw: psycopg.Connection[Any]) -> int | None:
    try:
        row = raw.execute("SELECT version FROM taskstash_schema").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else int(row[0])


def _check_version(version: int, location: str) -> None:
    if version > SCHEMA_VERSION:
        raise IndexTooNewError(
            f"the taskstash index {location} has schema version {version}, written by a newer "
            f"taskstash; this one knows up to {SCHEMA_VERSION}: upgrade taskstash here, or give "
            "this environment an index of its own with TASKSTASH_INDEX_URL",
            location,
            version,
            SCHEMA_VERSION,
        )


def _migrate(raw: psycopg.Connection[Any], location: str) -> None:
    """Brings the database up to `SCHEMA_VERSION`, one machine at a time.

    An advisory lock serialises the machines that start at once; the first creates or upgrades
    the schema, the others find it done.
    """
    version = _version(raw)
    if version == SCHEMA_VERSION:
        return  # the common case: one read, no lock
    if version is not None:
        _check_version(version, location)
    with raw.transaction():
        raw.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
        raw.execute("CREATE TABLE IF NOT EXISTS taskstash_schema (version integer NOT NULL)")
        version = _version(raw)
        if version is None:
            create_baseline(raw)
            version = BASELINE
            raw.execute("INSERT INTO taskstash_schema VALUES (%s)", (version,))
        _check_version(version, location)
        for step in MIGRATIONS[version - BASELINE :]:
            step(raw)
        raw.execute("UPDATE taskstash_schema SET version = %s", (SCHEMA_VERSION,))
