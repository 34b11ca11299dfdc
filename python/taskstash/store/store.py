"""The `Store`: the index and the result files, kept consistent.

Ordering rules (diskcache's): the file is written first (atomically), the index row committed
second, and a superseded file deleted only after the commit. A crash in between leaves at worst
an orphan file (no row points at it), which `taskstash verify --fix` removes; never a row whose
file is partial. A row whose file is missing or damaged is a miss: `load` logs it once and
returns None, and the caller recomputes and saves over it.

Hits are counted in memory and written in batches (`note_hit`), so a hit costs no index write.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Final

from taskstash.exceptions import CorruptResultError
from taskstash.hashing import hash_bytes
from taskstash.store.index import Index, Record
from taskstash.store.results import (
    ResultHeader,
    encode_result,
    payload_if_checksum,
    split_result,
)
from taskstash.store.storages import ResultStorage, check_location, storage_for_url

__all__ = ["HIT_FLUSH_COUNT", "HIT_FLUSH_SECONDS", "Record", "Store", "open_store"]

HIT_FLUSH_COUNT: Final = 256
"""Pending hits that trigger a flush to the index."""
HIT_FLUSH_SECONDS: Final = 5.0
"""A hit this long after the oldest pending one triggers a flush."""

_log = logging.getLogger("taskstash")


class Store:
    """The cache records of one index file, and access to their result files.

    Use `open_store` to share one `Store` per index file in a process. A `Store` is thread-safe
    and fork-safe (a child process opens its own connections and drops the parent's pending
    hits).

    Args:
        index_path: The index file; created (0o600, directory 0o700) and migrated if needed.

    Raises:
        TaskstashError: The index's schema is newer than this taskstash.
    """

    def __init__(self, index_path: str | os.PathLike[str]) -> None:
        self.index = Index(os.path.expanduser(os.fspath(index_path)))
        self.path = self.index.path
        self._lock = threading.Lock()
        self._hits: dict[str, list[float]] = {}  # key -> [count, last hit time]
        self._pending = 0
        self._batch_start = 0.0  # the time of the first pending hit
        self._warned: set[tuple[str, str]] = set()
        _LIVE.add(self)

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
        self, key: str, now: float, storage: ResultStorage
    ) -> tuple[memoryview, str, float | None] | None:
        """The hit path: the live record's payload, serializer name and expiry time, or None.

        One narrow indexed SELECT and one read of the result file, verified against the
        checksum the index holds. Anything unusual (another storage, a damaged or replaced file)
        goes through `lookup` and `load`, which explain and warn.

        Args:
            key: The cache key.
            now: The current time, Unix seconds.
            storage: The task's storage.
        """
        hit = self.index.get_hit(key, now)
        if hit is None:
            return None
        url, location, checksum, serializer, expires_at = hit
        if url == storage.url:
            try:
                data = storage.read(location)
            except Exception:
                data = None
            if data is not None:
                payload = payload_if_checksum(data, checksum)
                if payload is not None:
                    return payload, serializer, expires_at
        record = self.index.get(key, now)
        if record is None:
            return None
        payload = self.load(record, storage)
        return None if payload is None else (payload, record.serializer, record.expires_at)

    def load(self, record: Record, storage: ResultStorage) -> memoryview | None:
        """Reads and verifies the result file of `record`: one read, no index access.

        The file is looked for in the storage the record names (`record.storage`), which is
        `storage` unless the task's storage changed since; `storage` is used when that one
        cannot be reached.

        The file is accepted if its payload matches the checksum in the index (the common case,
        checked without parsing the header: the payload is then exactly the one recorded for
        this key), or else if the file is intact and its header names the same key (a
        concurrent writer replaced it after this row was committed: an equally valid result).

        Args:
            record: From `lookup`.
            storage: The task's storage.

        Returns:
            The payload, or None if the file is missing, damaged or holds another key's result
            (logged as one warning per file until it is saved again).
        """
        if storage.url != record.storage:
            storage = storage_for_url(record.storage) or storage
        try:
            data = storage.read(record.location)
            if data is None:
                problem = "is missing"
            else:
                payload = payload_if_checksum(data, record.checksum)
                if payload is not None:
                    return payload
                header, payload = split_result(data)
                if header["key"] == record.key:
                    return payload
                problem = f"holds the result of another key ({header['key']})"
        except CorruptResultError as exc:
            problem = f"is damaged: {exc}"
        except Exception as exc:  # an unreadable file is a miss, whatever the filesystem says
            problem = f"cannot be read: {type(exc).__name__}: {exc}"
        self._warn_once(storage, record, problem)
        return None

    def _warn_once(self, storage: ResultStorage, record: Record, problem: str) -> None:
        where = (storage.url, record.location)
        if where in self._warned:
            return
        self._warned.add(where)
        _log.warning(
            "Cached result of task %r (key %s) at %s %s; it will be recomputed",
            record.task_name,
            record.key,
            _describe(storage, record.location),
            problem,
        )

    def save(
        self,
        header: ResultHeader,
        payload: bytes | bytearray | memoryview,
        storage: ResultStorage,
        location: str,
    ) -> Record:
        """Stores a result: the file first (atomically), then its index row.

        If the index write fails, the new file is deleted (unless the old row already pointed
        at it). If the key's previous row pointed at another file, that file is deleted after
        the commit.

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
        """
        location = check_location(location)
        if header.checksum != hash_bytes(payload):
            raise ValueError(f"header.checksum does not match the payload of key {header.key}")
        chunks = encode_result(header, payload)
        record = Record(
            key=header.key,
            task_name=header.task_name,
            task_qualname=header.task_qualname,
            created_at=header.created_at,
            expires_at=header.expires_at,
            last_hit_at=None,
            hit_count=0,
            size_bytes=sum(memoryview(chunk).nbytes for chunk in chunks),
            serializer=header.serializer,
            storage=storage.url,
            location=location,
            checksum=header.checksum,
            compute_seconds=header.compute_seconds,
            run_id=header.run_id,
            components=dict(header.components),
        )
        where = (storage.url, location)
        storage.write(location, chunks)
        old: tuple[str, str] | None = None
        old_known = False
        try:
            with self.index.transaction() as conn:
                old = conn.execute(_SELECT_WHERE, (record.key,)).fetchone()
                old_known = True
                Index.upsert(conn, record)
        except BaseException:
            if not old_known:
                old = self._where(record.key)
            if old is None or tuple(old) != where:
                _delete_quietly(storage, location)
            raise
        with self._lock:
            self._hits.pop(record.key, None)  # they were hits of the record just replaced
        self._warned.discard(where)
        if old is not None and tuple(old) != where:
            self._delete_file(*old)
        return record

    def _where(self, key: str) -> tuple[str, str] | None:
        try:
            row: tuple[str, str] | None = (
                self.index.connection().execute(_SELECT_WHERE, (key,)).fetchone()
            )
        except Exception:
            return None
        return row

    def _delete_file(self, url: str, location: str) -> None:
        storage = storage_for_url(url)
        if storage is None:
            _log.debug("cannot reach storage %s to delete %s; left for verify", url, location)
            return
        _delete_quietly(storage, location)

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

    def delete(self, key: str) -> bool:
        """Removes the record of `key`, then its file.

        Returns:
            Whether there was a record.
        """
        with self.index.transaction() as conn:
            old = conn.execute(_SELECT_WHERE, (key,)).fetchone()
            if old is not None:
                conn.execute("DELETE FROM records WHERE key = ?", (key,))
        if old is None:
            return False
        with self._lock:
            self._hits.pop(key, None)
        self._delete_file(*old)
        return True

    def close(self) -> None:
        """Flushes pending hits and closes this thread's connection (reopened on next use)."""
        self._flush_quietly()
        self.index.close()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork time
        self._hits = {}  # the parent flushes its own hits
        self._pending = 0


