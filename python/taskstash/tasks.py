"""`@task`: a function whose calls are cached according to a cache policy.

    @task(cache_policy=INPUTS)
    def add_one(x: int) -> int:
        return x + 1

The `Task` object keeps the function's signature for type checkers, runs sync and `async def`
functions, and offers `.fn`, `.with_options(...)` and calls with `return_state=True`. One call is
carried out by `taskstash.task_runs`; `.submit(...)` and `.map(...)` hand calls to the current
task runner (`taskstash.task_runners`).

A task pickles with the standard library: by reference (its module and name) when it is the
module's attribute of that name, else by value with the source key and identity captured where it
was decorated, so that it keys its calls the same in another process or on another machine.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from taskstash.cache_policies import CacheKeyFn, CachePolicy, keyed_by_run_id
from taskstash.context import TaskRunContext, current_flow_run
from taskstash.exceptions import HashingError
from taskstash.hashing import hash_objects
from taskstash.hashing.closure import code_closure, distribution_versions
from taskstash.hashing.source import function_source_key
from taskstash.identity import qualified_name, task_identity
from taskstash.states import Cached, State
from taskstash.store.memory import MISSING
from taskstash.store.serializers import DEFAULT_SERIALIZER, Serializer, resolve_serializer
from taskstash.task_options import UNSET, TaskstashWarning, check_options, resolve_caching
from taskstash.task_reports import warn_unhashable
from taskstash.tracebacks import without_our_frames

if TYPE_CHECKING:
    from taskstash.futures import TaskFuture, TaskFutureList
    from taskstash.hit_plans import HitPlan
    from taskstash.task_calls import Call
    from taskstash.transactions import Hook

__all__ = ["Task", "TaskstashWarning", "task", "task_input_hash"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
T = TypeVar("T")


class Task(Generic[P, R]):
    """A function with a cache. Call it like the function; see `task` for the options."""

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
        cache_result_in_memory: bool = True,
    ) -> None:
        self.method_kind: Literal["", "classmethod", "staticmethod"] = ""
        """How the task binds when read from a class or instance (see `__get__`)."""
        if isinstance(fn, classmethod | staticmethod):  # `@task` above `@classmethod`
            self.method_kind = "classmethod" if isinstance(fn, classmethod) else "staticmethod"
            fn = fn.__func__
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.bound: tuple[Task[Any, R], object] | None = None
        """The unbound task and the instance (or class) a method task was read from."""
        functools.update_wrapper(self, fn)
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.qualified_name = qualified_name(fn)
        """The function's importable `module.qualname` (a script's `__main__` resolved)."""
        self.identity = task_identity(fn, self.name)
        """What scopes the task's policy keys (see `taskstash.identity`)."""
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.binder = _Binder(self.signature)
        """Binds a call's arguments to the function's parameters."""
        self.source_key = function_source_key(fn)
        """The key of the function's own source and closure values (`TaskSource(follow=False)`)."""
        self._code: dict[bool, tuple[dict[str, str], str]] = {}
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
            "cache_result_in_memory": cache_result_in_memory,
        }
        check_options(self._options)
        self.cache_policy, self.persist_result = resolve_caching(self._options)
        """The policy that keys the calls that are cached, and whether they are: True or False,
        or None when no option decides (the flow run's `persist_result` does, or else
        `TASKSTASH_RESULTS_PERSIST_BY_DEFAULT`)."""
        self.keys_chosen = cache_key_fn is not None or (
            cache_policy is not UNSET and cache_policy is not None
        )
        """Whether a policy or key function was given (`TASKSTASH_TASKS_DEFAULT_NO_CACHE` does
        not apply then)."""
        self.keyed_by_run = keyed_by_run_id(self.cache_policy)
        """Whether the key includes RUN_ID, which outside a flow makes every call unique."""
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.result_storage = result_storage
        """As given; None for the flow run's, or else `TASKSTASH_LOCAL_STORAGE_PATH`."""
        self.result_storage_key = result_storage_key
        self.result_serializer = result_serializer
        """As given; None for the flow run's, or else the default (a format by type)."""
        self.serializer = (
            DEFAULT_SERIALIZER
            if result_serializer is None
            else resolve_serializer(result_serializer)
        )
        """The serializer of `result_serializer` (`DEFAULT_SERIALIZER` when it is None)."""
        self.cache_result_in_memory = cache_result_in_memory
        self.kind: Literal["task", "flow"] = "task"
        """What the calls are of: `"flow"` for the task through which a cached flow's calls are
        keyed, looked up and stored (`Flow.cache_task`), whose records are marked so."""
        self.warned: set[str] = set()
        """Causes already warned about, so each is logged once per task, not once per call."""
        self.resolved: tuple[object, Any, Any] | None = None
        """(settings, store, storage) the calls use, resolved once per settings object."""
        self.hit_plan: HitPlan | None = None
        """How to answer its plain calls from the memory layer, once a call made one."""
        self.on_commit_hooks: list[Hook] = []
        """Called with the transaction when a call's record is committed (see `on_commit`)."""
        self.on_rollback_hooks: list[Hook] = []
        """Called with the transaction when a call's transaction rolls back."""

    def on_commit(self, fn: Hook) -> Hook:
        """Registers `fn(transaction)` to run when a call of this task is committed.

        A call that runs the function commits with the transaction it is part of
        (`taskstash.transactions`); a cache hit commits nothing. Usable as a decorator.
        """
        self.on_commit_hooks.append(fn)
        return fn

    def on_rollback(self, fn: Hook) -> Hook:
        """Registers `fn(transaction)` to run when a call's transaction rolls back.

        That is when the block of the transaction the call is part of raises, even after the
        call itself succeeded. Usable as a decorator.
        """
        self.on_rollback_hooks.append(fn)
        return fn

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied.

        Raises:
            TypeError: The arguments do not fit the signature (Python's own message).
        """
        binder = self.binder
        if binder.plain and not kwargs and len(args) == len(binder.names):
            return dict(zip(binder.names, args))  # noqa: B905 - lengths are equal
        return binder.bind(args, kwargs, self.name)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed (same keyword arguments as `task`)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
        changed = Task(self.fn, **{**self._options, **options})
        # The same function, so the same code and closure as captured when this task was made
        # (a closed-over object may have changed state since, which must not change the key).
        changed.source_key = self.source_key
        changed._code = self._code  # the same function: its code closure, computed once
        changed.method_kind = self.method_kind
        if changed.name == self.name:
            changed.identity = self.identity
        changed.on_commit_hooks = list(self.on_commit_hooks)
        changed.on_rollback_hooks = list(self.on_rollback_hooks)
        return changed if self.bound is None else changed._bind(self.bound[1])

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Task[P, R]: ...
    @overload
    def __get__(
        self: Task[Concatenate[T, Q], R], instance: T, owner: type[Any] | None = None
    ) -> Task[Q, R]: ...
    def __get__(self, instance: object, owner: type[Any] | None = None) -> Task[Any, R]:
        """A method task read from an instance binds to it, as a function does.

        `Foo(1).add(5)` calls the function with `self` first, and `self` is one of the inputs
        (hashed by value, so equal instances share records). Read from the class, the task is
        itself (`Foo.add(foo, 5)`); a classmethod task binds to the class, a staticmethod task
        never binds.
        """
        if self.method_kind == "classmethod":
            return self._bind(owner if owner is not None else type(instance))
        if instance is None or self.method_kind == "staticmethod":
            return self
        return self._bind(instance)

    def _bind(self, subject: object) -> Task[Any, R]:
        bound = self.__copy__()
        bound.bound = (self, subject)
        return bound

    def __copy__(self) -> Task[P, R]:
        copied: Task[P, R] = Task.__new__(Task)
        copied.__dict__.update(self.__dict__)
        copied.hit_plan = None  # a plan answers for the task it was made for (a bound copy's
        # calls lack the subject its plan would bind)
        return copied

    def code(self, *, versions: bool = False) -> tuple[dict[str, str], str]:
        """The task's code closure and its key, computed on first use and kept.

        The closure maps the importable name of the function and of each function, class and
        constant of the user's code it reaches to its key (see `taskstash.hashing.closure`);
        with `versions`, the versions of the installed distributions it refers to are added as
        `version:<distribution>`. Computed on the first keyed call rather than when decorated:
        the helpers a task calls are often defined below it.

        Returns:
            `(pieces, key)`.
        """
        found = self._code.get(versions)
        if found is None:
            pieces = code_closure(self.fn)
            if versions:
                versions_found = distribution_versions(self.fn)
                pieces.update({f"version:{n}": v for n, v in versions_found.items()})
            found = self._code[versions] = (pieces, hash_objects("code", pieces))
        return found

    def __reduce__(self) -> tuple[Any, ...]:
        if self.bound is not None:  # the unbound task (by reference, if it can) and the subject
            return (_rebind_task, self.bound)
        if _importable(self):
            return (_import_task, (self.__module__, self.__qualname__))
        self.code()  # captured here: where it is loaded, the source files may not exist
        state = dict(self.__dict__)
        # What this process resolved (open index connections) and warned about stays here:
        # the process that loads the task resolves its own settings and warns once there.
        state["resolved"] = None
        state["hit_plan"] = None
        state["warned"] = set()
        return (_rebuild_task, (state,))

    # As for `__call__`: keyword-only options between `*args: P.args` and `**kwargs: P.kwargs`
    # are outside PEP 612, so mypy flags the definitions, and callers get the right types.
    @overload
    def submit(  # type: ignore[valid-type]
        self: Task[P, Coroutine[Any, Any, T]],
        *args: P.args,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: P.kwargs,
    ) -> TaskFuture[T]: ...
    @overload
    def submit(  # type: ignore[valid-type]
        self,
        *args: P.args,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: P.kwargs,
    ) -> TaskFuture[R]: ...
    @overload
    def submit(  # type: ignore[valid-type]
        self: Task[P, Coroutine[Any, Any, T]],
        *args: P.args,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: P.kwargs,
    ) -> State[T]: ...
    @overload
    def submit(  # type: ignore[valid-type]
        self,
        *args: P.args,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: P.kwargs,
    ) -> State[R]: ...
    def submit(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Hands a call to the current task runner; returns its future at once.

        Futures among the arguments (also inside lists, tuples, sets and dicts) are waited for
        and replaced by their values before the call; `wait_for=[...]` names futures to wait
        for without passing them. Inside a flow the flow's runner runs the call, outside one a
        thread pool of the process. The call is cached exactly as a plain call is.

        Args:
            *args: The task's arguments.
            return_state: Wait for the call and return its final state instead of a future.
            wait_for: Futures that must end first; if one fails, the call does not run and
                its state is `NotReady` (unless wrapped in `allow_failure`).
            **kwargs: The task's keyword arguments.

        Returns:
            A `TaskFuture` (`.result()`, `.wait()`, `.state`), or the final state.
        """
        if self.bound is not None:
            task: Any
            task, subject = self.bound
            return task.submit(
                subject, *args, return_state=return_state, wait_for=wait_for, **kwargs
            )
        from taskstash.task_runners import current_task_runner

        future: TaskFuture[Any] = current_task_runner().submit(
            self, self.bind(args, kwargs), wait_for
        )
        if return_state:
            future.wait()
            return future.state
        return future

    @overload
    def map(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> TaskFutureList[TaskFuture[T]]: ...
    @overload
    def map(
        self,
        *args: Any,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> TaskFutureList[TaskFuture[R]]: ...
    @overload
    def map(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> list[State[T]]: ...
    @overload
    def map(
        self,
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> list[State[R]]: ...
    def map(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submits one call per item of the iterable arguments, as `submit` does.

        Arguments that are not iterable (or are strings, bytes, dicts, or wrapped in
        `unmapped(...)`) go whole to every call; the iterables must have one length.

        Args:
            *args: The task's arguments.
            return_state: Wait for the calls and return their final states.
            wait_for: Futures that every call waits for.
            **kwargs: The task's keyword arguments.

        Returns:
            A `TaskFutureList` of futures in the order of the items (`.result()` gives the
            values), or a list of final states.
        """
        if self.bound is not None:
            from taskstash.annotations import unmapped

            unbound: Any
            unbound, subject = self.bound
            return unbound.map(
                unmapped(subject), *args, return_state=return_state, wait_for=wait_for, **kwargs
            )
        from taskstash.task_runners import current_task_runner

        try:
            parameters = self.signature.bind(*args, **kwargs).arguments
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        futures: TaskFutureList[TaskFuture[Any]] = current_task_runner().map(
            self, dict(parameters), wait_for
        )
        if return_state:
            states = []
            for future in futures:
                future.wait()
                states.append(future.state)
            return states
        return futures

    # Keyword-only `return_state` between `*args: P.args` and `**kwargs: P.kwargs` is outside
    # PEP 612, so mypy flags these definitions; callers still get the right types from them.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(  # type: ignore[valid-type]
        self: Task[P, Coroutine[Any, Any, T]],
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
        """Runs the task, or returns its cached result.

        With `return_state=True`, returns the run's `State` (`Completed`, `Cached` or `Failed`)
        instead of its value, and does not raise the task's exception (`state.result()` does).
        """
        plan = self.hit_plan
        if plan is not None:  # a plain call answered from memory (`taskstash.hit_plans`)
            value = plan.hit(self, args, kwargs)
            if value is not MISSING:
                return Cached(value) if return_state else value
        if self.bound is not None:
            # The unbound task runs it: one task, one set of warnings and resolved settings.
            task, subject = self.bound
            return task(subject, *args, return_state=return_state, **kwargs)
        if self.is_async:
            running = _run_async(self, args, kwargs, return_state=return_state)
            flow_run = current_flow_run()
            if flow_run is not None and not flow_run.is_async:
                # A sync flow's body cannot await: the call runs to completion here.
                return _run_to_completion(running)
            return running
        # A hit is answered here, a frame shallower than a run: hits are the hot path.
        hit, outcome = _start(self, args, kwargs)
        if hit:
            return Cached(outcome) if return_state else outcome
        try:
            return _run(self, outcome, return_state)
        except Exception as exc:
            # The caller's traceback goes from its call straight into the task's body.
            exc.with_traceback(without_our_frames(exc.__traceback__))
            raise

    def __repr__(self) -> str:
        return f"Task({self.qualified_name})"


# The call path (`taskstash.task_runs`, and with it the index, storages and transactions) is
# loaded by the first call, not by `import taskstash`: these start as stand-ins that load it and
# replace themselves with its functions, so later calls pay nothing for the deferral.


def _load_task_runs() -> None:
    global _start, _run
    from taskstash import task_runs

    _start, _run = task_runs.start, task_runs.run


def _first_start(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _load_task_runs()
    return _start(task, args, kwargs)


def _first_run(task: Task[Any, Any], call: Call, return_state: bool) -> Any:
    _load_task_runs()
    return _run(task, call, return_state)


def _first_run_async(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, return_state: bool
) -> Coroutine[Any, Any, Any]:
    global _run_async
    from taskstash import async_runs  # with the first async call: it imports asyncio

    _run_async = async_runs.run
    return _run_async(task, args, kwargs, return_state=return_state)


_start: Callable[[Task[Any, Any], tuple[Any, ...], dict[str, Any]], tuple[bool, Any]]
_start = _first_start
_run: Callable[[Task[Any, Any], Call, bool], Any] = _first_run
_run_async: Callable[..., Coroutine[Any, Any, Any]] = _first_run_async


def task_input_hash(context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
    """A `cache_key_fn` keying a call by its task and its arguments, as Prefect's does.

    `@task(cache_key_fn=task_input_hash)` caches calls of the same task, with the same code,
    given the same arguments: the key hashes the task's identity, its function's source and the
    arguments with taskstash's hasher, so it is the same in every process.

    Args:
        context: The call's context (`context.task` is the task).
        arguments: The call's arguments by parameter name.

    Returns:
        The key; None (the call is not cached) if an argument has no canonical form, which is
        warned about once per task.
    """
    task = context.task
    # Prefect's version follows `task.fn` when it is replaced; the source key captured at
    # decoration is reused while it is not.
    source_key = task.source_key if task.fn is task.__wrapped__ else function_source_key(task.fn)
    try:
        return hash_objects("task_input_hash", task.identity, source_key, **arguments)
    except HashingError as error:
        warn_unhashable(task, arguments, error)
        return None


def _importable(task: Task[Any, Any]) -> bool:
    """Whether importing the task's module and reading its qualified name gives the task."""
    qualname = task.__qualname__
    if "<locals>" in qualname or _pickled_by_value(task.__module__):
        return False
    try:
        found: Any = importlib.import_module(task.__module__)
        for part in qualname.split("."):
            found = found.__dict__[part] if isinstance(found, type) else getattr(found, part)
    except (ImportError, AttributeError, KeyError):
        return False
    return found is task


def _pickled_by_value(module: str) -> bool:
    """Whether `cloudpickle.register_pickle_by_value` was asked to ship `module`'s code.

    That is how code reaches Dask workers that cannot import it; its tasks then travel by
    value too (with the keys captured here), not as a name the worker cannot import.
    """
    if "cloudpickle" not in sys.modules:
        return False
    registered = getattr(
        sys.modules["cloudpickle"].cloudpickle, "_is_registered_pickle_by_value", None
    )
    return registered is not None and module in sys.modules and registered(sys.modules[module])


def _import_task(module: str, qualname: str) -> Task[Any, Any]:
    """The task a module holds under `qualname` (what a task pickled by reference loads as)."""
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = found.__dict__[part] if isinstance(found, type) else getattr(found, part)
    if isinstance(found, staticmethod | classmethod):  # read from a class's __dict__
        found = found.__func__
    return found  # type: ignore[no-any-return]


def _rebind_task(task: Task[Any, Any], subject: object) -> Task[Any, Any]:
    """A method task bound to `subject` again."""
    return task._bind(subject)


def _rebuild_task(state: dict[str, Any]) -> Task[Any, Any]:
    """A task pickled by value, with the source key and identity it was pickled with."""
    task: Task[Any, Any] = Task.__new__(Task)
    task.__dict__.update(state)
    return task


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs `coroutine` to its end from sync code, in the caller's context (its flow run).

    On an event loop of its own; in a thread of its own if this thread already runs one (a sync
    flow called from async code), since a running loop cannot be waited on from inside.
    """
    import asyncio  # only here: it would add a fifth to the import time of taskstash
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskstash-async") as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


class _Binder:
    """Binds arguments to parameters, fast for plain signatures.

    `inspect.Signature.bind` costs over a microsecond; for functions whose parameters are all
    positional-or-keyword (the usual case) this does the same in a fraction of that, and hands
    anything else (or any mistake, for Python's exact error) to `Signature.bind`.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        parameters = signature.parameters.values()
        self.plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        self.names = tuple(signature.parameters)
        self.defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> dict[str, Any]:
        names = self.names
        if self.plain and len(args) <= len(names):
            bound = dict(zip(names, args, strict=False))
            if not kwargs and len(args) == len(names):
                return bound
            used = 0
            for parameter in names[len(args) :]:
                if parameter in kwargs:
                    bound[parameter] = kwargs[parameter]
                    used += 1
                elif parameter in self.defaults:
                    bound[parameter] = self.defaults[parameter]
                else:
                    break
            else:
                if used == len(kwargs):
                    return bound
        try:
            full = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None
        full.apply_defaults()
        return full.arguments


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
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
    cache_result_in_memory: bool = True,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Makes a function a task: `@task` or `@task(...)`.

    A bare `@task` does not cache. A cache policy, a key function, a result option
    (`result_storage`, `result_storage_key`, `result_serializer`) or `persist_result=True` turns
    caching on; so do a flow's `persist_result=True` and `TASKSTASH_RESULTS_PERSIST_BY_DEFAULT`
    for the tasks that leave `persist_result` unset. On a method, the task binds to the
    instance (`self` is one of its inputs); it also works under `@classmethod` and
    `@staticmethod`.

    Args:
        fn: The function (when used as `@task` without parentheses).
        **options: Any of:
            name: The task's name in logs and in the index (default: the function's name).
            cache_policy: What the cache key is made of (`taskstash.cache_policies`); DEFAULT
                when none is given.
            cache_key_fn: `f(context, parameters) -> str | None` giving the key itself; it takes
                precedence over `cache_policy`. None means "do not cache this call"; if it
                raises, the call runs uncached (warned once per task).
            cache_expiration: How long a record stays valid (`datetime.timedelta`); zero or
                negative makes every record stale at once.
            refresh_cache: True always runs and overwrites the record; None follows
                `TASKSTASH_TASKS_REFRESH_CACHE`; False reads records even when that is set.
            persist_result: True caches (with DEFAULT when no policy is given); False turns
                caching off; None (unset) leaves it to the options above, the flow run and
                `TASKSTASH_RESULTS_PERSIST_BY_DEFAULT`.
            result_storage: Where result files go: a path, an fsspec URL (`s3://bucket/prefix`,
                `memory://x`) or an fsspec filesystem (default: the flow's, else
                `TASKSTASH_LOCAL_STORAGE_PATH`).
            result_storage_key: A template such as `"{parameters[x]}-bar"` (fields:
                `parameters`, `task_run`, `flow_run`); rendered for a call, it is the call's
                cache key (over any policy or key function) and its file's name.
            result_serializer: `"cloudpickle"`, `"pickle"`, `"json"`, `"numpy"`, `"arrow"`,
                `"pandas-arrow"`, or an object with `dumps`/`loads`. The default (unless the
                flow sets one) stores numpy arrays, pyarrow tables and pandas objects in open
                formats (`.npy`, Arrow IPC) and anything else with cloudpickle.
            cache_result_in_memory: Keep results in this process too, so repeated hits skip
                the index and files (default True).

    Returns:
        The task, or a decorator that makes one.
    """
    if fn is not None:
        return Task(fn, **options)

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(function, **options)

    return decorate
