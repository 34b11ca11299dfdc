"""Locks shared by every machine that uses one PostgreSQL index (`PostgresLockManager`).

A lock is a row of the index's `locks` table. Two rules decide whether it is still held, both
judged by the server alone, so that machines with skewed clocks agree:

- its lease (`hold_timeout`) is measured with the server's `clock_timestamp()`;
- the connection that took it must still exist: a holder whose machine died, or whose
  connection was ended (`pg_terminate_backend`), frees the key at once for the others.

Each taking gets a new number from the `lock_tokens` sequence (`token`), a fencing token: a
holder whose lease ran out and whose key someone else took has a lower token than the lock now
bears (`holds_token`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from taskstash.locking import LockManager
from taskstash.store import Index
from taskstash.store.database import Connection
from taskstash.store.fences import Fence

__all__ = ["PostgresLockManager"]

_NOW: Final = "extract(epoch FROM clock_timestamp())"
_LIVE: Final = (
    f"(locks.expires_at IS NULL OR locks.expires_at > {_NOW}) "
    "AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = locks.backend_pid)"
)
_TAKE: Final = (
    "INSERT INTO locks (key, holder, host, pid, backend_pid, token, acquired_at, expires_at) "
    f"VALUES (?, ?, ?, ?, pg_backend_pid(), nextval('lock_tokens'), {_NOW}, "
    f"{_NOW} + CAST(? AS double precision)) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, host = excluded.host, "
    "pid = excluded.pid, backend_pid = excluded.backend_pid, token = excluded.token, "
    "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
    "RETURNING token"
)

_HOST = os.uname().nodename


class PostgresLockManager(LockManager):
    """Locks for processes on any number of machines, kept in a PostgreSQL index.

    The default lock manager of SERIALIZABLE tasks whose index is on PostgreSQL.

    Args:
        index_url: The index's `postgresql://` URL.
        hold_timeout: The lease of takings that name none (see `LockManager`).
    """

    def __init__(self, index_url: str, hold_timeout: float | None = None) -> None:
        self.index = Index(index_url)
        self.hold_timeout = hold_timeout
        # The token of each taking by this process, until `fence` or `release_lock` takes it
        # (keys and holders are unique to a taking: no two threads share an entry).
        self._tokens: dict[tuple[str, str], int] = {}

    def __reduce__(self) -> tuple[type[PostgresLockManager], tuple[str, float | None]]:
        # By its URL: every process connects for itself.
        return (PostgresLockManager, (self.index.url, self.hold_timeout))

    def _current(self, conn: Connection, key: str) -> tuple[str, bool] | None:
        row = conn.execute(f"SELECT holder, {_LIVE} FROM locks WHERE key = ?", (key,)).fetchone()
        return None if row is None else (str(row[0]), bool(row[1]))

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        with self.index.transaction() as conn:
            self.index.lock_keys(conn, [key])  # takers of one key, one at a time
            lock = self._current(conn, key)
            if lock is not None and lock[0] != holder and lock[1]:
                return False
            taken = conn.execute(_TAKE, (key, holder, _HOST, os.getpid(), hold_timeout))
            self._tokens[key, holder] = int(taken.fetchone()[0])
            return True

    def token(self, key: str, holder: str) -> int | None:
        """The fencing token of `holder`'s live lock on `key`; None if it holds none."""
        row = (
            self.index.connection()
            .execute(
                f"SELECT token FROM locks WHERE key = ? AND holder = ? AND {_LIVE}", (key, holder)
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def holds_token(self, conn: Connection, key: str, token: int) -> bool:
        """Whether nobody has taken `key` since the taking that got `token`.

        Meant for the write transaction of the holder's result: false once another holder
        took the key (the token changed) or took it and finished (the row is gone). A lease
        that ran out with nobody taking the key since still holds: storing then replaces no
        newer result, and a taker that comes after finds the stored one.
        """
        row = conn.execute(
            "SELECT 1 FROM locks WHERE key = ? AND token = ?", (key, token)
        ).fetchone()
        return row is not None

    def fence(self, key: str, holder: str) -> Fence | None:
        """The fence of `holder`'s taking of `key` (its token); None if it holds no lock."""
        token = self._tokens.pop((key, holder), None)
        if token is None:
            token = self.token(key, holder)
        return None if token is None else _TokenFence(self, key, token)

    def release_lock(self, key: str, holder: str) -> None:  # noqa: D102
        self._tokens.pop((key, holder), None)
        with self.index.transaction() as conn:
            cursor = conn.execute(
                f"DELETE FROM locks WHERE key = ? AND holder = ? AND {_LIVE} RETURNING key",
                (key, holder),
            )
            if cursor.fetchone() is None:
                raise ValueError(
                    f"{holder!r} cannot release the lock on {key!r}: it does not hold it"
                )

    def is_locked(self, key: str) -> bool:  # noqa: D102
        lock = self._current(self.index.connection(), key)
        return lock is not None and lock[1]

    def is_lock_holder(self, key: str, holder: str) -> bool:  # noqa: D102
        lock = self._current(self.index.connection(), key)
        return lock is not None and lock[0] == holder and lock[1]


@dataclass(frozen=True)
class _TokenFence:
    """The fence of a PostgreSQL lock: its fencing token is still the lock's."""

    manager: PostgresLockManager
    key: str
    token: int

    def holds(self, index: Index, conn: Connection) -> bool:
        if index.url != self.manager.index.url:
            conn = self.manager.index.connection()  # locks kept in another database
        return self.manager.holds_token(conn, self.key, self.token)
