"""Cache policies: which parts of a call make up its cache key.

A policy computes a key from the call: `INPUTS` from the arguments, `TASK_SOURCE` from the task's
code, `RUN_ID` from the flow run, `FLOW_PARAMETERS` from the flow's arguments. Policies combine
with `+` (the key changes when any part changes) and `INPUTS - 'name'` leaves an argument out. A
part that yields no key is skipped; a call whose parts all yield none is not cached.

    DEFAULT = INPUTS + TASK_SOURCE + RUN_ID

Policies are immutable: `+`, `-` and `configure()` return new policies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

# At run time, not only for type checkers: the API reference resolves CacheKeyFn's annotation.
from taskstash._native import HashingError
from taskstash.context import TaskRunContext
from taskstash.hashing import hash_named, hash_objects
from taskstash.hashing.source import function_source_key

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "IsolationLevel",
    "ResultStorageKeyPolicy",
    "RunId",
    "TaskSource",
    "component_pieces",
]

IsolationLevel = Literal["READ_COMMITTED", "SERIALIZABLE"]
_ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")

CacheKeyFn = Callable[[TaskRunContext, dict[str, Any]], str | None]


@dataclass(frozen=True)
class CachePolicy:
    """Base of all policies. Subclass it and implement `compute_key` for a policy of your own.

    Attributes:
        key_storage: The index file (or a directory holding `index.db`) the records are kept in;
            None for `TASKSTASH_INDEX_PATH`.
        isolation_level: `"READ_COMMITTED"` (concurrent calls of one key may all compute) or
            `"SERIALIZABLE"` (one computes, the others wait for its result).
        lock_manager: What serialises computations under `"SERIALIZABLE"`.
    """

    key_storage: Any = None
    isolation_level: IsolationLevel | None = None
    lock_manager: Any = None

    label: ClassVar[str] = ""
    """The component's name in records and in `taskstash explain`; the class name if empty."""

    def __post_init__(self) -> None:
        if self.isolation_level is not None and self.isolation_level not in _ISOLATION_LEVELS:
            raise ValueError(
                f"isolation_level must be one of {', '.join(_ISOLATION_LEVELS)}, "
                f"not {self.isolation_level!r}"
            )

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The key of this part of the call, or None if it has nothing to say about it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute_key()")

    def components(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
    ) -> list[tuple[str, str]]:
        """The named keys of each part of this policy that yields one."""
        key = self.compute_key(task_ctx, inputs, flow_parameters)
        return [] if key is None else [(self.label or type(self).__name__, key)]

    def configure(
        self,
        key_storage: Any = None,
        lock_manager: Any = None,
        isolation_level: IsolationLevel | None = None,
    ) -> Self:
        """A copy with the given settings; arguments left as None keep the current ones."""
        changes = {
            name: value
            for name, value in (
                ("key_storage", key_storage),
                ("lock_manager", lock_manager),
                ("isolation_level", isolation_level),
            )
            if value is not None
        }
        return dataclasses.replace(self, **changes)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _NoCache):
            return self
        settings = _merged_settings(self, other)
        return CompoundCachePolicy(policies=(self, other), **settings)

    def __sub__(self, argument: str) -> CachePolicy:
        """Leaves `argument` out of the inputs part; no change for a policy without one."""
        _check_argument_name(argument)
        return self


def _check_argument_name(argument: object) -> None:
    if not isinstance(argument, str):
        raise TypeError(
            f"only argument names (str) can be subtracted from a cache policy, not {argument!r}"
        )


def _merged_settings(first: CachePolicy, second: CachePolicy) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in ("key_storage", "isolation_level", "lock_manager"):
        mine, theirs = getattr(first, name), getattr(second, name)
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(
                f"cannot combine cache policies with different {name} settings: "
                f"{mine!r} and {theirs!r}"
            )
        merged[name] = mine if mine is not None else theirs
    return merged


def _parts(policy: CachePolicy) -> tuple[CachePolicy, ...]:
    return policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,)


def component_pieces(policy: CachePolicy, task: Any, inputs: dict[str, Any]) -> dict[str, str]:
    """The keys of the pieces of a call's components: each argument, each piece of code.

    `inputs:<argument>` for the arguments `policy`'s Inputs part keys, `task_source:<name>` for
    the pieces of the task's code its TaskSource part keys. Kept with a record beside its
    components, so that a miss can name what changed ("inputs (region changed)"). Computed on
    a miss (and by `explain`), never on a hit.
    """
    found: dict[str, str] = {}
    for part in _parts(policy):
        if isinstance(part, TaskSource):
            found.update(part.pieces(task))
        elif isinstance(part, Inputs):
            found.update(part.pieces(inputs))
    return found


