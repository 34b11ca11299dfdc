"""Hits from records this index has never seen: read by key from the storage, checked, adopted.

A storage shared by several machines is the truth, and each machine's index only a catalog of
it. When the index has no live record for a key, the record may still be in the task's storage,
written by another machine (or before the index was deleted). `Adoption.adopt` reads it at the
location the key's record would have (one request on an object store), checks it as a hit
would, adds its row to the index and hands out its payload; later hits are index hits.

A storage without the record answers "no such object"; that answer is remembered for
`ABSENT_SECONDS`, so that repeated misses of one key (a task that keeps failing, many threads
missing at once) ask the storage once per window, not once per call. The memory is short and
bounded (`ABSENT_ENTRIES`, oldest dropped first), and a save by this process forgets its entry,
so it can hide another machine's new record for at most `ABSENT_SECONDS`: one more computation,
never a wrong value.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from taskstash.exceptions import CorruptResultError
from taskstash.store.base import ResultStorage, StorageUnreachableError, WouldBlock
from taskstash.store.database import Connection, is_url
from taskstash.store.index import Index, Record
from taskstash.store.memory import MemoryLayer
from taskstash.store.reads import Payload
from taskstash.store.results import ResultHeader, decode_result, signed_for_key
from taskstash.store.storages import LocalStorage

__all__ = ["ABSENT_ENTRIES", "ABSENT_SECONDS", "Absent", "Adoption", "StorageUnreachableError"]

ABSENT_SECONDS: Final = 2.0
"""How long a storage's "no such record" answer stands before it is asked again."""
ABSENT_ENTRIES: Final = 4096
"""The most such answers remembered."""

_EXPIRY: Final = "SELECT expires_at FROM records WHERE key = ?"

_log = logging.getLogger("taskstash")


class Absent:
    """Locations recently found without a record: a bounded, short-lived negative cache.

    Args:
        seconds: How long an entry stands.
        entries: The most entries kept; the oldest go first.
    """

    def __init__(self, seconds: float = ABSENT_SECONDS, entries: int = ABSENT_ENTRIES) -> None:
        self.seconds = seconds
        self.entries = entries
        self._until: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, where: tuple[str, str]) -> bool:
        until = self._until.get(where)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        with self._lock:
            self._until.pop(where, None)
        return False

    def add(self, where: tuple[str, str]) -> None:
        """Remembers that `(storage url, location)` had no record just now."""
        with self._lock:
            self._until[where] = time.monotonic() + self.seconds
            self._until.move_to_end(where)
            while len(self._until) > self.entries:
                self._until.popitem(last=False)

    def discard(self, where: tuple[str, str]) -> None:
        """Forgets `where` (a record was just written there)."""
        with self._lock:
            self._until.pop(where, None)


