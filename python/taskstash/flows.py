"""`@flow`: a function whose call is a flow run that the tasks called inside belong to.

A flow run has a uuid, a generated `adjective-animal` name and its bound arguments; RUN_ID and
FLOW_PARAMETERS key tasks by them. Its beginning and end are logged:

    16:28:51.230 | INFO | Flow run 'outgoing-cicada' - Beginning flow run 'outgoing-cicada' ...
    16:28:51.311 | INFO | Flow run 'outgoing-cicada' - Finished in state Completed()

Each run starts a copy of the flow's task runner (`task_runner=`, a `ThreadPoolTaskRunner` by
default) for the calls its body submits, and waits for them before it ends. A flow pickles as a
task does: by reference when its module holds it under its name, else by value.

A flow given a cache policy or key function is cached as a whole (`taskstash.flow_runs`): its
calls are keyed, looked up and stored through a task over its function (`Flow.cache_task`),
so a hit returns the stored value without running the body or any task in it.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from taskstash.cache_policies import NO_CACHE, CacheKeyFn, CachePolicy
from taskstash.context import FlowRun, inside_flow_run
from taskstash.identity import flow_identity
from taskstash.log import logger
from taskstash.names import flow_run_name
from taskstash.states import Completed, Failed, State
from taskstash.store.serializers import Serializer, resolve_serializer
from taskstash.task_options import UNSET, TaskstashWarning, check_options
from taskstash.tasks import Task

if TYPE_CHECKING:
    from taskstash.task_runners import TaskRunner

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Flow(Generic[P, R]):
    """A function whose calls are flow runs. Call it like the function; see `flow`."""

    __name__: str
    __qualname__: str

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        cache_policy: CachePolicy | None = UNSET,
        cache_key_fn: CacheKeyFn | None = None,
        cache_expiration: datetime.timedelta | None = None,
        refresh_cache: bool | None = None,
        persist_result: bool | None = None,
        result_storage: str | os.PathLike[str] | Any | None = None,
        result_storage_key: str | None = None,
        result_serializer: str | Serializer | None = None,
        task_runner: TaskRunner[Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        self._options: dict[str, Any] = {
            "name": name,
            "cache_policy": cache_policy,
            "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration,
            "refresh_cache": refresh_cache,
            "persist_result": persist_result,
            "result_storage": result_storage,
            "result_storage_key": result_storage_key,
            "result_serializer": result_serializer,
            "task_runner": task_runner,
        }
        check_options(self._options)
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
        self.cache_task: Task[P, R] | None = _cache_task(fn, self.name, self._options)
        """The task through which the flow's calls are keyed, looked up and stored (its records
        marked as flows'); None for a flow that is not cached."""
        # The runners' module is imported when a flow uses one, not with taskstash.
        from taskstash.task_runners import TaskRunner, ThreadPoolTaskRunner

        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            raise TypeError(f"task_runner must be a TaskRunner, not {task_runner!r}")
        self.task_runner: TaskRunner[Any] = task_runner or ThreadPoolTaskRunner()
        """Runs what the body submits; each run starts a `duplicate()` of it."""

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (same keyword arguments as `flow`)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"unknown flow option(s): {', '.join(sorted(unknown))}")
        changed = Flow(self.fn, **{**self._options, **options})
        mine, theirs = self.cache_task, changed.cache_task
        if mine is not None and theirs is not None:
            # The same function: the code and closure captured when this flow was made, as
            # `Task.with_options` keeps them.
            theirs.source_key = mine.source_key
            theirs._code = mine._code
            if changed.name == self.name:
                theirs.identity = mine.identity
        return changed

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
            return self._call_async(args, kwargs, return_state)
        run = self._begin(args, kwargs)
        try:
            if self.cache_task is None:
                state: State[Any] = Completed(self._body(run, args, kwargs))
            else:
                from taskstash import flow_runs  # the call path: loaded by the first call

                body = functools.partial(self._body, run, args, kwargs)
                state = flow_runs.run(self.cache_task, args, kwargs, body, str(run.id))
                if state.is_cached():
                    self._end(run, state)
        except Exception as exc:
            # The body's exception, or one of keying the call (a key function is warned about
            # and the call runs uncached; a policy of the user's that raises fails the call).
            failed = self._end(run, Failed(exc))
            if return_state:
                return failed
            raise
        return state if return_state else state.result()

    async def _call_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
    ) -> Any:
        run = self._begin(args, kwargs)
        try:
            if self.cache_task is None:
                state: State[Any] = Completed(await self._body_async(run, args, kwargs))
            else:
                from taskstash import flow_runs

                body = functools.partial(self._body_async, run, args, kwargs)
                state = await flow_runs.run_async(self.cache_task, args, kwargs, body, str(run.id))
                if state.is_cached():
                    self._end(run, state)
        except Exception as exc:
            # The body's exception, or one of keying the call (a key function is warned about
            # and the call runs uncached; a policy of the user's that raises fails the call).
            failed = self._end(run, Failed(exc))
            if return_state:
                return failed
            raise
        return state if return_state else state.result()

    def _body(self, run: FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Runs the flow's function as `run`; its value (logged as Completed), or it raises."""
        with inside_flow_run(run), _running(self.task_runner):
            value = self.fn(*args, **kwargs)
        self._end(run, Completed(value))
        return value

    async def _body_async(self, run: FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`_body` of an `async def` flow."""
        with inside_flow_run(run), _running(self.task_runner):
            value = await self.fn(*args, **kwargs)  # type: ignore[misc]
        self._end(run, Completed(value))
        return value

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


def _cache_task(fn: Callable[P, R], name: str, options: dict[str, Any]) -> Task[P, R] | None:
    """The task that caches the flow's calls, if its options ask for caching; else None.

    A cache policy (other than NO_CACHE), a key function or a `result_storage_key` does;
    `persist_result=False` turns it off. The result options apply to the flow's records too.
    """
    policy = options["cache_policy"]
    keyed = (
        (policy is not UNSET and policy is not None and policy is not NO_CACHE)
        or options["cache_key_fn"] is not None
        or options["result_storage_key"] is not None
    )
    if options["persist_result"] is False:
        if keyed:
            _warn(f"persist_result=False turns caching off, so flow {name!r} is not cached")
        return None
    if not keyed:
        for option in ("cache_expiration", "refresh_cache"):
            if options[option] is not None:
                _warn(
                    f"flow {name!r} is not cached, so {option} does nothing; give it a "
                    "cache_policy or cache_key_fn to cache it"
                )
        return None
    task: Task[P, R] = Task(
        fn,
        name=name,
        cache_policy=policy,
        cache_key_fn=options["cache_key_fn"],
        cache_expiration=options["cache_expiration"],
        refresh_cache=options["refresh_cache"],
        persist_result=True,
        result_storage=options["result_storage"],
        result_storage_key=options["result_storage_key"],
        result_serializer=options["result_serializer"],
    )
    task.kind = "flow"
    task.identity = flow_identity(fn, name)
    return task


def _warn(message: str) -> None:
    # Four frames up: _cache_task, Flow.__init__, the decorator, the user's `@flow(...)`.
    warnings.warn(message, TaskstashWarning, stacklevel=5)


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
    cache_policy: CachePolicy | None = UNSET,
    cache_key_fn: CacheKeyFn | None = None,
    cache_expiration: datetime.timedelta | None = None,
    refresh_cache: bool | None = None,
    persist_result: bool | None = None,
    result_storage: str | os.PathLike[str] | Any | None = None,
    result_storage_key: str | None = None,
    result_serializer: str | Serializer | None = None,
    task_runner: TaskRunner[Any] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Makes a function a flow: `@flow` or `@flow(name="my-flow", ...)`.

    A flow given a `cache_policy` (other than NO_CACHE), a `cache_key_fn` or a
    `result_storage_key` is cached as a whole, as a task is: a call with a key seen before
    returns the stored value without running the body or any task in it, and logs
    `Flow run '...' - Finished in state Cached(type=COMPLETED)`. Its INPUTS are its parameters;
    its TASK_SOURCE covers its function and the code of the tasks, subflows and helpers it
    calls, so editing any of them is a miss. A flow called inside another (a subflow) is cached
    the same way. RUN_ID keys a subflow by the run of the flow it is called in; a top-level
    flow has no enclosing run, so a policy with RUN_ID (DEFAULT) does not cache it, as a task
    called outside a flow. A flow without those options is not cached.

    The result options apply to the tasks called in the flow's runs that do not set their own,
    as in Prefect, and to the flow's own records when it is cached.

    Args:
        fn: The function (when used as `@flow` without parentheses).
        **options: Any of:
            name: The flow's name in logs and in the index (default: the function's name
                with `-` for `_`).
            cache_policy: What the flow's cache key is made of (`taskstash.cache_policies`),
                as for a task; caches the flow.
            cache_key_fn: `f(context, parameters) -> str | None` giving the flow's key (as
                for a task; `context.task` is `Flow.cache_task`); caches the flow.
            cache_expiration: How long the flow's records stay valid (`datetime.timedelta`).
            refresh_cache: True always runs the flow and overwrites its record; None follows
                `TASKSTASH_TASKS_REFRESH_CACHE`.
            persist_result: True caches the calls of the tasks that leave `persist_result`
                unset (with their DEFAULT policy); False runs them uncached, and does not cache
                the flow itself either.
            result_storage: Where the result files of the flow and of those tasks go (as
                `task`'s option).
            result_storage_key: A template naming the flow's record (as `task`'s option, the
                fields being the flow's `parameters`); caches the flow.
            result_serializer: What serializes the results of the flow and of those tasks (as
                `task`'s option).
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
