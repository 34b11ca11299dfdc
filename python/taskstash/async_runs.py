"""One call of an `async def` task: the steps of `task_runs`, with long storage work off the loop.

A lookup, a save and a commit are file and database work. Done on the event loop, they stop
every other coroutine while they run: gathered calls with results of megabytes each would stall
the loop for as long as all their reads or writes take. So each step runs on the loop only when
it is known to be short, and otherwise in a worker thread (the loop's default executor, in a
copy of the caller's context, so the flow run, transaction and held locks are seen there):

- a lookup, on the loop if the memory layer answers it, or a local index and a local file of at
  most `INLINE_BYTES` (or no file at all); else in a thread;
- a save (serializing the result into a file set aside), on the loop if the value is known by
  its type and length to be at most `INLINE_BYTES`; else in a thread;
- a commit, on the loop if its files are local and at most `INLINE_BYTES` each, and its index
  a file (renames and one short write transaction); else (large files, uploads, a database
  server) in a thread.

Work in a thread cannot be stopped halfway. A call cancelled meanwhile waits for it, undoes
what it left (a file written aside is removed; a commit under way ends whole, committed or
rolled back), releases its lock and then is cancelled: no partial record, no lock held.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

from taskstash.context import holding_lock
from taskstash.states import Cached, Completed
from taskstash.store import LocalStorage, ResultStorage, Staged, Store
from taskstash.store.database import is_url
from taskstash.store.memory import MISSING
from taskstash.task_calls import DEFERRED, INDEX_ERRORS, Call, Destination, Lock
from taskstash.task_locks import held_or_found, lock_to_take, open_transaction, release_lock
from taskstash.task_lookups import look_again
from taskstash.task_reports import log_finished, warn_index_unusable
from taskstash.task_runs import failed, missed, start
from taskstash.task_saves import stage
from taskstash.tracebacks import without_our_frames
from taskstash.transactions import Transaction

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = ["INLINE_BYTES", "run", "take_lock"]

INLINE_BYTES: Final = 64 << 10
"""Results up to this size are read and written on the event loop.

Reading or writing one takes tens of microseconds (a thread hop costs as much); larger ones
are read and written in a worker thread.
"""

_MAX_ITEMS: Final = 256
"""The most items of containers `_known_small` looks at; a value with more is not known."""
_SCALARS: Final = frozenset({type(None), bool, float, complex})
_COLLECTIONS: Final = frozenset({list, tuple, set, frozenset})

T = TypeVar("T")


async def run(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, return_state: bool
) -> Any:
    """Carries out one call of an `async def` task."""
    try:
        return await _run(task, args, kwargs, return_state)
    except Exception as exc:
        # The awaiting caller's traceback goes from its await straight into the task's body.
        exc.with_traceback(without_our_frames(exc.__traceback__))
        raise


async def _run(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> Any:
    hit, call = start(task, args, kwargs, INLINE_BYTES)
    if hit:
        return Cached(call) if return_state else call
    if call.pending:
        value = await _look_up(call)
        if value is not MISSING:
            return Cached(value) if return_state else value
    lock: Lock | None = None
    if call.lock is not None:
        lock, value = await take_lock(call)
        if value is not MISSING:
            return Cached(value) if return_state else value
        if lock is None:
            call.lock = None  # no lock to take (see `take_lock`): run as READ_COMMITTED
    txn = open_transaction(call, lock)
    started = time.perf_counter()
    try:
        if lock is None:
            value = await task.fn(*call.args, **call.kwargs)
        else:
            with holding_lock(lock[1], call.task_run.name):
                value = await task.fn(*call.args, **call.kwargs)
    except Exception as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        return failed(call, exc, return_state)
    except BaseException as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return await _completed(call, txn, value, time.perf_counter() - started, return_state)


async def _look_up(call: Call) -> object:
    """The value of a pending call, looked up in a thread; MISSING readies the call to run."""
    call.pending = False
    try:
        value = await _off_loop(partial(look_again, call))
    except INDEX_ERRORS as exc:  # as in `start`: the call runs, uncached
        warn_index_unusable(call.task, exc)
        call.record = None
        return MISSING
    if value is MISSING:
        missed(call)
    return value


async def take_lock(call: Call) -> tuple[Lock | None, object]:
    """`task_locks.take_lock` for an async task: waits for the lock without blocking the loop.

    Raises:
        LockCycleError: A task run this call is made inside holds the key's lock.
    """
    assert call.lock is not None
    taking = lock_to_take(call)
    if taking is None:
        return None, MISSING
    key, holder = taking
    try:
        await call.lock.aacquire_lock(key, holder)
    except INDEX_ERRORS as exc:
        warn_index_unusable(call.task, exc)
        return None, MISSING
    try:
        # Whoever held the lock before may have stored the result meanwhile.
        value = look_again(call, INLINE_BYTES)
        if value is DEFERRED:
            value = await _off_loop(partial(look_again, call))
    except BaseException:
        release_lock(call, key, holder)
        raise
    return held_or_found(call, key, holder, value)


async def _completed(
    call: Call, txn: Transaction, value: Any, compute_seconds: float, return_state: bool
) -> Any:
    """`task_runs._completed` for an async task: saves and commits off the loop unless short."""
    task = call.task
    destination = call.record
    if destination is not None:
        run_id = str(call.flow_run.id) if call.flow_run is not None else None
        save = partial(stage, call, destination, value, compute_seconds, run_id)
        try:
            staged = save() if _known_small(value) else await _off_loop(save, _discard(destination))
        except BaseException as exc:  # cancelled: the transaction rolls back, its lock goes
            txn.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if staged is not None:
            txn.stage_record(destination.store, staged)
    # The value itself stays with the caller: a long transaction must not keep every result.
    txn.stage(None, on_rollback_hooks=task.on_rollback_hooks, on_commit_hooks=task.on_commit_hooks)
    await _leave(txn)
    state: Completed[Any] = Completed(value)
    log_finished(call.task_run, call.flow_run, state)
    return state if return_state else value


async def _leave(txn: Transaction) -> None:
    """Closes a call's transaction; its commit runs in a thread unless it is quick."""
    written = txn._written_on_exit()
    if all(
        _local(store, staged.storage) and staged.record.size_bytes <= INLINE_BYTES
        for store, staged in written
    ):
        txn.__exit__(None, None, None)
        return
    try:
        await _off_loop(partial(txn._settle, failed=False))
    finally:
        txn.__exit__(None, None, None)  # settled: this only leaves the block


