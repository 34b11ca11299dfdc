"""Checking the index against the result files, and repairing it beside running writers.

A save writes its file first (a temporary file renamed into place), then records it in a
`BEGIN IMMEDIATE` transaction; so while tasks run, the storage always holds files that no row
points to yet, and temporary files still being written. A repair must never remove those:

- a file or temporary file modified less than `WRITE_GRACE_SECONDS` ago may belong to a write
  in progress, and is neither reported nor removed;
- rows and files are removed under the index's write lock, after checking again that nothing
  changed since they were found: the row still points at the same damaged or missing file, and
  no row points at the orphan (a save committed, or a record adopted, meanwhile).

The index file itself, should it lie inside a storage, is never taken for a result file.

A shared storage (an object store, `ResultStorage.shared`) holds the records of every machine
using it: a file there without a row in this index is another machine's record (or one this
machine never hit), not an orphan, and is never removed. A bad row's file there is removed only
when asked (`delete_objects`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from taskstash.exceptions import CorruptResultError
from taskstash.store.base import ResultStorage, is_temp
from taskstash.store.eviction import delete_records
from taskstash.store.fsspec_storage import FsspecStorage
from taskstash.store.storages import (
    LocalStorage,
    UnknownStorageError,
    is_index_file,
    locate,
    storage_for_url,
)
from taskstash.store.store import Store
from taskstash.store.streams import Refused, open_verified

__all__ = ["WRITE_GRACE_SECONDS", "Verified", "storages_of", "verify"]

WRITE_GRACE_SECONDS: Final = 900.0
"""Files modified more recently than this are taken for writes in progress. A renamed file is
recorded within the index's lock timeout (30 s), and a writer writes its temporary file
steadily; a quarter of an hour leaves a wide margin for slow disks and busy machines."""

_MISSING: Final = "is missing"
_UNCHECKED: Final = "names a storage not configured here"
_CHUNK: Final = 500  # candidates re-checked per write transaction, so writers are not held up

Progress = Callable[[int, int], None]


@dataclass
class Verified:
    """What `verify` found; with `fix`, what it repaired.

    Attributes:
        records: Index rows checked.
        files: Result files found in the storages.
        missing: Keys whose result file is missing.
        damaged: Keys whose file is damaged or holds another key's result.
        orphans: Files (`storage/location`) no row points to, untouched for
            `WRITE_GRACE_SECONDS` (younger ones may be saves about to commit).
        unchecked: Keys whose row names a storage this process was not configured with (pass
            it as `Cache`'s `storage`); neither checked nor touched, even with `fix`.
        unindexed: Files of a shared storage that no row of this index points to: records
            of other machines (`Cache.adopt` adds them), never removed.
        temporary: Temporary files of interrupted writes, untouched for `WRITE_GRACE_SECONDS`.
        integrity: SQLite's `integrity_check` complaints (empty when sound).
        fixed: Whether the problems above were repaired (rows and files removed).
    """

    records: int = 0
    files: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    unindexed: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (or everything found was fixed)."""
        problems = self.missing or self.damaged or self.orphans or self.temporary
        return self.fixed or not (problems or self.integrity)


def storages_of(default: ResultStorage, urls: Iterable[str]) -> list[ResultStorage]:
    """`default` and the reachable storages among `urls` (the index's `storage` column)."""
    storages = {default.url: default}
    for url in urls:
        storage = storage_for_url(url)
        if storage is not None:
            storages.setdefault(storage.url, storage)
    return list(storages.values())


def verify(
    store: Store,
    default: ResultStorage,
    *,
    fix: bool = False,
    progress: Progress | None = None,
    only: ResultStorage | None = None,
    delete_objects: bool = False,
) -> Verified:
    """Checks the index of `store` against its result files, and the index file itself.

    Args:
        store: The index.
        default: The storage of rows whose own storage cannot be reached, and looked over for
            orphans with the storages the rows name.
        fix: Remove bad rows, orphans and stale temporary files (see the module's docstring).
        progress: Called with (rows checked, rows) as rows are checked.
        only: Check only the rows of this storage, and only its files.
        delete_objects: With `fix`, delete the damaged files of bad rows in shared storages
            too (their rows go either way).
    """
    report = Verified()
    conn = store.index.connection()
    report.integrity = store.index.database.integrity_problems()
    select = "SELECT key, storage, location, checksum FROM records"
    if only is None:
        rows = conn.execute(select).fetchall()
    else:
        rows = conn.execute(f"{select} WHERE storage = ?", (only.url,)).fetchall()
    report.records = len(rows)
    known: dict[str, set[str]] = {}
    bad: dict[str, tuple[str, str, str]] = {}
    for done, (key, url, location, checksum) in enumerate(rows, 1):
        known.setdefault(url, set()).add(location)
        problem = _problem(store, default, key, url, location, checksum)
        if problem is _UNCHECKED:
            report.unchecked.append(key)
        elif problem is not None:
            (report.missing if problem == _MISSING else report.damaged).append(key)
            bad[key] = (url, location, checksum)
        if progress is not None:
            progress(done, len(rows))
    orphans: list[tuple[ResultStorage, list[str]]] = []
    for storage in [only] if only is not None else storages_of(default, known):
        found = []
        for location in storage.locations():
            if is_index_file(storage, location, store.path):
                continue
            report.files += 1
            if location in known.get(storage.url, ()):
                continue
            if storage.shared:
                report.unindexed.append(f"{storage.url.rstrip('/')}/{location}")
            elif _settled(storage, location):
                report.orphans.append(f"{storage.url.rstrip('/')}/{location}")
                found.append(location)
        orphans.append((storage, found))
        report.temporary += _stale_temporary_files(storage)
    if fix:
        _remove_bad_rows(store, default, bad, delete_objects)
        for storage, locations in orphans:
            _remove_orphans(store, storage, locations)
        for path in report.temporary:
            if _age(path) > WRITE_GRACE_SECONDS:  # a writer never reuses a temporary name
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        report.fixed = not report.integrity
    return report


def _problem(
    store: Store, default: ResultStorage, key: str, url: str, location: str, checksum: str
) -> str | None:
    """What is wrong with the file of a row: `_MISSING`, another complaint, or None.

    `_UNCHECKED` for a row naming a storage this process was not configured with: an edited
    row must not make a repair read or delete anything outside the configured storages.
    """
    try:
        storage, location = locate(url, location, default)
    except UnknownStorageError:
        return _UNCHECKED
    except ValueError as exc:  # a location outside any storage: the row is damaged
        return str(exc)
    try:
        open_verified(
            storage, location, key=key, checksum=checksum, signing_key=store.signing_key
        ).close()
    except Refused as exc:
        return str(exc)
    except (CorruptResultError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _remove_bad_rows(
    store: Store, default: ResultStorage, bad: dict[str, tuple[str, str, str]], delete_shared: bool
) -> None:
    keys = list(bad)
    for start in range(0, len(keys), _CHUNK):
        with store.index.transaction() as conn:
            # A save may have replaced the row or rewritten its file since it was checked.
            doomed = [
                key
                for key in keys[start : start + _CHUNK]
                if _row(conn.execute(_SELECT_ROW, (key,)).fetchone()) == bad[key]
                and _problem(store, default, key, *bad[key]) is not None
            ]
            delete_records(conn, doomed, delete_shared=delete_shared)


def _remove_orphans(store: Store, storage: ResultStorage, locations: list[str]) -> None:
    for start in range(0, len(locations), _CHUNK):
        chunk = locations[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        with store.index.transaction() as conn:
            # Saves and adoptions record their file under this lock: a row now is a record now.
            used = {
                str(location)
                for (location,) in conn.execute(
                    f"SELECT location FROM records WHERE storage = ? AND location IN ({marks})",
                    (storage.url, *chunk),
                )
            }
            for location in chunk:
                if location not in used and _settled(storage, location):
                    storage.delete(location)


_SELECT_ROW: Final = "SELECT storage, location, checksum FROM records WHERE key = ?"


def _row(row: tuple[object, ...] | None) -> tuple[object, ...] | None:
    return None if row is None else tuple(row)


def _settled(storage: ResultStorage, location: str) -> bool:
    """Whether the file at `location` was last modified `WRITE_GRACE_SECONDS` ago or more.

    False when that cannot be told (a storage without modification times): such a file is
    never removed.
    """
    try:
        if isinstance(storage, LocalStorage):
            return _age(storage.path(location)) > WRITE_GRACE_SECONDS
        if isinstance(storage, FsspecStorage):
            modified: datetime = storage.fs.modified(storage.path(location))
            return time.time() - modified.timestamp() > WRITE_GRACE_SECONDS
    except (NotImplementedError, OSError, AttributeError, TypeError, ValueError):
        pass
    return False


def _age(path: str) -> float:
    """Seconds since the file at `path` (not a link's target) was modified."""
    return time.time() - os.stat(path, follow_symlinks=False).st_mtime


def _stale_temporary_files(storage: ResultStorage) -> list[str]:
    """Temporary files of interrupted writes in a local storage (paths)."""
    if not isinstance(storage, LocalStorage):
        return []
    found: list[str] = []
    for directory, _, files in os.walk(storage.root):
        for name in sorted(files):
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                if is_temp(name) and _age(path) > WRITE_GRACE_SECONDS:
                    found.append(path)
    return found