def _flattened(policies: Iterable[CachePolicy]) -> tuple[CachePolicy, ...]:
    """The parts of `policies`, compounds (nested at any depth) replaced by their parts."""
    flat: list[CachePolicy] = []
    for policy in policies:
        if isinstance(policy, CompoundCachePolicy):
            flat.extend(_flattened(policy.policies))
        else:
            flat.append(policy)
    return tuple(flat)


def keyed_by_run_id(policy: CachePolicy) -> bool:
    """Whether `policy` includes RUN_ID (so outside a flow no two calls share a key)."""
    return any(isinstance(part, RunId) for part in _parts(policy))


def _combined(parts: tuple[CachePolicy, ...]) -> tuple[CachePolicy, ...]:
    """Flattened parts without NO_CACHE or duplicates.

    Several Inputs become one, where the first stood, excluding the union of their excludes.
    """
    excluded = sorted({name for part in parts if isinstance(part, Inputs) for name in part.exclude})
    combined: list[CachePolicy] = []
    for part in parts:
        if isinstance(part, Inputs):
            part = Inputs(exclude=tuple(excluded))
        if not isinstance(part, _NoCache) and part not in combined:
            combined.append(part)
    return tuple(combined)


@dataclass(frozen=True)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key changes when any of their keys does.

    Parts that yield no key are skipped; if none yields one, the call is not cached. Built
    directly (`CompoundCachePolicy(policies=[...])`) or with `+`, the parts are the same: nested
    compounds flattened, several Inputs merged into one excluding the union of their excludes,
    NO_CACHE and repeats left out.
    """

    policies: tuple[CachePolicy, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        # Built directly or by `+`, a compound is the same: flattened, one Inputs part, no
        # NO_CACHE. A frozen dataclass is set up once, here, through object.__setattr__.
        object.__setattr__(self, "policies", _combined(_flattened(self.policies)))

    def components(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
    ) -> list[tuple[str, str]]:
        """The named keys of every part that yields one, in order."""
        named: list[tuple[str, str]] = []
        for policy in self.policies:
            for label, key in policy.components(task_ctx, inputs, flow_parameters):
                taken = {existing for existing, _ in named}
                unique, suffix = label, 2
                while unique in taken:
                    unique, suffix = f"{label}_{suffix}", suffix + 1
                named.append((unique, key))
        return named

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The key of all parts' keys, or None if no part yields one."""
        keys = [key for _, key in self.components(task_ctx, inputs, flow_parameters)]
        return hash_objects(*keys) if keys else None

    def __sub__(self, argument: str) -> CachePolicy:
        """Leaves `argument` out of the inputs part; no change for a compound without one."""
        _check_argument_name(argument)
        if not any(isinstance(part, Inputs) for part in self.policies):
            return self
        parts = tuple(
            part - argument if isinstance(part, Inputs) else part for part in self.policies
        )
        return dataclasses.replace(self, policies=parts)


@dataclass(frozen=True)
class _NoCache(CachePolicy):
    """Never yields a key: calls are not cached. The identity of `+`."""

    label: ClassVar[str] = "no_cache"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Always None."""
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other if isinstance(other, CachePolicy) else NotImplemented


@dataclass(frozen=True)
class Inputs(CachePolicy):
    """The call's arguments, bound to the function's parameters with defaults applied.

    So `f(1)`, `f(1, 2)` and `f(x=1, y=2)` share a key when `y` defaults to 2.

    Attributes:
        exclude: Names of arguments left out of the key.
    """

    exclude: tuple[str, ...] = ()
    label: ClassVar[str] = "inputs"

    def __post_init__(self) -> None:
        super().__post_init__()
        # Given as a list (Prefect's type), kept as a tuple: policies are immutable and hashable.
        if not isinstance(self.exclude, tuple):
            object.__setattr__(self, "exclude", tuple(self.exclude))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The key of the arguments not excluded; None for a function without parameters.

        Raises:
            HashingError: An argument has no canonical form; its `path` starts with the
                argument's name.
        """
        if not inputs:
            return None
        if self.exclude:
            inputs = {name: value for name, value in inputs.items() if name not in self.exclude}
        return hash_named(inputs)

    def __sub__(self, argument: str) -> CachePolicy:
        """Also leaves `argument` out of the key."""
        _check_argument_name(argument)
        if argument in self.exclude:
            return self
        return dataclasses.replace(self, exclude=(*self.exclude, argument))

    def pieces(self, inputs: dict[str, Any]) -> dict[str, str]:
        """`inputs:<argument>` -> key of each argument this policy keys."""
        found: dict[str, str] = {}
        for name, value in inputs.items():
            if name in self.exclude:
                continue
            try:
                found[f"{self.label}:{name}"] = hash_objects(value)
            except HashingError:
                continue  # such a call is not cached: nothing to keep
        return found


