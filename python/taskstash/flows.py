"""`@flow`: a function whose call is a flow run that the tasks called inside belong to.

A flow run has a uuid, a generated `adjective-animal` name and its bound arguments; RUN_ID and
FLOW_PARAMETERS key tasks by them. Its beginning and end are logged:

    16:28:51.230 | INFO | Flow run 'outgoing-cicada' - Beginning flow run 'outgoing-cicada' ...
    16:28:51.311 | INFO | Flow run 'outgoing-cicada' - Finished in state Completed()

Each run starts a copy of the flow's task runner (`task_runner=`, a `ThreadPoolTaskRunner` by
default) for the calls its body submits, and waits for them before it ends. A flow pickles as a
task does: by reference when its module holds it under its name, else by value.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from taskstash.context import FlowRun, inside_flow_run
from taskstash.log import logger
from taskstash.names import flow_run_name
from taskstash.states import Completed, Failed, State
from taskstash.store.serializers import Serializer, resolve_serializer

if TYPE_CHECKING:
    from taskstash.task_runners import TaskRunner

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Flow(Generic[P, R]):
    """A function whose calls are flow runs. Call it like the function."""

    __name__: str
    __qualname__: str

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        persist_result: bool | None = None,
        result_storage: str | os.PathLike[str] | Any | None = None,
        result_serializer: str | Serializer | None = None,
        task_runner: TaskRunner[Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        if persist_result is not None and not isinstance(persist_result, bool):
            raise TypeError(f"persist_result must be True, False or None, not {persist_result!r}")
        self.fn = fn
        functools.update_wrapper(self, fn)
        self.name = name or getattr(fn, "__name__", "flow").replace("_", "-")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.persist_result = persist_result
        """For the tasks called in its runs that leave theirs unset (None: they decide)."""
        self.result_storage = result_storage
        """For the tasks called in its runs that set none (None: theirs, or the default)."""
        self.result_serializer = result_serializer
        """For the tasks called in its runs that set none (None: theirs, or cloudpickle)."""
        self._serializer = (
            None if result_serializer is None else resolve_serializer(result_serializer)
        )
        # The runners' module is imported when a flow uses one, not with taskstash.
        from taskstash.task_runners import TaskRunner, ThreadPoolTaskRunner

        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            raise TypeError(f"task_runner must be a TaskRunner, not {task_runner!r}")
        self.task_runner: TaskRunner[Any] = task_runner or ThreadPoolTaskRunner()
        """Runs what the body submits; each run starts a `duplicate()` of it."""

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(  # type: ignore[valid-type]
        self: Flow[P, Coroutine[Any, Any, T]],
        *args: P.args,
        return_state: Literal[True],
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, State[T]]: ...
    @overload
    def __call__(  # type: ignore[valid-type]
        self, *args: P.args, return_state: Literal[True], **kwargs: P.kwargs
    ) -> State[R]: ...
    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, **kwargs: Any
    ) -> Any:
        """Runs the flow. With `return_state=True`, returns its `State` instead of its value."""
        if self.is_async:
            return self._run_async(args, kwargs, return_state)
        run = self._begin(args, kwargs)
        with inside_flow_run(run):
            try:
                with _running(self.task_runner):
                    value = self.fn(*args, **kwargs)
            except Exception as exc:
                state = self._end(run, Failed(exc))
                if return_state:
                    return state
                raise
        completed = self._end(run, Completed(value))
        return completed if return_state else value

    async def _run_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
    ) -> Any:
        run = self._begin(args, kwargs)
        with inside_flow_run(run):
            try:
                with _running(self.task_runner):
                    value = await self.fn(*args, **kwargs)  # type: ignore[misc]
            except Exception as exc:
                state = self._end(run, Failed(exc))
                if return_state:
                    return state
                raise
        completed = self._end(run, Completed(value))
        return completed if return_state else value

    def _begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FlowRun:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        run = FlowRun(
            flow_name=self.name,
            name=flow_run_name(),
            parameters=dict(bound.arguments),
            is_async=self.is_async,
            persist_result=self.persist_result,
            result_storage=self.result_storage,
            result_serializer=self._serializer,
        )
        logger.info(
            "Flow run %r - Beginning flow run %r for flow %r", run.name, run.name, self.name
        )
        return run

    def _end(self, run: FlowRun, state: State[Any]) -> State[Any]:
        level = 40 if state.is_failed() else 20
        logger.log(level, "Flow run %r - Finished in state %r", run.name, state)
        return state

    def __reduce__(self) -> tuple[Any, ...]:
        from taskstash.tasks import _import_task, _importable

        if _importable(self):  # type: ignore[arg-type]
            return (_import_task, (self.__module__, self.__qualname__))
        return (_rebuild_flow, (dict(self.__dict__),))

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


def _running(runner: TaskRunner[Any]) -> Any:
    from taskstash.task_runners import running_with

    return running_with(runner.duplicate())


def _rebuild_flow(state: dict[str, Any]) -> Flow[Any, Any]:
    flow: Flow[Any, Any] = Flow.__new__(Flow)
    flow.__dict__.update(state)
    return flow


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    persist_result: bool | None = None,
    result_storage: str | os.PathLike[str] | Any | None = None,
    result_serializer: str | Serializer | None = None,
    task_runner: TaskRunner[Any] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Makes a function a flow: `@flow` or `@flow(name="my-flow")`.

    The result options apply to the tasks called in the flow's runs that do not set their own,
    as in Prefect.

    Args:
        fn: The function (when used as `@flow` without parentheses).
        **options: Any of:
            name: The flow's name in logs (default: the function's name with `-` for `_`).
            persist_result: True caches the calls of the tasks that leave `persist_result`
                unset (with their DEFAULT policy); False runs them uncached.
            result_storage: Where those tasks' result files go (as `task`'s option).
            result_serializer: What serializes those tasks' results (as `task`'s option).
            task_runner: Runs the calls its runs submit (`task.submit`, `task.map`): a
                `ThreadPoolTaskRunner()` by default, or `taskstash.dask.DaskTaskRunner(...)`.

    Returns:
        The flow, or a decorator that makes one.
    """
    if fn is not None:
        return Flow(fn, **options)

    def decorate(function: Callable[P, R]) -> Flow[P, R]:
        return Flow(function, **options)

    return decorate
