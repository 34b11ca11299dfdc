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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from taskstash.exceptions import CorruptIndexError, CorruptResultError, ResultTooLargeError
from taskstash.hashing import hash_bytes
from taskstash.store.adoption import Absent, Adoption
from taskstash.store.base import StagedFile, trust, write_all
from taskstash.store.database import Connection
from taskstash.store.eviction import Removed, delete_records, evict_over, unlink_result
from taskstash.store.fences import Fence
from taskstash.store.hits import HIT_FLUSH_SECONDS, HitCounter
from taskstash.store.index import Index, Record, read_file_record
from taskstash.store.mapped import VerifiedFiles
from taskstash.store.memory import MemoryLayer
from taskstash.store.reads import (
    LARGE_RESULT_BYTES,
    SELECT_WHERE,
    Fetched,
    Payload,
    ResultReads,
    describe,
)
from taskstash.store.results import ResultHeader, encode_result, make_header
from taskstash.store.serializers import Serializer, dump_value, serializer_for
from taskstash.store.storages import ResultStorage, check_location
from taskstash.store.streams import CopyingSink, PayloadSink, write_streamed

__all__ = [
    "HIT_FLUSH_SECONDS",
    "LARGE_RESULT_BYTES",
    "Fetched",
    "Payload",
    "Record",
    "Staged",
    "Store",
]

_log = logging.getLogger("taskstash")


@dataclass(frozen=True, slots=True)
class Staged:
    """A result written aside by `Store.stage_value`, not yet visible; see `Store.commit`.

    Attributes:
        record: The row it will have.
        storage: The storage its file goes to (at `record.location`).
        file: The file, set aside.
        payload: A copy of the payload for the memory layer, or None.
    """

    record: Record
    storage: ResultStorage
    file: StagedFile
    payload: memoryview | None


