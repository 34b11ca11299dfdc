"""Looking after a cache: list, inspect, invalidate, prune, verify and rebuild its records.

    from taskstash import Cache

    cache = Cache()                       # the index and storage of TASKSTASH_* settings
    cache.records(task="add_one", limit=20)
    cache.invalidate("3f9a2c")            # one record, by key or unambiguous key prefix
    cache.prune(expired=True)
    cache.prune(keep_newest=3)            # only each task's 3 newest records stay
    cache.verify(fix=True)
    cache.adopt("my-cache-bucket")        # every record of a shared storage, into this index
    cache.read(key).result                # a record's value, checked as a hit (and `exists`,
    cache.write(key, value)               # `write`, `delete`: see `taskstash.cache_results`)

It works on the index and result files only; it never runs a task. The index is opened on first
use, so that `reindex()` can rebuild one too damaged to open. The `taskstash` command is a front
end to it.

Storages are given as a task's `result_storage` is (a path, a URL, a name of the settings file,
a `ResultStorage`). A shared storage (an object store) holds the records of every machine using
it: removing records from this index (`prune`, `clear`, eviction) leaves their objects there
unless `delete_objects=True`; `invalidate` (one key) deletes its object, or the next call would
adopt it again. `storage=` narrows looking, pruning and checking to one storage's records.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TypedDict

from taskstash import settings
from taskstash.cache_reports import Pruned, TaskStats, where_clause
from taskstash.cache_results import ResultsByKey, StoredResult
from taskstash.exceptions import CorruptIndexError
from taskstash.store import (
    Record,
    ResultStorage,
    Store,
    open_store,
    rebuild_index,
    resolve_storage,
)
from taskstash.store.database import index_location, redact
from taskstash.store.eviction import Removed
from taskstash.store.index import COLUMNS
from taskstash.store.rebuild import Adopted, adopt_records
from taskstash.store.storages import storage_for_url
from taskstash.store.verify import Verified, storages_of, verify

__all__ = ["Adopted", "Cache", "Pruned", "StoredResult", "TaskStats", "Verified"]

StorageSpec = str | os.PathLike[str] | ResultStorage
"""A storage as a task's `result_storage` names it (a path, URL, storage name or object)."""

Progress = Callable[[int, int], None]
"""Called as `progress(done, total)` during long operations."""

# Each write transaction removes records for about this long: short enough that running tasks,
# which wait for the write lock to save a result, are not held up for long; as many records as
# fit go in each, as every commit also pays for a checkpoint of the write-ahead log.
_DELETE_SECONDS = 0.2
_DELETE_CHUNKS = (500, 2000, 50_000)  # the fewest records per transaction, the first, the most
# `records(task=..., limit=...)` first looks for the newest records among this many newest rows.
_PROBE_ROWS = 5000


class _Scope(TypedDict):
    """The records an operation is narrowed to: conditions of `where_clause`, None for any."""

    task: str | None
    kind: str | None
    storage: str | None


