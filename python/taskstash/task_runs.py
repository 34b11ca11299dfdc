"""One call of a task: bind the arguments, compute the key, look it up, run, store.

A hit costs one dict lookup (memory layer) or one index row and one result file; nothing is
written to the index per hit (hit counters are batched). A call that cannot be cached for a
reason the user should know about (an unhashable argument, a result that cannot be serialized,
storage that cannot be written) still returns its value, and says why once per task.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskstash import settings
from taskstash.cache_policies import CacheKeyFnPolicy
from taskstash.context import FlowRun, TaskRun, TaskRunContext, current_flow_run
from taskstash.exceptions import HashingError
from taskstash.hashing import hash_bytes, hash_objects
from taskstash.log import logger
from taskstash.states import Cached, Completed, Failed, State
from taskstash.store import (
    ResultHeader,
    ResultStorage,
    Store,
    check_location,
    default_location,
    open_store,
    resolve_serializer,
    resolve_storage,
)
from taskstash.store.memory import MISSING, MemoryLayer

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = ["memory_layer", "run", "run_async", "start"]

# Inside a flow every task run is reported, as a flow's log; outside one a task is just a cached
# function call, reported only at DEBUG.
_INFO, _DEBUG, _ERROR = logging.INFO, logging.DEBUG, logging.ERROR

memory_layer = MemoryLayer()
"""Results kept in this process for tasks with `cache_result_in_memory=True`."""


@dataclass(slots=True)
class _Call:
    """A call whose key is known and which was not answered from the cache."""

    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parameters: dict[str, Any]
    flow_run: FlowRun | None
    task_run: TaskRun
    record: _Destination | None


@dataclass(slots=True)
class _Destination:
    """Where a call's result is stored: its key, record components and storage."""

    key: str
    components: dict[str, str]
    store: Store
    storage: ResultStorage
    location: str


def run(task: Task[Any, Any], call: _Call, return_state: bool) -> Any:
    """Runs a sync task's body for a call `start` did not answer from the cache."""
    started = time.perf_counter()
    try:
        value = task.fn(*call.args, **call.kwargs)
    except Exception as exc:
        return _failed(call, exc, return_state)
    return _completed(call, value, time.perf_counter() - started, return_state)


async def run_async(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, return_state: bool
) -> Any:
    """Carries out one call of an `async def` task."""
    hit, outcome = start(task, args, kwargs)
    if hit:
        return Cached(outcome) if return_state else outcome
    started = time.perf_counter()
    try:
        value = await task.fn(*args, **kwargs)
    except Exception as exc:
        return _failed(outcome, exc, return_state)
    return _completed(outcome, value, time.perf_counter() - started, return_state)


def start(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """Binds the call and answers it from the cache if possible.

    Returns `(True, value)` for a hit, `(False, call)` for a call to run. This is the hot path:
    it creates no object a hit does not need.
    """
    flow_run = current_flow_run()
    parameters = task.bind(args, kwargs)
    task_run = TaskRun(task.name, flow_run.id if flow_run is not None else None)
    keyed = None
    # Outside a flow, RUN_ID makes every call unique: such a record could never be hit again.
    if flow_run is not None or not task.keyed_by_run:
        keyed = _key(task, parameters, flow_run, task_run)
    if keyed is None:
        return False, _Call(task, args, kwargs, parameters, flow_run, task_run, None)
    key, components = keyed
    now = time.time()
    current = settings.current()
    refresh = task.refresh_cache
    if refresh is None:
        refresh = current.tasks_refresh_cache
    resolved = task.resolved
    if resolved is None or resolved[0] is not current:
        resolved = _resolve(task, current)
    store, storage = resolved[1], resolved[2]
    if not refresh:
        memory_key = (store, key)
        value = memory_layer.get(memory_key, now) if task.cache_result_in_memory else MISSING
        if value is MISSING:
            fetched = store.fetch(key, now, storage)
            if fetched is not None:
                payload, serializer_name, expires_at = fetched
                value = _decode(task, key, payload, serializer_name)
                if value is not MISSING and task.cache_result_in_memory:
                    memory_layer.put(memory_key, value, expires_at)
        if value is not MISSING:
            store.note_hit(key, now)
            if logger.isEnabledFor(_INFO if flow_run is not None else _DEBUG):
                _log_hit(task_run, flow_run)
            return True, value
    call = _Call(task, args, kwargs, parameters, flow_run, task_run, None)
    call.record = _Destination(key, dict(components), store, storage, _location(call, key))
    return False, call


def _resolve(
    task: Task[Any, Any], current: settings.Settings
) -> tuple[object, Store, ResultStorage]:
    """The task's index and storage under `current` settings, kept on the task.

    `settings.reload()` makes a new settings object, so a changed environment is picked up.
    """
    store = open_store(_index_path(task))
    storage = resolve_storage(task.result_storage, current.local_storage_path)
    task.resolved = (current, store, storage)
    return task.resolved


def _key(
    task: Task[Any, Any],
    parameters: dict[str, Any],
    flow_run: FlowRun | None,
    task_run: TaskRun,
) -> tuple[str, list[tuple[str, str]]] | None:
    """The call's key and named components, or None if the call is not to be cached."""
    policy = task.cache_policy
    context = TaskRunContext(task, task_run, parameters, flow_run)
    flow_parameters = flow_run.parameters if flow_run is not None else None
    try:
        components = policy.components(context, parameters, flow_parameters)
    except HashingError as error:
        _warn_unhashable(task, parameters, error)
        return None
    if not components:
        return None
    if isinstance(policy, CacheKeyFnPolicy):
        # The key function's key is the user's own, shared by every task that returns it.
        return hash_objects("cache_key_fn", components[0][1]), components
    return hash_objects("task", task.qualified_name, components), components


def _decode(task: Task[Any, Any], key: str, payload: memoryview, serializer_name: str) -> object:
    """The stored value, or MISSING if it cannot be deserialized (warned once per task)."""
    try:
        serializer = (
            task.serializer
            if serializer_name == task.serializer.name
            else resolve_serializer(serializer_name)
        )
        return serializer.loads(payload)
    except Exception as exc:
        _warn_once(
            task,
            f"load:{key}",
            f"the cached result with key {key} could not be deserialized "
            f"({type(exc).__name__}: {exc}); running the task again",
        )
        return MISSING


def _location(call: _Call, key: str) -> str:
    template = call.task.result_storage_key
    if template is None:
        return default_location(key)
    try:
        rendered = template.format(
            parameters=call.parameters, task_run=call.task_run, flow_run=call.flow_run
        )
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"result_storage_key {template!r} of task {call.task.name!r} cannot be rendered: "
            f"{type(exc).__name__}: {exc}; its fields are parameters, task_run and flow_run"
        ) from None
    try:
        return check_location(rendered)
    except ValueError as exc:
        raise ValueError(
            f"result_storage_key {template!r} of task {call.task.name!r} rendered to "
            f"{rendered!r}, which is refused: {exc}"
        ) from None


