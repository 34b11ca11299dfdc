"""Futures: handles on submitted task runs, as `task.submit(...)` and `task.map(...)` return.

    from taskstash.futures import as_completed, wait

    future = add_one.submit(1)
    future.result()          # 2, once the run has ended (waits for it)
    future.state             # Pending() until then; Completed(), Cached(...) or Failed(...)

    futures = add_one.map([1, 2, 3])
    done, not_done = wait(futures, timeout=5)
    for future in as_completed(futures):
        print(future.result())

A future's run ends in a final state, as a plain call with `return_state=True` returns it. The
API is Prefect's (`prefect.futures`): `result(timeout=, raise_on_failure=)`, `wait(timeout=)`,
`state`, `add_done_callback`; `TaskFutureList` adds `wait()` and `result()` over a list.
"""

from __future__ import annotations

import abc
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from taskstash.states import Failed, Pending, State

__all__ = [
    "ConcurrentTaskFuture",
    "DoneAndNotDoneFutures",
    "TaskFuture",
    "TaskFutureList",
    "as_completed",
    "wait",
]

R = TypeVar("R")
W = TypeVar("W")


class TaskFuture(abc.ABC, Generic[R]):
    """The eventual end of one submitted task run.

    Args:
        task_name: The name of the submitted task (for messages).

    Attributes:
        task_run_id: A unique id of the submission.
        task_name: The submitted task's name.
    """

    def __init__(self, task_name: str) -> None:
        self.task_run_id = uuid.uuid4()
        self.task_name = task_name
        self._final_state: State[R] | None = None

    @abc.abstractmethod
    def _final(self, timeout: float | None) -> State[R] | None:
        """Waits up to `timeout` seconds (None: for ever) for the run's final state.

        Returns:
            The final state, or None if the run has not ended in time.
        """

    @abc.abstractmethod
    def _on_done(self, fn: Callable[[], None]) -> None:
        """Calls `fn()` once the run has ended (at once if it has), from any thread."""

    @property
    def state(self) -> State[R]:
        """The run's final state, or `Pending()` while it has not ended."""
        if self._final_state is None:
            self._final_state = self._final(0)
        return self._final_state if self._final_state is not None else Pending()

    def done(self) -> bool:
        """Whether the run has ended."""
        if self._final_state is None:
            self._final_state = self._final(0)
        return self._final_state is not None

    def wait(self, timeout: float | None = None) -> None:
        """Waits for the run to end, at most `timeout` seconds; returns either way."""
        if self._final_state is None:
            self._final_state = self._final(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The run's value, once it has ended.

        Args:
            timeout: The most seconds to wait (None: for ever).
            raise_on_failure: False returns the exception of a failed run instead of raising it.

        Raises:
            TimeoutError: The run has not ended within `timeout`.
            BaseException: The run's exception, if it failed (with `raise_on_failure`).
            UpstreamTaskError: The task did not run: a future it depends on did not complete.
        """
        self.wait(timeout)
        if self._final_state is None:
            raise TimeoutError(
                f"task run of {self.task_name!r} did not complete within {timeout} seconds"
            )
        return self._final_state.result(raise_on_failure=raise_on_failure)

    def add_done_callback(self, fn: Callable[[TaskFuture[R]], object]) -> None:
        """Calls `fn(self)` once the run has ended (at once if it has)."""
        self._on_done(lambda: _ignore(fn(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task_name!r}, state={self.state!r})"


class ConcurrentTaskFuture(TaskFuture[R]):
    """A future of a run in a thread pool: it wraps a `concurrent.futures.Future` of its state.

    Args:
        task_name: The submitted task's name.
        wrapped_future: Resolves to the run's final state.
    """

    def __init__(self, task_name: str, wrapped_future: Any) -> None:
        super().__init__(task_name)
        self.wrapped_future = wrapped_future
        """The `concurrent.futures.Future` of the run's state."""

    def _final(self, timeout: float | None) -> State[R] | None:
        wrapped = self.wrapped_future
        if timeout is not None and timeout <= 0 and not wrapped.done():
            return None
        try:
            state: State[R] = wrapped.result(timeout=timeout)
        except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError since 3.11
            return None
        except Exception as exc:  # the runner failed before the task could: a failed run
            return Failed(exc)
        return state

    def _on_done(self, fn: Callable[[], None]) -> None:
        self.wrapped_future.add_done_callback(lambda _: fn())


def _ignore(_: object) -> None:
    """Drops a callback's return value."""


class TaskFutureList(list[W]):
    """The futures of `task.map(...)`, in the order of the mapped arguments."""

    def wait(self, timeout: float | None = None) -> None:
        """Waits for every run to end, at most `timeout` seconds in all; returns either way."""
        wait(cast("list[TaskFuture[Any]]", self), timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        """The runs' values, in order.

        Args:
            timeout: The most seconds to wait for all of them (None: for ever).
            raise_on_failure: False puts a failed run's exception in its place.

        Raises:
            TimeoutError: Not every run has ended within `timeout`.
            BaseException: The first failed run's exception (as runs end, with
                `raise_on_failure`).
        """
        values: dict[int, Any] = {}
        futures = cast("list[TaskFuture[Any]]", self)
        for future in as_completed(futures, timeout=timeout):
            values[id(future)] = future.result(raise_on_failure=raise_on_failure)
        return [values[id(future)] for future in self]


@dataclass(frozen=True)
class DoneAndNotDoneFutures:
    """What `wait` returns: the futures whose runs ended, and the others.

    Unpacks as `done, not_done = wait(futures)`, as `concurrent.futures.wait`'s result does.
    """

    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]

    def __iter__(self) -> Iterator[set[TaskFuture[Any]]]:
        return iter((self.done, self.not_done))


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Waits for the runs of `futures` to end, at most `timeout` seconds in all.

    Args:
        futures: The futures (duplicates count once).
        timeout: The most seconds to wait (None: until all have ended).

    Returns:
        The futures that ended and those that did not, as two sets.
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must not be negative, got {timeout}")
    pending = set(futures)
    done: set[TaskFuture[Any]] = set()
    try:
        for future in as_completed(pending, timeout=timeout):
            done.add(future)
    except TimeoutError:
        pass
    return DoneAndNotDoneFutures(done, pending - done)


def as_completed(
    futures: Iterable[TaskFuture[R]], timeout: float | None = None
) -> Iterator[TaskFuture[R]]:
    """Yields each of `futures` as its run ends (those that have ended first).

    Args:
        futures: The futures (duplicates are yielded once).
        timeout: The most seconds to wait in all (None: for ever).

    Raises:
        TimeoutError: Some runs have not ended within `timeout`; the message says how many.
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must not be negative, got {timeout}")
    unique = list(dict.fromkeys(futures))
    deadline = None if timeout is None else time.monotonic() + timeout
    ended: list[TaskFuture[R]] = []
    signal = threading.Condition()

    def finished(future: TaskFuture[R]) -> None:
        with signal:
            ended.append(future)
            signal.notify()

    for future in unique:
        future._on_done(lambda future=future: finished(future))  # type: ignore[misc]
    remaining = len(unique)
    while remaining:
        with signal:
            while not ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{remaining} (of {len(unique)}) futures unfinished")
                signal.wait(left)
            batch, ended[:] = list(ended), []
        for future in batch:
            remaining -= 1
            future.wait()  # ended: records its final state without blocking
            yield future