class Cache(ResultsByKey):
    """One cache: an index file and the storages its records live in.

    Args:
        index_path: The index (default `TASKSTASH_INDEX_PATH`).
        storage: The default result storage (default `TASKSTASH_LOCAL_STORAGE_PATH`); the
            storages named by the index's rows are looked after too.
    """

    def __init__(
        self,
        index_path: str | os.PathLike[str] | None = None,
        storage: StorageSpec | None = None,
    ) -> None:
        current = settings.current()
        # The file open_store() would resolve to; opened only on first use of `store`.
        self._path = index_location(index_path or current.index)
        self._signing_key = current.signing_key
        self.storage = self._resolve(storage)

    def _resolve(self, storage: StorageSpec | None) -> ResultStorage:
        current = settings.current()
        return resolve_storage(
            storage, current.local_storage_path, current.storages, timeout=current.storage_timeout
        )

    def _url(self, storage: StorageSpec | None) -> str | None:
        return None if storage is None else self._resolve(storage).url

    @functools.cached_property
    def store(self) -> Store:
        """The index and its result files, opened (and the schema migrated) on first use.

        Raises:
            CorruptIndexError: The index file is damaged (`reindex()` rebuilds it).
            TaskstashError: Its schema is newer than this taskstash.
            OSError: It cannot be created or opened.
        """
        return open_store(self._path, self._signing_key)

    @property
    def path(self) -> str:
        """The index: its file, or its URL without the password."""
        return redact(self._path)

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = (
            self.store.index.connection().execute(sql, params).fetchall()
        )
        return rows

    # looking ----------------------------------------------------------------------------------

    def records(
        self,
        *,
        task: str | None = None,
        kind: str | None = None,
        expired: bool | None = None,
        older_than: float | None = None,
        key_prefix: str | None = None,
        limit: int | None = None,
        storage: StorageSpec | None = None,
    ) -> list[Record]:
        """Records, newest first.

        Args:
            task: Only this task's (by name; a flow's by the flow's name).
            kind: Only `"task"` records or only `"flow"` records.
            expired: Only expired records (True) or only live ones (False).
            older_than: Only records created more than this many seconds ago.
            key_prefix: Only keys starting with this.
            limit: At most this many.
            storage: Only records stored there.
        """
        conditions: dict[str, Any] = {
            "task": task,
            "kind": kind,
            "expired": expired,
            "older_than": older_than,
            "key_prefix": key_prefix,
            "storage": self._url(storage),
        }
        select = f"SELECT {', '.join(COLUMNS)} FROM records"
        order = " ORDER BY created_at DESC"
        narrowed = any(v is not None for v in (task, kind, expired, storage))
        if limit is not None and limit > 0 and narrowed and key_prefix is None:
            found = self._newest(select, order, int(limit), conditions)
            if found is not None:
                return found
        where, params = where_clause(**conditions)
        sql = f"{select}{where}{order}"
        if limit is not None:
            sql += " LIMIT ?"
            params = (*params, int(limit))
        return [Record.from_row(row) for row in self._rows(sql, params)]

    def _newest(
        self, select: str, order: str, limit: int, conditions: dict[str, Any]
    ) -> list[Record] | None:
        """The newest `limit` matching records if they are among the newest rows; else None.

        By the index of its condition (`task_name`, `expires_at`), SQLite reads and sorts every
        matching row to find the newest few: all 100,000 records of a task in a big index. Walking
        `records_created_at` from the newest row finds a common task's latest records after a few
        rows instead, but would read the whole index for a rare one. So look among the newest
        `_PROBE_ROWS` (or more, for a large limit) only; None if fewer than `limit` match there.
        """
        probe = max(_PROBE_ROWS, 50 * limit)
        bound = self._rows(
            "SELECT created_at FROM records ORDER BY created_at DESC LIMIT 1 OFFSET ?", (probe,)
        )
        if not bound:
            return None  # a small index: its own indexes do well
        # Unary `+` keeps SQLite from using the condition's index: records_created_at it is.
        where, params = where_clause(**conditions, unindexed=self.store.index.database.unindexed)
        sql = f"{select}{where} AND created_at >= ?{order} LIMIT ?"
        rows = self._rows(sql, (*params, bound[0][0], limit))
        if len(rows) < limit:
            return None
        return [Record.from_row(row) for row in rows]

    def record(self, key: str) -> Record:
        """The record whose key is `key`, or starts with it.

        Raises:
            KeyError: No record matches.
            ValueError: Several records start with `key`.
        """
        found = self.records(key_prefix=key, limit=2)
        if not found:
            raise KeyError(f"no record with a key starting with {key!r} in {self.path}")
        if len(found) > 1 and found[0].key != key:
            raise ValueError(f"several keys start with {key!r}; give more of the key")
        return found[0]

    def stats(self, *, storage: StorageSpec | None = None) -> list[TaskStats]:
        """Per task (and cached flow): records, bytes, hits, hit rate and compute time saved.

        Most hits first; a flow and a task of the same name are counted apart.

        Args:
            storage: Only records stored there.
        """
        where, params = where_clause(storage=self._url(storage))
        self.store.flush_hits()
        # The task_stats view's columns (docs/schema.md), computed from one scan of the table:
        # SQLite would otherwise walk records_task_name and look up every row from there,
        # about twice as slow on a big index.
        rows = self._rows(
            "SELECT task_name, count(*), sum(size_bytes), sum(hit_count) AS hits, "
            "sum(computations), "
            "round(sum(hit_count) * 1.0 / (sum(hit_count) + sum(computations)), 4), "
            "sum(hit_count * compute_seconds), kind "
            f"FROM records{self.store.index.database.not_indexed}{where} "
            "GROUP BY task_name, kind ORDER BY hits DESC, task_name, kind",
            params,
        )
        return [TaskStats(*row) for row in rows]  # type: ignore[arg-type]

    def totals(self, *, storage: StorageSpec | None = None) -> tuple[int, int]:
        """Records and bytes in the whole index (kept by triggers: no scan), or in `storage`."""
        url = self._url(storage)
        if url is None:
            row = self._rows("SELECT records, bytes FROM totals")[0]
        else:
            sql = "SELECT count(*), coalesce(sum(size_bytes), 0) FROM records WHERE storage = ?"
            row = self._rows(sql, (url,))[0]
        return int(row[0]), int(row[1])  # type: ignore[call-overload]

    # removing ---------------------------------------------------------------------------------

    def invalidate(self, key: str) -> bool:
        """Removes one record and its result file, so that its next call computes again.

        Args:
            key: The record's key, or a prefix of it that no other key starts with (as printed
                by `taskstash ls`).

        Returns:
            Whether a record was removed (False if no key starts with `key`).

        Raises:
            ValueError: Several keys start with `key`.
        """
        try:
            record = self.record(key)
        except KeyError:
            return False
        return self.store.delete(record.key)

    def prune(
        self,
        *,
        expired: bool = False,
        older_than: float | None = None,
        max_size: int | None = None,
        keep_newest: int | None = None,
        task: str | None = None,
        kind: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        storage: StorageSpec | None = None,
        delete_objects: bool = False,
    ) -> Pruned:
        """Removes records and their files (objects of shared storages only if asked).

        Records that are expired (with `expired`), older than `older_than` seconds, or not
        among the `keep_newest` newest of their task go (any one reason suffices); then, with
        `max_size`, least recently used ones until the index holds at most `max_size` bytes.
        `task`, `kind` and `storage` restrict all of it to one task's (or flow's), to tasks' or
        flows', or to one storage's records.

        Args:
            expired: Remove expired records.
            older_than: Remove records created more than this many seconds ago.
            max_size: Then evict least recently used records down to this many bytes.
            keep_newest: Keep only this many records of each task, the newest (by creation);
                a task is told apart by its name and qualified name. Records of older versions
                of a task's code, or of inputs no longer used, go.
            task: Only this task's records (or this flow's).
            kind: Only `"task"` records, or only `"flow"` records.
            dry_run: Report what would be removed; remove nothing.
            progress: Called with (removed, to remove) as records go.
            storage: Only records stored there; `max_size` is then that storage's size.
            delete_objects: Delete the objects of records in shared storages too; without
                it, only this index's rows of them go (`Pruned.kept_objects` counts them).

        Raises:
            ValueError: `keep_newest` is negative.
        """
        if keep_newest is not None and keep_newest < 0:
            raise ValueError(f"keep_newest must be 0 or more, not {keep_newest}")
        url = self._url(storage)
        only: _Scope = {"task": task, "kind": kind, "storage": url}
        chosen = dict(self._matching(expired=expired, older_than=older_than, only=only))
        if keep_newest is not None:
            chosen.update(self._beyond_newest(keep_newest, only))
        if max_size is not None:
            self.store.flush_hits()  # this process's recent hits count as recent use
            total = self.totals(storage=storage)[1] - sum(chosen.values())
            for key, size in self._least_recently_used(only):
                if total <= max_size:
                    break
                if key not in chosen:
                    chosen[key] = size
                    total -= size
        if dry_run:
            kept = 0 if delete_objects else self._in_shared_storages(list(chosen))
            return Pruned(len(chosen), sum(chosen.values()), list(chosen), kept)
        return self._remove(chosen, progress, delete_objects)

    def clear(
        self,
        *,
        task: str | None = None,
        progress: Progress | None = None,
        storage: StorageSpec | None = None,
        delete_objects: bool = False,
    ) -> Pruned:
        """Removes every record (or every record of `task`, or of `storage`) and its file.

        Objects of shared storages stay unless `delete_objects` (see `prune`).
        """
        where, params = where_clause(task=task, storage=self._url(storage))
        rows = self._rows(f"SELECT key, size_bytes FROM records{where}", params)
        chosen = {str(k): int(n) for k, n in rows}  # type: ignore[call-overload]
        return self._remove(chosen, progress, delete_objects)

    def _matching(
        self, *, expired: bool, older_than: float | None, only: _Scope
    ) -> Iterable[tuple[str, int]]:
        """Keys and sizes of records that are expired or too old (either one suffices).

        `only` narrows them (`task`, `kind`, `storage`: conditions of `where_clause`).
        """
        now = time.time()
        reasons: list[str] = []
        params: list[object] = []
        if expired:
            reasons.append("(expires_at IS NOT NULL AND expires_at <= ?)")
            params.append(now)
        if older_than is not None:
            reasons.append("created_at < ?")
            params.append(now - older_than)
        if not reasons:
            return []
        narrowing, narrowed = where_clause(**only)
        where = "(" + " OR ".join(reasons) + ")"
        if narrowing:
            where += " AND " + narrowing.removeprefix(" WHERE ")
        sql = f"SELECT key, size_bytes FROM records WHERE {where}"
        rows = self._rows(sql, (*params, *narrowed))
        return [(str(key), int(size)) for key, size in rows]  # type: ignore[call-overload]

    def _beyond_newest(self, keep: int, only: _Scope) -> list[tuple[str, int]]:
        """Keys and sizes of the records after the `keep` newest of their task.

        One statement: a window numbers each task's records newest first, in one sort of the
        (task's) rows.
        """
        where, params = where_clause(**only)
        rows = self._rows(
            "SELECT key, size_bytes FROM ("
            "SELECT key, size_bytes, row_number() OVER ("
            "PARTITION BY task_name, task_qualname ORDER BY created_at DESC, key DESC"
            f") AS newest FROM records{where}) AS ranked WHERE newest > ?",
            (*params, keep),
        )
        return [(str(key), int(size)) for key, size in rows]  # type: ignore[call-overload]

    def _least_recently_used(self, only: _Scope) -> Iterable[tuple[str, int]]:
        where, params = where_clause(**only)
        cursor = self.store.index.connection().execute(
            f"SELECT key, size_bytes FROM records{where} "
            "ORDER BY coalesce(last_hit_at, created_at)",
            params,
        )
        for key, size in cursor:
            yield str(key), int(size)

    def _remove(
        self, chosen: dict[str, int], progress: Progress | None, delete_objects: bool
    ) -> Pruned:
        removed: list[Removed] = []
        kept = 0
        keys = iter(chosen)
        fewest, count, most = _DELETE_CHUNKS
        while chunk := list(islice(keys, count)):
            started = time.perf_counter()
            if not delete_objects:
                kept += self._in_shared_storages(chunk)
            removed += self.store.delete_many(chunk, delete_shared=delete_objects)
            seconds = max(time.perf_counter() - started, 1e-3)
            # The next transaction sized to last _DELETE_SECONDS, growing at most twofold.
            count = max(fewest, min(most, 2 * count, int(count * _DELETE_SECONDS / seconds)))
            if progress is not None:
                progress(len(removed), len(chosen))
        return Pruned(len(removed), sum(size for _, size in removed), [k for k, _ in removed], kept)

    def _in_shared_storages(self, keys: list[str]) -> int:
        """How many of the records of `keys` are in shared storages this process knows."""
        shared = 0
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT storage, count(*) FROM records WHERE key IN ({marks}) GROUP BY storage"
            for url, count in self._rows(sql, tuple(chunk)):
                storage = storage_for_url(str(url))
                if storage is not None and storage.shared:
                    shared += int(count)  # type: ignore[call-overload]
        return shared

    # checking ---------------------------------------------------------------------------------

    def verify(
        self,
        *,
        fix: bool = False,
        progress: Progress | None = None,
        storage: StorageSpec | None = None,
        delete_objects: bool = False,
    ) -> Verified:
        """Checks the index against the result files, and the index file itself.

        Finds rows whose file is missing or damaged (checksum, framing, signature, another
        key's result), files no row points to, temporary files of interrupted writes, and
        SQLite `integrity_check` complaints. With `fix`, removes the bad rows and stray files.
        With `storage`, only that storage's rows and files are checked. In a shared storage,
        files without a row are other machines' records (`Verified.unindexed`), never removed,
        and a bad row's damaged object is deleted only with `delete_objects`.

        Safe while tasks run: files modified in the last `WRITE_GRACE_SECONDS` (15 minutes)
        may be saves in progress and are left alone, and everything is removed under the
        index's write lock after checking again that no save recorded it meanwhile (see
        `taskstash.store.verify`).
        """
        only = None if storage is None else self._resolve(storage)
        return verify(
            self.store,
            self.storage,
            fix=fix,
            progress=progress,
            only=only,
            delete_objects=delete_objects,
        )

    def adopt(
        self, storage: StorageSpec | None = None, *, progress: Progress | None = None
    ) -> Adopted:
        """Adds every live record of `storage` (default: this cache's) to the index.

        For a shared storage: its records become this machine's local index hits at once,
        without a first call adopting each. Rows of other storages stay; a key's newer row
        stays; nothing is deleted (see `taskstash.store.rebuild.adopt_records`).
        """
        target = self.storage if storage is None else self._resolve(storage)
        return adopt_records(self.store.index, target, progress)

    def reindex(self) -> int:
        """Rebuilds the index from the result files' headers; the number of records.

        The files are read from this cache's storage and from every storage the index names.
        A damaged index is moved aside (see `taskstash.store.rebuild_index`) and rebuilt from
        this cache's storage alone, as the storages it named cannot be read from it.
        """
        try:
            known = {str(row[0]) for row in self._rows("SELECT DISTINCT storage FROM records")}
        except CorruptIndexError:
            known = set()
        return rebuild_index(self._path, *storages_of(self.storage, known))