def _local(store: Store, storage: ResultStorage) -> bool:
    """Whether `store`'s index is a file and `storage` a local directory."""
    return isinstance(storage, LocalStorage) and not is_url(store.url)


def _discard(destination: Destination) -> Callable[[Staged | None], None]:
    """What undoes a save of a cancelled call: its file set aside is removed."""

    def undo(staged: Staged | None) -> None:
        if staged is not None:
            destination.store.discard([staged])

    return undo


async def _off_loop(work: Callable[[], T], undo: Callable[[T], object] | None = None) -> T:
    """`work()` in a worker thread, in a copy of this context; the loop runs on meanwhile.

    If the caller is cancelled meanwhile, the work is waited for and its result undone with
    `undo`, then the cancellation goes on.
    """
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(None, context.run, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait((future,))
            except asyncio.CancelledError:
                continue  # cancelled again: the work still has to end first
        if not future.cancelled() and future.exception() is None and undo is not None:
            undo(future.result())
        raise


def _known_small(value: object) -> bool:
    """Whether `value` is known, by its type and length, to serialize to `INLINE_BYTES` or less.

    Scalars, strings, bytes, numpy arrays without objects, and lists, tuples, sets and dicts of
    those (up to `_MAX_ITEMS` items in all); any other object is not known, however small.
    """
    left = INLINE_BYTES
    items = _MAX_ITEMS
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        size = 16
        if type(item) is int:
            size += item.bit_length() // 8
        elif type(item) is str:
            size += 4 * len(item)  # up to 4 bytes a character in UTF-8
        elif type(item) is bytes or type(item) is bytearray:
            size += len(item)
        elif type(item) is dict:
            items -= len(item)
            if items >= 0:
                pending += item.keys()
                pending += item.values()
        elif isinstance(item, list | tuple | set | frozenset) and kind in _COLLECTIONS:
            items -= len(item)
            if items >= 0:
                pending += item
        elif kind.__module__ == "numpy" and not _has_objects(item):
            size += int(item.nbytes)  # type: ignore[attr-defined]
        elif kind not in _SCALARS:
            return False
        left -= size
        if left < 0 or items < 0:
            return False
    return True


def _has_objects(array: Any) -> bool:
    """Whether a numpy value holds Python objects (whose sizes its `nbytes` leaves out)."""
    dtype = getattr(array, "dtype", None)
    if dtype is None or not isinstance(getattr(array, "nbytes", None), int):
        return True
    return bool(dtype.hasobject)
