"""Results kept in this process, so repeated hits skip the index and the result files.

Bounded (least recently used out first) and expiry-aware. It holds the very objects it was given:
a caller that mutates a cached result mutates what later hits return, as with `functools.cache`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["MISSING", "MemoryLayer"]

MISSING: object = object()
"""What `MemoryLayer.get` returns for a key it does not hold (None is a valid value)."""


class MemoryLayer:
    """An LRU map from key to (value, expiry time)."""

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[object, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, now: float) -> object:
        """The value of a live entry, else `MISSING` (an expired entry is dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return MISSING
            value, expires_at = entry
            if expires_at is not None and expires_at <= now:
                del self._entries[key]
                return MISSING
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object, expires_at: float | None) -> None:
        """Keeps `value` until `expires_at` (None: no expiry), evicting the least recently used."""
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        """Forgets `key` if present."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forgets everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