_SELECT_WHERE: Final = "SELECT storage, location FROM records WHERE key = ?"


def _describe(storage: ResultStorage, location: str) -> str:
    return f"{storage.url.rstrip('/')}/{location}"


def _delete_quietly(storage: ResultStorage, location: str) -> None:
    try:
        storage.delete(location)
    except Exception as exc:  # an orphan file is harmless; verify --fix removes it
        _log.debug("could not delete %s: %s", _describe(storage, location), exc)


_LIVE: weakref.WeakSet[Store] = weakref.WeakSet()
_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(index_path: str | os.PathLike[str]) -> Store:
    """The process's `Store` for an index file: one per resolved path, shared by all threads.

    Args:
        index_path: The index file (`~` expanded; symlinks and relative paths resolved).

    Returns:
        The shared store.
    """
    name = os.fspath(index_path)
    store = _STORES.get(name)
    if store is not None:
        return store
    resolved = os.path.realpath(os.path.expanduser(name))
    with _STORES_LOCK:
        store = _STORES.get(resolved)
        if store is None:
            store = _STORES[resolved] = Store(resolved)
        if os.path.isabs(name):  # a relative name may mean another file after a chdir
            _STORES[name] = store
    return store


def _flush_all() -> None:
    for store in list(_LIVE):
        store._flush_quietly()


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store._after_fork()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
