"""What a task's options resolve to: its cache policy and whether its calls persist.

Prefect's rules: a key function beats a policy, a `result_storage_key` beats both; a policy, a key
function or a result option means `persist_result=True`; with none, DEFAULT keys the calls that
persist and whether they do is decided per call (see `taskstash.task_runs.why_uncached`).
"""

from __future__ import annotations

import datetime
import warnings
from typing import Any, cast

from taskstash.cache_policies import (
    DEFAULT,
    NO_CACHE,
    CacheKeyFnPolicy,
    CachePolicy,
    ResultStorageKeyPolicy,
)

__all__ = ["UNSET", "TaskstashWarning", "check_options", "resolve_caching"]


class TaskstashWarning(UserWarning):
    """A task is configured in a way that does not do what it seems to."""


class _Unset:
    """Marks an option the user did not give, as opposed to one given as None."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


def check_options(options: dict[str, Any]) -> None:
    """Refuses options of the wrong type.

    Raises:
        TypeError: An option has a type it cannot have.
    """
    expiration = options["cache_expiration"]
    if expiration is not None and not isinstance(expiration, datetime.timedelta):
        raise TypeError(f"cache_expiration must be a datetime.timedelta, not {expiration!r}")
    policy = options["cache_policy"]
    if policy is not UNSET and policy is not None and not isinstance(policy, CachePolicy):
        raise TypeError(f"cache_policy must be a CachePolicy, not {policy!r}")
    key_fn = options["cache_key_fn"]
    if key_fn is not None and not callable(key_fn):
        raise TypeError(f"cache_key_fn must be callable, not {key_fn!r}")
    for flag in ("refresh_cache", "persist_result"):
        if options[flag] is not None and not isinstance(options[flag], bool):
            raise TypeError(f"{flag} must be True, False or None, not {options[flag]!r}")
    template = options["result_storage_key"]
    if template is not None and not isinstance(template, str):
        raise TypeError(f"result_storage_key must be a str template, not {template!r}")


def resolve_caching(options: dict[str, Any]) -> tuple[CachePolicy, bool | None]:
    """The policy that keys a task's cached calls, and its `persist_result`, as Prefect has them.

    A key function beats a policy, and a `result_storage_key` beats both; with neither, DEFAULT.
    A policy other than NO_CACHE, a key function, or any result option (`result_storage`,
    `result_storage_key`, `result_serializer`) means `persist_result=True`; with none of them it
    stays None, decided per call. `persist_result=False` turns caching off.
    """
    cache_policy, key_fn = options["cache_policy"], options["cache_key_fn"]
    persist: bool | None = options["persist_result"]
    template: str | None = options["result_storage_key"]
    given = cache_policy is not UNSET and cache_policy is not None
    if key_fn is not None:
        if given and cache_policy is not NO_CACHE:
            warnings.warn(
                "both cache_key_fn and cache_policy are given; cache_key_fn gives the key and "
                "the policy is ignored",
                TaskstashWarning,
                stacklevel=4,
            )
        policy: CachePolicy = CacheKeyFnPolicy(cache_key_fn=key_fn)
    elif given:
        policy = cast(CachePolicy, cache_policy)
    else:
        policy = DEFAULT
    if persist is None and (
        (given and cache_policy is not NO_CACHE)
        or key_fn is not None
        or any(options[name] is not None for name in _RESULT_OPTIONS)
    ):
        persist = True
    if persist is False:
        if (given and cache_policy is not NO_CACHE) or key_fn is not None:
            warnings.warn(
                "persist_result=False turns caching off, so the cache policy is ignored",
                TaskstashWarning,
                stacklevel=4,
            )
        return NO_CACHE, False
    if template is not None and policy is not NO_CACHE:
        # The rendered name is the key; the policy's settings (its index, isolation and lock
        # manager) still apply.
        policy = ResultStorageKeyPolicy(
            template=template,
            key_storage=policy.key_storage,
            isolation_level=policy.isolation_level,
            lock_manager=policy.lock_manager,
        )
    return policy, persist


_RESULT_OPTIONS = ("result_storage", "result_storage_key", "result_serializer")
