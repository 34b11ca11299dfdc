"""The process's stores: one `Store` per index file and signing key, shared by all threads."""

from __future__ import annotations

import os
import threading

from taskstash.store.database import index_location, is_url
from taskstash.store.store import Store

__all__ = ["open_store", "stores_of"]

_STORES: dict[tuple[str, bytes | None], Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(index_path: str | os.PathLike[str], signing_key: bytes | None = None) -> Store:
    """The process's `Store` for an index file and signing key, shared by all threads.

    Args:
        index_path: The index file (`~` expanded; symlinks and relative paths resolved).
        signing_key: The store's signing key (see `Store`), or None.

    Returns:
        The shared store: one per resolved path and signing key.

    Raises:
        CorruptIndexError: The index file is damaged (see `rebuild_index`).
        IndexTooNewError: The index's schema is newer than this taskstash.
    """
    name = os.fspath(index_path)
    store = _STORES.get((name, signing_key))
    if store is not None:
        return store
    resolved = index_location(name)
    with _STORES_LOCK:
        store = _STORES.get((resolved, signing_key))
        if store is None:
            store = _STORES[resolved, signing_key] = Store(resolved, signing_key)
        if is_url(name) or os.path.isabs(
            name
        ):  # a relative name may mean another file after a chdir
            _STORES[name, signing_key] = store
    return store


def stores_of(index_path: str) -> list[Store]:
    """The stores of this process open on the index file `index_path`."""
    wanted = index_location(index_path)
    found = {id(s): s for s in list(_STORES.values()) if s.url == wanted}
    return list(found.values())
