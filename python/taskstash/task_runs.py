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
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from taskstash import settings
from taskstash.cache_policies import CacheKeyFnPolicy, ResultStorageKeyPolicy, component_pieces
from taskstash.context import (
    FlowRun,
    TaskRun,
    TaskRunContext,
    current_flow_run,
    holding_lock,
    lock_holder,
)
from taskstash.destinations import inherit_results, lock_manager, render_location, resolve
from taskstash.exceptions import (
    CacheCorruptedError,
    HashingError,
    IndexUnusableError,
    LockCycleError,
    ResultTooLargeError,
    SerializationError,
)
from taskstash.hashing import hash_objects
from taskstash.hit_plans import plan_hits
from taskstash.locking import LockManager
from taskstash.log import logger
from taskstash.rendering import render_parameters
from taskstash.states import Cached, Completed, Failed
from taskstash.store import (
    Payload,
    ResultStorage,
    Serializer,
    Staged,
    Store,
    load_value,
    resolve_serializer,
)
from taskstash.store.adoption import StorageUnreachableError
from taskstash.store.base import WouldBlock
from taskstash.store.memory import MISSING
from taskstash.store.reads import Fetched
from taskstash.task_reports import (
    log_finished,
    log_hit,
    warn_index_unusable,
    warn_key_fn_failed,
    warn_once,
    warn_storage_unreachable,
    warn_unhashable,
)
from taskstash.tracebacks import without_our_frames
from taskstash.transactions import IsolationLevel, Transaction, get_transaction

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = [
    "key_of",
    "open_transaction",
    "release_lock",
    "run",
    "start",
    "store_result",
    "take_lock",
    "why_uncached",
]

# Inside a flow every task run is reported, as a flow's log; outside one a task is just a cached
# function call, reported only at DEBUG (see `taskstash.task_reports`).
_INFO, _DEBUG = logging.INFO, logging.DEBUG

# What a broken or unreachable index raises; none of them may fail the user's call.
_INDEX_ERRORS = (IndexUnusableError, CacheCorruptedError, sqlite3.Error, OSError)

DEFERRED: Final = object()
"""What a lookup with a `read_limit` returns instead of reading past it."""


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
    refresh: bool = False
    lock: LockManager | None = None
    """The lock manager of a SERIALIZABLE call: take the key's lock before running."""
    pending: bool = False
    """Not looked up yet: its lookup would have read past the `read_limit` given to `start`."""


@dataclass(slots=True)
class _Destination:
    """Where a call's result is stored: its key, record components and storage."""

    key: str
    components: dict[str, str]
    store: Store
    storage: ResultStorage
    location: str
    serializer: Serializer


def run(task: Task[Any, Any], call: _Call, return_state: bool) -> Any:
    """Runs a sync task's body for a call `start` did not answer from the cache."""
    lock: _Lock | None = None
    if call.lock is not None:
        lock, value = take_lock(call)
        if value is not MISSING:
            return Cached(value) if return_state else value
        if lock is None:
            call.lock = None  # no lock to take (see `take_lock`): run as READ_COMMITTED
    txn = open_transaction(call, lock)
    started = time.perf_counter()
    try:
        if lock is None:
            value = task.fn(*call.args, **call.kwargs)
        else:
            with holding_lock(lock[1], call.task_run.name):
                value = task.fn(*call.args, **call.kwargs)
    except Exception as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        return _failed(call, exc, return_state)
    except BaseException as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return _completed(call, txn, value, time.perf_counter() - started, return_state)


_LEVELS: Final = {level.value: level for level in IsolationLevel}

_Lock = tuple[LockManager, str, str]
"""A SERIALIZABLE call's lock: its manager, the key and the holder."""


def take_lock(call: _Call) -> tuple[_Lock | None, object]:
    """Takes a SERIALIZABLE call's lock.

    Returns `(lock, MISSING)`; `(None, value)` if the holder before stored the result
    meanwhile; `(None, MISSING)` if no lock is to be taken: a transaction the call is part of
    holds it already, or the index cannot take locks.

    Raises:
        LockCycleError: A task run this call is made inside holds the key's lock.
    """
    assert call.lock is not None
    key, holder = _lock_of(call)
    outer = get_transaction()
    if outer is not None and outer.locks(key):
        return None, MISSING  # an earlier call of this transaction staged the key
    try:
        call.lock.acquire_lock(key, holder)
    except _INDEX_ERRORS as exc:
        warn_index_unusable(call.task, exc)
        return None, MISSING
    return _after_locking(call, key, holder)


