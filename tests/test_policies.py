"""The cache policy algebra, and which calls each policy keys alike."""

from __future__ import annotations

from typing import Any

import pytest

from taskstash import flow, task
from taskstash.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
)
from taskstash.context import TaskRunContext

# algebra --------------------------------------------------------------------------------------


def test_default_is_inputs_plus_task_source_plus_run_id() -> None:
    assert isinstance(DEFAULT, CompoundCachePolicy)
    assert DEFAULT.policies == (INPUTS, TASK_SOURCE, RUN_ID)


def test_subtraction_excludes_and_accumulates_without_mutating() -> None:
    fewer = INPUTS - "debug"
    assert isinstance(fewer, Inputs)
    assert fewer == Inputs(exclude=("debug",))
    assert INPUTS.exclude == ()
    assert fewer - "verbose" == Inputs(exclude=("debug", "verbose"))
    assert (fewer - "debug") == fewer


def test_subtracting_from_a_compound_changes_only_its_inputs_part() -> None:
    policy = DEFAULT - "debug"
    assert isinstance(policy, CompoundCachePolicy)
    assert policy.policies == (Inputs(exclude=("debug",)), TASK_SOURCE, RUN_ID)
    assert DEFAULT == INPUTS + TASK_SOURCE + RUN_ID


def test_subtraction_is_a_no_op_without_an_inputs_part() -> None:
    assert TASK_SOURCE - "x" is TASK_SOURCE
    assert (TASK_SOURCE + RUN_ID) - "x" == TASK_SOURCE + RUN_ID
    assert NO_CACHE - "x" is NO_CACHE


@pytest.mark.parametrize("policy", [INPUTS, TASK_SOURCE, DEFAULT, NO_CACHE])
def test_subtracting_a_non_string_is_a_type_error(policy: CachePolicy) -> None:
    with pytest.raises(TypeError, match="argument names"):
        policy - 1  # type: ignore[operator]


def test_addition_flattens_and_merges_inputs() -> None:
    policy = (INPUTS - "a") + (TASK_SOURCE + (INPUTS - "b")) + RUN_ID
    assert isinstance(policy, CompoundCachePolicy)
    assert policy.policies == (Inputs(exclude=("a", "b")), TASK_SOURCE, RUN_ID)


def test_no_cache_is_the_identity_of_addition() -> None:
    assert NO_CACHE + INPUTS == INPUTS
    assert INPUTS + NO_CACHE == INPUTS
    assert NO_CACHE + NO_CACHE == NO_CACHE


def test_adding_a_policy_twice_keeps_one() -> None:
    policy = TASK_SOURCE + RUN_ID + TASK_SOURCE
    assert isinstance(policy, CompoundCachePolicy)
    assert policy.policies == (TASK_SOURCE, RUN_ID)


def test_configure_returns_a_copy_with_the_settings() -> None:
    serial = INPUTS.configure(isolation_level="SERIALIZABLE", key_storage="/tmp/index.db")
    assert serial.isolation_level == "SERIALIZABLE"
    assert serial.key_storage == "/tmp/index.db"
    assert INPUTS.isolation_level is None
    assert serial.configure(lock_manager="locks").isolation_level == "SERIALIZABLE"


def test_configure_refuses_unknown_isolation_levels() -> None:
    with pytest.raises(ValueError, match="READ_COMMITTED, SERIALIZABLE"):
        INPUTS.configure(isolation_level="EVENTUAL")  # type: ignore[arg-type]


def test_combined_settings_carry_over_and_conflicts_are_refused() -> None:
    combined = INPUTS.configure(isolation_level="SERIALIZABLE") + TASK_SOURCE
    assert combined.isolation_level == "SERIALIZABLE"
    with pytest.raises(ValueError, match="different isolation_level"):
        INPUTS.configure(isolation_level="SERIALIZABLE") + TASK_SOURCE.configure(
            isolation_level="READ_COMMITTED"
        )
    with pytest.raises(ValueError, match="different key_storage"):
        INPUTS.configure(key_storage="a.db") + RUN_ID.configure(key_storage="b.db")


# keys through tasks ---------------------------------------------------------------------------


def keys_of(
    policy: CachePolicy, *calls: tuple[tuple[Any, ...], dict[str, Any]]
) -> list[str | None]:
    """The key each call of a two-parameter task gets under `policy`."""
    seen: list[str | None] = []

    def record_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        seen.append(policy.compute_key(context, parameters, None))
        return None  # do not cache: only the keys matter here

    @task(cache_key_fn=record_key)
    def f(x: int, y: int = 2) -> int:
        return x + y

    for args, kwargs in calls:
        f(*args, **kwargs)
    return seen


def test_inputs_bind_arguments_and_apply_defaults() -> None:
    keys = keys_of(INPUTS, ((1,), {}), ((1, 2), {}), ((), {"x": 1, "y": 2}), ((1,), {"y": 3}))
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]


def test_the_same_value_under_another_name_is_another_key() -> None:
    def one_parameter_key(name: str) -> str | None:
        parameters = {name: 42}
        return INPUTS.compute_key(None, parameters, None)  # type: ignore[arg-type]

    assert one_parameter_key("x") != one_parameter_key("y")


def test_inputs_yield_no_key_for_a_function_without_parameters() -> None:
    assert INPUTS.compute_key(None, {}, None) is None  # type: ignore[arg-type]


def test_excluded_arguments_do_not_change_the_key() -> None:
    keys = keys_of(INPUTS - "y", ((1, 2), {}), ((1, 3), {}), ((2, 3), {}))
    assert keys[0] == keys[1] != keys[2]


def test_a_compound_skips_parts_without_a_key_and_yields_none_if_all_do() -> None:
    assert (INPUTS + FLOW_PARAMETERS).compute_key(None, {"x": 1}, None) == (  # type: ignore[arg-type]
        INPUTS + FLOW_PARAMETERS
    ).compute_key(None, {"x": 1}, {})  # type: ignore[arg-type]
    assert (INPUTS + FLOW_PARAMETERS).compute_key(None, {}, None) is None  # type: ignore[arg-type]


def test_run_id_is_shared_within_a_flow_run_and_differs_across_runs() -> None:
    keys: list[str | None] = []

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> None:
        keys.append(RUN_ID.compute_key(context, parameters, None))

    @task(cache_key_fn=key_fn)
    def step() -> None:
        pass

    @flow
    def pipeline() -> None:
        step()
        step()

    pipeline()
    pipeline()
    assert keys[0] == keys[1]
    assert keys[2] == keys[3]
    assert keys[0] != keys[2]
    step()
    step()
    assert len({keys[4], keys[5], keys[0]}) == 3  # outside a flow: unique per call


def test_cache_key_fn_policy_returns_what_the_function_returns() -> None:
    policy = CacheKeyFnPolicy(cache_key_fn=lambda context, parameters: f"k-{parameters['x']}")
    assert policy.compute_key(None, {"x": 3}, None) == "k-3"  # type: ignore[arg-type]
    wrong = CacheKeyFnPolicy(cache_key_fn=lambda context, parameters: 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a str or None"):
        wrong.compute_key(None, {}, None)  # type: ignore[arg-type]