class Adoption:
    """Adopting records from storage (a mixin of `Store`, which provides the attributes).

    Attributes:
        index: The index.
        signing_key: Records must be signed with it to be adopted; None for no signing.
        memory: Payloads of this process's recent hits and saves.
        absent: Locations recently found without a record.
    """

    index: Index
    signing_key: bytes | None
    memory: MemoryLayer[tuple[Payload, str, float | None]]
    absent: Absent
    _warned: set[tuple[str, str]]

    if TYPE_CHECKING:  # `ResultReads.fetch`, which `Store` has

        def fetch(
            self,
            key: str,
            now: float,
            storage: ResultStorage,
            *,
            remember: bool = False,
            read_limit: int | None = None,
        ) -> tuple[Payload, str, float | None] | None:
            """The hit path (see `taskstash.store.reads.ResultReads.fetch`)."""

    def adopt(
        self,
        key: str,
        now: float,
        storage: ResultStorage,
        location: str,
        *,
        remember: bool,
        read_limit: int | None = None,
    ) -> tuple[Payload, str, float | None] | None:
        """The payload of `key`'s record found in `storage` at `location`, adopted into the index.

        The object is read once and accepted only if it is a whole result file (format and
        checksum), its header names `key`, it has not expired at `now` (by its own creation
        and expiry times) and, with a signing key, it is signed with it. Its row is then added
        to the index, unless a row for `key` appeared meanwhile.

        Args:
            key: The cache key the index had no live record of.
            now: The current time, Unix seconds.
            storage: The task's storage.
            location: Where the key's record would be (its default location, or the task's
                rendered `result_storage_key`).
            remember: Keep the payload in the memory layer too.
            read_limit: Read only a local index and a local file of at most this many bytes
                (a missing file is read at no cost); None for no limit.

        Returns:
            `(payload, serializer name, expiry)`, or None if there is no usable record there.
            A record that is damaged, another key's or not signed with the signing key is
            never deserialized: a miss, warned once per location.

        Raises:
            StorageUnreachableError: The storage could not be read (a server down, refusing
                or slower than its timeouts).
            CorruptIndexError: The index file is damaged.
            sqlite3.Error, psycopg.Error: The index could not be written.
            WouldBlock: The lookup needs more than `read_limit` allows; nothing was read but,
                with a local index, the key's row.
        """
        where = (storage.url, location)
        if where in self.absent:
            return None
        if read_limit is not None and is_url(self.index.url):
            raise WouldBlock(key)
        if self._has_live_row(key, now):
            # A row came since the caller's lookup (another thread or process adopted or saved
            # the key meanwhile), or its file is unusable: look it up as a hit would (an
            # unusable file is read again, and was warned about once already).
            return self.fetch(key, now, storage, remember=remember, read_limit=read_limit)
        if read_limit is not None and _larger(storage, location, read_limit):
            raise WouldBlock(key)
        try:
            data = storage.read(location)
        except StorageUnreachableError:
            raise
        except Exception as exc:
            if isinstance(storage, LocalStorage) and isinstance(exc, OSError):
                # A local file that cannot be read (a FIFO, no permission): that file's fault.
                self._refuse(key, storage, location, f"cannot be read: {exc}")
                return None
            # Whatever the filesystem's client raises: the server is down, refusing or slow.
            raise StorageUnreachableError(storage.url, f"{type(exc).__name__}: {exc}") from exc
        if data is None:
            self.absent.add(where)
            return None
        checked = self._check(key, storage, location, data)
        if checked is None:
            return None
        header, payload = checked
        if header.expires_at is not None and header.expires_at <= now:
            return None
        record = Record.from_header(header, storage.url, location, len(data))
        with self.index.transaction() as conn:
            self.index.lock_keys(conn, [key])
            # Under the write lock, as a save records its file: a local eviction may have
            # removed this one since it was read (an object store is not asked again).
            gone = isinstance(storage, LocalStorage) and not os.path.lexists(storage.path(location))
            if not gone and not self._has_live_row(key, now, conn):
                Index.upsert(conn, record)
        fetched = (payload, header.serializer, header.expires_at)
        if remember:
            self.memory.put(key, fetched, header.expires_at, header.payload_size)
        return fetched

    def _has_live_row(self, key: str, now: float, conn: Connection | None = None) -> bool:
        row = (conn or self.index.connection()).execute(_EXPIRY, (key,)).fetchone()
        return row is not None and (row[0] is None or row[0] > now)

    def _check(
        self, key: str, storage: ResultStorage, location: str, data: bytes | memoryview
    ) -> tuple[ResultHeader, memoryview] | None:
        """Header and payload of `data` if it is `key`'s whole, duly signed record; else None."""
        try:
            header, payload = decode_result(data)
        except (CorruptResultError, ValueError) as exc:
            self._refuse(key, storage, location, f"is damaged: {exc}")
            return None
        if header.key != key:
            self._refuse(key, storage, location, f"holds the result of another key ({header.key})")
            return None
        if self.signing_key is not None and not signed_for_key(
            self.signing_key, data, payload, key
        ):
            self._refuse(key, storage, location, "is not signed with this store's signing key")
            return None
        return header, payload

    def _refuse(self, key: str, storage: ResultStorage, location: str, problem: str) -> None:
        where = (storage.url, location)
        if where in self._warned:
            return
        self._warned.add(where)
        _log.warning(
            "Result file for key %s at %s/%s %s; it is not used, and will be recomputed",
            key,
            storage.url.rstrip("/"),
            location,
            problem,
        )


def _larger(storage: ResultStorage, location: str, limit: int) -> bool:
    """Whether reading `location` may take more than `limit` bytes (any remote read may)."""
    if not isinstance(storage, LocalStorage):
        return True
    try:
        return os.stat(storage.path(location)).st_size > limit
    except (OSError, ValueError):
        return False  # the read that follows finds nothing, or explains why
