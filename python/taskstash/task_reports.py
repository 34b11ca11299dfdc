"""What a task run tells its user: log lines in the seed's format, and warnings said once.

Inside a flow every task run is reported at INFO (failures at ERROR), as a flow's log; outside
one a task is just a cached function call, reported at DEBUG. A call that cannot be cached for a
reason the user should know about says why, with the remedy, once per task and cause.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from taskstash.exceptions import CacheCorruptedError, HashingError, IndexUnusableError
from taskstash.log import logger
from taskstash.states import Failed, State

if TYPE_CHECKING:
    from taskstash.context import FlowRun, TaskRun
    from taskstash.tasks import Task

__all__ = [
    "log_finished",
    "log_hit",
    "warn_index_unusable",
    "warn_key_fn_failed",
    "warn_once",
    "warn_unhashable",
]


def log_hit(task_run: TaskRun, flow_run: FlowRun | None) -> None:
    """`Task run 'add_one-d85' - Finished in state Cached(type=COMPLETED)`."""
    level = logging.INFO if flow_run is not None else logging.DEBUG
    logger.log(level, "Task run %r - Finished in state Cached(type=COMPLETED)", task_run.name)


def log_finished(task_run: TaskRun, flow_run: FlowRun | None, state: State[Any]) -> None:
    """`Task run 'add_one-d85' - Finished in state Completed()` (or `Failed(...)`)."""
    level = logging.INFO if flow_run is not None else logging.DEBUG
    if isinstance(state, Failed) and flow_run is not None:
        level = logging.ERROR
    if logger.isEnabledFor(level):
        logger.log(level, "Task run %r - Finished in state %r", task_run.name, state)


def warn_once(task: Task[Any, Any], cause: str, message: str) -> None:
    """Logs `message` as a warning about `task`, unless `cause` was already warned about."""
    if cause in task.warned:
        return
    task.warned.add(cause)
    kind = task.kind
    logger.warning("%s %r: %s. (Said once per %s.)", kind.capitalize(), task.name, message, kind)


def warn_index_unusable(task: Task[Any, Any], exc: BaseException) -> None:
    """The index cannot be used (damaged, newer, unreachable): the calls run uncached."""
    if isinstance(exc, CacheCorruptedError | IndexUnusableError):
        problem = str(exc)  # names the file and what to do
    else:
        problem = f"the cache index cannot be used ({type(exc).__name__}: {exc})"
    warn_once(task, "index", f"{problem}; until then its calls run uncached")


def warn_storage_unreachable(task: Task[Any, Any], url: str, exc: BaseException) -> None:
    """The task's storage cannot be asked for a record: the call runs (and is saved if it can)."""
    warn_once(
        task,
        "storage",
        f"its result storage {url} cannot be reached ({exc}); calls run without the records "
        "stored there until it answers again",
    )


def warn_unhashable(task: Task[Any, Any], parameters: dict[str, Any], error: HashingError) -> None:
    """An argument (or another value of the key) has no canonical form: the call runs uncached."""
    path = getattr(error, "path", "")
    argument = path.split("[", 1)[0].split("{", 1)[0]
    if argument in parameters:
        remedy = (
            f"exclude it with cache_policy=INPUTS - {argument!r}, give the {task.kind} a "
            "cache_key_fn, or use cache_policy=NO_CACHE"
        )
        what = f"argument {argument!r} cannot be hashed ({error})"
    else:
        remedy = f"give the {task.kind} a cache_key_fn, or use cache_policy=NO_CACHE"
        what = f"a value in its cache key cannot be hashed ({error})"
    warn_once(task, f"hash:{argument}", f"{what}, so this call runs uncached; {remedy}")


def warn_key_fn_failed(task: Task[Any, Any], key_fn: object, error: Exception) -> None:
    """The task's `cache_key_fn` raised: the call runs uncached."""
    module = getattr(key_fn, "__module__", None)
    qualname = getattr(key_fn, "__qualname__", None) or repr(key_fn)
    name = f"{module}.{qualname}" if module else qualname
    warn_once(
        task,
        "cache_key_fn",
        f"its cache_key_fn {name} raised {type(error).__name__}: {error}, so this call runs "
        "uncached",
    )