class Store(ResultReads, Adoption, HitCounter):
    """The cache records of one index file, and access to their result files.

    Use `open_store` to share one `Store` per index file (and signing key) in a process. A
    `Store` is thread-safe and fork-safe (a child process opens its own connections and drops
    the parent's pending hits).

    Args:
        index_path: The index file; created (0o600, directory 0o700) and migrated if needed.
        signing_key: Sign every result file written with this key, and load only files signed
            with it; None to neither sign nor require signatures.

    Attributes:
        path: The index as messages name it (a URL without its password).
        url: The index's location, with the password if it has one (see `Index`).
        large_result_bytes: Result files larger than this are handed out by `fetch` as files
            (`LARGE_RESULT_BYTES` unless changed on the instance).

    Raises:
        IndexTooNewError: The index's schema is newer than this taskstash.
        CorruptIndexError: The index file is damaged (see `rebuild_index`).
    """

    def __init__(
        self, index_path: str | os.PathLike[str], signing_key: bytes | None = None
    ) -> None:
        self.index = Index(os.path.expanduser(os.fspath(index_path)))
        self.path = self.index.path
        self.url = self.index.url
        self.signing_key = signing_key
        self.max_bytes: int | None = None
        """The most the index may hold (`TASKSTASH_MAX_SIZE`); each save evicts least recently
        used records beyond it. None for no limit."""
        self._warned: set[tuple[str, str]] = set()
        self.memory = MemoryLayer()
        self.verified = VerifiedFiles()
        self.absent = Absent()
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
            sqlite3.Error, psycopg.Error: The index could not be written.
            CorruptIndexError: The index file is damaged.
        """
        location = check_location(location)
        if header.checksum != hash_bytes(payload):
            raise ValueError(f"header.checksum does not match the payload of key {header.key}")
        chunks = encode_result(header, payload, signing_key=self.signing_key)
        size = sum(memoryview(c).nbytes for c in chunks)
        if self.max_bytes is not None and size > self.max_bytes:
            raise ResultTooLargeError(size, self.max_bytes)
        file = storage.stage(location)
        with file.open() as out:
            for chunk in chunks:
                write_all(out, memoryview(chunk).cast("B"))
        record = Record.from_header(header, storage.url, location, size)
        return self.commit([Staged(record, storage, file, None)])[0]

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
        kind: str = "task",
        remember: bool = False,
    ) -> Record:
        """Serializes and stores a result: `stage_value`, then `commit` of that one record.

        Args and Raises: as for `stage_value` and `commit`.

        Returns:
            The new record.
        """
        staged = self.stage_value(
            key,
            value,
            serializer,
            storage,
            location,
            task_name=task_name,
            task_qualname=task_qualname,
            created_at=created_at,
            expires_at=expires_at,
            compute_seconds=compute_seconds,
            run_id=run_id,
            components=components,
            parameters=parameters,
            kind=kind,
            remember=remember,
        )
        return self.commit([staged])[0]

    def stage_value(
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
        kind: str = "task",
        remember: bool = False,
    ) -> Staged:
        """Serializes a result into a file set aside, for `commit` to put in place and record.

        The serializer writes into the file (its `dump`, if it has one; see `dump_value`), so a
        large value is never also held serialized in memory. Until `commit`, nothing is visible:
        no row, nothing at `location`, nothing in the memory layer.

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
            kind: `"task"` or `"flow"`: what the result is of.
            remember: Keep the payload in the memory layer too once committed (if it is at
                most `large_result_bytes`), for `fetch(remember=True)`.

        Returns:
            The staged record; pass it to `commit` or `discard`.

        Raises:
            SerializationError: `value` cannot be serialized; nothing is written.
            ValueError: `location` is not valid, or a time is not finite.
            OSError: The file could not be written (a full or read-only storage); nothing is
                left behind.
            ResultTooLargeError: The file would be larger than `max_bytes`; the writing stops
                there, nothing is left behind and nothing evicted.
        """
        location = check_location(location)
        serializer = serializer_for(serializer, value)  # arrays and tables in their own format
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
            kind=kind,
        )
        copy = CopyingSink(self.large_result_bytes if remember else -1)
        write = partial(_dump_copied, serializer, value, copy)
        file = storage.stage(location)
        header, size = write_streamed(file.open(), draft, write, self.signing_key, self.max_bytes)
        record = Record.from_header(header, storage.url, location, size)
        return Staged(record, storage, file, copy.payload())

    def commit(
        self, staged: Sequence[Staged], fences: Mapping[str, Fence] | None = None
    ) -> list[Record]:
        """Puts staged files in place and records them, all in one write transaction.

        Under the index's write lock, each file is renamed to its location and its row
        written; the rows become visible to other connections together, at the commit. A key's
        previous file, if elsewhere, is unlinked under the lock. If anything fails, the
        transaction rolls back and the staged files are removed (as is a file already put in
        place, unless the key's old row pointed at its location, or the index is damaged:
        `rebuild_index` adopts the file). A later record of a key replaces an earlier one.

        A record whose key has a fence that no longer holds (its lock's lease ran out and
        someone took the key since) is discarded with a warning, inside the same transaction:
        the newer holder's record stays.

        Args:
            staged: Records from `stage_value`, of this store; each is committed at most once.
            fences: The fences of the SERIALIZABLE locks the records were computed under, by
                key.

        Returns:
            The new records, in the order given, without the ones fenced out.

        Raises:
            OSError: A staged file could not be put in place.
            sqlite3.Error, psycopg.Error: The index could not be written.
            CorruptIndexError: The index file is damaged.
        """
        for each in staged:
            trust(each.storage)  # rows naming it may be followed: this process writes there
        if self.max_bytes is not None:
            # Eviction picks the least recently used records: this process's latest hits must
            # be in the index first, or a record hit a moment ago would look unused.
            self._flush_quietly()
        placed: list[tuple[Staged, tuple[str, str] | None]] = []
        fenced: list[Staged] = []
        try:
            with self.index.transaction() as conn:
                self.index.lock_keys(conn, [each.record.key for each in staged])
                for each in staged:
                    fence = None if fences is None else fences.get(each.record.key)
                    if fence is not None and not fence.holds(self.index, conn):
                        fenced.append(each)
                        continue
                    old = conn.execute(SELECT_WHERE, (each.record.key,)).fetchone()
                    each.file.publish()
                    placed.append((each, old))
                    _record_placed(conn, each, old)
                evicted = (
                    []
                    if self.max_bytes is None
                    else evict_over(
                        self.index, conn, self.max_bytes, keep={s.record.key for s in staged}
                    )
                )
        except CorruptIndexError:
            _discard_unplaced(staged, placed)
            raise  # the placed files are valid results, which rebuild_index will adopt
        except BaseException:
            for each, old in placed:
                where = (each.storage.url, each.record.location)
                if old is None or tuple(old) != where:
                    _delete_quietly(each.storage, each.record.location)
            _discard_unplaced(staged, placed)
            raise
        for each in fenced:
            each.file.discard()
            _log.warning(
                "the result of %s for key %s was not stored: its lock's lease ran out and "
                "another caller took the key since (a longer hold_timeout avoids this)",
                each.record.task_name,
                each.record.key,
            )
        written = [each for each, _ in placed]
        for each in written:
            record = each.record
            self._forget(record.key)  # its hits and payload were the replaced record's
            self._warned.discard((record.storage, record.location))
            self.absent.discard((record.storage, record.location))
        for key, _ in evicted:
            self._forget(key)
        for each in written:
            if each.payload is not None:
                record = each.record
                payload = (each.payload, record.serializer, record.expires_at)
                self.memory.put(record.key, payload, record.expires_at, len(each.payload))
        return [each.record for each in written]

    def discard(self, staged: Iterable[Staged]) -> None:
        """Throws staged records away: their files are removed, nothing else was written."""
        for each in staged:
            each.file.discard()

    def delete(self, key: str) -> bool:
        """Removes the record of `key` and its file; whether there was a record."""
        return bool(self.delete_many([key]))

    def delete_many(self, keys: Iterable[str], *, delete_shared: bool = True) -> list[Removed]:
        """Removes the records of `keys` and their files, in one write transaction.

        Files are unlinked while the index's write lock is held, so a concurrent save of the
        same key (which records only the file it finds under that lock) never ends up with a
        row whose file this removed.

        Args:
            keys: The records' keys.
            delete_shared: Delete the files of shared storages (object stores) too; if false,
                only this index's rows of their records go.

        Returns:
            `(key, bytes)` of each record that was there.
        """
        with self.index.transaction() as conn:
            keys = list(keys)
            self.index.lock_keys(conn, keys)
            removed = delete_records(conn, keys, delete_shared=delete_shared)
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


def _record_placed(conn: Connection, staged: Staged, old: tuple[str, str] | None) -> None:
    """Writes the row of a file just put in place; `old`: the key's previous storage, location."""
    record, storage = staged.record, staged.storage
    where = (storage.url, record.location)
    # Under the write lock, record the file that is at the location now. A concurrent eviction
    # may have removed ours, and a concurrent writer of the same key may have replaced it with
    # its own (as valid a result): the row must describe the file beside it, never a file that
    # is gone or different. A file known to be ours (a local file's device and inode) is
    # described by its record; any other is read back.
    present = record if staged.file.in_place() else _present(storage, record.location, record.key)
    if present is not None:
        Index.upsert(conn, present)
    elif old is not None and tuple(old) == where:
        conn.execute("DELETE FROM records WHERE key = ?", (record.key,))
    if old is not None and tuple(old) != where:
        # Unlinked under the lock too, so no save can have recorded it meanwhile.
        unlink_result(*old)


