"""Looking a task call up: the memory layer, the index and its file, or adoption from storage."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from taskstash.log import logger
from taskstash.store import (
    Payload,
    ResultStorage,
    Serializer,
    Store,
    load_value,
    resolve_serializer,
)
from taskstash.store.adoption import StorageUnreachableError
from taskstash.store.base import WouldBlock
from taskstash.store.memory import MISSING
from taskstash.task_calls import DEFERRED, INDEX_ERRORS, Call
from taskstash.task_reports import log_hit, warn_index_unusable, warn_once, warn_storage_unreachable

if TYPE_CHECKING:
    from taskstash.context import FlowRun, TaskRun
    from taskstash.store.reads import Fetched
    from taskstash.tasks import Task

__all__ = ["adopt", "find", "look_again"]

# Inside a flow every task run is reported, as a flow's log; outside one a task is just a cached
# function call, reported only at DEBUG (see `taskstash.task_reports`).
_INFO, _DEBUG = logging.INFO, logging.DEBUG


def look_again(call: Call, read_limit: int | None = None) -> object:
    """The stored value for a keyed call (again, or first if pending), MISSING, or DEFERRED."""
    destination = call.record
    if destination is None or call.refresh:
        return MISSING
    task, store, storage = call.task, destination.store, destination.storage
    serializer, key, location = destination.serializer, destination.key, destination.location
    task_run, flow_run = call.task_run, call.flow_run
    value = find(task, store, storage, serializer, key, task_run, flow_run, read_limit)
    if value is not MISSING:
        return value
    return adopt(task, store, storage, serializer, key, location, task_run, flow_run, read_limit)


def find(
    task: Task[Any, Any],
    store: Store,
    storage: ResultStorage,
    serializer: Serializer,
    key: str,
    task_run: TaskRun,
    flow_run: FlowRun | None,
    read_limit: int | None = None,
) -> object:
    """The cached value of `key` (memory layer, then index and file), MISSING or DEFERRED."""
    now = time.time()
    try:
        fetched = store.fetch(
            key, now, storage, remember=task.cache_result_in_memory, read_limit=read_limit
        )
    except StorageUnreachableError as exc:
        warn_storage_unreachable(task, exc.url, exc)
        return MISSING
    except WouldBlock:
        return DEFERRED
    if fetched is None:
        return MISSING
    return _hit(task, store, serializer, key, now, fetched, task_run, flow_run)


def adopt(
    task: Task[Any, Any],
    store: Store,
    storage: ResultStorage,
    serializer: Serializer,
    key: str,
    location: str,
    task_run: TaskRun,
    flow_run: FlowRun | None,
    read_limit: int | None = None,
) -> object:
    """The value of `key`'s record in the storage though not the index; MISSING or DEFERRED."""
    now = time.time()
    try:
        fetched = store.adopt(
            key,
            now,
            storage,
            location,
            remember=task.cache_result_in_memory,
            read_limit=read_limit,
        )
    except WouldBlock:
        return DEFERRED
    except StorageUnreachableError as exc:
        warn_storage_unreachable(task, exc.url, exc)
        return MISSING
    except INDEX_ERRORS as exc:
        warn_index_unusable(task, exc)
        return MISSING
    if fetched is None:
        return MISSING
    return _hit(task, store, serializer, key, now, fetched, task_run, flow_run)


def _hit(
    task: Task[Any, Any],
    store: Store,
    serializer: Serializer,
    key: str,
    now: float,
    fetched: Fetched,
    task_run: TaskRun,
    flow_run: FlowRun | None,
) -> object:
    """The value of a record found, or MISSING if it cannot be deserialized."""
    value = _decode(task, serializer, key, fetched[0], fetched[1])
    if value is MISSING:
        return MISSING
    store.note_hit(key, now)
    # A flow's hit is reported by the flow, as a flow run's end.
    if task.kind == "task" and logger.isEnabledFor(_INFO if flow_run is not None else _DEBUG):
        log_hit(task_run, flow_run)
    return value


def _decode(
    task: Task[Any, Any], serializer: Serializer, key: str, payload: Payload, serializer_name: str
) -> object:
    """The stored value, or MISSING if it cannot be deserialized (warned once per task)."""
    try:
        if serializer_name != serializer.name:
            serializer = resolve_serializer(serializer_name)
        elif type(payload) is memoryview:
            return serializer.loads(payload)  # the hit path's common case, one call shallower
        return load_value(serializer, payload)  # a large result's file is closed by it
    except Exception as exc:
        if not isinstance(payload, memoryview):
            payload.close()  # no serializer to hand it to
        warn_once(
            task,
            f"load:{key}",
            f"the cached result with key {key} could not be deserialized "
            f"({type(exc).__name__}: {exc}); running the task again",
        )
        return MISSING
