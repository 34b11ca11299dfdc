"""Rebuilding the index from the result files; adopting every record of a storage into it.

Every result file carries its own row's data in its header, so the index can always be made
again from the files. A damaged index file is moved aside (never deleted, and no result file is
ever deleted): look at it with `sqlite3` if you wish, and remove it when you no longer need it.

`rebuild_index` makes the index exactly what the storages given hold; `adopt_records` adds what
one storage holds (a shared one, that other machines write to) and leaves every other row alone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from taskstash.exceptions import CorruptIndexError, CorruptResultError
from taskstash.store.base import StorageUnreachableError
from taskstash.store.database import index_location, is_url
from taskstash.store.index import Index, Record, read_file_record
from taskstash.store.registry import stores_of
from taskstash.store.sqlite import connect, is_corruption
from taskstash.store.storages import ResultStorage, is_index_file, resolve_storage

if TYPE_CHECKING:
    import fsspec

__all__ = ["Adopted", "adopt_records", "rebuild_index"]

_ADOPT_BATCH: Final = 500  # records written per transaction, so that writers are not held up

_log = logging.getLogger("taskstash")


def rebuild_index(
    index_path: str | os.PathLike[str],
    *storages: ResultStorage | str | os.PathLike[str] | fsspec.AbstractFileSystem,
) -> int:
    """Makes the index hold one row per valid result file found in `storages`.

    A damaged index file (not a database, truncated, malformed) is first moved aside, with its
    `-wal` and `-shm` files, to `<name>.damaged-<unix time>`, and a fresh one is created. A sound
    index is rebuilt in place, in one transaction: its rows are replaced by the files' (hit
    counts of the records that remain are kept), and its locks are left alone.

    Only the files' headers are read, and a file's length is checked against its header; a
    payload's checksum is checked when it is loaded, as always. Files that are not valid result
    files are skipped and counted in a log line of the `taskstash` logger. If several files hold
    the same key, the newest wins.

    Stop the programs using the index first: one that had the damaged file open keeps using it
    until it finds it damaged, then opens the new one.

    Args:
        index_path: The index file (`~` expanded, links followed) or URL; an index on a
            server is rebuilt in place.
        *storages: The result storages to read: `ResultStorage` objects, or anything a task's
            `result_storage` accepts (a directory, an fsspec URL or filesystem).

    Returns:
        The number of records in the rebuilt index.

    Raises:
        ValueError: No storage was given.
        IndexTooNewError: The index's schema is newer than this taskstash.
    """
    if not storages:
        raise ValueError("name at least one result storage to rebuild the index from")
    # The file itself, not a link to it: it is the file that is moved aside and replaced.
    path = index_location(index_path)
    resolved = [resolve_storage(spec, os.getcwd()) for spec in storages]
    records, files, skipped = _scan(resolved, path)
    for store in stores_of(path):  # this process's connections must not write to the old file
        store.index.reset()
    if not is_url(path) and _is_damaged(path):
        _move_aside(path)
    index = Index(path)
    try:
        with index.transaction() as conn:
            hits = {
                key: (count, last)
                for key, count, last in conn.execute(
                    "SELECT key, hit_count, last_hit_at FROM records"
                )
            }
            conn.execute("DELETE FROM records")
            for record in records.values():
                count, last = hits.get(record.key, (0, None))
                Index.upsert(conn, _with_hits(record, count, last))
    finally:
        index.close()
    level = logging.WARNING if skipped else logging.INFO
    _log.log(
        level,
        "Rebuilt the taskstash index %s: %d records from %d result files; %d files skipped "
        "(not valid result files)",
        path,
        len(records),
        files,
        skipped,
    )
    return len(records)


def _scan(storages: list[ResultStorage], index_path: str) -> tuple[dict[str, Record], int, int]:
    """The newest record of each key in `storages`, the files read, and those skipped."""
    records: dict[str, Record] = {}
    files = skipped = 0
    for storage in storages:
        for location in storage.locations():
            if is_index_file(storage, location, index_path):
                continue
            files += 1
            try:
                record = read_file_record(storage, location)
                if record is None:
                    raise FileNotFoundError(location)  # deleted since it was listed
            except (CorruptResultError, OSError) as exc:
                skipped += 1
                _log.debug("skipped %s/%s: %s", storage.url.rstrip("/"), location, exc)
                continue
            known = records.get(record.key)
            if known is not None and known.created_at >= record.created_at:
                continue
            records[record.key] = record
    return records, files, skipped


@dataclass(frozen=True)
class Adopted:
    """What `adopt_records` did.

    Attributes:
        files: Result files found in the storage.
        adopted: Records added to the index, or that replaced an older record of their key.
        known: Records the index already had (the same file, or a newer record of the key).
        expired: Records that had expired (by their own creation and expiry times): left out.
        skipped: Files that are not valid result files.
    """

    files: int = 0
    adopted: int = 0
    known: int = 0
    expired: int = 0
    skipped: int = 0


def adopt_records(
    index: Index, storage: ResultStorage, progress: Callable[[int, int], None] | None = None
) -> Adopted:
    """Adds every live record of `storage` to `index`, as a hit from another machine would.

    A record is added when the index has no row of its key, or only an expired or older one
    (whose hit counts it keeps); rows of other storages, and newer ones, stay. Only headers are
    read (on S3: a HEAD and a ranged GET per object, and a LIST per thousand); a payload is
    checked (checksum, signature) when a hit loads it, as always. Nothing is deleted.

    Args:
        index: The index.
        storage: The storage whose records to adopt.
        progress: Called with (files read, files) as files are read.

    Raises:
        StorageUnreachableError: The storage could not be reached; what was adopted stays.
    """
    locations = [
        location
        for location in storage.locations()
        if not is_index_file(storage, location, index.path)
    ]
    now = time.time()
    counts = dict.fromkeys(("adopted", "known", "expired", "skipped"), 0)
    batch: list[Record] = []
    for done, location in enumerate(locations, 1):
        try:
            record = read_file_record(storage, location)
        except StorageUnreachableError:
            raise
        except (CorruptResultError, OSError) as exc:
            counts["skipped"] += 1
            _log.debug("skipped %s/%s: %s", storage.url.rstrip("/"), location, exc)
            record = None
        if record is not None:
            if record.expires_at is not None and record.expires_at <= now:
                counts["expired"] += 1
            else:
                batch.append(record)
        if len(batch) >= _ADOPT_BATCH or (done == len(locations) and batch):
            adopted = _add_newer(index, batch, now)
            counts["adopted"] += adopted
            counts["known"] += len(batch) - adopted
            batch = []
        if progress is not None:
            progress(done, len(locations))
    return Adopted(files=len(locations), **counts)


def _add_newer(index: Index, records: list[Record], now: float) -> int:
    """Writes the rows of `records` whose key has no live row as new; how many it wrote."""
    written = 0
    with index.transaction() as conn:
        for record in records:
            row = conn.execute(
                "SELECT created_at, expires_at, hit_count, last_hit_at FROM records WHERE key = ?",
                (record.key,),
            ).fetchone()
            if row is not None:
                created_at, expires_at, count, last = row
                live = expires_at is None or expires_at > now
                if live and created_at >= record.created_at:
                    continue
                record = _with_hits(record, count, last)
            Index.upsert(conn, record)
            written += 1
    return written


def _with_hits(record: Record, count: int, last: float | None) -> Record:
    if not count and last is None:
        return record
    row = list(record.to_row())
    row[5:7] = [last, count]  # last_hit_at, hit_count (see COLUMNS)
    return Record.from_row(tuple(row))


def _is_damaged(path: str) -> bool:
    """Whether the file at `path` exists and is not a sound SQLite database."""
    if not os.path.exists(path):
        return False
    try:
        conn = connect(path)
    except CorruptIndexError:
        return True
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        return bool(result != "ok")
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return True
        raise
    finally:
        conn.close()


def _move_aside(path: str) -> None:
    aside = f"{path}.damaged-{int(time.time())}"
    while os.path.exists(aside):  # rebuilt twice within a second
        aside += "-1"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    _log.warning("Moved the damaged taskstash index %s aside to %s", path, aside)
