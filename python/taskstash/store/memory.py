"""Serialized results kept in this process, so repeated hits skip the index and the result files.

It holds payloads (the bytes a result file holds after its header), never the objects callers
got: every hit deserializes its own copy, so a caller that mutates a result changes nothing a
later call returns, and a hit from memory returns exactly what a hit from storage would (a JSON
result comes back as JSON gives it, in the computing process too). The `Store` owning it
forgets a key whenever its record is replaced or removed.

Bounded by entries and by bytes, and expiry-aware. Lookups take no lock (a dict lookup is atomic)
and only mark their entry as used; eviction gives used entries a second chance (the CLOCK
approximation of least-recently-used), so a hit costs a dict lookup and one store.
"""

from __future__ import annotations

import threading
from typing import Any, Final, Generic, TypeVar

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "MISSING", "MemoryLayer"]

MISSING: object = object()
"""What `MemoryLayer.get` returns for a key it does not hold."""

MAX_ENTRIES: Final = 1024
"""Default bound on the number of payloads kept."""
MAX_BYTES: Final = 64 << 20
"""Default bound on the bytes of payloads kept."""

V = TypeVar("V")


class MemoryLayer(Generic[V]):
    """A map from key to (value, expiry time), bounded by entries and by their sizes.

    When full, the oldest entry not used since the eviction last passed it goes; one used since
    is kept and marked unused (a second chance). Entries are lists
    `[value, expires_at, size, used]`, so a lookup marks one in place.

    Args:
        max_entries: The most entries kept.
        max_bytes: The most bytes kept (the sum of the sizes given to `put`).
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # Insertion-ordered: the eviction hand starts at the oldest entry. Writers hold the lock.
        self._entries: dict[str, list[Any]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> V | object:
        """The value of a live entry, else `MISSING` (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        expires_at = entry[1]
        if expires_at is not None and expires_at <= now:
            with self._lock:
                if self._entries.get(key) is entry:
                    self._drop(key)
            return MISSING
        entry[3] = True
        return entry[0]  # type: ignore[no-any-return]

    def put(self, key: str, value: V, expires_at: float | None, size: int) -> None:
        """Keeps `value` (`size` bytes) until `expires_at` (None: no expiry).

        A value larger than `max_bytes` is not kept; entries not used lately make room.
        """
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return
            entries = self._entries
            entries[key] = [value, expires_at, size, False]
            self._bytes += size
            while len(entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(entries))
                entry = entries[oldest]
                if entry[3] or oldest == key:
                    # Used since the hand last passed (or the entry just put): to the back.
                    entry[3] = False
                    del entries[oldest]
                    entries[oldest] = entry
                else:
                    self._drop(oldest)

    def discard(self, key: str) -> None:
        """Forgets `key` if present."""
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        """Forgets everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The bytes of the values kept."""
        return self._bytes