@dataclass(frozen=True)
class TaskSource(CachePolicy):
    """The task's code: its function and the code of the user's project it reaches.

    Comments, docstrings and formatting do not count; any other change does: to the task's
    function, to a function, class or method of the user's own modules it calls (followed
    transitively), to a module-level constant it reads (by value), to a value it closes over.
    Code of installed packages and the standard library is not followed; `versions=True` adds
    the versions of the distributions the code refers to. `follow=False` keys the task's own
    function only (its source and closure values), as Prefect's TASK_SOURCE does.

    Attributes:
        follow: Follow the code the function reaches (default); False for the function only.
        versions: Also key the versions of the installed distributions the code refers to.
    """

    label: ClassVar[str] = "task_source"
    follow: bool = True
    versions: bool = False

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The key of the task's code (computed once per task and process); None without one.

        Called directly with a context whose `task` is a plain function, the function's own
        source key.
        """
        if task_ctx is None:
            return None
        task = task_ctx.task
        if not self.follow:
            try:
                source_key: str = task.source_key
            except AttributeError:
                return function_source_key(task)
            return source_key
        code = getattr(task, "code", None)
        if code is None:
            return function_source_key(task)
        key: str = code(versions=self.versions)[1]
        return key

    def pieces(self, task: Any) -> dict[str, str]:
        """`task_source:<name>` -> key of each piece of the task's code, kept with its records.

        So that `explain` can name what changed ("helpers.normalize changed"); empty with
        `follow=False`.
        """
        code = getattr(task, "code", None)
        if not self.follow or code is None:
            return {}
        pieces: dict[str, str] = code(versions=self.versions)[0]
        return {f"{self.label}:{name}": key for name, key in pieces.items()}


@dataclass(frozen=True)
class RunId(CachePolicy):
    """The flow run: calls share records only within one run of a flow.

    Outside a flow every call is its own run, so nothing is reused (or stored).
    """

    label: ClassVar[str] = "run_id"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The flow run's id, or this task run's own id outside a flow; None without a run."""
        if task_ctx is None:
            return None
        task_run = task_ctx.task_run
        run_id = task_run.flow_run_id
        return str(run_id if run_id is not None else task_run.id)


@dataclass(frozen=True)
class FlowParameters(CachePolicy):
    """The arguments of the enclosing flow run; no key outside a flow or for a flow without."""

    label: ClassVar[str] = "flow_parameters"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The key of the flow's bound arguments."""
        return hash_objects(**flow_parameters) if flow_parameters else None


@dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """A function of yours gives the key: `cache_key_fn(context, parameters) -> str | None`.

    None means "do not cache this call". Keys from a key function are not scoped to the task, so
    tasks whose key functions agree share records.
    """

    cache_key_fn: CacheKeyFn | None = None
    label: ClassVar[str] = "cache_key_fn"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """What the key function returns for this call."""
        if self.cache_key_fn is None:
            return None
        key = self.cache_key_fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"cache_key_fn must return a str or None, not {type(key).__name__}: {key!r}"
            )
        return key


@dataclass(frozen=True)
class ResultStorageKeyPolicy(CachePolicy):
    """A task's `result_storage_key`, rendered for the call, is its key and its file's name.

    `@task(result_storage_key="{parameters[x]}-bar")` keys `f(x=1)` by `"1-bar"`, as in Prefect:
    the rendered name replaces any other policy or key function. Like a key function's keys,
    these are not scoped to the task: the user named the record.

    Attributes:
        template: A `str.format` template; its fields are `parameters` (the call's arguments),
            `task_run` and `flow_run` (None outside a flow).
    """

    template: str = ""
    label: ClassVar[str] = "result_storage_key"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """The rendered template; None for an empty one.

        Raises:
            ValueError: The template names a field the call does not have.
        """
        if not self.template:
            return None
        task_run = getattr(task_ctx, "task_run", None)
        flow_run = getattr(task_ctx, "flow_run", None)
        try:
            return self.template.format(parameters=inputs, task_run=task_run, flow_run=flow_run)
        except (KeyError, IndexError, AttributeError) as exc:
            task_name = getattr(getattr(task_ctx, "task", None), "name", None)
            raise ValueError(
                f"result_storage_key {self.template!r} of task {task_name!r} cannot be "
                f"rendered: {type(exc).__name__}: {exc}; its fields are parameters, task_run and "
                "flow_run"
            ) from None


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = _NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
