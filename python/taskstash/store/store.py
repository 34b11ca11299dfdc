"""The `Store`: the index and the result files, kept consistent.

Ordering rules (diskcache's): the file is written first (atomically), the index row committed
second, and a superseded file deleted only after the commit. A crash in between leaves at worst
an orphan file (no row points at it), which `taskstash verify --fix` removes; never a row whose
file is partial. A row whose file is missing or damaged is a miss: `load` logs it once and
returns None, and the caller recomputes and saves over it.

Hits are counted in memory and written in batches (`note_hit`), so a hit costs no index write.

With a signing key, every file written is signed and a file is only loaded if its signature is
valid (`taskstash.store.signing`); a file without one is a miss, like a damaged file. Results
larger than `LARGE_RESULT_BYTES` are written and read as streams (`taskstash.store.streams`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from functools import partial
from typing import BinaryIO, Final, TypeAlias

from taskstash.exceptions import CorruptIndexError, CorruptResultError, ResultTooLargeError
from taskstash.hashing import hash_bytes
from taskstash.store.base import trust
from taskstash.store.eviction import Removed, delete_records, evict_over, unlink_result
from taskstash.store.hits import HIT_FLUSH_COUNT, HIT_FLUSH_SECONDS, HitCounter
from taskstash.store.index import Index, Record, read_file_record
from taskstash.store.memory import MISSING, MemoryLayer
from taskstash.store.results import (
    ResultHeader,
    encode_result,
    make_header,
    payload_if_checksum,
    signed_for_key,
    split_result,
)
from taskstash.store.serializers import Serializer, dump_value
from taskstash.store.storages import ResultStorage, check_location, locate
from taskstash.store.streams import UNSIGNED, PayloadSink, Refused, open_verified, write_streamed

__all__ = [
    "HIT_FLUSH_COUNT",
    "HIT_FLUSH_SECONDS",
    "LARGE_RESULT_BYTES",
    "Payload",
    "Record",
    "Store",
]

# Results above this are checked in chunks and unpickled straight from the file. Reading a file
# whole and then unpickling it makes two copies, and the allocator gives both back to the system
# after each hit; from about a megabyte on, those page faults cost more than a second pass over
# the file (a 10 MiB numpy result: 9.7 ms read whole, 1.0 ms streamed).
LARGE_RESULT_BYTES: Final = 1 << 20
"""Result files larger than this are handed out by `fetch` as files, checked in chunks."""

Payload: TypeAlias = memoryview | BinaryIO
"""A payload: in memory, or, for a large result, a checked file positioned at its start."""
Fetched: TypeAlias = tuple[Payload, str, float | None]
"""What `Store.fetch` finds: the payload, its serializer's name and the record's expiry."""

_log = logging.getLogger("taskstash")


class Store(HitCounter):
    """The cache records of one index file, and access to their result files.

    Use `open_store` to share one `Store` per index file (and signing key) in a process. A
    `Store` is thread-safe and fork-safe (a child process opens its own connections and drops
    the parent's pending hits).

    Args:
        index_path: The index file; created (0o600, directory 0o700) and migrated if needed.
        signing_key: Sign every result file written with this key, and load only files signed
            with it; None to neither sign nor require signatures.

    Attributes:
        large_result_bytes: Result files larger than this are handed out by `fetch` as files
            (`LARGE_RESULT_BYTES` unless changed on the instance).

    Raises:
        IndexTooNewError: The index's schema is newer than this taskstash.
        CorruptIndexError: The index file is damaged (see `rebuild_index`).
    """

    large_result_bytes: int = LARGE_RESULT_BYTES

    def __init__(
        self, index_path: str | os.PathLike[str], signing_key: bytes | None = None
    ) -> None:
        self.index = Index(os.path.expanduser(os.fspath(index_path)))
        self.path = self.index.path
        self.signing_key = signing_key
        self.max_bytes: int | None = None
        """The most the index may hold (`TASKSTASH_MAX_SIZE`); each save evicts least recently
        used records beyond it. None for no limit."""
        self._warned: set[tuple[str, str]] = set()
        self.memory: MemoryLayer[Fetched] = MemoryLayer()
        """Payloads of this process's recent hits and saves (see `fetch(remember=True)`)."""
        super().__init__()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def lookup(self, key: str, now: float) -> Record | None:
        """The record for `key` if there is one that has not expired at `now`.

        One indexed SELECT; no write. Hits not yet flushed are not in `hit_count`.

        Args:
            key: The cache key.
            now: The current time, Unix seconds.

        Returns:
            The record, or None.
        """
        return self.index.get(key, now)

    def fetch(
        self, key: str, now: float, storage: ResultStorage, *, remember: bool = False
    ) -> Fetched | None:
        """The hit path: the live record's payload, serializer name and expiry time, or None.

        One narrow indexed SELECT and one read of the result file, verified against the
        checksum the index holds (and the signature, with a signing key). Anything unusual
        (another storage, a damaged or replaced file) goes through `lookup` and `load`, which
        explain and warn. A result file larger than `large_result_bytes` comes back as an open
        file (see `open_payload`), to be deserialized with `load_value` (which closes it).

        With `remember`, a payload this process fetched or saved (with `remember`) before is
        answered from the memory layer, with no index or file access; payloads fetched are kept
        there. It holds payloads, not values: a hit from it is deserialized like any other.

        Args:
            key: The cache key.
            now: The current time, Unix seconds.
            storage: The task's storage.
            remember: Use and fill the memory layer.

        Raises:
            CorruptIndexError: The index file is damaged.
        """
        if remember:
            kept = self.memory.get(key, now)
            if kept is not MISSING:
                return kept  # type: ignore[return-value]
        fetched = self._fetch(key, now, storage)
        if remember and fetched is not None and isinstance(fetched[0], memoryview):
            self.memory.put(key, fetched, fetched[2], fetched[0].nbytes)
        return fetched

    def _fetch(self, key: str, now: float, storage: ResultStorage) -> Fetched | None:
        hit = self.index.get_hit(key, now)
        if hit is None:
            return None
        url, location, checksum, serializer, expires_at, size = hit
        if url == storage.url and size <= self.large_result_bytes:
            try:
                data = storage.read(location)
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
            row = conn.execute(_SELECT_WHERE, (record.key,)).fetchone()
            if row is None or tuple(row) != (record.storage, record.location):
                return False
            try:
                return storage.read(record.location) is None
            except OSError:
                return True

    def open_payload(self, record: Record, storage: ResultStorage) -> BinaryIO | None:
        """The payload of `record` as a checked file, for results too large to hold twice.

        Like `load`, but the file is read in chunks to check it (see
        `taskstash.store.streams.open_verified`), then handed out positioned at the payload's
        start, for a serializer's `load(file)`. The caller closes it.

        Args:
            record: From `lookup`.
            storage: The task's storage.

        Returns:
            The open file, or None as `load` (warned once per file).
        """
        try:
            storage, location = locate(record.storage, record.location, storage)
            return open_verified(
                storage,
                location,
                key=record.key,
                checksum=record.checksum,
                signing_key=self.signing_key,
            )
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
            _describe(record.storage, record.location),
            problem,
        )

    def save(
        self,
        header: ResultHeader,
        payload: bytes | bytearray | memoryview,
        storage: ResultStorage,
        location: str,
    ) -> Record:
        """Stores a serialized result: the file first (atomically), then its index row.

        If the index write fails, the new file is deleted (unless the old row already pointed
        at it, or the index is damaged: `rebuild_index` adopts the file). If the key's previous
        row pointed at another file, that file is deleted after the commit.

        Args:
            header: The result's header (see `make_header`).
            payload: The serialized result.
            storage: Where to write the file.
            location: The file's location in `storage` (see `default_location`).

        Returns:
            The new record.

        Raises:
            ValueError: `location` is not a valid relative location, or `header` does not
                describe `payload` (size or checksum).
            OSError: The file could not be written.
            ResultTooLargeError: The file would be larger than `max_bytes`; nothing is
                written and nothing evicted.
            sqlite3.Error: The index could not be written.
            CorruptIndexError: The index file is damaged.
        """
        location = check_location(location)
        if header.checksum != hash_bytes(payload):
            raise ValueError(f"header.checksum does not match the payload of key {header.key}")
        chunks = encode_result(header, payload, signing_key=self.signing_key)
        size = sum(memoryview(c).nbytes for c in chunks)
        if self.max_bytes is not None and size > self.max_bytes:
            raise ResultTooLargeError(size, self.max_bytes)
        storage.write(location, chunks)
        return self._commit(header, size, storage, location)

    def save_value(
        self,
        key: str,
        value: object,
        serializer: Serializer,
        storage: ResultStorage,
        location: str,
        *,
        task_name: str,
        task_qualname: str,
        created_at: float,
        expires_at: float | None = None,
        compute_seconds: float = 0.0,
        run_id: str | None = None,
        components: dict[str, str] | None = None,
        parameters: str | None = None,
        remember: bool = False,
    ) -> Record:
        """Serializes and stores a result, the payload streamed straight into its file.

        The serializer writes into the result file (its `dump`, if it has one; see
        `dump_value`), so a large value is never also held serialized in memory. Then, as in
        `save`, the index row is committed.

        Args:
            key: The cache key.
            value: The result.
            serializer: Its serializer; `serializer.name` goes into the header and the row.
            storage: Where to write the file.
            location: The file's location in `storage` (see `default_location`).
            task_name: The task's name.
            task_qualname: The function's `module.qualname`.
            created_at: Unix seconds.
            expires_at: Unix seconds, or None for never.
            compute_seconds: How long computing the result took.
            run_id: The flow run, if any.
            components: Per-component hashes of the cache policy.
            parameters: A short text of the call's arguments, or None.
            remember: Keep the payload in the memory layer too (if it is at most
                `large_result_bytes`), for `fetch(remember=True)`.

        Returns:
            The new record.

        Raises:
            SerializationError: `value` cannot be serialized; nothing is written.
            ValueError: `location` is not valid, or a time is not finite.
            OSError: The file could not be written (a full or read-only storage); nothing is
                left behind.
            ResultTooLargeError: The file would be larger than `max_bytes`; the writing stops
                there, nothing is left behind and nothing evicted.
            sqlite3.Error: The index could not be written; the new file is deleted.
            CorruptIndexError: The index file is damaged.
        """
        location = check_location(location)
        draft = make_header(  # its checksum and size are the payload's, once written
            key,
            b"",
            task_name=task_name,
            task_qualname=task_qualname,
            serializer=serializer.name,
            created_at=created_at,
            expires_at=expires_at,
            compute_seconds=compute_seconds,
            run_id=run_id,
            components=components,
            parameters=parameters,
        )
        copy = _PayloadCopy(self.large_result_bytes if remember else -1)
        write = partial(_dump_copied, serializer, value, copy)
        header, size = write_streamed(
            storage, location, draft, write, self.signing_key, self.max_bytes
        )
        record = self._commit(header, size, storage, location)
        payload = copy.payload()
        if payload is not None:
            self.memory.put(key, (payload, serializer.name, expires_at), expires_at, len(payload))
        return record

    def _commit(
        self, header: ResultHeader, size: int, storage: ResultStorage, location: str
    ) -> Record:
        """Commits the row of a file just written; see `save`."""
        record = Record.from_header(header, storage.url, location, size)
        where = (storage.url, location)
        trust(storage)  # rows naming it may be followed: this process writes there
        if self.max_bytes is not None:
            # Eviction picks the least recently used records: this process's latest hits must
            # be in the index first, or a record hit a moment ago would look unused.
            self._flush_quietly()
        old: tuple[str, str] | None = None
        old_known = False
        try:
            with self.index.transaction() as conn:
                old = conn.execute(_SELECT_WHERE, (record.key,)).fetchone()
                old_known = True
                # Under the write lock, record the file that is at `location` now. A concurrent
                # eviction may have removed ours, and a concurrent writer of the same key may
                # have replaced it with its own (as valid a result): the row must describe the
                # file beside it, never a file that is gone or different.
                present = _present(storage, location, record.key)
                if present is not None:
                    Index.upsert(conn, present)
                elif old is not None and tuple(old) == where:
                    conn.execute("DELETE FROM records WHERE key = ?", (record.key,))
                if old is not None and tuple(old) != where:
                    # Unlinked under the lock too, so no save can have recorded it meanwhile.
                    unlink_result(*old)
                evicted = (
                    []
                    if self.max_bytes is None
                    else evict_over(conn, self.max_bytes, keep=record.key)
                )
        except CorruptIndexError:
            raise  # the file is a valid result, which rebuild_index will adopt: keep it
        except BaseException:
            if not old_known:
                old = self._where(record.key)
            if old is None or tuple(old) != where:
                _delete_quietly(storage, location)
            raise
        self._forget(record.key)  # its hits and payload were the replaced record's
        for key, _ in evicted:
            self._forget(key)
        self._warned.discard(where)
        return record

    def _where(self, key: str) -> tuple[str, str] | None:
        try:
            row: tuple[str, str] | None = (
                self.index.connection().execute(_SELECT_WHERE, (key,)).fetchone()
            )
        except Exception:
            return None
        return row

    def delete(self, key: str) -> bool:
        """Removes the record of `key` and its file; whether there was a record."""
        return bool(self.delete_many([key]))

    def delete_many(self, keys: Iterable[str]) -> list[Removed]:
        """Removes the records of `keys` and their files, in one write transaction.

        Files are unlinked while the index's write lock is held, so a concurrent save of the
        same key (which records only the file it finds under that lock) never ends up with a
        row whose file this removed.

        Returns:
            `(key, bytes)` of each record that was there.
        """
        with self.index.transaction() as conn:
            removed = delete_records(conn, keys)
        for key, _ in removed:
            self._forget(key)
        return removed

    def _forget(self, key: str) -> None:
        """Drops what this process holds of `key`'s record: pending hits, remembered payload."""
        self._forget_hits(key)
        self.memory.discard(key)

    def close(self) -> None:
        """Flushes pending hits and closes this thread's connection (reopened on next use)."""
        self._flush_quietly()
        self.index.close()


