"""Where a task's records go.

Its index (the store), its result storage, the location of each result file in it, and the lock
manager of its SERIALIZABLE calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskstash import settings
from taskstash.cache_policies import ResultStorageKeyPolicy
from taskstash.locking import LockManager, SQLiteLockManager
from taskstash.store import (
    ResultStorage,
    Store,
    check_location,
    default_location,
    open_store,
    resolve_storage,
)
from taskstash.store.database import is_url

if TYPE_CHECKING:
    from taskstash.context import FlowRun
    from taskstash.store.serializers import Serializer
    from taskstash.tasks import Task

__all__ = [
    "index_lock_manager",
    "index_path",
    "inherit_results",
    "lock_manager",
    "render_location",
    "resolve",
]


def resolve(
    task: Task[Any, Any], current: settings.Settings
) -> tuple[object, Store, ResultStorage]:
    """The task's index and storage under `current` settings, kept on the task.

    `settings.reload()` makes a new settings object, so a changed environment is picked up.
    """
    store = open_store(index_path(task), current.signing_key)
    store.max_bytes = current.max_size
    storage = resolve_storage(
        task.result_storage,
        current.local_storage_path,
        current.storages,
        timeout=current.storage_timeout,
    )
    task.resolved = (current, store, storage)
    return task.resolved


def inherit_results(
    task: Task[Any, Any],
    flow_run: FlowRun,
    storage: ResultStorage,
    serializer: Serializer,
    current: settings.Settings,
) -> tuple[ResultStorage, Serializer]:
    """The storage and serializer of a call in `flow_run`: the flow's, where the task sets none."""
    if task.result_storage is None and flow_run.result_storage is not None:
        storage = resolve_storage(
            flow_run.result_storage,
            current.local_storage_path,
            current.storages,
            timeout=current.storage_timeout,
        )
    if task.result_serializer is None and flow_run.result_serializer is not None:
        serializer = flow_run.result_serializer
    return storage, serializer


_index_paths: dict[object, str] = {}


def index_path(task: Task[Any, Any]) -> str:
    """The task's index: its policy's `key_storage`, or `TASKSTASH_INDEX_URL`/`_PATH`.

    A `key_storage` may be a file, a directory (its `index.db`) or an index URL.
    """
    key_storage = task.cache_policy.key_storage
    if key_storage is None:
        return settings.current().index
    path = _index_paths.get(key_storage)
    if path is None:
        text: str = os.fspath(key_storage)
        if is_url(text) or text.startswith("sqlite://"):
            _index_paths[key_storage] = text
            return text
        found = Path(text).expanduser()
        if found.is_dir() or text.endswith(("/", "\\")):
            found = found / "index.db"
        path = _index_paths[key_storage] = str(found)
    return path


def render_location(task: Task[Any, Any], key: str, components: list[tuple[str, str]]) -> str:
    """Where in its storage a call's result file goes: `ab/abcdef...` or `result_storage_key`.

    A rendered `result_storage_key` is the call's only component.

    Raises:
        ValueError: The rendered name would lead outside the storage.
    """
    if not isinstance(task.cache_policy, ResultStorageKeyPolicy):
        return default_location(key)
    rendered = components[0][1]
    try:
        return check_location(rendered)
    except ValueError as exc:
        raise ValueError(
            f"result_storage_key {task.result_storage_key!r} of task {task.name!r} rendered to "
            f"{rendered!r}, which is refused: {exc}"
        ) from None


_default_lock_managers: dict[str, LockManager] = {}


def lock_manager(task: Task[Any, Any], store: Store) -> LockManager:
    """The policy's lock manager, or one backed by the task's index."""
    configured: LockManager | None = task.cache_policy.lock_manager
    if configured is not None:
        return configured
    return index_lock_manager(store)


def index_lock_manager(store: Store) -> LockManager:
    """The lock manager backed by `store`'s index (one per index in a process).

    On PostgreSQL, the one that serialises every machine using the index.
    """
    url = store.index.url
    manager = _default_lock_managers.get(url)
    if manager is None:
        if is_url(url):
            from taskstash.postgres_locks import PostgresLockManager

            manager = PostgresLockManager(url)
        else:
            manager = SQLiteLockManager(url)
        _default_lock_managers[url] = manager
    return manager
