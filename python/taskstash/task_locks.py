"""The SERIALIZABLE lock of a task call, and the transaction it runs in."""

from __future__ import annotations

from functools import partial
from typing import Final

from taskstash.context import lock_holder
from taskstash.exceptions import LockCycleError
from taskstash.store.memory import MISSING
from taskstash.task_calls import INDEX_ERRORS, Call, Lock
from taskstash.task_lookups import look_again
from taskstash.task_reports import warn_index_unusable
from taskstash.task_saves import not_saved
from taskstash.transactions import IsolationLevel, Transaction, get_transaction

__all__ = [
    "held_or_found",
    "lock_of",
    "lock_to_take",
    "open_transaction",
    "release_lock",
    "take_lock",
]

_LEVELS: Final = {level.value: level for level in IsolationLevel}


def take_lock(call: Call) -> tuple[Lock | None, object]:
    """Takes a SERIALIZABLE call's lock.

    Returns `(lock, MISSING)`; `(None, value)` if the holder before stored the result
    meanwhile; `(None, MISSING)` if no lock is to be taken: a transaction the call is part of
    holds it already, or the index cannot take locks.

    Raises:
        LockCycleError: A task run this call is made inside holds the key's lock.
    """
    assert call.lock is not None
    taking = lock_to_take(call)
    if taking is None:
        return None, MISSING
    key, holder = taking
    try:
        call.lock.acquire_lock(key, holder)
    except INDEX_ERRORS as exc:
        warn_index_unusable(call.task, exc)
        return None, MISSING
    try:
        # Whoever held the lock before may have stored the result meanwhile.
        value = look_again(call)
    except BaseException:
        release_lock(call, key, holder)
        raise
    return held_or_found(call, key, holder, value)


def lock_to_take(call: Call) -> tuple[str, str] | None:
    """The key and holder of a SERIALIZABLE call's lock; None if its transaction holds it.

    Raises:
        LockCycleError: A task run this call is made inside holds the key's lock.
    """
    key, holder = lock_of(call)
    outer = get_transaction()
    if outer is not None and outer.locks(key):
        return None  # an earlier call of this transaction staged the key
    return key, holder


def held_or_found(call: Call, key: str, holder: str, value: object) -> tuple[Lock | None, object]:
    """After a lock was taken and the call looked up again: the lock, or the value found."""
    assert call.lock is not None
    if value is not MISSING:
        release_lock(call, key, holder)
        return None, value
    return (call.lock, key, holder), MISSING


def open_transaction(call: Call, lock: Lock | None) -> Transaction:
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
    txn.on_write_error = partial(not_saved, task)
    txn.__enter__()
    if lock is not None:
        txn.hold_lock(*lock)
    return txn


def release_lock(call: Call, key: str, holder: str) -> None:
    """Releases the lock of a SERIALIZABLE call that stores nothing under it."""
    assert call.lock is not None
    try:
        call.lock.release_lock(key, holder)
    except INDEX_ERRORS as exc:
        # The lock row stays behind; it frees itself when this process exits (or its lease
        # ends), so waiters are delayed, never blocked for good.
        warn_index_unusable(call.task, exc)


def lock_of(call: Call) -> tuple[str, str]:
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
