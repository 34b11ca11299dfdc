"""The read side of a `Store`: find a record's payload, check it, hand it out.

A hit reads one narrow index row and one result file, and accepts the file only if its payload
matches the checksum the index holds (and, with a signing key, its signature and key). Anything
unusual (another storage, a damaged or replaced file, a row naming a storage this process was
not configured with) is a miss, explained once per file. Payloads of small results are kept in
the store's memory layer, so repeated hits skip the index and the files. A large result in an
open format (an array, a table) is mapped rather than read (`taskstash.store.mapped`).
"""

from __future__ import annotations

import logging
from typing import BinaryIO, Final, TypeAlias

from taskstash.exceptions import CorruptResultError
from taskstash.store.base import StorageUnreachableError, WouldBlock
from taskstash.store.database import is_url
from taskstash.store.formats import MAPPABLE
from taskstash.store.index import Index, Record
from taskstash.store.mapped import VerifiedFiles, map_verified
from taskstash.store.memory import MISSING, MemoryLayer
from taskstash.store.results import payload_if_checksum, signed_for_key, split_result
from taskstash.store.storages import LocalStorage, ResultStorage, locate
from taskstash.store.streams import UNSIGNED, Refused, open_verified

__all__ = ["LARGE_RESULT_BYTES", "SELECT_WHERE", "Fetched", "Payload", "ResultReads", "describe"]

# Results above this are checked in chunks and unpickled straight from the file. Reading a file
# whole and then unpickling it makes two copies, and the allocator gives both back to the system
# after each hit; from about a megabyte on, those page faults cost more than a second pass over
# the file (a 10 MiB numpy result: 9.7 ms read whole, 1.0 ms streamed).
LARGE_RESULT_BYTES: Final = 1 << 20
"""Result files larger than this are handed out by `fetch` as files, checked in chunks."""

Payload: TypeAlias = memoryview | BinaryIO
"""A payload: in memory (or mapped), or, for a large result, a checked file at its start."""
Fetched: TypeAlias = tuple[Payload, str, float | None]
"""What `fetch` finds: the payload, its serializer's name and the record's expiry."""

SELECT_WHERE: Final = "SELECT storage, location FROM records WHERE key = ?"
"""Where the file of a key's record is."""

_MISSING: Final = "is missing"

_log = logging.getLogger("taskstash")