def _after_locking(call: _Call, key: str, holder: str) -> tuple[_Lock | None, object]:
    assert call.lock is not None
    try:
        # Whoever held the lock before may have stored the result meanwhile.
        value = _look_again(call)
    except BaseException:
        release_lock(call, key, holder)
        raise
    if value is not MISSING:
        release_lock(call, key, holder)
        return None, value
    return (call.lock, key, holder), MISSING


def open_transaction(call: _Call, lock: _Lock | None) -> Transaction:
    """The call's own transaction, opened (nested in the current one, if any).

    It holds the call's SERIALIZABLE lock, if any, until it commits or rolls back.
    """
    task = call.task
    record = call.record
    level = task.cache_policy.isolation_level
    txn = Transaction(
        key=record.key if record is not None else None,
        isolation_level=None if level is None else _LEVELS[level],
    )
    txn.on_write_error = partial(_not_saved, task)
    txn.__enter__()
    if lock is not None:
        txn.hold_lock(*lock)
    return txn


def release_lock(call: _Call, key: str, holder: str) -> None:
    """Releases the lock of a SERIALIZABLE call that stores nothing under it."""
    assert call.lock is not None
    try:
        call.lock.release_lock(key, holder)
    except _INDEX_ERRORS as exc:
        # The lock row stays behind; it frees itself when this process exits (or its lease
        # ends), so waiters are delayed, never blocked for good.
        warn_index_unusable(call.task, exc)


def _lock_of(call: _Call) -> tuple[str, str]:
    """The key to lock and the holder's name (unique to this task run).

    Raises:
        LockCycleError: A task run this call is made inside holds the key's lock.
    """
    assert call.record is not None  # a call with a lock has a key
    key = call.record.key
    outer = lock_holder(key)
    if outer is not None:
        raise LockCycleError(
            f"task {call.task.name!r} is called inside task run {outer!r}, which holds the "
            f"SERIALIZABLE lock on the same cache key {key}, so it would wait for its own "
            "caller forever. Nested calls must have different keys: if they come from one "
            "cache_key_fn, make it include the task (context.task.name)"
        )
    return key, f"task-run:{call.task_run.id}"


def _look_again(call: _Call, read_limit: int | None = None) -> object:
    """The stored value for a keyed call (again, or first if pending), MISSING, or DEFERRED."""
    destination = call.record
    if destination is None or call.refresh:
        return MISSING
    task, store, storage = call.task, destination.store, destination.storage
    serializer, key, location = destination.serializer, destination.key, destination.location
    task_run, flow_run = call.task_run, call.flow_run
    value = _find(task, store, storage, serializer, key, task_run, flow_run, read_limit)
    if value is not MISSING:
        return value
    return _adopt(task, store, storage, serializer, key, location, task_run, flow_run, read_limit)


def start(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    read_limit: int | None = None,
) -> tuple[bool, Any]:
    """Binds the call and answers it from the cache if possible.

    Returns `(True, value)` for a hit, `(False, call)` for a call to run. This is the hot path:
    it creates no object a hit does not need.

    With a `read_limit` (an async call's, on its event loop), a lookup that would read more
    (see `Store.fetch`) is not made: the call comes back `pending`, to be looked up with
    `_look_again` elsewhere and, if that misses, readied with `_missed`.
    """
    flow_run = current_flow_run()
    parameters = task.bind(args, kwargs)
    task_run = TaskRun(task.name, flow_run.id if flow_run is not None else None)
    current = settings.current()
    keyed = None
    # Outside a flow, RUN_ID makes every call unique: such a record could never be hit again.
    if (flow_run is not None or not task.keyed_by_run) and (
        # A task that persists, with no switch set, is decided by three attribute reads.
        (
            task.persist_result is True
            and not current.tasks_disable_caching
            and not current.tasks_default_no_cache
        )
        or why_uncached(task, flow_run, current) is None
    ):
        keyed = _key(task, parameters, flow_run, task_run)
    if keyed is None:
        return False, _Call(task, args, kwargs, parameters, flow_run, task_run, None)
    key, components = keyed
    refresh = task.refresh_cache
    if refresh is None:
        refresh = current.tasks_refresh_cache
    try:
        resolved = task.resolved
        if resolved is None or resolved[0] is not current:
            resolved = resolve(task, current)
        store, storage = resolved[1], resolved[2]
        serializer = task.serializer
        if flow_run is not None and (
            flow_run.result_storage is not None or flow_run.result_serializer is not None
        ):
            storage, serializer = inherit_results(task, flow_run, storage, serializer, current)
        if flow_run is None and not refresh:
            plan = task.hit_plan
            if plan is None or plan.made_under is not current:
                task.hit_plan = plan_hits(task, current, store, serializer, components)
        value = MISSING
        if not refresh:
            value = _find(task, store, storage, serializer, key, task_run, flow_run, read_limit)
            if value is not MISSING and value is not DEFERRED:
                return True, value
    except _INDEX_ERRORS as exc:  # a damaged or unreachable index must not fail the call
        warn_index_unusable(task, exc)
        return False, _Call(task, args, kwargs, parameters, flow_run, task_run, None)
    call = _Call(task, args, kwargs, parameters, flow_run, task_run, None, refresh)
    location = render_location(task, key, components)
    call.record = _Destination(key, dict(components), store, storage, location, serializer)
    if value is MISSING and not refresh:
        value = _adopt(
            task, store, storage, serializer, key, location, task_run, flow_run, read_limit
        )
        if value is not MISSING and value is not DEFERRED:
            return True, value
    if value is DEFERRED:
        call.pending = True
        return False, call
    return False, _missed(call)


