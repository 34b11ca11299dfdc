"""Results by key: read, check, write and delete a record from code, as Prefect's `ResultStore`.

    from taskstash import Cache

    cache = Cache()
    cache.write("3f9a2c...", {"rows": 10}, expiration=timedelta(hours=1))
    cache.exists("3f9a2c...")             # True: live, and its file intact
    cache.read("3f9a2c...").result        # {"rows": 10}; .metadata is the index row
    cache.delete("3f9a2c...")

A read goes through the hit path of the tasks (`Store.fetch`), so it accepts exactly what a hit
accepts: a live record whose file matches the checksum in the index (and, with a signing key,
its signature and key). A write goes through the tasks' save path (`Store.save_value`): a task
call whose key is the written key hits it.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from taskstash.exceptions import CorruptResultError
from taskstash.store import (
    Record,
    ResultStorage,
    Store,
    default_location,
    load_value,
    resolve_serializer,
    resolve_storage,
)
from taskstash.store.serializers import Serializer, SupportsDumpsLoads

__all__ = ["WRITTEN_TASK_NAME", "WRITTEN_TASK_QUALNAME", "ResultsByKey", "StoredResult"]

WRITTEN_TASK_NAME = "Cache.write"
"""The task name of a record `Cache.write` makes for a key that had none."""
WRITTEN_TASK_QUALNAME = "taskstash.Cache.write"
"""Its qualified name."""


@dataclass(frozen=True)
class StoredResult:
    """A record's value and its row (Prefect's `ResultRecord`).

    Attributes:
        result: The stored value, deserialized.
        metadata: The record's index row (key, task, created and expiry times, serializer...).
    """

    result: Any
    metadata: Record


class ResultsByKey:
    """Reading and writing records by key (a mixin of `Cache`, which provides the attributes).

    Attributes:
        store: The index and its result files.
        storage: The default result storage.
        path: The index file.
    """

    storage: ResultStorage

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...  # noqa: D102

        @property
        def path(self) -> str: ...  # noqa: D102

    def read(
        self, key: str, *, serializer: str | Serializer | SupportsDumpsLoads | None = None
    ) -> StoredResult:
        """The value of the live record of `key`, checked as a task's hit is.

        Args:
            key: The record's key (the whole key, as `records()` gives it).
            serializer: What deserializes it; by default the built-in serializer the record
                names. A custom serializer, which is stored by name only, must be given.

        Raises:
            KeyError: No record has that key, or it has expired.
            CorruptResultError: Its result file is missing, damaged, or not signed with the
                signing key (also logged as a warning).
            SerializationError: The payload cannot be deserialized.
            ValueError: The record's serializer is not built in and none was given.
        """
        now = time.time()
        fetched = self.store.fetch(key, now, self.storage)
        if fetched is None:
            raise self._missing(key, now)
        payload, name, _ = fetched
        try:
            record = self.store.index.get(key)
            if record is None:  # deleted since: what was read is still what was stored
                raise self._missing(key, now)
            chosen = resolve_serializer(name if serializer is None else serializer)
        except BaseException:
            _close(payload)
            raise
        return StoredResult(load_value(chosen, payload), record)

    def exists(self, key: str) -> bool:
        """Whether `key` has a live record whose result file is intact.

        That is, whether `read` would find a value: the file is read and checked as for a hit,
        but not deserialized.
        """
        fetched = self.store.fetch(key, time.time(), self.storage)
        if fetched is None:
            return False
        _close(fetched[0])
        return True

    def write(
        self,
        key: str,
        value: object,
        *,
        serializer: str | Serializer | SupportsDumpsLoads = "cloudpickle",
        expiration: datetime.datetime | datetime.timedelta | None = None,
        storage: str | os.PathLike[str] | ResultStorage | None = None,
        task_name: str | None = None,
        task_qualname: str | None = None,
    ) -> Record:
        """Stores `value` as the record of `key`, replacing any record it had.

        It is saved as a task's result is (atomically, streamed, signed with the signing key),
        at the default location for the key. A task call with that key hits it, whichever
        task it is: the task name is recorded for listing and pruning only.

        Args:
            key: The record's key.
            value: What to store.
            serializer: A serializer name or object, as a task's `result_serializer`.
            expiration: When it stops being a hit: a time (a naive one is local time), or a
                duration from now; None for never.
            storage: Where its file goes (a path, fsspec URL or storage, as `result_storage`);
                by default the cache's storage.
            task_name: The task the record is listed under: by default that of the record it
                replaces, or `WRITTEN_TASK_NAME` if it replaces none.
            task_qualname: Likewise, its qualified name (default `WRITTEN_TASK_QUALNAME`). A
                record replacing a flow's stays a flow's.

        Returns:
            The new record.

        Raises:
            SerializationError: `value` cannot be serialized; nothing is written.
            ValueError: An unknown serializer name, or an expiration that is not finite.
            OSError: The file could not be written; nothing is left behind.
        """
        now = time.time()
        if isinstance(expiration, datetime.timedelta):
            expires_at: float | None = now + expiration.total_seconds()
        elif isinstance(expiration, datetime.datetime):
            expires_at = expiration.timestamp()
        else:
            expires_at = None
        replaced = self.store.index.get(key)
        kind = "task"
        if replaced is not None:
            task_name = task_name or replaced.task_name
            task_qualname = task_qualname or replaced.task_qualname
            kind = replaced.kind
        target = self.storage if storage is None else resolve_storage(storage, self.storage.url)
        return self.store.save_value(
            key,
            value,
            resolve_serializer(serializer),
            target,
            default_location(key),
            task_name=task_name or WRITTEN_TASK_NAME,
            task_qualname=task_qualname or WRITTEN_TASK_QUALNAME,
            created_at=now,
            expires_at=expires_at,
            kind=kind,
        )

    def delete(self, key: str) -> bool:
        """Removes the record of `key` (the whole key) and its file; whether there was one."""
        return self.store.delete(key)

    def _missing(self, key: str, now: float) -> Exception:
        """Why `key` has no value to read: KeyError, or CorruptResultError for a bad file."""
        record = self.store.index.get(key)
        if record is None:
            return KeyError(f"no record with key {key!r} in {self.path}")
        if record.expires_at is not None and record.expires_at <= now:
            when = datetime.datetime.fromtimestamp(record.expires_at).isoformat(sep=" ")
            return KeyError(f"the record of key {key!r} expired at {when}")
        return CorruptResultError(
            f"the result file of key {key!r} is missing, damaged or refused (see the warning)"
        )


def _close(payload: memoryview | BinaryIO) -> None:
    if not isinstance(payload, memoryview):
        payload.close()