_SELECT_WHERE: Final = "SELECT storage, location FROM records WHERE key = ?"


class _PayloadCopy:
    """Passes a payload on to its sink and keeps a copy of it, up to `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] | None = [] if limit >= 0 else None
        self._size = 0
        self.sink: PayloadSink | None = None

    def wrap(self, sink: PayloadSink) -> PayloadSink | _PayloadCopy:
        """What the serializer writes to: `sink` itself when nothing is to be kept."""
        if self._parts is None:
            return sink
        self.sink = sink
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        assert self.sink is not None
        written = self.sink.write(data)
        parts = self._parts
        if parts is not None:
            self._size += memoryview(data).nbytes
            if self._size > self.limit:
                self._parts = None  # too large to keep: the file is the only copy
            else:
                parts.append(bytes(data))
        return written

    def payload(self) -> memoryview | None:
        """The whole payload, if it was kept."""
        return None if self._parts is None else memoryview(b"".join(self._parts))


def _dump_copied(
    serializer: Serializer, value: object, copy: _PayloadCopy, sink: PayloadSink
) -> None:
    dump_value(serializer, value, copy.wrap(sink))


_MISSING: Final = "is missing"


def _present(storage: ResultStorage, location: str, key: str) -> Record | None:
    """The record of the result file of `key` now at `location`, if there is a sound one."""
    try:
        found = read_file_record(storage, location)
    except (CorruptResultError, OSError):
        return None
    return found if found is not None and found.key == key else None


def _describe(url: str, location: str) -> str:
    return f"{url.rstrip('/')}/{location}"


def _delete_quietly(storage: ResultStorage, location: str) -> None:
    try:
        storage.delete(location)
    except Exception as exc:  # an orphan file is harmless; verify --fix removes it
        _log.debug("could not delete %s: %s", _describe(storage.url, location), exc)


def _problem(exc: Exception) -> str:
    """What a warning says about a result file that could not be used."""
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, ValueError):
        return f"is refused: {exc}"
    if isinstance(exc, CorruptResultError):
        return f"is damaged: {exc}"
    return f"cannot be read: {type(exc).__name__}: {exc}"  # whatever the filesystem says
