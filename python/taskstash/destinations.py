"""Where a task's records go.

Its index (the store), its result storage, the location of each result file in it, and the lock
manager of its SERIALIZABLE calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskstash import settings
from taskstash.locking import LockManager, SQLiteLockManager
from taskstash.store import (
    ResultStorage,
    Store,
    check_location,
    default_location,
    open_store,
    resolve_storage,
)

if TYPE_CHECKING:
    from taskstash.context import FlowRun, TaskRun
    from taskstash.tasks import Task

__all__ = ["index_path", "lock_manager", "render_location", "resolve"]


def resolve(
    task: Task[Any, Any], current: settings.Settings
) -> tuple[object, Store, ResultStorage]:
    """The task's index and storage under `current` settings, kept on the task.

    `settings.reload()` makes a new settings object, so a changed environment is picked up.
    """
    store = open_store(index_path(task), current.signing_key)
    store.max_bytes = current.max_size
    storage = resolve_storage(task.result_storage, current.local_storage_path, current.storages)
    task.resolved = (current, store, storage)
    return task.resolved


_index_paths: dict[object, Path] = {}


def index_path(task: Task[Any, Any]) -> Path:
    """The task's index file: its policy's `key_storage`, or `TASKSTASH_INDEX_PATH`."""
    key_storage = task.cache_policy.key_storage
    if key_storage is None:
        return settings.current().index_path
    path = _index_paths.get(key_storage)
    if path is None:
        path = Path(key_storage).expanduser()
        if path.is_dir() or str(key_storage).endswith(("/", "\\")):
            path = path / "index.db"
        _index_paths[key_storage] = path
    return path


def render_location(
    task: Task[Any, Any],
    key: str,
    parameters: dict[str, Any],
    task_run: TaskRun,
    flow_run: FlowRun | None,
) -> str:
    """Where in its storage a call's result file goes: `ab/abcdef...` or `result_storage_key`.

    Raises:
        ValueError: The template cannot be rendered, or renders outside the storage.
    """
    template = task.result_storage_key
    if template is None:
        return default_location(key)
    try:
        rendered = template.format(parameters=parameters, task_run=task_run, flow_run=flow_run)
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"result_storage_key {template!r} of task {task.name!r} cannot be rendered: "
            f"{type(exc).__name__}: {exc}; its fields are parameters, task_run and flow_run"
        ) from None
    try:
        return check_location(rendered)
    except ValueError as exc:
        raise ValueError(
            f"result_storage_key {template!r} of task {task.name!r} rendered to "
            f"{rendered!r}, which is refused: {exc}"
        ) from None


_default_lock_managers: dict[str, LockManager] = {}


def lock_manager(task: Task[Any, Any], store: Store) -> LockManager:
    """The policy's lock manager, or one backed by the task's index."""
    configured: LockManager | None = task.cache_policy.lock_manager
    if configured is not None:
        return configured
    manager = _default_lock_managers.get(store.index.path)
    if manager is None:
        manager = _default_lock_managers[store.index.path] = SQLiteLockManager(store.index.path)
    return manager