def _present(storage: ResultStorage, location: str, key: str) -> Record | None:
    """The record of the result file of `key` now at `location`, if there is a sound one.

    Read again if the read fails: on an object store, another machine saving the same key may
    replace the object between the requests of one read (its size, then its bytes), which
    fails the read although each version is whole.
    """
    for attempt in range(_PRESENT_READS):
        try:
            found = read_file_record(storage, location)
        except FileNotFoundError:
            return None
        except (CorruptResultError, OSError):
            if attempt + 1 < _PRESENT_READS:
                continue
            return None
        return found if found is not None and found.key == key else None
    return None


_PRESENT_READS: Final = 3


def _discard_unplaced(
    staged: Sequence[Staged], placed: list[tuple[Staged, tuple[str, str] | None]]
) -> None:
    """Removes the staged files not yet put in place (fenced out ones included)."""
    done = {id(each) for each, _ in placed}
    for each in staged:
        if id(each) not in done:
            each.file.discard()


def _delete_quietly(storage: ResultStorage, location: str) -> None:
    try:
        storage.delete(location)
    except Exception as exc:  # an orphan file is harmless; verify --fix removes it
        _log.debug("could not delete %s: %s", describe(storage.url, location), exc)


def _dump_copied(
    serializer: Serializer, value: object, copy: CopyingSink, sink: PayloadSink
) -> None:
    dump_value(serializer, value, copy.wrap(sink))