def _missed(call: _Call) -> _Call:
    """Readies a keyed call that missed to run: its record's pieces, its lock manager."""
    task, destination = call.task, call.record
    assert destination is not None
    # Each record keeps the keys of its components' pieces (each argument, each piece of the
    # task's code): a miss then names what changed (`explain`). Only on a miss.
    destination.components.update(component_pieces(task.cache_policy, task, call.parameters))
    isolation: str | None = task.cache_policy.isolation_level
    if isolation is None:
        # As in Prefect, a task whose policy names no level takes its transaction's.
        outer = get_transaction()
        isolation = outer.isolation_level if outer is not None else None
    if isolation == "SERIALIZABLE":
        call.lock = lock_manager(task, destination.store)
    return call


def why_uncached(
    task: Task[Any, Any], flow_run: FlowRun | None, current: settings.Settings
) -> str | None:
    """Why the task's calls are not cached now (under these settings, in this flow run), or None.

    A task's own `persist_result` decides, else the flow run's, else
    `TASKSTASH_RESULTS_PERSIST_BY_DEFAULT`; `TASKSTASH_TASKS_DISABLE_CACHING` turns every task
    off, `TASKSTASH_TASKS_DEFAULT_NO_CACHE` those given no policy or key function.
    """
    if current.tasks_disable_caching:
        return "TASKSTASH_TASKS_DISABLE_CACHING is set"
    persist = task.persist_result
    if persist is None:
        persist = flow_run.persist_result if flow_run is not None else None
        if persist is False:
            return "its flow has persist_result=False"
        if persist is None and not current.results_persist_by_default:
            return (
                "it sets no cache policy, key function, result option or persist_result, and "
                "neither its flow nor TASKSTASH_RESULTS_PERSIST_BY_DEFAULT turns caching on"
            )
    elif not persist:
        return "it has persist_result=False"
    if current.tasks_default_no_cache and not task.keys_chosen:
        return "TASKSTASH_TASKS_DEFAULT_NO_CACHE is set and it has no policy or key function"
    return None


