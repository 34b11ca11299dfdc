"""One call of a task: bind the arguments, compute the key, look it up, run, store.

A hit costs one dict lookup (memory layer) or one index row and one result file; nothing is
written to the index per hit (hit counters are batched). A call that cannot be cached for a
reason the user should know about (an unhashable argument, a result that cannot be serialized,
storage that cannot be written) still returns its value, and says why once per task.

This module is the order of the steps; the steps are `taskstash.task_lookups` (memory layer,
index, adoption), `taskstash.task_locks` (a SERIALIZABLE call's lock and its transaction) and
`taskstash.task_saves` (staging the result for its transaction). `taskstash.async_runs` runs
the same steps for `async def` tasks, with long storage work off the event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskstash import settings
from taskstash.cache_policies import CacheKeyFnPolicy, ResultStorageKeyPolicy, component_pieces
from taskstash.context import (
    FlowRun,
    TaskRun,
    TaskRunContext,
    current_flow_run,
    holding_lock,
)
from taskstash.destinations import inherit_results, lock_manager, render_location, resolve
from taskstash.exceptions import (
    HashingError,
)
from taskstash.hashing import hash_objects
from taskstash.hit_plans import plan_hits
from taskstash.states import Cached, Completed, Failed
from taskstash.store.memory import MISSING
from taskstash.task_calls import DEFERRED, INDEX_ERRORS, Call, Destination, Lock
from taskstash.task_locks import open_transaction, take_lock
from taskstash.task_lookups import adopt, find
from taskstash.task_reports import (
    log_finished,
    warn_index_unusable,
    warn_key_fn_failed,
    warn_unhashable,
)
from taskstash.task_saves import store_result
from taskstash.tracebacks import without_our_frames
from taskstash.transactions import Transaction, get_transaction

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = ["failed", "key_of", "missed", "run", "start", "why_uncached"]


def run(task: Task[Any, Any], call: Call, return_state: bool) -> Any:
    """Runs a sync task's body for a call `start` did not answer from the cache."""
    lock: Lock | None = None
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
        return failed(call, exc, return_state)
    except BaseException as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return _completed(call, txn, value, time.perf_counter() - started, return_state)


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
    `look_again` elsewhere and, if that misses, readied with `missed`.
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
        return False, Call(task, args, kwargs, parameters, flow_run, task_run, None)
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
            value = find(task, store, storage, serializer, key, task_run, flow_run, read_limit)
            if value is not MISSING and value is not DEFERRED:
                return True, value
    except INDEX_ERRORS as exc:  # a damaged or unreachable index must not fail the call
        warn_index_unusable(task, exc)
        return False, Call(task, args, kwargs, parameters, flow_run, task_run, None)
    call = Call(task, args, kwargs, parameters, flow_run, task_run, None, refresh)
    location = render_location(task, key, components)
    call.record = Destination(key, dict(components), store, storage, location, serializer)
    if value is MISSING and not refresh:
        value = adopt(
            task, store, storage, serializer, key, location, task_run, flow_run, read_limit
        )
        if value is not MISSING and value is not DEFERRED:
            return True, value
    if value is DEFERRED:
        call.pending = True
        return False, call
    return False, missed(call)


def missed(call: Call) -> Call:
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


def _completed(
    call: Call, txn: Transaction, value: Any, compute_seconds: float, return_state: bool
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


def failed(call: Call, exc: Exception, return_state: bool) -> Failed[Any]:
    """Reports a call that raised: returns its state, or raises its exception again."""
    state: Failed[Any] = Failed(exc)
    log_finished(call.task_run, call.flow_run, state)
    if return_state:
        return state
    # From the task's body on: the frames above it are taskstash's, and would show twice.
    raise exc.with_traceback(without_our_frames(exc.__traceback__))
