"""What one task call carries from its lookup to its run and its save.

`taskstash.task_runs` makes a `Call` for every call the cache did not answer; the locks
(`taskstash.task_locks`), lookups (`taskstash.task_lookups`) and saves (`taskstash.task_saves`)
of sync and async calls (`taskstash.async_runs`) all work on it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from taskstash.exceptions import CacheCorruptedError, IndexUnusableError

if TYPE_CHECKING:
    from taskstash.context import FlowRun, TaskRun
    from taskstash.locking import LockManager
    from taskstash.store import ResultStorage, Serializer, Store
    from taskstash.tasks import Task

__all__ = ["DEFERRED", "INDEX_ERRORS", "Call", "Destination", "Lock"]

# What a broken or unreachable index raises; none of them may fail the user's call.
INDEX_ERRORS = (IndexUnusableError, CacheCorruptedError, sqlite3.Error, OSError)

DEFERRED: Final = object()
"""What a lookup with a `read_limit` returns instead of reading past it."""


@dataclass(slots=True)
class Call:
    """A call whose key is known and which was not answered from the cache."""

    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parameters: dict[str, Any]
    flow_run: FlowRun | None
    task_run: TaskRun
    record: Destination | None
    refresh: bool = False
    lock: LockManager | None = None
    """The lock manager of a SERIALIZABLE call: take the key's lock before running."""
    pending: bool = False
    """Not looked up yet: its lookup would have read past the `read_limit` given to `start`."""


@dataclass(slots=True)
class Destination:
    """Where a call's result is stored: its key, record components and storage."""

    key: str
    components: dict[str, str]
    store: Store
    storage: ResultStorage
    location: str
    serializer: Serializer


Lock = tuple["LockManager", str, str]
"""A SERIALIZABLE call's lock: its manager, the key and the holder."""
