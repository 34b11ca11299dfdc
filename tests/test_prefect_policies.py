"""Prefect's own tests of its cache policies (tests/test_cache_policies.py), run on taskstash.

Imports are renamed (`prefect` -> `taskstash`, `_None` -> `_NoCache`). Where taskstash differs on
purpose, the test says so: `exclude` is a tuple (policies are immutable), the error messages of
conflicting settings are taskstash's own, and Prefect's test of a mocked task is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from taskstash.cache_policies import (
    DEFAULT,
    INPUTS,
    NO_CACHE,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
    RunId,
    TaskSource,
    _NoCache,
)

# Prefect's policies take a task context of any shape (or None); so do these tests.
AnyContext = Any


class TestBaseClass:
    def test_cache_policy_initializes(self) -> None:
        policy = CachePolicy()
        assert isinstance(policy, CachePolicy)

    def test_compute_key_not_implemented(self) -> None:
        policy = CachePolicy()
        with pytest.raises(NotImplementedError):
            policy.compute_key(task_ctx=None, inputs=None, flow_parameters=None)  # type: ignore[arg-type]


class TestNonePolicy:
    def test_initializes(self) -> None:
        policy = _NoCache()
        assert isinstance(policy, CachePolicy)

    def test_doesnt_compute_a_key(self) -> None:
        policy = _NoCache()
        key = policy.compute_key(task_ctx=None, inputs=None, flow_parameters=None)  # type: ignore[arg-type]
        assert key is None

    @pytest.mark.parametrize("typ", CachePolicy.__subclasses__())
    def test_addition_of_none_is_noop(self, typ: type[CachePolicy]) -> None:
        policy = _NoCache()
        other = typ()
        assert policy + other == other


class TestInputsPolicy:
    def test_initializes(self) -> None:
        policy = Inputs()
        assert isinstance(policy, CachePolicy)

    def test_key_varies_on_inputs(self) -> None:
        policy = Inputs()
        none_key = policy.compute_key(task_ctx=None, inputs=None, flow_parameters=None)  # type: ignore[arg-type]
        x_key = policy.compute_key(task_ctx=None, inputs={"x": 42}, flow_parameters=None)  # type: ignore[arg-type]
        y_key = policy.compute_key(task_ctx=None, inputs={"y": 42}, flow_parameters=None)  # type: ignore[arg-type]

        assert x_key != y_key
        assert x_key != none_key
        assert y_key != none_key

        z_key = policy.compute_key(task_ctx=None, inputs={"z": "foo"}, flow_parameters=None)  # type: ignore[arg-type]

        assert z_key not in [x_key, y_key]

    def test_key_doesnt_vary_on_other_kwargs(self) -> None:
        policy = Inputs()
        key = policy.compute_key(task_ctx=None, inputs={"x": 42}, flow_parameters=None)  # type: ignore[arg-type]

        other_keys = []
        values: list[Any] = [None, 1, "foo", {}]
        for kwarg_vals in itertools.permutations(values):
            kwargs: dict[str, Any] = dict(
                zip(["task_ctx", "flow_parameters", "other"], kwarg_vals, strict=False)
            )

            other_keys.append(policy.compute_key(inputs={"x": 42}, **kwargs))

        assert all(key == okey for okey in other_keys)

    def test_key_excludes_excluded_inputs(self) -> None:
        policy = Inputs(exclude=["y"])  # type: ignore[arg-type]

        key = policy.compute_key(task_ctx=None, inputs={"x": 42}, flow_parameters=None)  # type: ignore[arg-type]

        for val in [42, "foo", None]:
            new_key = policy.compute_key(
                task_ctx=None,  # type: ignore[arg-type]
                inputs={"x": 42, "y": val},
                flow_parameters=None,
            )
            assert new_key == key

    def test_subtraction_results_in_new_policy_for_inputs(self) -> None:
        policy = Inputs()
        new_policy = policy - "foo"
        assert policy != new_policy
        assert isinstance(new_policy, Inputs)
        assert policy.exclude != new_policy.exclude

    @pytest.mark.parametrize("policy", [RunId(), RunId() + TaskSource()])
    def test_subtraction_is_noop_for_non_inputs_policies(self, policy: CachePolicy) -> None:
        new_policy = policy - "foo"
        assert policy is new_policy
        assert policy.compute_key(
            task_ctx=None,  # type: ignore[arg-type]
            inputs={"foo": 42, "y": "changing-value"},
            flow_parameters=None,
        ) == policy.compute_key(
            task_ctx=None,  # type: ignore[arg-type]
            inputs={"foo": 42, "y": "changed"},
            flow_parameters=None,
        )

    def test_excluded_can_be_manipulated_via_subtraction(self) -> None:
        policy = Inputs() - "y"
        assert isinstance(policy, Inputs)
        assert policy.exclude == ("y",)  # Prefect: ["y"]; a tuple keeps the policy immutable

        key = policy.compute_key(task_ctx=None, inputs={"x": 42}, flow_parameters=None)  # type: ignore[arg-type]

        for val in [42, "foo", None]:
            new_key = policy.compute_key(
                task_ctx=None,  # type: ignore[arg-type]
                inputs={"x": 42, "y": val},
                flow_parameters=None,
            )
            assert new_key == key


class TestCompoundPolicy:
    def test_initializes(self) -> None:
        policy = CompoundCachePolicy()
        assert isinstance(policy, CachePolicy)

    def test_creation_via_addition(self) -> None:
        one, two = Inputs(), TaskSource()
        policy = one + two
        assert isinstance(policy, CompoundCachePolicy)

    def test_addition_creates_new_policies(self) -> None:
        one, two = Inputs(), CompoundCachePolicy()
        policy = one + two
        assert isinstance(policy, CompoundCachePolicy)
        assert policy != two
        assert policy.policies != two.policies

    def test_subtraction_creates_new_policies_if_input_dependency(self) -> None:
        policy = CompoundCachePolicy(policies=[Inputs()])  # type: ignore[arg-type]
        new_policy = policy - "foo"
        assert isinstance(new_policy, CompoundCachePolicy)
        assert policy != new_policy
        assert policy.policies != new_policy.policies

    def test_creation_via_subtraction(self) -> None:
        one = DEFAULT
        policy = one - "y"
        assert isinstance(policy, CompoundCachePolicy)

        assert policy.compute_key(
            task_ctx=None,  # type: ignore[arg-type]
            inputs={"x": 42, "y": "foo"},
            flow_parameters=None,
        ) == (RunId() + Inputs(exclude=["y"])).compute_key(  # type: ignore[arg-type]
            task_ctx=None,  # type: ignore[arg-type]
            inputs={"x": 42, "y": "foo"},
            flow_parameters=None,
        )

    def test_nones_are_ignored(self) -> None:
        one, two = _NoCache(), _NoCache()
        policy = CompoundCachePolicy(policies=[one, two])  # type: ignore[arg-type]
        assert isinstance(policy, CompoundCachePolicy)

        fparams = {"x": 42, "y": "foo"}
        compound_key = policy.compute_key(
            task_ctx=None,  # type: ignore[arg-type]
            inputs={"z": [1, 2]},
            flow_parameters=fparams,
        )
        assert compound_key is None

    def test_adding_two_compound_policies_merges_policies(self) -> None:
        one = CompoundCachePolicy(policies=[Inputs(), TaskSource()])  # type: ignore[arg-type]
        two = CompoundCachePolicy(policies=[RunId()])  # type: ignore[arg-type]
        policy = one + two
        assert isinstance(policy, CompoundCachePolicy)
        assert len(policy.policies) == 3
        assert Inputs() in policy.policies
        assert RunId() in policy.policies
        assert TaskSource() in policy.policies

    def test_nested_compound_policies_are_flattened(self) -> None:
        policy = CompoundCachePolicy(
            policies=[  # type: ignore[arg-type]
                CompoundCachePolicy(policies=[Inputs(), TaskSource()]),  # type: ignore[arg-type]
                CompoundCachePolicy(policies=[RunId()]),  # type: ignore[arg-type]
            ]
        )
        assert isinstance(policy, CompoundCachePolicy)
        assert len(policy.policies) == 3
        assert Inputs() in policy.policies
        assert RunId() in policy.policies
        assert TaskSource() in policy.policies

    def test_compound_policy_deduplicates_inputs_on_subtraction(self) -> None:
        """Regression test for https://github.com/PrefectHQ/prefect/issues/16773."""
        policy = CompoundCachePolicy(
            policies=[  # type: ignore[arg-type]
                Inputs(),
                TaskSource(),
                Inputs(exclude=["x"]),  # type: ignore[arg-type]
                Inputs(exclude=["y"]),  # type: ignore[arg-type]
            ]
        )
        # Inputs get combined into a single policy
        assert len(policy.policies) == 2

        new_policy = policy - "z"
        assert isinstance(new_policy, CompoundCachePolicy)

        inputs_policies = [p for p in new_policy.policies if isinstance(p, Inputs)]
        assert len(inputs_policies) == 1
        assert sorted(inputs_policies[0].exclude) == ["x", "y", "z"]
        assert len(new_policy.policies) == 2
        assert any(isinstance(p, CompoundCachePolicy | TaskSource) for p in new_policy.policies)