def _completed(call: _Call, value: Any, compute_seconds: float, return_state: bool) -> Any:
    """Stores the result of a call that ran; returns its state or its value."""
    destination = call.record
    if destination is not None:
        _store(call, destination, value, compute_seconds)
    state: Completed[Any] = Completed(value)
    _log_finished(call, state)
    return state if return_state else value


def _store(call: _Call, destination: _Destination, value: Any, compute_seconds: float) -> None:
    task = call.task
    try:
        payload = task.serializer.dumps(value)
    except Exception as exc:
        _warn_once(
            task,
            "serialize",
            f"its result ({type(value).__module__}.{type(value).__qualname__}) cannot be "
            f"serialized with {task.serializer.name!r} ({type(exc).__name__}: {exc}), so it is "
            "returned but not cached; choose another result_serializer",
        )
        return
    now = time.time()
    expires_at = None
    if task.cache_expiration is not None:
        expires_at = now + task.cache_expiration.total_seconds()
    header = ResultHeader(
        key=destination.key,
        task_name=task.name,
        task_qualname=task.qualified_name,
        serializer=task.serializer.name,
        checksum=hash_bytes(payload),
        payload_size=len(payload),
        created_at=now,
        expires_at=expires_at,
        compute_seconds=compute_seconds,
        run_id=str(call.flow_run.id) if call.flow_run is not None else None,
        components=destination.components,
    )
    try:
        destination.store.save(header, payload, destination.storage, destination.location)
    except (OSError, sqlite3.Error) as exc:
        _warn_once(
            task,
            "save",
            f"its result could not be stored ({type(exc).__name__}: {exc}), so it is returned "
            "but not cached",
        )
        return
    if task.cache_result_in_memory:
        memory_layer.put((destination.store, destination.key), value, expires_at)


def _log_hit(task_run: TaskRun, flow_run: FlowRun | None) -> None:
    level = _INFO if flow_run is not None else _DEBUG
    logger.log(level, "Task run %r - Finished in state Cached(type=COMPLETED)", task_run.name)


def _failed(call: _Call, exc: Exception, return_state: bool) -> Failed[Any]:
    """Reports a call that raised: returns its state, or raises its exception again."""
    state: Failed[Any] = Failed(exc)
    _log_finished(call, state)
    if return_state:
        return state
    raise exc


def _log_finished(call: _Call, state: State[Any]) -> None:
    level = _INFO if call.flow_run is not None else _DEBUG
    if isinstance(state, Failed) and call.flow_run is not None:
        level = _ERROR
    if logger.isEnabledFor(level):
        logger.log(level, "Task run %r - Finished in state %r", call.task_run.name, state)


def _warn_once(task: Task[Any, Any], cause: str, message: str) -> None:
    if cause in task.warned:
        return
    task.warned.add(cause)
    logger.warning("Task %r: %s. (Said once per task.)", task.name, message)


def _warn_unhashable(task: Task[Any, Any], parameters: dict[str, Any], error: HashingError) -> None:
    path = getattr(error, "path", "")
    argument = path.split("[", 1)[0].split("{", 1)[0]
    if argument in parameters:
        remedy = (
            f"exclude it with cache_policy=INPUTS - {argument!r}, give the task a cache_key_fn, "
            "or use cache_policy=NO_CACHE"
        )
        what = f"argument {argument!r} cannot be hashed ({error})"
    else:
        remedy = "give the task a cache_key_fn, or use cache_policy=NO_CACHE"
        what = f"a value in its cache key cannot be hashed ({error})"
    _warn_once(task, f"hash:{argument}", f"{what}, so this call runs uncached; {remedy}")


_index_paths: dict[object, Path] = {}


def _index_path(task: Task[Any, Any]) -> Path:
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
