"""What is running now: the current flow run, and the task run a cache key is computed for."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from taskstash.names import task_run_name

if TYPE_CHECKING:
    import uuid

__all__ = [
    "FlowRun",
    "TaskRun",
    "TaskRunContext",
    "current_flow_run",
    "holding_lock",
    "inside_flow_run",
    "lock_holder",
]


@dataclass(frozen=True)
class FlowRun:
    """One call of a flow.

    Attributes:
        flow_name: The flow's name.
        name: The run's generated name.
        parameters: The flow's arguments by parameter name.
        id: A unique id.
        is_async: Whether the flow is an `async def` function (its body can await).
        persist_result: The flow's `persist_result`, for the tasks that leave theirs unset.
        result_storage: The flow's `result_storage` (as given), for the tasks that set none.
        result_serializer: The flow's serializer, for the tasks that set none.
    """

    flow_name: str
    name: str
    parameters: dict[str, Any]
    id: uuid.UUID = field(default_factory=lambda: _new_id())
    is_async: bool = False
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None


def _new_id() -> uuid.UUID:
    import uuid  # with the first run, not with taskstash (uuid loads `platform`)

    return uuid.uuid4()


class TaskRun:
    """One call of a task.

    Its id and generated name are made only when something asks for them (logging, RUN_ID
    outside a flow), which keeps them off the cache-hit path.
    """

    def __init__(self, task_name: str, flow_run_id: uuid.UUID | None) -> None:
        self.task_name = task_name
        self.flow_run_id = flow_run_id

    @cached_property
    def id(self) -> uuid.UUID:
        """A unique id."""
        return _new_id()

    @cached_property
    def name(self) -> str:
        """`add_one-d85`: the task's name and three hex digits."""
        return task_run_name(self.task_name)

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, id={self.id}, flow_run_id={self.flow_run_id})"


class TaskRunContext:
    """What a cache policy or `cache_key_fn` sees of the call being keyed.

    Attributes:
        task: The `Task` being called.
        task_run: This call: its id, generated name and flow run id.
        parameters: The call's arguments bound to the function's parameters, defaults applied.
        flow_run: The enclosing flow run, or None outside any flow.
    """

    __slots__ = ("flow_run", "parameters", "task", "task_run")

    def __init__(
        self, task: Any, task_run: TaskRun, parameters: dict[str, Any], flow_run: FlowRun | None
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.flow_run = flow_run

    def __repr__(self) -> str:
        return f"TaskRunContext(task={self.task!r}, task_run={self.task_run!r})"


_flow_run: ContextVar[FlowRun | None] = ContextVar("taskstash_flow_run", default=None)


@dataclass
class _InProgress:
    """A flow run in progress in this process: the run it started in, and its blocks open."""

    run: FlowRun
    parent: uuid.UUID | None
    blocks: int


# Every flow run in progress in this process, by id. A thread does not inherit its starter's
# context variables, so a thread a flow run started finds its run here instead.
_in_progress: dict[uuid.UUID, _InProgress] = {}
_in_progress_lock = threading.Lock()


def current_flow_run() -> FlowRun | None:
    """The flow run the caller is inside, if any.

    That is the run current in the caller's context; in a context without one (a thread that
    the flow's code started), the run in progress in this process, if that is unambiguous: one
    run, or runs nested in one another (then the innermost).
    """
    run = _flow_run.get()
    if run is None and _in_progress:
        return _only_run_in_progress()
    return run


def _only_run_in_progress() -> FlowRun | None:
    with _in_progress_lock:
        entries = list(_in_progress.values())
    return _unambiguous(entries)


def _unambiguous(entries: list[_InProgress]) -> FlowRun | None:
    """The one run in progress, or the innermost of nested ones; None if side by side."""
    ids = {entry.run.id for entry in entries}
    parents = [entry.parent for entry in entries if entry.parent in ids]
    if len(entries) - len(parents) != 1 or len(set(parents)) != len(parents):
        return None  # runs side by side: no telling which one started the caller
    innermost = [entry.run for entry in entries if entry.run.id not in parents]
    return innermost[0] if innermost else None


@contextmanager
def inside_flow_run(run: FlowRun) -> Iterator[FlowRun]:
    """Makes `run` the current flow run for the duration of the block.

    Until the block ends, threads with no flow run in their context find `run` through
    `current_flow_run` while it is the only run in progress (or the innermost of nested runs).
    """
    # The run of this context only: a run started in a thread of its own is not nested in
    # whatever else is in progress.
    parent = _flow_run.get()
    with _in_progress_lock:
        entry = _in_progress.get(run.id)
        if entry is None:
            parent_id = None if parent is None or parent.id == run.id else parent.id
            _in_progress[run.id] = _InProgress(run, parent_id, 1)
        else:
            entry.blocks += 1  # the same run, entered again (calls of it on a Dask worker)
        _hand_down()
    token = _flow_run.set(run)
    try:
        yield run
    finally:
        _flow_run.reset(token)
        with _in_progress_lock:
            entry = _in_progress[run.id]
            entry.blocks -= 1
            if not entry.blocks:
                del _in_progress[run.id]
            _hand_down()


# The run in progress, handed down to the processes this one starts. A forked child inherits
# `_in_progress` itself; a spawned one (multiprocessing's "spawn", a `subprocess` running Python)
# starts afresh and reads its environment instead. JSON, never pickle: whatever the environment
# holds is not trusted to run code.
_HANDED_DOWN: Final = "TASKSTASH_FLOW_RUN"


def _hand_down() -> None:
    """Publishes the run in progress (called with `_in_progress_lock` held)."""
    text = _encoded(_unambiguous(list(_in_progress.values())))
    if text is None:
        os.environ.pop(_HANDED_DOWN, None)
    else:
        os.environ[_HANDED_DOWN] = text


def _encoded(run: FlowRun | None) -> str | None:
    """`run` as JSON, or None if it is none or JSON would not give back exactly its fields."""
    if run is None:
        return None
    data = {f.name: getattr(run, f.name) for f in fields(run)}
    data["id"] = str(run.id)
    try:
        text = json.dumps(data, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == data else None  # tuples, non-str keys: not exact


def _adopt_handed_down() -> None:
    """Joins the run the process that started this one was in, if it handed one down."""
    text = os.environ.get(_HANDED_DOWN)
    if not text:
        return
    try:
        data = json.loads(text)
        import uuid

        run = FlowRun(**{**data, "id": uuid.UUID(data["id"])})
    except (ValueError, TypeError, KeyError):
        return  # not a run this taskstash wrote: ignored
    _in_progress[run.id] = _InProgress(run, None, 1)  # this process runs inside it throughout


# The SERIALIZABLE locks held by the task runs this code runs inside (key -> task run name). A
# nested call of a held key would wait for its own caller: that must fail, never hang.
_held_locks: ContextVar[Mapping[str, str]] = ContextVar(
    "taskstash_held_locks", default=MappingProxyType({})
)


def lock_holder(key: str) -> str | None:
    """The name of the enclosing task run that holds the lock on `key`, if one does."""
    return _held_locks.get().get(key)


@contextmanager
def holding_lock(key: str, task_run_name: str) -> Iterator[None]:
    """Records, for the calls made inside the block, that `task_run_name` holds `key`'s lock."""
    token = _held_locks.set({**_held_locks.get(), key: task_run_name})
    try:
        yield
    finally:
        _held_locks.reset(token)


_adopt_handed_down()
