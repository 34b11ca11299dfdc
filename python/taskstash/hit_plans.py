"""The memory-layer hit of a plain task call, in as few steps as it can be answered.

A call outside a flow, of a sync task keyed by its arguments (and its code), whose payload this
process holds in its memory layer, needs only: the arguments bound, the key, one dict lookup and
the payload deserialized. `task_runs.start` makes such a task a `HitPlan` the first time it
stores or finds a record the general way, with everything that is the same for every call worked
out once: the store, the serializer, the key's fixed components. A plan is valid while the
settings object it was made under is current and the task's policy is the one it was made for.

Anything else (a flow run, a refresh, a payload not in memory, an unhashable argument) makes
`hit` return MISSING, and the call goes the general way, which explains and warns: the plan never
answers differently from `task_runs.start`, only sooner.
"""

from __future__ import annotations

import logging
import pickle
from time import time as _now
from typing import TYPE_CHECKING, Any, cast

from taskstash import settings
from taskstash._native import CallKeyer
from taskstash.cache_policies import CachePolicy, CompoundCachePolicy, Inputs, TaskSource
from taskstash.context import TaskRun, current_flow_run
from taskstash.hashing import HashingError
from taskstash.hashing._dispatch import reduce
from taskstash.log import logger
from taskstash.settings import current as current_settings
from taskstash.store.memory import MISSING
from taskstash.store.serializers import PickleSerializer
from taskstash.task_reports import log_hit

if TYPE_CHECKING:
    from taskstash.store import Serializer, Store
    from taskstash.store.reads import Fetched
    from taskstash.tasks import Task

__all__ = ["HitPlan", "plan_hits"]

_DEBUG = logging.DEBUG


class HitPlan:
    """How to answer a task's calls from the memory layer: see the module's docstring."""

    __slots__ = (
        "_exclude",
        "_key",
        "_loads",
        "_memory_get",
        "_names",
        "_note_hit",
        "_policy",
        "_serializer_name",
        "made_under",
    )

    def __init__(
        self,
        task: Task[Any, Any],
        current: settings.Settings,
        store: Store,
        serializer: Serializer,
        components: list[tuple[str, str]],
        inputs_at: int,
        exclude: frozenset[str],
    ) -> None:
        # No reference to the task: the task holds its plan, and a cycle would leave the task's
        # store (and its database connections) to the cyclic collector, in no set order.
        self._policy = task.cache_policy
        self.made_under = current
        """The settings object the plan was made under: it answers only while they are current."""
        self._key = CallKeyer(
            task.identity, components[:inputs_at], components[inputs_at + 1 :]
        ).key
        # A call passing every parameter by position, none excluded, is keyed by its tuple.
        binder = task.binder
        self._names = binder.names if binder.plain and not exclude else None
        self._exclude = exclude
        self._memory_get = store.memory.get
        self._note_hit = store.note_hit
        # Pickle's own loads for a pickling serializer: a failure is MISSING here either way,
        # and the general path then says what failed.
        pickled = getattr(type(serializer), "loads", None) is PickleSerializer.loads
        self._loads = pickle.loads if pickled else serializer.loads
        self._serializer_name = serializer.name

    def hit(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        """The call's value from the memory layer, or MISSING: then the general path decides.

        `task` is the task the plan was made for.
        """
        if (
            current_flow_run() is not None
            or current_settings() is not self.made_under
            or task.cache_policy is not self._policy
            or task.refresh_cache
        ):
            return MISSING
        try:
            names = self._names
            if names is not None and not kwargs and len(args) == len(names) and args:
                key = self._key(names, args, reduce)
            else:
                parameters = task.bind(args, kwargs)
                if not parameters:
                    return MISSING  # no inputs component: not a call the plan keys
                if self._exclude:
                    parameters = {n: v for n, v in parameters.items() if n not in self._exclude}
                key = self._key(tuple(parameters), tuple(parameters.values()), reduce)
        except (HashingError, TypeError):
            return MISSING  # the general path warns or raises as it should
        now = _now()
        kept = self._memory_get(key, now)
        if kept is MISSING:
            return MISSING
        payload, serializer_name, _ = cast("Fetched", kept)
        if type(payload) is not memoryview or serializer_name != self._serializer_name:
            return MISSING
        try:
            value = self._loads(payload)
        except Exception:
            return MISSING
        self._note_hit(key, now)
        if logger.isEnabledFor(_DEBUG):
            log_hit(TaskRun(task.name, None), None)
        return value


def plan_hits(
    task: Task[Any, Any],
    current: settings.Settings,
    store: Store,
    serializer: Serializer,
    components: list[tuple[str, str]],
) -> HitPlan | None:
    """A plan for `task`'s calls if they can be answered by one (else None).

    Args:
        task: A sync task keyed by its policy (not a key function or a storage key).
        current: The settings the call was made under.
        store: The task's store.
        serializer: The task's own serializer (a call outside a flow inherits none).
        components: The named components of a call's key, as its policy computed them.
    """
    if task.is_async or task.bound is not None or not task.cache_result_in_memory:
        return None
    inputs = _inputs_part(task.cache_policy)
    if inputs is None:
        return None
    labels = [label for label, _ in components]
    if labels.count("inputs") != 1:
        return None
    return HitPlan(
        task,
        current,
        store,
        serializer,
        components,
        labels.index("inputs"),
        frozenset(inputs.exclude),
    )


def _inputs_part(policy: CachePolicy) -> Inputs | None:
    """The Inputs part of a policy made of Inputs and TaskSource only, else None.

    Only these two: every other part's key may change between calls of one task (the flow run,
    the flow's parameters, a function of the user's).
    """
    parts = policy.policies if type(policy) is CompoundCachePolicy else (policy,)
    found = None
    for part in parts:
        if type(part) is Inputs:
            found = part
        elif type(part) is not TaskSource:
            return None
    return found
