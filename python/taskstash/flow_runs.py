"""One call of a cached flow: key it, look it up, run the flow on a miss, store its value.

The call goes through the machinery of a task call (`taskstash.task_runs`) with the flow's
`cache_task`: the key from its policy, identity and code closure; the lookup in the memory
layer, the index and shared storage; SERIALIZABLE locks; a transaction for its record; the
warnings of a call that cannot be cached. Two things differ from a task's call:

- the body (the flow run, with its task runner and the tasks it calls) does not run inside a
  transaction of its own: the records of the tasks it calls are committed as they would be
  were the flow not cached, so a flow that fails halfway keeps them for its next run; only the
  flow's own record waits for the body to end, and is committed with the transaction the call
  is made in, if any;
- the flow reports the call, as a flow run: a hit is `Finished in state Cached(type=COMPLETED)`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from taskstash import task_locks, task_runs, task_saves
from taskstash.context import holding_lock
from taskstash.states import Cached, Completed, State
from taskstash.store.memory import MISSING

if TYPE_CHECKING:
    from taskstash.task_calls import Call, Lock
    from taskstash.tasks import Task

__all__ = ["run", "run_async"]


def run(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    body: Callable[[], Any],
    run_id: str,
) -> State[Any]:
    """One call of a cached flow.

    Args:
        task: The flow's `cache_task`.
        args: The call's positional arguments.
        kwargs: Its keyword arguments.
        body: Runs the flow run and reports its end; returns its value, or raises.
        run_id: The flow run's id, recorded as the run that computed the value.

    Returns:
        `Cached(value)` for a hit, `Completed(value)` for a run.

    Raises:
        Exception: What the body raised; nothing is stored.
    """
    hit, call = task_runs.start(task, args, kwargs)
    if hit:
        return Cached(call)
    lock: Lock | None = None
    if call.lock is not None:
        lock, value = task_locks.take_lock(call)
        if value is not MISSING:
            return Cached(value)
        if lock is None:
            call.lock = None  # no lock to take (see `take_lock`)
    started = time.perf_counter()
    try:
        with _holding(lock, call):
            value = body()
    except BaseException:
        _release(call, lock)
        raise
    _store(call, lock, value, time.perf_counter() - started, run_id)
    return Completed(value)


async def run_async(
    task: Task[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    body: Callable[[], Awaitable[Any]],
    run_id: str,
) -> State[Any]:
    """`run` for an `async def` flow: its body is awaited, and so is a SERIALIZABLE lock."""
    hit, call = task_runs.start(task, args, kwargs)
    if hit:
        return Cached(call)
    lock: Lock | None = None
    if call.lock is not None:
        from taskstash import async_runs  # it imports asyncio: with the first async flow

        lock, value = await async_runs.take_lock(call)
        if value is not MISSING:
            return Cached(value)
        if lock is None:
            call.lock = None
    started = time.perf_counter()
    try:
        with _holding(lock, call):
            value = await body()
    except BaseException:
        _release(call, lock)
        raise
    _store(call, lock, value, time.perf_counter() - started, run_id)
    return Completed(value)


@contextlib.contextmanager
def _holding(lock: Lock | None, call: Call) -> Iterator[None]:
    """Marks the lock as this call's for the calls made in the body.

    A nested call of the same key then raises `LockCycleError` instead of waiting for its own
    caller.
    """
    if lock is None:
        yield
        return
    with holding_lock(lock[1], call.task_run.name):
        yield


def _release(call: Call, lock: Lock | None) -> None:
    if lock is not None:
        task_locks.release_lock(call, lock[1], lock[2])


def _store(call: Call, lock: Lock | None, value: Any, seconds: float, run_id: str) -> None:
    """Stages the flow's record in a transaction of its own, which also holds its lock."""
    txn = task_locks.open_transaction(call, lock)
    task_saves.store_result(call, txn, value, seconds, run_id)