class TestTaskSourcePolicy:
    def test_initializes(self) -> None:
        policy = TaskSource()
        assert isinstance(policy, CachePolicy)

    def test_changes_in_def_change_key(self) -> None:
        policy = TaskSource()

        class TaskCtx:
            task: Callable[..., Any]

        task_ctx = TaskCtx()

        def my_func() -> None:
            pass

        task_ctx.task = my_func

        key = policy.compute_key(task_ctx=task_ctx, inputs=None, flow_parameters=None)  # type: ignore[arg-type]

        task_ctx = TaskCtx()

        def my_func(x: Any) -> None:  # type: ignore[no-redef]
            pass

        task_ctx.task = my_func

        new_key = policy.compute_key(task_ctx=task_ctx, inputs=None, flow_parameters=None)  # type: ignore[arg-type]

        assert key != new_key


class TestDefaultPolicy:
    def test_changing_the_inputs_busts_the_cache(self) -> None:
        inputs = {"x": 42}
        key = DEFAULT.compute_key(task_ctx=None, inputs=inputs, flow_parameters=None)  # type: ignore[arg-type]

        inputs = {"x": 43}
        new_key = DEFAULT.compute_key(task_ctx=None, inputs=inputs, flow_parameters=None)  # type: ignore[arg-type]

        assert key != new_key

    def test_changing_the_run_id_busts_the_cache(self) -> None:
        @dataclass
        class Run:
            id: str
            flow_run_id: str | None = None

        def my_task() -> None:
            pass

        @dataclass
        class TaskCtx:
            task_run: Run
            task = my_task

        task_run_a = Run(id="a", flow_run_id="a")
        task_run_b = Run(id="b", flow_run_id="b")
        task_run_c = Run(id="c", flow_run_id=None)
        task_run_d = Run(id="d", flow_run_id=None)

        context: AnyContext = TaskCtx
        nothing: Any = None
        key_a = DEFAULT.compute_key(
            task_ctx=context(task_run=task_run_a), inputs=nothing, flow_parameters=None
        )
        key_b = DEFAULT.compute_key(
            task_ctx=context(task_run=task_run_b), inputs=nothing, flow_parameters=None
        )
        key_c = DEFAULT.compute_key(
            task_ctx=context(task_run=task_run_c), inputs=nothing, flow_parameters=None
        )
        key_d = DEFAULT.compute_key(
            task_ctx=context(task_run=task_run_d), inputs=nothing, flow_parameters=None
        )

        assert key_a not in [key_b, key_c, key_d]
        assert key_b not in [key_a, key_c, key_d]
        assert key_c not in [key_a, key_b, key_d]
        assert key_d not in [key_a, key_b, key_c]

    def test_changing_the_source_busts_the_cache(self) -> None:
        @dataclass
        class Run:
            id: str
            flow_run_id: str | None = None

        @dataclass
        class TaskCtx:
            task_run: Run
            task: Callable[..., Any] | None = None

        task_run = Run(id="a", flow_run_id="b")
        ctx_one: AnyContext = TaskCtx(task_run=task_run, task=lambda: "foo")
        ctx_two: AnyContext = TaskCtx(task_run=task_run, task=lambda: "bar")

        key_one = DEFAULT.compute_key(task_ctx=ctx_one, inputs=None, flow_parameters=None)  # type: ignore[arg-type]
        key_two = DEFAULT.compute_key(task_ctx=ctx_two, inputs=None, flow_parameters=None)  # type: ignore[arg-type]

        assert key_one != key_two


