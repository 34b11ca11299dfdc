"""Cache hits, counted in memory and written to the index in batches, so a hit writes nothing.

A batch is written after `HIT_FLUSH_COUNT` hits, on the first hit `HIT_FLUSH_SECONDS` or more
after the oldest pending one, by `Store.close()`, and at interpreter exit. A forked child drops
the hits it inherited: the parent writes its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Final

from taskstash.store.index import Index

__all__ = ["HIT_FLUSH_COUNT", "HIT_FLUSH_SECONDS", "HitCounter"]

HIT_FLUSH_COUNT: Final = 256
"""Pending hits that trigger a flush to the index."""
HIT_FLUSH_SECONDS: Final = 5.0
"""A hit this long after the oldest pending one triggers a flush."""

_log = logging.getLogger("taskstash")


class HitCounter:
    """The hit counting of a `Store`: `note_hit` on every hit, `flush_hits` to write them."""

    index: Index
    path: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, list[float]] = {}  # key -> [count, last hit time]
        self._pending = 0
        self._batch_start = 0.0  # the time of the first pending hit
        _LIVE.add(self)

    def note_hit(self, key: str, now: float) -> None:
        """Counts a hit of `key` at `now`; written to the index in batches, not per hit.

        A batch is flushed after `HIT_FLUSH_COUNT` hits, on the first hit `HIT_FLUSH_SECONDS`
        or more after the oldest pending one, by `close()`, and at interpreter exit.
        """
        with self._lock:  # on every hit: kept to a few dict and attribute operations
            hits = self._hits
            entry = hits.get(key)
            if entry is None:
                if not hits:
                    self._batch_start = now
                hits[key] = [1, now]
            else:
                entry[0] += 1
                if now > entry[1]:
                    entry[1] = now
            pending = self._pending = self._pending + 1
            age = now - self._batch_start
        # Either way round: the wall clock may step back.
        if pending >= HIT_FLUSH_COUNT or not -HIT_FLUSH_SECONDS < age < HIT_FLUSH_SECONDS:
            self._flush_quietly()

    def flush_hits(self) -> None:
        """Writes the pending hits to the index in one transaction.

        Raises:
            sqlite3.Error: The index could not be written; the hits stay pending.
        """
        with self._lock:
            hits, self._hits = self._hits, {}
            self._pending = 0
        if not hits:
            return
        try:
            with self.index.transaction() as conn:
                Index.add_hits(conn, ((int(c), t, k) for k, (c, t) in hits.items()))
        except BaseException:
            with self._lock:
                for key, (count, last) in hits.items():
                    entry = self._hits.setdefault(key, [0, last])
                    entry[0] += count
                    entry[1] = max(entry[1], last)
            raise

    def _flush_quietly(self) -> None:
        try:
            self.flush_hits()
        except Exception as exc:  # hit statistics must never fail a task call
            _log.warning("Could not record cache hits in the index %s: %s", self.path, exc)

    def _forget_hits(self, key: str) -> None:
        """Drops the pending hits of `key` (its record was replaced or deleted)."""
        with self._lock:
            self._hits.pop(key, None)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork time
        self._hits = {}  # the parent flushes its own hits
        self._pending = 0


_LIVE: weakref.WeakSet[HitCounter] = weakref.WeakSet()


def _flush_all() -> None:
    for counter in list(_LIVE):
        counter._flush_quietly()


def _after_fork_in_child() -> None:
    for counter in list(_LIVE):
        counter._after_fork()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
