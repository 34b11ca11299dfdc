"""Why a call misses: its key's components against the task's records. Nothing is run.

    from taskstash import explain

    print(explain(my_task, 3, mode="fast"))

Each record keeps the hash of every cache-policy component it was keyed by (`inputs`,
`task_source`, `run_id`, ...). `explain` computes those of the call, finds the record of the
task that agrees on most of them, and names the components that differ: a changed argument, an
edited task, another flow run. Records also keep the keys of the pieces of the task's code
and the key of each argument (`task_source:helpers.normalize`, `inputs:region`), so a change is
told by name: "inputs (region changed), task_source (helpers.normalize changed)".

A cached flow is explained the same way, through the task that caches its calls: an edited
task inside it shows as a piece of its code, `task_source (pipeline.clean changed)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from taskstash import settings
from taskstash.cache import Cache
from taskstash.cache_policies import component_pieces
from taskstash.context import TaskRun, TaskRunContext, current_flow_run
from taskstash.destinations import index_path
from taskstash.flows import Flow
from taskstash.store import Record
from taskstash.task_runs import key_of, why_uncached
from taskstash.tasks import Task

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    """How a call's key compares with the records of its task.

    Attributes:
        task: The task's (or flow's) name.
        key: The call's key; None if the call would not be cached at all.
        components: The call's components (name -> hash).
        hit: Whether a live record with this key exists.
        nearest: The record agreeing on most components (None if the task has none).
        differs: Components whose hash differs from the nearest record's (or that one lacks).
        reason: Why there is no key, when there is none.
    """

    task: str
    key: str | None
    components: dict[str, str]
    hit: bool
    nearest: Record | None
    differs: list[str] = field(default_factory=list)
    reason: str = ""

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.task}: this call is not cached ({self.reason})"
        if self.hit:
            return f"{self.task}: hit (key {self.key})"
        if self.nearest is None:
            return f"{self.task}: miss (key {self.key}); the task has no records yet"
        changed = ", ".join(_described(self.differs)) or "nothing (the record has expired)"
        return (
            f"{self.task}: miss (key {self.key}); the nearest record {self.nearest.key} "
            f"differs in: {changed}"
        )


def explain(task: Task[Any, Any] | Flow[Any, Any], /, *args: Any, **kwargs: Any) -> Explanation:
    """How the call `task(*args, **kwargs)` would be keyed, and why it would miss.

    `task` may also be a flow: its calls are cached (and explained) if it has a cache policy
    or key function. Inside a flow run the run's id and parameters count, as they would for a
    real call.

    Raises:
        TypeError: The arguments do not fit the task's signature.
    """
    if isinstance(task, Flow):
        if task.cache_task is None:
            task.signature.bind(*args, **kwargs)
            reason = "the flow is not cached: it has no cache_policy or cache_key_fn"
            return Explanation(task.name, None, {}, False, None, reason=reason)
        task = task.cache_task
    parameters = task.bind(args, kwargs)
    flow_run = current_flow_run()
    task_run = TaskRun(task.name, flow_run.id if flow_run is not None else None)
    uncached = why_uncached(task, flow_run, settings.current())
    if uncached is not None:
        return Explanation(task.name, None, {}, False, None, reason=uncached)
    if flow_run is None and task.keyed_by_run:
        return Explanation(
            task.name, None, {}, False, None, reason="RUN_ID outside a flow keys every call apart"
        )
    context = TaskRunContext(task, task_run, parameters, flow_run)
    keyed = key_of(task, context)
    if keyed is None:
        return Explanation(
            task.name, None, {}, False, None, reason="no component of its policy yields a key"
        )
    key, named = keyed
    components = {**dict(named), **component_pieces(task.cache_policy, task, parameters)}
    cache = Cache(index_path(task), task.result_storage or settings.current().local_storage_path)
    # The task's records only (records_task_name), and one lookup for the key: never a list of
    # the whole index, which could hold a million records.
    records = [
        r
        for r in cache.records(task=task.name)
        if r.task_qualname == task.qualified_name and r.kind == task.kind
    ]
    hit = cache.store.lookup(key, time.time()) is not None
    nearest = max(records, key=lambda r: _agreement(r.components, components), default=None)
    differs = [] if nearest is None else _differences(nearest.components, components)
    return Explanation(task.name, key, components, hit, nearest, differs)


def _agreement(recorded: dict[str, str], call: dict[str, str]) -> int:
    return sum(recorded.get(name) == value for name, value in call.items())


def _differences(recorded: dict[str, str], call: dict[str, str]) -> list[str]:
    names = list(call) + [name for name in recorded if name not in call]
    return [name for name in names if recorded.get(name) != call.get(name)]


def _described(differs: list[str]) -> list[str]:
    """Component names, each with the pieces of it that changed.

    `inputs (region changed), task_source (helpers.normalize changed, helpers.THRESHOLD changed)`.
    """
    pieces: dict[str, list[str]] = {}
    described: list[str] = []
    for name in differs:
        component, _, piece = name.partition(":")
        if piece:
            pieces.setdefault(component, []).append(piece)
        elif component not in described:
            described.append(component)
    for component, changed in pieces.items():
        text = f"{component} ({', '.join(f'{piece} changed' for piece in changed)})"
        if component in described:
            described[described.index(component)] = text
        else:
            described.append(text)
    return described
