"""Cache hits, counted in memory and written to the index in batches, so a hit writes nothing.

A batch is written by a background thread `HIT_FLUSH_SECONDS` after its first hit (at once in
a `multiprocessing` child), by `Store.close()`, and when the process ends. A forked child drops
the hits it inherited: the parent writes its own.

Worker processes of `multiprocessing` end without running `atexit`: a fork worker leaves
through `os._exit` once multiprocessing's own finalizers have run, so a flush is registered
there too, and a pool's `terminate()` (which `with Pool(...)` calls on leaving the block) kills
its workers outright. Hence the background thread, which writes a child's hits as they come.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from typing import Final

from taskstash._native import HitTally
from taskstash.store.index import Index

__all__ = ["HIT_FLUSH_SECONDS", "HitCounter", "flush_all_hits"]

HIT_FLUSH_SECONDS: Final = 1.0
"""The longest a hit waits to be written, unless the process is killed meanwhile."""

_log = logging.getLogger("taskstash")


class HitCounter:
    """The hit counting of a `Store`: `note_hit` on every hit, `flush_hits` to write them."""

    index: Index
    path: str

    def __init__(self) -> None:
        # Held for a whole flush, from taking the pending hits to writing them: a flush at the
        # process's end waits for the background thread's, which would otherwise be cut off
        # (a daemon thread dies with the interpreter) with the hits it took.
        self._flushing = threading.Lock()
        self._tally = HitTally()  # key -> (count, last hit time), behind a lock of its own
        _LIVE.add(self)

    def note_hit(self, key: str, now: float) -> None:
        """Counts a hit of `key` at `now`; written to the index in batches, not per hit.

        A batch is written by a background thread at most `HIT_FLUSH_SECONDS` after its first
        hit, by `close()`, and when the process ends: never by the thread that hits.
        """
        if self._tally.add(key, now):  # the batch's first hit
            _FLUSHER.soon()

    def flush_hits(self) -> None:
        """Writes the pending hits to the index in one transaction.

        Raises:
            sqlite3.Error: The index could not be written; the hits stay pending.
        """
        with self._flushing:
            hits = self._tally.take()
            if not hits:
                return
            try:
                with self.index.transaction() as conn:
                    # Under the keys' locks, taken in the order every writer takes them: on
                    # PostgreSQL, updating rows that a save or delete of another connection is
                    # writing, in another order, would deadlock.
                    self.index.lock_keys(conn, hits)
                    Index.add_hits(conn, ((c, t, k) for k, (c, t) in hits.items()))
            except BaseException:
                for key, (count, last) in hits.items():
                    self._tally.add(key, last, count)
                raise

    def _flush_quietly(self) -> None:
        try:
            self.flush_hits()
        except Exception as exc:  # hit statistics must never fail a task call
            _log.warning("Could not record cache hits in the index %s: %s", self.path, exc)

    def _forget_hits(self, key: str) -> None:
        """Drops the pending hits of `key` (its record was replaced or deleted)."""
        self._tally.discard(key)

    def _after_fork(self) -> None:
        self._flushing = threading.Lock()  # another thread may have held it at fork time
        self._tally = HitTally()  # the parent flushes its own hits


_LIVE: weakref.WeakSet[HitCounter] = weakref.WeakSet()


def flush_all_hits() -> None:
    """Writes the pending hits of every store of this process (errors are warned about)."""
    for counter in list(_LIVE):
        counter._flush_quietly()


class _Flusher:
    """The background thread of one process that writes pending hits a while after they come.

    A daemon thread, started on the first hit of the process: it never keeps the interpreter
    alive, and a hit only sets an event when a counter's batch begins.
    """

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.pid = 0  # the process the thread runs in; 0 before the first hit
        self._starting = threading.Lock()

    def soon(self) -> None:
        if self.pid != os.getpid():
            with self._starting:  # two threads' first hits must not start two threads
                if self.pid != os.getpid():
                    self._start()
                    self.pid = os.getpid()
        self.wake.set()

    def _start(self) -> None:
        delay = HIT_FLUSH_SECONDS
        # Only loaded if the program uses multiprocessing; a child of it writes its hits at once,
        # as its pool may kill it any moment, and flushes at its end, as atexit does not run.
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.Finalize(None, flush_all_hits, exitpriority=0)
            if sys.modules["multiprocessing"].parent_process() is not None:
                delay = 0.0
        threading.Thread(
            target=self._run, args=(delay,), name="taskstash-hits", daemon=True
        ).start()

    def _run(self, delay: float) -> None:
        wake = self.wake
        while True:
            wake.wait()
            time.sleep(delay)
            # Cleared before the flush: a batch begun during it wakes the next round.
            wake.clear()
            flush_all_hits()


_FLUSHER = _Flusher()


def _after_fork_in_child() -> None:
    global _FLUSHER
    # The parent's thread is not in the child, and it may have held the event's lock.
    _FLUSHER = _Flusher()
    for counter in list(_LIVE):
        counter._after_fork()


atexit.register(flush_all_hits)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