class TestPolicyConfiguration:
    def test_configure_changes_storage(self) -> None:
        policy = Inputs().configure(key_storage="/path/to/storage")
        assert policy.key_storage == "/path/to/storage"

    def test_configure_changes_locks(self) -> None:
        policy = Inputs().configure(lock_manager="/path/to/locks")
        assert policy.lock_manager == "/path/to/locks"

    def test_configure_changes_isolation_level(self) -> None:
        policy = Inputs().configure(isolation_level="SERIALIZABLE")
        assert policy.isolation_level == "SERIALIZABLE"

    def test_configure_changes_all_attributes(self) -> None:
        policy = Inputs().configure(
            key_storage="/path/to/storage",
            lock_manager="/path/to/locks",
            isolation_level="SERIALIZABLE",
        )
        assert policy.key_storage == "/path/to/storage"
        assert policy.lock_manager == "/path/to/locks"
        assert policy.isolation_level == "SERIALIZABLE"

    def test_configure_with_none_is_noop(self) -> None:
        policy = Inputs().configure(key_storage=None, lock_manager=None, isolation_level=None)
        assert policy == Inputs()

    def test_add_policy_with_configuration(self) -> None:
        policy = Inputs() + TaskSource().configure(
            lock_manager="/path/to/locks",
            isolation_level="SERIALIZABLE",
            key_storage="/path/to/storage",
        )
        assert policy.lock_manager == "/path/to/locks"
        assert policy.isolation_level == "SERIALIZABLE"
        assert policy.key_storage == "/path/to/storage"

    def test_add_policy_with_conflict_raises(self) -> None:
        policy = Inputs() + TaskSource().configure(
            lock_manager="original_locks",
            key_storage="original_storage",
            isolation_level="SERIALIZABLE",
        )
        # taskstash's messages name the setting: "different lock_manager settings".
        with pytest.raises(ValueError, match="different lock_manager"):
            _policy = policy + TaskSource().configure(lock_manager="other_locks")

        with pytest.raises(ValueError, match="different key_storage"):
            _policy = policy + TaskSource().configure(key_storage="other_storage")

        with pytest.raises(ValueError, match="different isolation_level"):
            _policy = policy + TaskSource().configure(isolation_level="READ_COMMITTED")

    def test_configure_returns_new_policy(self) -> None:
        policy = Inputs()
        new_policy = policy.configure(key_storage="new_storage")
        assert policy is not new_policy


# The issue's own cases, beyond Prefect's tests --------------------------------------------------


def test_a_compound_built_directly_equals_the_sum_of_its_parts() -> None:
    direct = CompoundCachePolicy(policies=[INPUTS, TASK_SOURCE, Inputs(exclude=("debug",))])  # type: ignore[arg-type]
    assert direct == INPUTS + TASK_SOURCE + (INPUTS - "debug")
    assert direct.policies == (Inputs(exclude=("debug",)), TASK_SOURCE)
    assert CompoundCachePolicy(policies=(NO_CACHE, INPUTS)).policies == (INPUTS,)


@pytest.mark.parametrize("policy", [RunId(), TaskSource(), DEFAULT, TASK_SOURCE + RunId()])
def test_policies_called_without_a_task_context_yield_no_key_of_it(policy: CachePolicy) -> None:
    key = policy.compute_key(task_ctx=None, inputs={}, flow_parameters=None)  # type: ignore[arg-type]
    assert key is None
