"""Rebuilding the index from the result files, for an index that is damaged or lost.

Every result file carries its own row's data in its header, so the index can always be made
again from the files. A damaged index file is moved aside (never deleted, and no result file is
ever deleted): look at it with `sqlite3` if you wish, and remove it when you no longer need it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from taskstash.exceptions import CorruptIndexError, CorruptResultError
from taskstash.store.database import index_location, is_url
from taskstash.store.index import Index, Record, read_file_record
from taskstash.store.registry import stores_of
from taskstash.store.sqlite import connect, is_corruption
from taskstash.store.storages import ResultStorage, is_index_file, resolve_storage

if TYPE_CHECKING:
    import fsspec

__all__ = ["rebuild_index"]

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