def _find(
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


def _adopt(
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
    except _INDEX_ERRORS as exc:
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


def _key(
    task: Task[Any, Any],
    parameters: dict[str, Any],
    flow_run: FlowRun | None,
    task_run: TaskRun,
) -> tuple[str, list[tuple[str, str]]] | None:
    """The call's key and named components, or None if the call is not to be cached."""
    try:
        return key_of(task, TaskRunContext(task, task_run, parameters, flow_run))
    except HashingError as error:
        warn_unhashable(task, parameters, error)
        return None
    except Exception as error:
        key_fn = getattr(task.cache_policy, "cache_key_fn", None)
        if key_fn is None:
            raise
        warn_key_fn_failed(task, key_fn, error)
        return None


def key_of(
    task: Task[Any, Any], context: TaskRunContext
) -> tuple[str, list[tuple[str, str]]] | None:
    """The key of a call and its policy's named components; None if no component yields one.

    Raises:
        HashingError: An argument (or flow parameter) has no canonical form.
    """
    policy = task.cache_policy
    flow_run = context.flow_run
    flow_parameters = flow_run.parameters if flow_run is not None else None
    components = policy.components(context, context.parameters, flow_parameters)
    if not components:
        return None
    if isinstance(policy, CacheKeyFnPolicy):
        # The key function's key is the user's own, shared by every task that returns it.
        return hash_objects("cache_key_fn", components[0][1]), components
    if isinstance(policy, ResultStorageKeyPolicy):
        # So is a rendered result_storage_key: the name the user gave the record.
        return hash_objects("result_storage_key", components[0][1]), components
    return hash_objects("task", task.identity, components), components


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


def _completed(
    call: _Call, txn: Transaction, value: Any, compute_seconds: float, return_state: bool
) -> Any:
    """Stores the result of a call that ran (see `store_result`) and reports it.

    Returns:
        The call's state or its value.
    """
    run_id = str(call.flow_run.id) if call.flow_run is not None else None
    store_result(call, txn, value, compute_seconds, run_id)
    state: Completed[Any] = Completed(value)
    log_finished(call.task_run, call.flow_run, state)
    return state if return_state else value


def store_result(
    call: _Call, txn: Transaction, value: Any, compute_seconds: float, run_id: str | None
) -> None:
    """Stages the result of a call that ran and closes its transaction.

    The record is written when the transaction commits: at once, or with the transaction the
    call is part of.

    Args:
        call: The call.
        txn: Its transaction (`open_transaction`).
        value: The result.
        compute_seconds: How long computing it took.
        run_id: The flow run that computed it, for its record.
    """
    task = call.task
    destination = call.record
    if destination is not None:
        staged = _stage(call, destination, value, compute_seconds, run_id)
        if staged is not None:
            txn.stage_record(destination.store, staged)
    # The value itself stays with the caller: a long transaction must not keep every result.
    txn.stage(None, on_rollback_hooks=task.on_rollback_hooks, on_commit_hooks=task.on_commit_hooks)
    txn.__exit__(None, None, None)


def _stage(
    call: _Call, destination: _Destination, value: Any, compute_seconds: float, run_id: str | None
) -> Staged | None:
    """The call's record, written aside for its transaction; None if it cannot be (warned)."""
    task = call.task
    current = settings.current()
    now = time.time()
    expires_at = None
    if task.cache_expiration is not None:
        expires_at = now + task.cache_expiration.total_seconds()
    try:
        return destination.store.stage_value(
            destination.key,
            value,
            destination.serializer,
            destination.storage,
            destination.location,
            task_name=task.name,
            task_qualname=task.qualified_name,
            created_at=now,
            expires_at=expires_at,
            compute_seconds=compute_seconds,
            run_id=run_id,
            components=destination.components,
            parameters=render_parameters(call.parameters) if current.record_parameters else None,
            kind=task.kind,
            remember=task.cache_result_in_memory,
        )
    except SerializationError as exc:
        warn_once(
            task,
            "serialize",
            f"its result ({type(value).__module__}.{type(value).__qualname__}) cannot be "
            f"serialized with {destination.serializer.name!r} ({type(exc).__name__}: {exc}), so "
            "it is returned but not cached; choose another result_serializer",
        )
    except ResultTooLargeError as exc:
        warn_once(
            task,
            "too large",
            f"its result is larger than TASKSTASH_MAX_SIZE ({exc.limit} bytes), so it is "
            "returned but not cached; raise the limit to cache it",
        )
    except (OSError, sqlite3.Error, CacheCorruptedError) as exc:
        _not_saved(task, exc)
    return None


def _not_saved(task: Task[Any, Any], exc: Exception) -> None:
    if isinstance(exc, StorageUnreachableError):
        warn_storage_unreachable(task, exc.url, exc)  # the same one warning as a lookup's
        return
    warn_once(
        task,
        "save",
        f"its result could not be stored ({type(exc).__name__}: {exc}), so it is returned "
        "but not cached",
    )


def _failed(call: _Call, exc: Exception, return_state: bool) -> Failed[Any]:
    """Reports a call that raised: returns its state, or raises its exception again."""
    state: Failed[Any] = Failed(exc)
    log_finished(call.task_run, call.flow_run, state)
    if return_state:
        return state
    # From the task's body on: the frames above it are taskstash's, and would show twice.
    raise exc.with_traceback(without_our_frames(exc.__traceback__))
