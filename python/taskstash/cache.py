"""Looking after a cache: list, inspect, invalidate, prune, verify and rebuild its records.

    from taskstash import Cache

    cache = Cache()                       # the index and storage of TASKSTASH_* settings
    cache.records(task="add_one", limit=20)
    cache.prune(expired=True)
    cache.verify(fix=True)

It works on the index and result files only; it never runs a task. The `taskstash` command is a
front end to it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from taskstash import settings
from taskstash.exceptions import CorruptResultError
from taskstash.store import (
    LocalStorage,
    Record,
    ResultStorage,
    open_store,
    rebuild_index,
    resolve_storage,
    storage_for_url,
)
from taskstash.store.base import is_temp
from taskstash.store.eviction import Removed
from taskstash.store.index import COLUMNS
from taskstash.store.storages import UnknownStorageError, locate
from taskstash.store.streams import Refused, open_verified

__all__ = ["Cache", "Pruned", "TaskStats", "Verified"]

Progress = Callable[[int, int], None]
"""Called as `progress(done, total)` during long operations."""

# Each write transaction removes records for about this long: short enough that running tasks,
# which wait for the write lock to save a result, are not held up for long; as many records as
# fit go in each, as every commit also pays for a checkpoint of the write-ahead log.
_DELETE_SECONDS = 0.2
_DELETE_CHUNKS = (500, 2000, 50_000)  # the fewest records per transaction, the first, the most
# `records(task=..., limit=...)` first looks for the newest records among this many newest rows.
_PROBE_ROWS = 5000


@dataclass(frozen=True)
class TaskStats:
    """What the cache holds for one task, and what it has saved.

    Attributes:
        task_name: The task.
        records: Records of the task.
        total_bytes: Bytes of their result files.
        hits: Hits written to the index (they lag running programs by a few seconds).
        computations: Times its records were computed (stored).
        hit_rate: `hits / (hits + computations)`.
        compute_seconds_saved: The sum over records of hits times computing time.
    """

    task_name: str
    records: int
    total_bytes: int
    hits: int
    computations: int
    hit_rate: float
    compute_seconds_saved: float


@dataclass(frozen=True)
class Pruned:
    """Records removed (or that would be, on a dry run)."""

    records: int
    bytes: int
    keys: list[str] = field(default_factory=list)


@dataclass
class Verified:
    """What `verify` found; with `fix`, what it repaired.

    Attributes:
        records: Index rows checked.
        files: Result files found in the storages.
        missing: Keys whose result file is missing.
        damaged: Keys whose file is damaged or holds another key's result.
        orphans: Files (`storage/location`) no row points to.
        unchecked: Keys whose row names a storage this process was not configured with (pass
            it as `Cache`'s `storage`); neither checked nor touched, even with `fix`.
        temporary: Temporary files left by interrupted writes.
        integrity: SQLite's `integrity_check` complaints (empty when sound).
        fixed: Whether the problems above were repaired (rows and files removed).
    """

    records: int = 0
    files: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (or everything found was fixed)."""
        problems = self.missing or self.damaged or self.orphans or self.temporary
        return self.fixed or not (problems or self.integrity)


class Cache:
    """One cache: an index file and the storages its records live in.

    Args:
        index_path: The index (default `TASKSTASH_INDEX_PATH`).
        storage: The default result storage (default `TASKSTASH_LOCAL_STORAGE_PATH`); the
            storages named by the index's rows are looked after too.
    """

    def __init__(
        self,
        index_path: str | os.PathLike[str] | None = None,
        storage: str | os.PathLike[str] | ResultStorage | None = None,
    ) -> None:
        current = settings.current()
        self.store = open_store(index_path or current.index_path, current.signing_key)
        self.storage = resolve_storage(storage, current.local_storage_path)

    @property
    def path(self) -> str:
        """The index file."""
        return self.store.path

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
        expired: bool | None = None,
        older_than: float | None = None,
        key_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records, newest first.

        Args:
            task: Only this task's (by name).
            expired: Only expired records (True) or only live ones (False).
            older_than: Only records created more than this many seconds ago.
            key_prefix: Only keys starting with this.
            limit: At most this many.
        """
        conditions: dict[str, Any] = {
            "task": task,
            "expired": expired,
            "older_than": older_than,
            "key_prefix": key_prefix,
        }
        select = f"SELECT {', '.join(COLUMNS)} FROM records"
        order = " ORDER BY created_at DESC"
        narrowed = task is not None or expired is not None
        if limit is not None and limit > 0 and narrowed and key_prefix is None:
            found = self._newest(select, order, int(limit), conditions)
            if found is not None:
                return found
        where, params = _conditions(**conditions)
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
        where, params = _conditions(**conditions, indexed=False)
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

    def stats(self) -> list[TaskStats]:
        """Per task: records, bytes, hits, hit rate and compute time saved (most hits first)."""
        self.store.flush_hits()
        # The task_stats view's columns (docs/schema.md), computed from one scan of the table:
        # SQLite would otherwise walk records_task_name and look up every row from there,
        # about twice as slow on a big index.
        rows = self._rows(
            "SELECT task_name, count(*), sum(size_bytes), sum(hit_count) AS hits, "
            "sum(computations), "
            "round(sum(hit_count) * 1.0 / (sum(hit_count) + sum(computations)), 4), "
            "sum(hit_count * compute_seconds) "
            "FROM records NOT INDEXED GROUP BY task_name ORDER BY hits DESC, task_name"
        )
        return [TaskStats(*row) for row in rows]  # type: ignore[arg-type]

    def totals(self) -> tuple[int, int]:
        """Records and bytes in the whole index (kept by triggers: no scan)."""
        row = self._rows("SELECT records, bytes FROM totals")[0]
        return int(row[0]), int(row[1])  # type: ignore[call-overload]

    # removing ---------------------------------------------------------------------------------

    def invalidate(self, key: str) -> bool:
        """Removes the record of `key` (or the one key starting with it) and its file."""
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
        task: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> Pruned:
        """Removes records and their files.

        Records that are expired (with `expired`) or older than `older_than` seconds go; then,
        with `max_size`, least recently used ones until the index holds at most `max_size`
        bytes. `task` restricts all of it to one task's records.

        Args:
            expired: Remove expired records.
            older_than: Remove records created more than this many seconds ago.
            max_size: Then evict least recently used records down to this many bytes.
            task: Only this task's records.
            dry_run: Report what would be removed; remove nothing.
            progress: Called with (removed, to remove) as records go.
        """
        chosen = dict(self._matching(expired=expired, older_than=older_than, task=task))
        if max_size is not None:
            self.store.flush_hits()  # this process's recent hits count as recent use
            total = self.totals()[1] - sum(chosen.values())
            for key, size in self._least_recently_used(task):
                if total <= max_size:
                    break
                if key not in chosen:
                    chosen[key] = size
                    total -= size
        if dry_run:
            return Pruned(len(chosen), sum(chosen.values()), list(chosen))
        return self._remove(chosen, progress)

    def clear(self, *, task: str | None = None, progress: Progress | None = None) -> Pruned:
        """Removes every record (or every record of `task`) and its file."""
        where, params = _conditions(task=task)
        rows = self._rows(f"SELECT key, size_bytes FROM records{where}", params)
        return self._remove({str(k): int(n) for k, n in rows}, progress)  # type: ignore[call-overload]

    def _matching(
        self, *, expired: bool, older_than: float | None, task: str | None
    ) -> Iterable[tuple[str, int]]:
        """Keys and sizes of records that are expired or too old (either one suffices)."""
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
        where = "(" + " OR ".join(reasons) + ")"
        if task is not None:
            where += " AND task_name = ?"
            params.append(task)
        rows = self._rows(f"SELECT key, size_bytes FROM records WHERE {where}", tuple(params))
        return [(str(key), int(size)) for key, size in rows]  # type: ignore[call-overload]

    def _least_recently_used(self, task: str | None) -> Iterable[tuple[str, int]]:
        where, params = _conditions(task=task)
        cursor = self.store.index.connection().execute(
            f"SELECT key, size_bytes FROM records{where} "
            "ORDER BY coalesce(last_hit_at, created_at)",
            params,
        )
        for key, size in cursor:
            yield str(key), int(size)

    def _remove(self, chosen: dict[str, int], progress: Progress | None) -> Pruned:
        removed: list[Removed] = []
        keys = iter(chosen)
        fewest, count, most = _DELETE_CHUNKS
        while chunk := list(islice(keys, count)):
            started = time.perf_counter()
            removed += self.store.delete_many(chunk)
            seconds = max(time.perf_counter() - started, 1e-3)
            # The next transaction sized to last _DELETE_SECONDS, growing at most twofold.
            count = max(fewest, min(most, 2 * count, int(count * _DELETE_SECONDS / seconds)))
            if progress is not None:
                progress(len(removed), len(chosen))
        return Pruned(len(removed), sum(size for _, size in removed), [k for k, _ in removed])

    # checking ---------------------------------------------------------------------------------

    def verify(self, *, fix: bool = False, progress: Progress | None = None) -> Verified:
        """Checks the index against the result files, and the index file itself.

        Finds rows whose file is missing or damaged (checksum, framing, signature, another
        key's result), files no row points to, temporary files of interrupted writes, and
        SQLite `integrity_check` complaints. With `fix`, removes the bad rows and stray files.
        """
        report = Verified()
        conn = self.store.index.connection()
        report.integrity = [
            str(row[0]) for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"
        ]
        rows = conn.execute("SELECT key, storage, location, checksum FROM records").fetchall()
        report.records = len(rows)
        known: dict[str, set[str]] = {}
        for done, (key, url, location, checksum) in enumerate(rows, 1):
            known.setdefault(url, set()).add(location)
            try:
                storage, location = locate(url, location, self.storage)
                open_verified(
                    storage,
                    location,
                    key=key,
                    checksum=checksum,
                    signing_key=self.store.signing_key,
                ).close()
            except Refused as exc:
                (report.missing if str(exc) == "is missing" else report.damaged).append(key)
            except UnknownStorageError:
                report.unchecked.append(key)
            except (CorruptResultError, OSError, ValueError):
                report.damaged.append(key)
            if progress is not None:
                progress(done, len(rows))
        for storage in self._storages(known):
            for location in storage.locations():
                report.files += 1
                if location not in known.get(storage.url, set()):
                    report.orphans.append(f"{storage.url.rstrip('/')}/{location}")
                    if fix:
                        storage.delete(location)
            report.temporary += _temporary_files(storage)
        if fix:
            self._remove(dict.fromkeys(report.missing + report.damaged, 0), None)
            for path in report.temporary:
                _unlink(path)
            report.fixed = not report.integrity
        return report

    def _storages(self, known: dict[str, set[str]]) -> list[ResultStorage]:
        storages = {self.storage.url: self.storage}
        for url in known:
            storage = storage_for_url(url)
            if storage is not None:
                storages.setdefault(storage.url, storage)
        return list(storages.values())

    def reindex(self) -> int:
        """Rebuilds the index from the result files' headers; the number of records."""
        known = {str(row[0]) for row in self._rows("SELECT DISTINCT storage FROM records")}
        storages = self._storages({url: set() for url in known})
        return rebuild_index(self.path, *storages)


def _conditions(
    *,
    task: str | None = None,
    expired: bool | None = None,
    older_than: float | None = None,
    key_prefix: str | None = None,
    indexed: bool = True,
) -> tuple[str, tuple[object, ...]]:
    """A ` WHERE ...` clause (or "") and its parameters; every condition uses an index.

    With `indexed=False`, the task and expiry conditions are written so that SQLite does not
    use their indexes (`+task_name`).
    """
    clauses: list[str] = []
    params: list[object] = []
    now = time.time()
    plus = "" if indexed else "+"
    if task is not None:
        clauses.append(f"{plus}task_name = ?")
        params.append(task)
    if expired is True:
        clauses.append(f"{plus}expires_at IS NOT NULL AND {plus}expires_at <= ?")
        params.append(now)
    elif expired is False:
        clauses.append(f"({plus}expires_at IS NULL OR {plus}expires_at > ?)")
        params.append(now)
    if older_than is not None:
        clauses.append("created_at < ?")
        params.append(now - older_than)
    if key_prefix is not None:
        # A range on the primary key instead of LIKE, which SQLite would not index here.
        clauses.append("key >= ? AND key < ?")
        params += [key_prefix, key_prefix + "\uffff"]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _temporary_files(storage: ResultStorage) -> list[str]:
    """Temporary files of interrupted writes in a local storage (paths)."""
    if not isinstance(storage, LocalStorage):
        return []
    found: list[str] = []
    for directory, _, files in os.walk(storage.root):
        found += [os.path.join(directory, name) for name in sorted(files) if is_temp(name)]
    return found


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
