"""Removing records: by key, and least recently used first to keep the cache under a size.

Every function here runs inside a write transaction of the index (`Index.transaction()`) and
unlinks result files before that transaction commits: a concurrent save of the same key, which
records only the file it finds under the same lock, can then never end up with a row whose file
was removed.

The files of a shared storage (an object store, `ResultStorage.shared`) belong to every machine
using it, not to this index: removing a row deletes such a file only when asked
(`delete_shared`), and evicting never does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Final

from taskstash.store.database import Connection
from taskstash.store.storages import locate

if TYPE_CHECKING:
    from taskstash.store.index import Index

__all__ = ["Removed", "delete_records", "evict_over", "unlink_result"]

_log = logging.getLogger("taskstash")

Removed = tuple[str, int]
"""A removed record: its key and the bytes its file took."""

# SQLite limits the number of `?` in one statement; stay well under it.
_BATCH: Final = 500

# Least recently used first: exactly the expression of the `records_last_used` index. The
# records just saved are skipped in Python: they are the newest, so at the end of the order.
_LEAST_RECENTLY_USED: Final = (
    "SELECT key, storage, location, size_bytes FROM records "
    "ORDER BY coalesce(last_hit_at, created_at) LIMIT ?"
)


def unlink_result(url: str, location: str, *, delete_shared: bool = True) -> None:
    """Deletes the result file an index row names; one that cannot be deleted is left alone.

    A row naming a storage this process was not configured with, or a location outside its
    storage, is refused with a warning (see `locate`): whoever can write the index must not
    make this process delete files elsewhere. Links are never followed (`ResultStorage.delete`).

    Args:
        url: The row's storage.
        location: The row's location.
        delete_shared: Delete the file of a shared storage too; else leave it there.
    """
    try:
        storage, location = locate(url, location)
    except ValueError as exc:
        _log.warning("Left %s/%s alone, named by an index row: %s", url.rstrip("/"), location, exc)
        return
    if storage.shared and not delete_shared:
        return
    try:
        storage.delete(location)
    except OSError as exc:
        _log.debug("could not delete %s in %s: %s; left for verify", location, url, exc)


def delete_records(
    conn: Connection, keys: Iterable[str], *, delete_shared: bool = True
) -> list[Removed]:
    """Removes the rows of `keys` and their files (inside a write transaction).

    With `delete_shared` false, the files of shared storages stay (see `unlink_result`).
    """
    removed: list[Removed] = []
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == _BATCH:
            removed += _delete_batch(conn, batch, delete_shared)
            batch = []
    if batch:
        removed += _delete_batch(conn, batch, delete_shared)
    return removed


def _delete_batch(conn: Connection, keys: list[str], delete_shared: bool) -> list[Removed]:
    marks = ", ".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT key, storage, location, size_bytes FROM records WHERE key IN ({marks})", keys
    ).fetchall()
    conn.execute(f"DELETE FROM records WHERE key IN ({marks})", keys)
    for _, url, location, _ in rows:
        unlink_result(url, location, delete_shared=delete_shared)
    return [(key, size) for key, _, _, size in rows]


def evict_over(
    index: Index, conn: Connection, max_bytes: int, keep: Collection[str] = ()
) -> list[Removed]:
    """Removes least recently used records until the index holds at most `max_bytes`.

    Uses the running totals (no scan) to know whether anything must go, and the
    `records_last_used` index to pick what. `keep` (the records just saved) are never evicted,
    nor records another transaction is writing right now (`IndexDatabase.try_lock_keys`): they
    are in use, and waiting for them could deadlock with a save evicting ours. The limit is this
    index's: files of shared storages stay for the other machines.
    """
    removed: list[Removed] = []
    while True:
        (total,) = conn.execute("SELECT bytes FROM totals").fetchone()
        excess = total - max_bytes
        if excess <= 0:
            return removed
        victims: list[str] = []
        rows = conn.execute(_LEAST_RECENTLY_USED, (len(keep) + 64,)).fetchall()
        free = set(index.database.try_lock_keys(conn, [r[0] for r in rows if r[0] not in keep]))
        for key, url, location, size in rows:
            if key not in free:
                continue
            victims.append(key)
            unlink_result(url, location, delete_shared=False)
            removed.append((key, size))
            excess -= size
            if excess <= 0:
                break
        if not victims:
            return removed  # only `keep` is left: it may exceed the limit on its own
        marks = ", ".join("?" * len(victims))
        conn.execute(f"DELETE FROM records WHERE key IN ({marks})", victims)
