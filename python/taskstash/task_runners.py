"""Task runners: where `task.submit(...)` and `task.map(...)` run their calls.

    from taskstash import flow, task
    from taskstash.task_runners import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def pipeline(paths):
        return load.map(paths).result()

A runner is a context manager: started for each flow run (a fresh copy of the flow's, see
`duplicate`), it runs the submitted calls and, when the flow's body ends, waits for all of them.
`ThreadPoolTaskRunner` (the default) runs them in threads of this process;
`taskstash.dask.DaskTaskRunner` on the workers of a Dask cluster. Outside any flow, `submit` and
`map` use a thread-pool runner of the process. A runner can also be used alone:

    with ThreadPoolTaskRunner() as runner:
        future = runner.submit(add_one, {"x": 1})

Every submitted call is carried out as a plain call of the task is (see
`taskstash.submission`): its cache key, lookup, record, states and log lines are the same.
"""

from __future__ import annotations

import abc
import contextvars
import inspect
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskstash.annotations import BaseAnnotation, quote, unmapped
from taskstash.exceptions import MappingLengthMismatch, MappingMissingIterable
from taskstash.futures import ConcurrentTaskFuture, TaskFuture, TaskFutureList
from taskstash.states import State
from taskstash.submission import Upstream, gather_upstream, run_submitted

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from taskstash.tasks import Task

__all__ = ["TaskRunner", "ThreadPoolTaskRunner", "current_task_runner", "running_with"]

F = TypeVar("F", bound=TaskFuture[Any])