class ResultReads:
    """The hit path of a `Store` (a mixin: the store provides the attributes below).

    Attributes:
        index: The index.
        signing_key: Files must be signed with this key to be loaded; None for no signing.
        large_result_bytes: Result files larger than this are handed out as files.
        memory: Payloads of this process's recent hits and saves.
        verified: The result files this process checked before mapping them.
    """

    index: Index
    signing_key: bytes | None
    large_result_bytes: int = LARGE_RESULT_BYTES
    memory: MemoryLayer[Fetched]
    verified: VerifiedFiles
    _warned: set[tuple[str, str]]

    def fetch(
        self,
        key: str,
        now: float,
        storage: ResultStorage,
        *,
        remember: bool = False,
        read_limit: int | None = None,
    ) -> Fetched | None:
        """The hit path: the live record's payload, serializer name and expiry time, or None.

        One narrow indexed SELECT and one read of the result file, verified against the
        checksum the index holds (and the signature, with a signing key). Anything unusual
        (another storage, a damaged or replaced file) goes through `lookup` and `load`, which
        explain and warn. A result file larger than `large_result_bytes` comes back mapped if
        its format is loaded in place, else as an open file (see `open_payload`), to be
        deserialized with `load_value` (which closes it).

        With `remember`, a payload this process fetched or saved (with `remember`) before is
        answered from the memory layer, with no index or file access; payloads fetched are kept
        there. It holds payloads, not values: a hit from it is deserialized like any other.

        Args:
            key: The cache key.
            now: The current time, Unix seconds.
            storage: The task's storage.
            remember: Use and fill the memory layer.
            read_limit: Past the memory layer, read only a local index and a local file of at
                most this many bytes; None for no limit.

        Raises:
            CorruptIndexError: The index file is damaged.
            StorageUnreachableError: The storage could not be reached (a miss, but one the
                caller should report: nothing in the storage is usable until it answers).
            WouldBlock: The lookup needs more than `read_limit` allows; nothing was read but,
                with a local index, the record's row.
        """
        if remember:
            kept = self.memory.get(key, now)
            if kept is not MISSING:
                return kept  # type: ignore[return-value]
        fetched = self._fetch(key, now, storage, read_limit)
        if (
            remember
            and fetched is not None
            and isinstance(fetched[0], memoryview)
            and fetched[0].nbytes <= self.large_result_bytes  # not a mapped file: it stays open
        ):
            self.memory.put(key, fetched, fetched[2], fetched[0].nbytes)
        return fetched

    def _fetch(
        self, key: str, now: float, storage: ResultStorage, read_limit: int | None
    ) -> Fetched | None:
        if read_limit is not None and is_url(self.index.url):
            raise WouldBlock(key)
        hit = self.index.get_hit(key, now)
        if hit is None:
            return None
        url, location, checksum, serializer, expires_at, size, recorded = hit
        if read_limit is not None and (
            size > read_limit or url != storage.url or not isinstance(storage, LocalStorage)
        ):
            raise WouldBlock(key)
        if url == storage.url and size > self.large_result_bytes and serializer in MAPPABLE:
            try:
                mapped = map_verified(
                    storage,
                    location,
                    key=key,
                    checksum=checksum,
                    signing_key=self.signing_key,
                    verified=self.verified,
                    recorded=recorded,
                )
            except StorageUnreachableError:
                raise
            except Exception:
                mapped = None  # explained by `open_payload` below
            if mapped is not None:
                if mapped[1] is not None:
                    self._note_verified(key, location, mapped[1])
                return mapped[0], serializer, expires_at
        elif url == storage.url and size <= self.large_result_bytes:
            try:
                data = storage.read(location)
            except StorageUnreachableError:
                raise
            except Exception:
                data = None
            if data is not None:
                payload = payload_if_checksum(data, checksum)
                if payload is not None and (
                    self.signing_key is None or signed_for_key(self.signing_key, data, payload, key)
                ):
                    return payload, serializer, expires_at
        record = self.index.get(key, now)
        if record is None:
            return None
        found: Payload | None
        if record.size_bytes > self.large_result_bytes:
            found = self.open_payload(record, storage)
        else:
            found = self.load(record, storage)
        return None if found is None else (found, record.serializer, record.expires_at)

    def _note_verified(self, key: str, location: str, verified: str) -> None:
        """Keeps a file's check in the index for other processes; a failure only costs them it."""
        try:
            self.index.note_verified(key, location, verified)
        except Exception as exc:  # a read-only or busy index must not fail a hit
            _log.debug("could not record the check of %s in the index: %s", location, exc)

    def load(self, record: Record, storage: ResultStorage) -> memoryview | None:
        """Reads and verifies the result file of `record`: one read, no index access.

        The file is looked for in the storage the record names (`record.storage`), which is
        `storage` unless the task's storage changed since. A row naming a storage this process
        was not configured with, or an invalid location, is refused (see `locate`): whoever
        can write the index must not make this process read files elsewhere.

        The file is accepted if its payload matches the checksum in the index (the common case,
        checked without parsing the header: the payload is then exactly the one recorded for
        this key), or else if the file is intact and its header names the same key (a
        concurrent writer replaced it after this row was committed: an equally valid result).
        With a signing key, it must also be signed with it.

        Args:
            record: From `lookup`.
            storage: The task's storage.

        Returns:
            The payload, or None if the file is missing, damaged, unsigned, holds another
            key's result or is refused (logged as one warning per file until it is saved
            again).

        Raises:
            StorageUnreachableError: The storage could not be reached.
        """
        try:
            storage, location = locate(record.storage, record.location, storage)
            data = storage.read(location)
            if data is None:
                raise Refused(_MISSING)
            payload = payload_if_checksum(data, record.checksum)
            if payload is None:
                header, payload = split_result(data)
                if header["key"] != record.key:
                    raise Refused(f"holds the result of another key ({header['key']})")
            if self.signing_key is not None and not signed_for_key(
                self.signing_key, data, payload, record.key
            ):
                header, _ = split_result(data)
                if header["key"] != record.key:
                    raise Refused(f"holds the result of another key ({header['key']})")
                raise Refused(UNSIGNED)
            return payload
        except StorageUnreachableError:
            raise
        except Exception as exc:
            if (
                isinstance(exc, Refused)
                and str(exc) == _MISSING
                and not self._lost(record, storage)
            ):
                return None  # evicted (and maybe saved again) while we read: a plain miss
            self._warn_once(record, _problem(exc))
        return None

    def _lost(self, record: Record, storage: ResultStorage) -> bool:
        """Whether the index points at `record`'s file although the file is gone.

        An eviction unlinks a file just before its transaction commits, and a save may record
        the key again right after; a reader that found the file missing cannot tell those
        from damage. Under the write lock, no such commit can be in flight, so the row and
        the file can be checked together.
        """
        with self.index.transaction() as conn:
            self.index.lock_keys(conn, [record.key])
            row = conn.execute(SELECT_WHERE, (record.key,)).fetchone()
            if row is None or tuple(row) != (record.storage, record.location):
                return False
            try:
                return storage.read(record.location) is None
            except OSError:
                return True

    def open_payload(self, record: Record, storage: ResultStorage) -> Payload | None:
        """The payload of `record` as a checked file, for results too large to hold twice.

        Like `load`, but the file is read in chunks to check it (see
        `taskstash.store.streams.open_verified`), then handed out positioned at the payload's
        start, for a serializer's `load(file)`. The caller closes it. A payload in a format
        loaded in place is mapped instead, if its file may be (see
        `taskstash.store.mapped.map_verified`).

        Args:
            record: From `lookup`.
            storage: The task's storage.

        Returns:
            The open file (or mapped payload), or None as `load` (warned once per file).

        Raises:
            StorageUnreachableError: The storage could not be reached.
        """
        try:
            storage, location = locate(record.storage, record.location, storage)
            if record.serializer in MAPPABLE:
                mapped = map_verified(
                    storage,
                    location,
                    key=record.key,
                    checksum=record.checksum,
                    signing_key=self.signing_key,
                    verified=self.verified,
                )
                if mapped is not None:
                    if mapped[1] is not None:
                        self._note_verified(record.key, location, mapped[1])
                    return mapped[0]
            return open_verified(
                storage,
                location,
                key=record.key,
                checksum=record.checksum,
                signing_key=self.signing_key,
            )
        except StorageUnreachableError:
            raise
        except Exception as exc:
            self._warn_once(record, _problem(exc))
        return None

    def _warn_once(self, record: Record, problem: str) -> None:
        where = (record.storage, record.location)
        if where in self._warned:
            return
        self._warned.add(where)
        _log.warning(
            "Cached result of task %r (key %s) at %s %s; it will be recomputed",
            record.task_name,
            record.key,
            describe(record.storage, record.location),
            problem,
        )


def describe(url: str, location: str) -> str:
    """`storage/location`, for messages."""
    return f"{url.rstrip('/')}/{location}"


def _problem(exc: Exception) -> str:
    """What a warning says about a result file that could not be used."""
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, ValueError):
        return f"is refused: {exc}"
    if isinstance(exc, CorruptResultError):
        return f"is damaged: {exc}"
    return f"cannot be read: {type(exc).__name__}: {exc}"  # whatever the filesystem says
