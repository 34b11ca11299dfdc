"""One submitted task run, from its arguments to its final state, wherever a runner runs it.

A runner takes the task and its parameters (`submit`), and `gather_upstream` takes out the
futures among them (inside lists, tuples, sets and dicts too) and those of `wait_for`, leaving a
placeholder where each was. Where the task runs (a thread, a Dask worker), the runner waits for
those futures' final states, and `run_submitted` puts their values in the placeholders' places
and calls the task as a plain call with `return_state=True` would: the same key, the same cache
lookup and record, the same states and log lines. A future whose task did not complete keeps the
task from running: its state is `NotReady`, unless the future was wrapped in `allow_failure`
(the task gets its exception). Values wrapped in `quote` pass untouched.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskstash.annotations import BaseAnnotation, allow_failure, quote
from taskstash.context import TaskRun, current_flow_run
from taskstash.exceptions import UpstreamTaskError
from taskstash.futures import TaskFuture
from taskstash.states import NotReady, State
from taskstash.task_reports import log_finished

if TYPE_CHECKING:
    from collections.abc import Iterable

    from taskstash.tasks import Task

__all__ = ["Upstream", "call_arguments", "gather_upstream", "run_submitted"]

Upstream = TaskFuture[Any] | State[Any]
"""What a submitted run waits for: a future, or a state given as an argument."""


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where the value of the upstream run number `index` goes."""

    index: int
    allow_failure: bool


@dataclass(frozen=True, slots=True)
class _WaitFor:
    """An upstream run of `wait_for`: it must complete, its value goes nowhere."""

    index: int
    allow_failure: bool


def gather_upstream(
    parameters: dict[str, Any], wait_for: Iterable[Any] | None
) -> tuple[dict[str, Any], list[_WaitFor], list[Upstream]]:
    """Takes the futures and states out of a submitted call's parameters and `wait_for`.

    Returns:
        The parameters with a placeholder for each future or state (annotations unwrapped),
        the `wait_for` entries, and the futures and states, in placeholder order.
    """
    upstream: list[Upstream] = []
    seen: dict[int, int] = {}

    def slot(item: Upstream, allowed: bool) -> int:
        index = seen.get(id(item))
        if index is None:
            index = seen[id(item)] = len(upstream)
            upstream.append(item)
        return index

    def visit(value: Any, allowed: bool) -> Any:
        if isinstance(value, TaskFuture | State):
            return _Slot(slot(value, allowed), allowed)
        if isinstance(value, BaseAnnotation):
            if isinstance(value, quote):
                return value.unwrap()
            return visit(value.unwrap(), allowed or isinstance(value, allow_failure))
        kind = type(value)
        if kind is list:
            return [visit(item, allowed) for item in value]
        if kind is tuple:
            return tuple(visit(item, allowed) for item in value)
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return kind(*(visit(item, allowed) for item in value))
        if kind is dict:
            return {key: visit(item, allowed) for key, item in value.items()}
        if kind is set or kind is frozenset:
            return kind(visit(item, allowed) for item in value)
        return value

    gathered = {name: visit(value, False) for name, value in parameters.items()}
    waits: list[_WaitFor] = []
    for item in wait_for or ():
        allowed = isinstance(item, allow_failure)
        item = item.unwrap() if isinstance(item, BaseAnnotation) else item
        if isinstance(item, TaskFuture | State):
            waits.append(_WaitFor(slot(item, allowed), allowed))
    return gathered, waits, upstream


def run_submitted(
    task: Task[Any, Any],
    parameters: dict[str, Any],
    waits: list[_WaitFor],
    states: list[State[Any]],
    upstream_names: list[str],
) -> State[Any]:
    """Runs a submitted call once its upstream runs have ended; returns its final state.

    Args:
        task: The task.
        parameters: Its parameters, with placeholders (see `gather_upstream`).
        waits: Its `wait_for` entries.
        states: The final state of each upstream run, in placeholder order.
        upstream_names: Their tasks' names, for the message of a `NotReady` state.
    """
    problem: list[str] = []

    def value_of(index: int, allowed: bool) -> Any:
        state = states[index]
        if not state.is_completed():
            if allowed and state.is_failed():
                return state.result(raise_on_failure=False)
            if not problem:
                problem.append(f"upstream task {upstream_names[index]!r} ended in {state!r}")
        return state.result(raise_on_failure=False) if state.is_completed() else None

    def fill(value: Any) -> Any:
        if isinstance(value, _Slot):
            return value_of(value.index, value.allow_failure)
        kind = type(value)
        if kind is list:
            return [fill(item) for item in value]
        if kind is tuple:
            return tuple(fill(item) for item in value)
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return kind(*(fill(item) for item in value))
        if kind is dict:
            return {key: fill(item) for key, item in value.items()}
        if kind is set or kind is frozenset:
            return kind(fill(item) for item in value)
        return value

    for wait in waits:
        value_of(wait.index, wait.allow_failure)
    filled = {name: fill(value) for name, value in parameters.items()}
    if problem:
        flow_run = current_flow_run()
        state: State[Any] = NotReady(
            UpstreamTaskError(f"task {task.name!r} did not run: {problem[0]}")
        )
        log_finished(TaskRun(task.name, flow_run.id if flow_run else None), flow_run, state)
        return state
    args, kwargs = call_arguments(task.signature, filled)
    if task.is_async:
        import asyncio

        from taskstash import async_runs

        coroutine = async_runs.run(task, tuple(args), kwargs, return_state=True)
        ran: State[Any] = asyncio.run(coroutine)
        return ran
    called: State[Any] = task(*args, return_state=True, **kwargs)
    return called


def call_arguments(
    signature: inspect.Signature, parameters: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments that bind to `parameters` (by parameter name)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    positional = True  # until a parameter is left out: the ones after it go by keyword
    for name, parameter in signature.parameters.items():
        kind = parameter.kind
        if name not in parameters:
            positional = positional and kind is inspect.Parameter.VAR_POSITIONAL
            continue
        value = parameters[name]
        if kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(value)
        elif kind is inspect.Parameter.KEYWORD_ONLY or not positional:
            kwargs[name] = value
        else:
            args.append(value)
    return args, kwargs