class TaskRunner(abc.ABC, Generic[F]):
    """Runs submitted task calls and hands out futures of their final states.

    The contract, which every runner keeps (and one suite of tests checks for each):

    - `submit` returns at once; the call runs once the futures among its arguments (also inside
      lists, tuples, sets and dicts) and in `wait_for` have ended, with their values in their
      places. If one of them did not complete, the call does not run and ends `NotReady`.
    - The call is carried out as a plain call of the task: the same cache key wherever it runs,
      the record looked up and stored where it runs, the same states.
    - Leaving the `with` block waits for every call submitted; their futures stay usable.
    - A runner pickles as its configuration (a copy that is not started).
    """

    def __init__(self) -> None:
        self._started = False

    @property
    def name(self) -> str:
        """The runner's kind: `threadpool`, `dask`."""
        return type(self).__name__.lower().replace("taskrunner", "")

    @abc.abstractmethod
    def duplicate(self) -> TaskRunner[F]:
        """A new runner with the same configuration, not started (one per flow run)."""

    @abc.abstractmethod
    def _submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> F:
        """Submits one call to a started runner."""

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> F:
        """Runs `task` with `parameters` (by parameter name) once `wait_for` have ended.

        Raises:
            RuntimeError: The runner is not started.
        """
        if not self._started:
            raise RuntimeError("Task runner is not started")
        return self._submit(task, parameters, wait_for)

    def map(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> TaskFutureList[F]:
        """Submits one call per item of the iterable parameters; the others go to every call.

        A future or state among the parameters is resolved first, to map over its value;
        `unmapped(value)` and `quote(value)` are passed whole; strings and bytes are never
        mapped over.

        Raises:
            MappingMissingIterable: No parameter is iterable.
            MappingLengthMismatch: The iterables' lengths differ.
        """
        if not self._started:
            raise RuntimeError("Task runner is not started")
        iterables: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in _exploded(task, parameters).items():
            if isinstance(value, TaskFuture | State):
                value = value.result()
            if isinstance(value, unmapped):
                static[name] = value.unwrap()
            elif isinstance(value, BaseAnnotation) and not isinstance(value, quote):
                # allow_failure around an iterable: mapped, each item keeps the annotation
                inner = value.unwrap()
                if _iterable(inner):
                    iterables[name] = [value.rewrap(item) for item in inner]
                else:
                    static[name] = value
            elif _iterable(value):
                iterables[name] = list(value)
            else:
                static[name] = value
        if not iterables:
            raise MappingMissingIterable(
                "task.map() needs at least one iterable argument to map over; got "
                f"{parameters!r}. Pass a list, or call the task (or .submit it) instead"
            )
        lengths = {name: len(items) for name, items in iterables.items()}
        if len(set(lengths.values())) > 1:
            raise MappingLengthMismatch(
                f"task.map() needs iterables of one length; got lengths {lengths}. Wrap the "
                "arguments meant for every call in unmapped(...)"
            )
        count = next(iter(lengths.values()))
        wait_list = list(wait_for) if wait_for is not None else None
        futures: TaskFutureList[F] = TaskFutureList()
        for index in range(count):
            call = {name: items[index] for name, items in iterables.items()}
            call.update(static)
            futures.append(self.submit(task, _collapsed(task, call), wait_list))
        return futures

    def __enter__(self) -> TaskRunner[F]:
        if self._started:
            raise RuntimeError("This task runner is already started")
        self._started = True
        return self

    def __exit__(self, *_: object) -> None:
        self._started = False

    @abc.abstractmethod
    def __reduce__(self) -> tuple[Any, ...]:
        """What travels (to another process, with a pickled flow): the configuration."""


class ThreadPoolTaskRunner(TaskRunner[ConcurrentTaskFuture[Any]]):
    """Runs submitted calls in threads of this process: the default runner of a flow.

    Each call runs in a copy of the submitter's context (`contextvars`): it belongs to the
    same flow run, transaction and task run as a plain call made there would.

    Args:
        max_workers: The most threads at once. The default is unbounded (threads are made
            only when none is idle), as Prefect's is, so that a task that submits tasks and
            waits for them never waits for a thread its own callers hold.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = sys.maxsize if max_workers is None else max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._running: set[Any] = set()
        """The wrapped futures of calls not ended yet (the set is changed only under the GIL's
        atomic set operations, from the submitting and the finishing threads)."""

    def duplicate(self) -> ThreadPoolTaskRunner:
        """A runner with the same `max_workers`, not started."""
        return type(self)(max_workers=self.max_workers)

    def __enter__(self) -> ThreadPoolTaskRunner:
        from concurrent.futures import ThreadPoolExecutor  # only once tasks are submitted

        super().__enter__()
        self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="taskstash")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            from concurrent.futures import wait

            # Every submitted call ends, recorded, including those that running calls submit.
            while self._running:
                wait(list(self._running))
            self._executor.shutdown(wait=True)
            self._executor = None
        super().__exit__(*exc_info)

    def _submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> ConcurrentTaskFuture[Any]:
        assert self._executor is not None
        gathered, waits, upstream = gather_upstream(parameters, wait_for)
        context = contextvars.copy_context()
        wrapped = self._executor.submit(
            context.run, _run_in_thread, task, gathered, waits, upstream
        )
        self._running.add(wrapped)
        wrapped.add_done_callback(self._running.discard)
        return ConcurrentTaskFuture(task.name, wrapped)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.max_workers,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ThreadPoolTaskRunner) and other.max_workers == self.max_workers

    __hash__ = object.__hash__


def _run_in_thread(
    task: Task[Any, Any], parameters: dict[str, Any], waits: Any, upstream: list[Upstream]
) -> State[Any]:
    states = [item if isinstance(item, State) else _final(item) for item in upstream]
    names = [item.task_name if isinstance(item, TaskFuture) else "?" for item in upstream]
    return run_submitted(task, parameters, waits, states, names)


def _final(future: TaskFuture[Any]) -> State[Any]:
    future.wait()
    return future.state


_runner: contextvars.ContextVar[TaskRunner[Any] | None] = contextvars.ContextVar(
    "taskstash_task_runner", default=None
)
_process_runner: ThreadPoolTaskRunner | None = None
_process_runner_lock = threading.Lock()


def current_task_runner() -> TaskRunner[Any]:
    """The runner of the current flow run; outside one, a thread-pool runner of the process."""
    runner = _runner.get()
    if runner is not None:
        return runner
    global _process_runner
    with _process_runner_lock:
        if _process_runner is None:
            # Its threads end with the process (concurrent.futures joins them at exit).
            _process_runner = ThreadPoolTaskRunner().__enter__()
        return _process_runner


@contextmanager
def running_with(runner: TaskRunner[Any]) -> Iterator[TaskRunner[Any]]:
    """Starts `runner`, makes it the current one for the block, and waits for it at the end."""
    with runner:
        token = _runner.set(runner)
        try:
            yield runner
        finally:
            _runner.reset(token)


def _iterable(value: object) -> bool:
    if isinstance(value, str | bytes | bytearray | dict):
        return False
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def _exploded(task: Task[Any, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` with those of a `**kwargs` parameter as parameters of their own."""
    for name, parameter in task.signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and name in parameters:
            exploded = {key: value for key, value in parameters.items() if key != name}
            exploded.update(parameters[name])
            return exploded
    return parameters


def _collapsed(task: Task[Any, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `_exploded`: names that are no parameter go back into `**kwargs`."""
    names = task.signature.parameters
    var_keyword = next(
        (n for n, p in names.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None
    )
    if var_keyword is None:
        return parameters
    collapsed = {key: value for key, value in parameters.items() if key in names}
    collapsed[var_keyword] = {key: v for key, v in parameters.items() if key not in names}
    return collapsed
