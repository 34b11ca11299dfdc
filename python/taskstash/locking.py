"""Lock managers: what makes one caller compute a key while the others wait (SERIALIZABLE).

    from taskstash.cache_policies import INPUTS
    from taskstash.locking import SQLiteLockManager

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def expensive(x): ...

Every manager keeps one contract:

- `acquire_lock(key, holder, acquire_timeout=None, hold_timeout=None) -> bool` waits up to
  `acquire_timeout` seconds (None: as long as it takes) and says whether `holder` got the lock.
  A holder that asks again gets it again (and a new lease).
- `release_lock(key, holder)` frees it; releasing a lock one does not hold raises `ValueError`.
- `hold_timeout` is a lease: after it the lock is free again even if never released.
- `is_locked(key)`, `is_lock_holder(key, holder)`, and `wait_for_lock(key, timeout=None) -> bool`
  (True once the key is free, False on timeout).
- `aacquire_lock` and `await_for_lock` are the same for `async def` code, without blocking the
  event loop.
- `fence(key, holder)` is what the holder's result is recorded with (see
  `taskstash.store.fences`): a holder whose lease ran out and whose key someone took since does
  not store over the newer result. The managers that keep locks in the index fence; the memory
  manager does not (None).

`MemoryLockManager` serialises threads of one process (there is one per process).
`SQLiteLockManager` serialises processes on one machine through a table of the cache index; a
holder whose process is gone (killed, crashed) is noticed at once, and leases cover the rest.
Both pickle (policies holding them travel to workers): the memory manager as the loading
process's own, the SQLite one by the path of its index.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from taskstash.store import Index
from taskstash.store.database import Connection
from taskstash.store.fences import Fence

__all__ = ["LockManager", "MemoryLockManager", "SQLiteLockManager"]

# How often a waiter looks again: starts short so a hand-over is quick, backs off to keep a
# crowd of waiters from hammering the index.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


class LockManager(ABC):
    """The contract every lock manager keeps (see the module's documentation).

    Attributes:
        hold_timeout: The lease of a taking that names none (a SERIALIZABLE task's, which takes
            its key's lock with the manager's defaults); None keeps it until released.
    """

    hold_timeout: float | None = None

    @abstractmethod
    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        """Takes the lock if it is free, held by `holder`, or abandoned; never waits."""

    @abstractmethod
    def release_lock(self, key: str, holder: str) -> None:
        """Frees the lock.

        Raises:
            ValueError: `holder` does not hold it.
        """

    @abstractmethod
    def is_locked(self, key: str) -> bool:
        """Whether someone holds a live lock on `key`."""

    @abstractmethod
    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether `holder` holds a live lock on `key`."""

    def fence(self, key: str, holder: str) -> Fence | None:
        """The fence of `holder`'s taking of `key`, just taken; None if this manager has none."""
        return None

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Takes the lock on `key` for `holder`, waiting up to `acquire_timeout` seconds.

        Args:
            key: What to lock (a cache key).
            holder: Who takes it; the same holder may take it again.
            acquire_timeout: Seconds to wait; None waits as long as it takes, 0 does not wait.
            hold_timeout: The lease: seconds after which the lock frees itself; None takes the
                manager's `hold_timeout`, which if None keeps it until released (or until the
                holder's process or connection is gone).

        Returns:
            Whether `holder` holds the lock.
        """
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        hold_timeout = self.hold_timeout if hold_timeout is None else hold_timeout
        pause = _POLL_FIRST
        while not self._try_acquire(key, holder, hold_timeout):
            if not self._pause(deadline, pause):
                return False
            pause = min(pause * 2, _POLL_MAX)
        return True

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Waits until nobody holds `key`; False if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST
        while self.is_locked(key):
            if not self._pause(deadline, pause):
                return False
            pause = min(pause * 2, _POLL_MAX)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """`acquire_lock` for async code: waits without blocking the event loop."""
        import asyncio  # here, not at the top: it costs 13 ms of `import taskstash`

        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        hold_timeout = self.hold_timeout if hold_timeout is None else hold_timeout
        pause = _POLL_FIRST
        while not self._try_acquire(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock` for async code."""
        import asyncio

        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        return True

    def _pause(self, deadline: float | None, pause: float) -> bool:
        """Sleeps before the next try; False when the deadline has passed."""
        if deadline is None:
            time.sleep(pause)
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        return True


def _lease_end(hold_timeout: float | None) -> float | None:
    return None if hold_timeout is None else time.time() + hold_timeout


class MemoryLockManager(LockManager):
    """Locks for the threads of one process.

    There is one per process, as in Prefect: `MemoryLockManager()` always returns it, so every
    policy configured with one serialises against every other. It pickles by reference: loaded
    in the same process, it is that same manager; in another process, that process's own.
    A forked child starts with no locks, since none of the parent's threads lives in it.
    """

    _leases: dict[str, tuple[str, float | None]]  # key -> (holder, lease end)
    _changed: threading.Condition

    def __new__(cls) -> MemoryLockManager:
        """The process's memory lock manager, created on first use."""
        global _memory_manager
        with _creating:
            if _memory_manager is None:
                manager = super().__new__(cls)
                manager._reset()
                _memory_manager = manager
            return _memory_manager

    def _reset(self) -> None:
        self._leases = {}
        # A fresh mutex too: in a forked child, the parent's may have been held by a thread
        # that does not exist there.
        self._changed = threading.Condition()

    def __reduce__(self) -> tuple[type[MemoryLockManager], tuple[()]]:
        return (MemoryLockManager, ())

    def _live(self, key: str) -> tuple[str, float | None] | None:
        lease = self._leases.get(key)
        if lease is not None and lease[1] is not None and lease[1] <= time.time():
            del self._leases[key]  # the lease ran out
            return None
        return lease

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        with self._changed:
            lease = self._live(key)
            if lease is not None and lease[0] != holder:
                return False
            self._leases[key] = (holder, _lease_end(hold_timeout))
            return True

    def _pause(self, deadline: float | None, pause: float) -> bool:
        # Woken at once by a release instead of sleeping out the whole pause.
        with self._changed:
            if deadline is None:
                self._changed.wait(pause)
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(min(pause, remaining))
            return True

    def release_lock(self, key: str, holder: str) -> None:  # noqa: D102
        with self._changed:
            lease = self._live(key)
            if lease is None or lease[0] != holder:
                raise ValueError(
                    f"{holder!r} cannot release the lock on {key!r}: it does not hold it"
                )
            del self._leases[key]
            self._changed.notify_all()

    def is_locked(self, key: str) -> bool:  # noqa: D102
        with self._changed:
            return self._live(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:  # noqa: D102
        with self._changed:
            lease = self._live(key)
            return lease is not None and lease[0] == holder


_creating = threading.Lock()
_memory_manager: MemoryLockManager | None = None


def _forget_memory_locks() -> None:
    global _creating
    _creating = threading.Lock()  # in case a parent thread was creating the manager
    if _memory_manager is not None:
        _memory_manager._reset()


os.register_at_fork(after_in_child=_forget_memory_locks)


@dataclass(frozen=True)
class _Holder:
    """Where a lock holder runs, to tell whether it still exists."""

    host: str
    pid: int
    pid_started: str | None


def _process_started(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), which tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[19].decode()  # field 22 of proc(5), counted after the command name


def _alive(holder: _Holder) -> bool:
    if holder.host != _HOST:
        return True  # cannot be checked from here; its lease covers it
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user
    started = _process_started(holder.pid)
    return holder.pid_started is None or started is None or started == holder.pid_started


_HOST = os.uname().nodename


@dataclass(frozen=True)
class _HolderFence:
    """The fence of a SQLite lock: the lock row still names its holder."""

    locks: Index
    key: str
    holder: str

    def holds(self, index: Index, conn: Connection) -> bool:
        if index.url != self.locks.url:
            conn = self.locks.connection()  # locks kept in another index file
        row = conn.execute(
            "SELECT 1 FROM locks WHERE key = ? AND holder = ?", (self.key, self.holder)
        ).fetchone()
        return row is not None


class SQLiteLockManager(LockManager):
    """Locks for processes on one machine, kept in the `locks` table of a cache index.

    A lock whose holder's process no longer exists on this host (killed, crashed; checked by pid
    and process start time) is free at once; one held from another host is free when its lease
    ends.

    Args:
        index_path: The index file (the one the records live in).
        hold_timeout: The lease of takings that name none (see `LockManager`).
    """

    def __init__(
        self, index_path: str | os.PathLike[str], hold_timeout: float | None = None
    ) -> None:
        self.index = Index(Path(index_path))
        self.hold_timeout = hold_timeout
        self._me: _Holder | None = None
        self._me_pid = -1

    def __reduce__(self) -> tuple[type[SQLiteLockManager], tuple[str, float | None]]:
        # By its path: the locks live in the file, which every process opens for itself.
        return (SQLiteLockManager, (self.index.url, self.hold_timeout))

    def _myself(self) -> _Holder:
        pid = os.getpid()
        if self._me is None or self._me_pid != pid:  # also right after a fork
            self._me = _Holder(_HOST, pid, _process_started(pid))
            self._me_pid = pid
        return self._me

    def _current(self, conn: Connection, key: str) -> tuple[str, _Holder, float | None] | None:
        row = conn.execute(
            "SELECT holder, host, pid, pid_started, expires_at FROM locks WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        holder, host, pid, started, expires_at = row
        return holder, _Holder(host, pid, started), expires_at

    def _abandoned(self, lock: tuple[str, _Holder, float | None]) -> bool:
        _, where, expires_at = lock
        return (expires_at is not None and expires_at <= time.time()) or not _alive(where)

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        me = self._myself()
        with self.index.transaction() as conn:
            lock = self._current(conn, key)
            if lock is not None and lock[0] != holder and not self._abandoned(lock):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO locks "
                "(key, holder, host, pid, pid_started, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    holder,
                    me.host,
                    me.pid,
                    me.pid_started,
                    time.time(),
                    _lease_end(hold_timeout),
                ),
            )
            return True

    def release_lock(self, key: str, holder: str) -> None:  # noqa: D102
        with self.index.transaction() as conn:
            lock = self._current(conn, key)
            if lock is None or lock[0] != holder or self._abandoned(lock):
                raise ValueError(
                    f"{holder!r} cannot release the lock on {key!r}: it does not hold it"
                )
            conn.execute("DELETE FROM locks WHERE key = ?", (key,))

    def is_locked(self, key: str) -> bool:  # noqa: D102
        lock = self._current(self.index.connection(), key)
        return lock is not None and not self._abandoned(lock)

    def fence(self, key: str, holder: str) -> Fence:
        """A fence that holds while the lock row is still `holder`'s.

        Holders are unique to a taking (a task run's), so the row is someone else's, or gone,
        once another holder has taken the key: the row itself is the token.
        """
        return _HolderFence(self.index, key, holder)

    def is_lock_holder(self, key: str, holder: str) -> bool:  # noqa: D102
        lock = self._current(self.index.connection(), key)
        return lock is not None and lock[0] == holder and not self._abandoned(lock)
