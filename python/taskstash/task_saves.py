"""Saving a task call's result: staged for its transaction, written when it commits."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

from taskstash import settings
from taskstash.exceptions import CacheCorruptedError, ResultTooLargeError, SerializationError
from taskstash.rendering import render_parameters
from taskstash.store import Staged
from taskstash.store.adoption import StorageUnreachableError
from taskstash.task_calls import Call, Destination
from taskstash.task_reports import warn_once, warn_storage_unreachable
from taskstash.transactions import Transaction

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = ["not_saved", "stage", "store_result"]


def store_result(
    call: Call, txn: Transaction, value: Any, compute_seconds: float, run_id: str | None
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
        staged = stage(call, destination, value, compute_seconds, run_id)
        if staged is not None:
            txn.stage_record(destination.store, staged)
    # The value itself stays with the caller: a long transaction must not keep every result.
    txn.stage(None, on_rollback_hooks=task.on_rollback_hooks, on_commit_hooks=task.on_commit_hooks)
    txn.__exit__(None, None, None)


def stage(
    call: Call, destination: Destination, value: Any, compute_seconds: float, run_id: str | None
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
        not_saved(task, exc)
    return None


def not_saved(task: Task[Any, Any], exc: Exception) -> None:
    """Warns (once per task) that a call's result could not be stored: it is still returned."""
    if isinstance(exc, StorageUnreachableError):
        warn_storage_unreachable(task, exc.url, exc)  # the same one warning as a lookup's
        return
    warn_once(
        task,
        "save",
        f"its result could not be stored ({type(exc).__name__}: {exc}), so it is returned "
        "but not cached",
    )
