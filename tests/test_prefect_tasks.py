"""Prefect's own tests of task caching and results, run on taskstash.

Taken from Prefect's tests/test_tasks.py (TestResultPersistence, TestTaskCaching,
TestCacheFunctionBuiltins, TestCachePolicies, the method tests of TestTaskCall) and
tests/results/test_task_results.py, with imports renamed. Prefect's tests are `async def` only to
await `state.result()`, which is a plain call here. Where taskstash differs on purpose (see the
README's comparison with Prefect), the test says how: settings are read at each call rather than
when a task is decorated, so those tests check what calls do rather than `task.cache_policy`; a
storage block is a directory; a `result_storage_key` task reports its policy as
`ResultStorageKeyPolicy` where Prefect has None.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from taskstash import Cache, Task, explain, flow, task
from taskstash.cache_policies import (
    DEFAULT,
    INPUTS,
    NO_CACHE,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    ResultStorageKeyPolicy,
    _NoCache,
)
from taskstash.context import TaskRunContext
from taskstash.tasks import TaskstashWarning, task_input_hash


@pytest.fixture
def caplog_text() -> Iterator[list[str]]:
    """Messages of the `taskstash` logger (Prefect's tests read `caplog.text`)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("taskstash")
    handler = Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


class TestResultPersistence:
    @pytest.mark.parametrize("persist_result", [True, False])
    def test_persist_result_set_to_bool(self, persist_result: bool) -> None:
        @task(persist_result=persist_result)
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(persist_result=persist_result)

        assert my_task.persist_result is persist_result
        assert new_task.persist_result is persist_result

    def test_default_cache_policy_does_not_set_persist_result_with_options(self) -> None:
        @task
        def base() -> None:
            pass

        assert base.cache_policy == DEFAULT
        assert base.persist_result is None

        new_task = base.with_options(name="something")

        assert new_task.cache_policy == DEFAULT
        assert new_task.persist_result is None

    @pytest.mark.parametrize(
        # Prefect passes the classes themselves; taskstash takes policies, so instances.
        "cache_policy",
        [policy for policy in CachePolicy.__subclasses__() if policy is not _NoCache],
    )
    def test_setting_cache_policy_sets_persist_result_to_true(
        self, cache_policy: type[CachePolicy]
    ) -> None:
        @task(cache_policy=cache_policy())
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(cache_policy=cache_policy())

        assert my_task.persist_result is True
        assert new_task.persist_result is True

    def test_setting_cache_key_fn_sets_persist_result_to_true(self) -> None:
        @task(cache_key_fn=lambda *_: "test-key")
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(cache_key_fn=lambda *_: "test-key")

        assert my_task.persist_result is True
        assert new_task.persist_result is True

    def test_setting_result_storage_sets_persist_result_to_true(self, tmp_path: Path) -> None:
        block = tmp_path  # Prefect: a saved LocalFileSystem block

        @task(result_storage=block)
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(result_storage=block)

        assert my_task.persist_result is True
        assert new_task.persist_result is True

    def test_setting_result_serializer_sets_persist_result_to_true(self) -> None:
        @task(result_serializer="json")
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(result_serializer="json")

        assert my_task.persist_result is True
        assert new_task.persist_result is True

    def test_setting_result_storage_key_sets_persist_result_to_true(self) -> None:
        @task(result_storage_key="test-key")
        def my_task() -> None:
            pass

        @task
        def base() -> None:
            pass

        new_task = base.with_options(result_storage_key="test-key")

        assert my_task.persist_result is True
        assert new_task.persist_result is True

    def test_result_storage_accepts_path_object(self, tmp_path: Path) -> None:
        storage_path = Path(tmp_path) / "results"

        @task(result_storage=storage_path)
        def my_task() -> int:
            return 42

        assert my_task.result_storage == storage_path
        assert my_task.persist_result is True

    def test_result_storage_with_path_execution(self, tmp_path: Path) -> None:
        storage_path = Path(tmp_path) / "results"

        @task(result_storage=storage_path, persist_result=True)
        def my_task(x: int) -> int:
            return x * 2

        @flow
        def test_flow() -> int:
            return my_task(5)

        result = test_flow()
        assert result == 10

    def test_result_storage_path_with_with_options(self, tmp_path: Path) -> None:
        path1 = Path(tmp_path) / "path1"
        path2 = Path(tmp_path) / "path2"

        @task(result_storage=path1)
        def base() -> None:
            pass

        new_task = base.with_options(result_storage=path2)

        assert base.result_storage == path1
        assert new_task.result_storage == path2
        assert base.persist_result is True
        assert new_task.persist_result is True

    def test_result_storage_path_relative(self) -> None:
        @task(result_storage=Path("./relative/path"))
        def my_task() -> str:
            return "test"

        assert my_task.result_storage == Path("./relative/path")
        assert my_task.persist_result is True


class TestTaskCaching:
    def test_repeated_task_call_within_flow_is_cached_by_default(self) -> None:
        @task(persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(1, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == first_state.result()

    def test_cache_hits_within_flows_are_cached(self) -> None:
        @task(cache_key_fn=lambda *_: "cache_hit-1", persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(2, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == first_state.result()

    def test_many_repeated_cache_hits_within_flows_cached(self) -> None:
        @task(cache_key_fn=lambda *_: "cache_hit-2", persist_result=True)
        def foo(x: int) -> int:
            return x

        @flow
        def bar() -> Any:
            foo(1, return_state=True)  # populate the cache
            return [foo(i, return_state=True) for i in range(5)]

        states = bar()
        assert all(state.name == "Cached" for state in states), states

    def test_cache_hits_between_flows_are_cached(self) -> None:
        @task(cache_key_fn=lambda *_: "cache_hit-3", persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar(x: Any) -> Any:
            return foo(x, return_state=True)

        first_state = bar(1)
        second_state = bar(2)
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == first_state.result() == 1

    def test_cache_misses_arent_cached(self) -> None:
        # this hash fn won't return the same value twice
        def mutating_key(*_: Any, tally: list[str] = []) -> str:  # noqa: B006
            tally.append("x")
            return "call tally:" + "".join(tally)

        @task(cache_key_fn=mutating_key, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(1, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"

    def test_cache_key_fn_receives_context(self) -> None:
        def get_flow_run_id(context: TaskRunContext, args: dict[str, Any]) -> str:
            return str(context.task_run.flow_run_id)

        @task(cache_key_fn=get_flow_run_id, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo("something", return_state=True), foo("different", return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert first_state.result() == "something"

        assert second_state.name == "Cached"
        assert second_state.result() == "something"

        third_state, fourth_state = bar()
        assert third_state.name == "Completed"
        assert fourth_state.name == "Cached"
        assert third_state.result() == "something"
        assert fourth_state.result() == "something"

    def test_cache_key_fn_arg_inputs_are_stable(self) -> None:
        def stringed_inputs(context: TaskRunContext, args: dict[str, Any]) -> str:
            return str(args)

        @task(cache_key_fn=stringed_inputs, persist_result=True)
        def foo(a: int, b: int, c: int = 3) -> int:
            return a + b + c

        @flow
        def bar() -> Any:
            return (
                foo(1, 2, 3, return_state=True),
                foo(1, b=2, return_state=True),
                foo(c=3, a=1, b=2, return_state=True),
            )

        first_state, second_state, third_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert third_state.name == "Cached"

        assert first_state.result() == 6
        assert second_state.result() == 6
        assert third_state.result() == 6

    def test_cache_key_hits_with_future_expiration_are_cached(self) -> None:
        @task(
            cache_key_fn=lambda *_: "cache-hit-4",
            cache_expiration=datetime.timedelta(seconds=5),
            persist_result=True,
        )
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(2, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == 1

    def test_cache_key_hits_with_past_expiration_are_not_cached(self) -> None:
        @task(
            cache_key_fn=lambda *_: "cache-hit-5",
            cache_expiration=datetime.timedelta(seconds=-5),
            persist_result=True,
        )
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(2, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert second_state.result() != first_state.result()

    def test_cache_misses_w_refresh_cache(self) -> None:
        @task(cache_key_fn=lambda *_: "cache-hit-6", refresh_cache=True, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(2, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert second_state.result() != first_state.result()

    def test_cache_hits_wo_refresh_cache(self) -> None:
        @task(cache_key_fn=lambda *_: "cache-hit-7", refresh_cache=False, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return foo(1, return_state=True), foo(2, return_state=True)

        first_state, second_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == first_state.result()

    def test_tasks_refresh_cache_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        @task(cache_key_fn=lambda *_: "cache-hit-8", persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @task(cache_key_fn=lambda *_: "cache-hit-8", refresh_cache=True, persist_result=True)
        def refresh_task(x: Any) -> Any:
            return x

        @task(cache_key_fn=lambda *_: "cache-hit-8", refresh_cache=False, persist_result=True)
        def not_refresh_task(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            foo(0)
            return (
                foo(1, return_state=True),
                refresh_task(2, return_state=True),
                not_refresh_task(3, return_state=True),
            )

        monkeypatch.setenv("TASKSTASH_TASKS_REFRESH_CACHE", "true")
        first_state, second_state, third_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert third_state.name == "Cached"
        assert second_state.result() != first_state.result()
        assert third_state.result() == second_state.result()

    def test_cache_key_fn_receives_self_if_method(self) -> None:
        """Two instances of one class do not share a cache: `self` is part of the inputs."""
        cache_args = []

        def stringed_inputs(context: TaskRunContext, args: dict[str, Any]) -> str:
            cache_args.append(args)
            return str(args)

        class Foo:
            def __init__(self, x: int) -> None:
                self.x = x

            @task(cache_key_fn=stringed_inputs, persist_result=True)
            def add(self, a: int) -> int:
                return a + self.x

        # create an instance that adds 1 and another that adds 100
        f1 = Foo(1)
        f2 = Foo(100)

        @flow
        def bar() -> Any:
            return (
                f1.add(5, return_state=True),
                f1.add(5, return_state=True),
                f2.add(5, return_state=True),
                f2.add(5, return_state=True),
            )

        s1, s2, s3, s4 = bar()
        assert s1.name == "Completed"
        assert s2.name == "Cached"
        assert s3.name == "Completed"
        assert s4.name == "Cached"

        assert cache_args[0] == {"self": f1, "a": 5}
        assert cache_args[1] == {"self": f1, "a": 5}
        assert cache_args[2] == {"self": f2, "a": 5}
        assert cache_args[3] == {"self": f2, "a": 5}

        assert s1.result() == 6
        assert s2.result() == 6
        assert s3.result() == 105
        assert s4.result() == 105

    def test_instance_methods_can_share_a_cache(self) -> None:
        def stringed_inputs(context: TaskRunContext, args: dict[str, Any]) -> str:
            # remove the self arg from the cache key
            cache_args = args.copy()
            cache_args.pop("self")
            return str(cache_args)

        class Foo:
            def __init__(self, x: int) -> None:
                self.x = x

            @task(cache_key_fn=stringed_inputs, persist_result=True)
            def add(self, a: int) -> int:
                return a + self.x

        f1 = Foo(1)
        f2 = Foo(100)

        @flow
        def bar() -> Any:
            return (
                f1.add(5, return_state=True),
                f1.add(5, return_state=True),
                f2.add(5, return_state=True),
                f2.add(5, return_state=True),
            )

        s1, s2, s3, s4 = bar()
        assert s1.name == "Completed"
        assert s2.name == "Cached"
        assert s3.name == "Cached"
        assert s4.name == "Cached"
        assert [s.result() for s in (s1, s2, s3, s4)] == [6, 6, 6, 6]

    def test_cache_key_fn_takes_precedence_over_cache_policy(self, tmp_path: Path) -> None:
        # Prefect logs "`cache_key_fn` will be used"; taskstash warns (TaskstashWarning).
        with pytest.warns(TaskstashWarning, match="cache_key_fn gives the key"):

            @task(
                cache_key_fn=lambda *_: "cache-hit-9",
                cache_policy=INPUTS,
                result_storage=tmp_path,
                persist_result=True,
            )
            def foo(x: int) -> int:
                return x

        first_state = foo(1, return_state=True)
        second_state = foo(2, return_state=True)
        assert first_state.name == "Completed"
        assert second_state.name == "Cached"
        assert second_state.result() == first_state.result()

    def test_changing_result_storage_key_busts_cache(self) -> None:
        @task(
            cache_key_fn=lambda *_: "cache-hit-10",
            result_storage_key="before",
            persist_result=True,
        )
        def foo(x: int) -> int:
            return x

        first_state = foo(1, return_state=True)
        second_state = foo.with_options(result_storage_key="after")(2, return_state=True)
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert first_state.result() == 1
        assert second_state.result() == 2

    def test_false_persist_results_sets_cache_policy_to_none(self) -> None:
        @task(persist_result=False)
        def foo(x: Any) -> Any:
            return x

        assert foo.cache_policy == NO_CACHE

    def test_warns_went_false_persist_result_and_cache_policy(self) -> None:
        with pytest.warns(TaskstashWarning, match="persist_result=False"):

            @task(persist_result=False, cache_policy=INPUTS)
            def foo(x: Any) -> Any:
                return x

        assert foo.cache_policy == NO_CACHE

    def test_no_cache_can_be_configured_as_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Read at each call: the task's calls stop caching, whenever it was decorated.
        @task(persist_result=True)
        def foo(x: Any) -> Any:
            return x

        monkeypatch.setenv("TASKSTASH_TASKS_DEFAULT_NO_CACHE", "true")
        assert [s.name for s in _twice_in_a_flow(foo)] == ["Completed", "Completed"]

    def test_no_cache_default_can_be_overrided(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TASKSTASH_TASKS_DEFAULT_NO_CACHE", "true")

        @task(cache_policy=DEFAULT)
        def foo(x: Any) -> Any:
            return x

        @task(cache_key_fn=lambda *_: "no-cache-default")
        def bar(x: Any) -> Any:
            return x

        assert foo.cache_policy == DEFAULT
        assert bar.cache_policy != NO_CACHE
        assert [s.name for s in _twice_in_a_flow(foo)] == ["Completed", "Cached"]
        assert [s.name for s in _twice_in_a_flow(bar)] == ["Completed", "Cached"]

    def test_no_cache_default_is_respected_even_with_result_persistence(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TASKSTASH_TASKS_DEFAULT_NO_CACHE", "true")

        @task(persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @task(result_storage_key="foo-bar")
        def zig(x: Any) -> Any:
            return x

        assert [s.name for s in _twice_in_a_flow(foo)] == ["Completed", "Completed"]
        assert [s.name for s in _twice_in_a_flow(zig)] == ["Completed", "Completed"]

    @pytest.mark.parametrize("cache_policy", [NO_CACHE, None])
    def test_does_not_warn_went_false_persist_result_and_none_cache_policy(
        self, cache_policy: CachePolicy | None
    ) -> None:
        @task(persist_result=False, cache_policy=cache_policy)
        def foo(x: Any) -> Any:
            return x

        # Prefect keeps None as given; taskstash's policy is always a policy.
        assert foo.cache_policy == NO_CACHE

    def test_unhashable_input_workarounds(self) -> None:
        lock = threading.Lock()

        # Solution 1: Use cache_key_fn to exclude problematic argument
        def cache_on_x_only(context: TaskRunContext, parameters: dict[str, Any]) -> str:
            return str(parameters.get("x"))

        @task(cache_key_fn=cache_on_x_only, persist_result=True)
        def foo_with_key_fn(x: Any, lock_obj: Any) -> Any:
            return x

        # Solution 2: Disable caching entirely
        @task(cache_policy=NO_CACHE, persist_result=True)
        def foo_with_none_policy(x: Any, lock_obj: Any) -> Any:
            return x

        # Solution 3: Subtract the problematic argument from the cache policy
        @task(cache_policy=DEFAULT - "lock_obj", persist_result=True)
        def foo_with_subtraction(x: Any, lock_obj: Any) -> Any:
            return x

        @flow
        def test_flow() -> Any:
            return (
                foo_with_key_fn(42, lock_obj=lock, return_state=True),
                foo_with_key_fn(42, lock_obj=lock, return_state=True),
                foo_with_none_policy(42, lock_obj=lock, return_state=True),
                foo_with_none_policy(42, lock_obj=lock, return_state=True),
                foo_with_subtraction(42, lock_obj=lock, return_state=True),
                foo_with_subtraction(42, lock_obj=lock, return_state=True),
            )

        s1, s2, s3, s4, s5, s6 = test_flow()
        assert [s.name for s in (s1, s2, s3, s4, s5, s6)] == [
            "Completed",
            "Cached",
            "Completed",
            "Completed",
            "Completed",
            "Cached",
        ]
        assert [s.result() for s in (s1, s2, s3, s4, s5, s6)] == [42] * 6

    def test_disable_caching_setting_disables_caching_regardless_of_cache_policy(
        self, monkeypatch: pytest.MonkeyPatch, caplog_text: list[str]
    ) -> None:
        @task(cache_policy=TASK_SOURCE)
        def foo(x: Any) -> Any:
            return x

        monkeypatch.setenv("TASKSTASH_TASKS_DISABLE_CACHING", "true")
        assert [s.name for s in _twice_in_a_flow(foo)] == ["Completed", "Completed"]
        assert not any("persist_result" in message for message in caplog_text)

    def test_disable_caching_setting_allows_normal_caching_when_false(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TASKSTASH_TASKS_DISABLE_CACHING", "false")

        @task(cache_policy=TASK_SOURCE)
        def foo(x: Any) -> Any:
            return x

        assert foo.cache_policy == TASK_SOURCE
        assert foo.persist_result is True
        assert [s.name for s in _twice_in_a_flow(foo)] == ["Completed", "Cached"]


def _twice_in_a_flow(the_task: Task[..., Any]) -> list[Any]:
    @flow
    def twice() -> list[Any]:
        return [the_task(1, return_state=True), the_task(1, return_state=True)]

    return twice()


class TestCacheFunctionBuiltins:
    def test_task_input_hash_within_flows(self) -> None:
        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return (
                foo(1, return_state=True),
                foo(2, return_state=True),
                foo(1, return_state=True),
            )

        first_state, second_state, third_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert third_state.name == "Cached"

        assert first_state.result() != second_state.result()
        assert first_state.result() == third_state.result()
        assert first_state.result() == 1

    def test_task_input_hash_between_flows(self) -> None:
        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar(x: Any) -> Any:
            return foo(x, return_state=True)

        first_state = bar(1)
        second_state = bar(2)
        third_state = bar(1)
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert third_state.name == "Cached"
        assert first_state.result() != second_state.result()
        assert first_state.result() == third_state.result() == 1

    def test_task_input_hash_works_with_object_return_types(self) -> None:
        class TestClass:
            def __init__(self, x: int) -> None:
                self.x = x

            def __eq__(self, other: object) -> bool:
                return type(self) is type(other) and self.x == other.x

        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(x: int) -> TestClass:
            return TestClass(x)

        @flow
        def bar() -> Any:
            return (
                foo(1, return_state=True),
                foo(2, return_state=True),
                foo(1, return_state=True),
            )

        first_state, second_state, third_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert third_state.name == "Cached"

        assert first_state.result() != second_state.result()
        assert first_state.result() == third_state.result()

    def test_task_input_hash_works_with_object_input_types(self) -> None:
        # Prefect defines Holder (its TestClass) in the test; taskstash hashes objects of classes
        # it can name again (module level), and warns that a function's local class has no name.
        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(instance: Holder) -> int:
            return instance.x

        @flow
        def bar() -> Any:
            return (
                foo(Holder(1), return_state=True),
                foo(Holder(2), return_state=True),
                foo(Holder(1), return_state=True),
            )

        first_state, second_state, third_state = bar()
        assert first_state.name == "Completed"
        assert second_state.name == "Completed"
        assert third_state.name == "Cached"

        assert first_state.result() != second_state.result()
        assert first_state.result() == third_state.result() == 1

    def test_task_input_hash_works_with_block_input_types_and_bytes(self) -> None:
        class TestBlock(pydantic.BaseModel):  # Prefect: a Block, itself a pydantic model
            x: int
            y: int
            z: bytes

        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(instance: TestBlock) -> int:
            return instance.x

        @flow
        def bar() -> Any:
            return (
                foo(TestBlock(x=1, y=2, z=b"dog"), return_state=True),  # same
                foo(TestBlock(x=4, y=2, z=b"dog"), return_state=True),  # different x
                foo(TestBlock(x=1, y=2, z=b"dog"), return_state=True),  # same
                foo(TestBlock(x=1, y=2, z="dog".encode("latin-1")), return_state=True),  # same
                foo(TestBlock(x=1, y=2, z=b"cat"), return_state=True),  # different z
            )

        states = bar()
        assert [s.name for s in states] == [
            "Completed",
            "Completed",
            "Cached",
            "Cached",
            "Completed",
        ]
        assert states[0].result() == states[2].result() == states[3].result() == 1

    def test_task_input_hash_depends_on_task_key_and_code(self) -> None:
        @task(cache_key_fn=task_input_hash, persist_result=True)
        def foo(x: Any) -> Any:
            return x

        def foo_new_code(x: Any) -> Any:
            return x + 1

        @task(cache_key_fn=task_input_hash, persist_result=True)
        def bar(x: Any) -> Any:
            return x

        @flow
        def my_flow() -> Any:
            first = foo(1, return_state=True)
            second = foo(1, return_state=True)
            foo.fn = foo_new_code
            third = foo(1, return_state=True)
            fourth = bar(1, return_state=True)
            fifth = bar(1, return_state=True)
            return first, second, third, fourth, fifth

        # Prefect also reassigns `foo.fn` to a same-bodied function of another name and expects
        # a hit, since it hashes bytecode; taskstash hashes the normalised source, name included.
        states = my_flow()
        assert [s.name for s in states] == [
            "Completed",
            "Cached",
            "Completed",
            "Completed",
            "Cached",
        ]
        assert states[0].result() == states[1].result() == 1
        assert states[0].result() != states[2].result()
        assert states[3].result() == states[4].result() == 1


class TestCachePolicies:
    def test_cache_policy_init_to_none_when_not_persisting_results(self) -> None:
        @task(persist_result=False)
        def my_task() -> None:
            pass

        assert my_task.cache_policy is NO_CACHE

    def test_cache_policy_init_to_default_when_persisting_results(self) -> None:
        @task(persist_result=True)
        def my_task() -> None:
            pass

        assert my_task.cache_policy is DEFAULT

    def test_cache_policy_init_to_none_if_result_storage_key(self) -> None:
        @task(result_storage_key="foo", persist_result=True)
        def my_task() -> None:
            pass

        # Prefect: None. taskstash names what keys the calls.
        assert my_task.cache_policy == ResultStorageKeyPolicy(template="foo")
        assert my_task.result_storage_key == "foo"

    def test_cache_policy_inits_as_expected(self) -> None:
        @task(cache_policy=TASK_SOURCE, persist_result=True)
        def my_task() -> None:
            pass

        assert my_task.cache_policy is TASK_SOURCE


class TestTaskWithOptions:
    def test_with_options_refresh_cache(self) -> None:
        @task(cache_key_fn=lambda *_: "cache hit", persist_result=True)
        def foo(x: Any) -> Any:
            return x

        @flow
        def bar() -> Any:
            return (
                foo(1, return_state=True),
                foo(2, return_state=True),
                foo.with_options(refresh_cache=True)(3, return_state=True),
                foo(4, return_state=True),
            )

        first, second, third, fourth = bar()
        assert first.name == "Completed"
        assert second.name == "Cached"
        assert third.name == "Completed"
        assert fourth.name == "Cached"

        assert first.result() == second.result()
        assert second.result() != third.result()
        assert third.result() == fourth.result()
        assert fourth.result() != first.result()


class Holder:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.x == other.x


class BaseFooModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ignored_types=(Task,))
    x: int


class BaseFoo:
    def __init__(self, x: int):
        self.x = x


class TestTaskMethods:
    @pytest.mark.parametrize("T", [BaseFoo, BaseFooModel])
    def test_task_supports_instance_methods(self, T: Any) -> None:
        class Foo(T):  # type: ignore[misc]
            @task
            def instance_method(self) -> int:
                return self.x  # type: ignore[no-any-return]

        f = Foo(x=1)
        assert Foo(x=5).instance_method() == 5
        # ensure the instance binding is not global
        assert f.instance_method() == 1

        assert isinstance(Foo(x=10).instance_method, Task)

    @pytest.mark.parametrize("T", [BaseFoo, BaseFooModel])
    def test_task_supports_instance_methods_called_with_instance(self, T: Any) -> None:
        class Foo(T):  # type: ignore[misc]
            @task
            def instance_method(self) -> int:
                return self.x  # type: ignore[no-any-return]

        f = Foo(x=1)
        # call like a class method with provided instance
        assert Foo.instance_method(f) == 1
        # call as instance method to ensure there was no class binding in above call
        assert f.instance_method() == 1

    @pytest.mark.parametrize("T", [BaseFoo, BaseFooModel])
    def test_task_supports_class_methods(self, T: Any) -> None:
        class Foo(T):  # type: ignore[misc]
            @task
            @classmethod
            def class_method(cls) -> str:
                return cls.__name__

            @classmethod
            @task
            def class_method_of_a_different_order(cls) -> str:
                return cls.__name__

        # Type checkers see the task's function, whose `cls` the classmethod binds at run time.
        assert Foo.class_method() == "Foo"  # type: ignore[call-overload]
        assert isinstance(Foo.class_method, Task)
        # Python 3.11 and 3.12 chain classmethod onto the task's __get__ (3.13 no longer does).
        assert Foo.class_method_of_a_different_order() == "Foo"  # type: ignore[call-overload]

    @pytest.mark.parametrize("T", [BaseFoo, BaseFooModel])
    def test_task_supports_static_methods(self, T: Any) -> None:
        class Foo(T):  # type: ignore[misc]
            @staticmethod
            @task
            def static_method() -> str:
                return "static"

            @task
            @staticmethod
            def static_method_of_a_different_order() -> str:
                return "static"

        assert Foo.static_method() == "static"
        assert isinstance(Foo.static_method, Task)

        assert Foo.static_method_of_a_different_order() == "static"
        assert Foo(x=1).static_method_of_a_different_order() == "static"
        assert isinstance(Foo.static_method_of_a_different_order, Task)

    def test_instance_method_doesnt_create_copy_of_self(self) -> None:
        class Foo(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(ignored_types=(Task,))

            @task
            def get_x(self) -> Foo:
                return self

        f = Foo()
        assert f.get_x() == f
        assert f.get_x() is f

    @pytest.mark.parametrize("T", [BaseFoo, BaseFooModel])
    def test_task_supports_async_instance_methods(self, T: Any) -> None:
        class Foo(T):  # type: ignore[misc]
            @task
            async def instance_method(self) -> int:
                return self.x  # type: ignore[no-any-return]

        f = Foo(x=1)
        assert asyncio.run(Foo(x=5).instance_method()) == 5
        assert asyncio.run(f.instance_method()) == 1
        assert isinstance(Foo(x=10).instance_method, Task)


# tests/results/test_task_results.py ---------------------------------------------------------------


def _record_of(task_name: str, storage: Path) -> Any:
    (record,) = Cache(storage=storage).records(task=task_name)
    return record


@pytest.mark.parametrize("serializer", ["json", "pickle"])
@pytest.mark.parametrize("source", ["child", "parent"])
def test_task_result_serializer(source: str, serializer: str, tmp_path: Path) -> None:
    storage = tmp_path

    @flow(result_serializer=serializer if source == "parent" else None, result_storage=storage)
    def foo() -> Any:
        return bar(return_state=True)

    @task(
        result_serializer=serializer if source == "child" else None,
        result_storage=storage,
        persist_result=True,
    )
    def bar() -> int:
        return 1

    task_state = foo()
    assert task_state.result() == 1
    assert _record_of("bar", storage).serializer == serializer


@pytest.mark.parametrize("source", ["child", "parent"])
def test_task_result_storage(source: str, tmp_path: Path) -> None:
    storage = tmp_path / "test-storage"

    @flow(result_storage=storage if source == "parent" else None)
    def foo() -> Any:
        return bar(return_state=True)

    @task(result_storage=storage if source == "child" else None, persist_result=True)
    def bar() -> int:
        return 1

    task_state = foo()
    assert task_state.result() == 1
    record = _record_of("bar", storage)
    assert (storage / record.location).is_file()


def test_task_result_static_storage_key(tmp_path: Path) -> None:
    storage = tmp_path / "test-storage"

    @flow
    def foo() -> Any:
        return bar(return_state=True)

    @task(result_storage=storage, persist_result=True, result_storage_key="test")
    def bar() -> int:
        return 1

    task_state = foo()
    assert task_state.result() == 1
    assert _record_of("bar", storage).location == "test"
    assert (storage / "test").is_file()


def test_task_result_parameter_formatted_storage_key(tmp_path: Path) -> None:
    storage = tmp_path / "test-storage"

    @flow
    def foo() -> Any:
        return bar(y="foo", return_state=True)

    @task(
        result_storage=storage,
        persist_result=True,
        result_storage_key="{parameters[x]}-{parameters[y]}-bar",
    )
    def bar(x: int = 1, y: str = "test") -> int:
        return 1

    task_state = foo()
    assert task_state.result() == 1
    assert _record_of("bar", storage).location == "1-foo-bar"


def test_task_result_flow_run_formatted_storage_key(tmp_path: Path) -> None:
    storage = tmp_path / "test-storage"

    @flow
    def foo() -> Any:
        return bar(y="foo", return_state=True)

    @task(
        result_storage=storage,
        persist_result=True,
        result_storage_key="{flow_run.flow_name}__bar",
    )
    def bar(x: int = 1, y: str = "test") -> int:
        return 1

    task_state = foo()
    assert task_state.result() == 1
    assert _record_of("bar", storage).location == "foo__bar"


# The cases, beyond Prefect's tests -------------------------------------------------------


def test_a_fixed_result_storage_key_is_the_cache_key_outside_a_flow() -> None:
    @task(result_storage_key="fixed")
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    second = f(2, return_state=True)
    assert second.name == "Cached"
    assert second.result() == 1


def test_a_templated_result_storage_key_caches_without_a_policy(taskstash_home: Path) -> None:
    ran: list[int] = []

    @task(result_storage_key="{parameters[x]}-bar")
    def f(x: int) -> int:
        ran.append(x)
        return x

    assert [f(1), f(1), f(2)] == [1, 1, 2]
    assert ran == [1, 2]
    assert (taskstash_home / "storage" / "1-bar").is_file()
    explanation = explain(f, 1)
    assert explanation.hit
    assert explanation.components == {"result_storage_key": "1-bar"}


def test_a_result_storage_key_wins_over_a_cache_key_fn_and_a_policy() -> None:
    with pytest.warns(TaskstashWarning, match="cache_key_fn gives the key"):

        @task(
            cache_policy=INPUTS,
            cache_key_fn=lambda context, parameters: str(parameters["x"]),
            result_storage_key="one-name",
        )
        def f(x: int) -> int:
            return x

    assert isinstance(f.cache_policy, ResultStorageKeyPolicy)
    assert [f(1), f(2)] == [1, 1]


@pytest.mark.parametrize(
    "options",
    [{"result_storage": "results"}, {"result_serializer": "json"}, {}],
    ids=["result_storage", "result_serializer", "bare"],
)
def test_result_options_turn_caching_on_and_a_bare_task_stays_uncached(
    options: dict[str, Any], tmp_path: Path
) -> None:
    if "result_storage" in options:
        options = {"result_storage": tmp_path / "results"}

    @task(**options)
    def f(x: int) -> int:
        return x

    expected = ["Completed", "Completed"] if not options else ["Completed", "Cached"]
    assert [s.name for s in _twice_in_a_flow(f)] == expected


def _warnings(messages: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in messages if r.levelno == logging.WARNING]


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    found: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record)

    logger = logging.getLogger("taskstash")
    handler = Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    yield found
    logger.removeHandler(handler)


def broken_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    raise RuntimeError("no key today")


def test_a_raising_cache_key_fn_runs_the_call_uncached_and_says_so_once(
    records: list[logging.LogRecord],
) -> None:
    ran: list[int] = []

    @task(cache_key_fn=broken_key)
    def f(x: int) -> int:
        ran.append(x)
        return x

    assert [f(1), f(1), f(1)] == [1, 1, 1]
    assert ran == [1, 1, 1]
    (warning,) = _warnings(records)
    assert f"{__name__}.broken_key" in warning
    assert "RuntimeError: no key today" in warning


class Adder:
    def __init__(self, x: int, lock: Any = None) -> None:
        self.x = x
        self.lock = lock
        self.runs = 0

    @task(cache_policy=INPUTS - "self")
    def shared(self, a: int) -> int:
        return a + self.x

    @task(cache_policy=INPUTS)
    def add(self, a: int) -> int:
        return a + self.x

    @task(cache_policy=INPUTS)
    @classmethod
    def name_of(cls, suffix: str) -> str:
        return cls.__name__ + suffix


def test_a_method_task_keys_self_by_value(records: list[logging.LogRecord]) -> None:
    assert Adder(1).add(5) == 6
    assert Adder(1).add(5, return_state=True).name == "Cached"  # an equal instance
    assert Adder(2).add(5, return_state=True).name == "Completed"
    assert Adder(100).shared(5) == 105
    assert Adder(1).shared(5) == 105  # self left out of the key
    assert Adder.add(Adder(1), 5, return_state=True).name == "Cached"
    assert Adder.name_of("!") == "Adder!"  # type: ignore[call-overload]
    assert Adder.name_of("!", return_state=True).name == "Cached"
    assert _warnings(records) == []


def test_a_method_task_whose_instance_cannot_be_hashed_runs_uncached_naming_self(
    records: list[logging.LogRecord],
) -> None:
    holder = Adder(1, lock=threading.Lock())
    assert [holder.add(5), holder.add(5)] == [6, 6]
    (warning,) = _warnings(records)
    assert "argument 'self' cannot be hashed" in warning


def test_task_options_are_attributes_reflecting_what_was_resolved(tmp_path: Path) -> None:
    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        return "k"

    expiration = datetime.timedelta(hours=1)

    @task(
        cache_key_fn=key_fn,
        cache_expiration=expiration,
        refresh_cache=True,
        result_storage=tmp_path,
        result_serializer="json",
        cache_result_in_memory=False,
    )
    def f(x: int) -> int:
        return x

    assert f.cache_policy == CacheKeyFnPolicy(cache_key_fn=key_fn)
    assert f.cache_key_fn is key_fn
    assert f.cache_expiration == expiration
    assert f.refresh_cache is True
    assert f.persist_result is True
    assert f.result_storage == tmp_path
    assert f.result_storage_key is None
    assert f.result_serializer == "json"
    assert f.cache_result_in_memory is False

    @task
    def bare(x: int) -> int:
        return x

    assert (bare.cache_policy, bare.persist_result, bare.result_serializer) == (DEFAULT, None, None)


@pytest.mark.parametrize("seconds", [0, -5])
def test_zero_and_negative_expirations_are_accepted_and_never_hit(seconds: int) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS, cache_expiration=datetime.timedelta(seconds=seconds))
    def f(x: int) -> int:
        ran.append(x)
        return x

    assert [f(1), f(1)] == [1, 1]
    assert ran == [1, 1]


def test_task_input_hash_is_none_for_inputs_without_a_canonical_form(
    records: list[logging.LogRecord],
) -> None:
    ran: list[int] = []

    @task(cache_key_fn=task_input_hash)
    def f(x: int, lock: Any) -> int:
        ran.append(x)
        return x

    lock = threading.Lock()
    assert [f(1, lock), f(1, lock)] == [1, 1]
    assert ran == [1, 1]
    (warning,) = _warnings(records)
    assert "argument 'lock' cannot be hashed" in warning


def test_task_input_hash_is_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "pipeline_for_hash.py").write_text(
        "from taskstash import task\n"
        "from taskstash.context import TaskRun, TaskRunContext\n"
        "from taskstash.tasks import task_input_hash\n"
        "@task(cache_key_fn=task_input_hash)\n"
        "def step(x, names):\n"
        "    return x\n"
        "arguments = {'x': 1, 'names': {'b', 'a', 'c'}}\n"
        "context = TaskRunContext(step, TaskRun('step', None), arguments, None)\n"
        "print(task_input_hash(context, arguments))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, str(tmp_path / "pipeline_for_hash.py")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(keys) == 1
    assert len(next(iter(keys))) == 32


def test_a_flow_s_persist_result_applies_to_tasks_that_leave_theirs_unset() -> None:
    @task
    def bare(x: int) -> int:
        return x

    @task(persist_result=True)
    def own(x: int) -> int:
        return x

    @flow(persist_result=True)
    def persisting() -> list[Any]:
        return [bare(1, return_state=True), bare(1, return_state=True)]

    @flow(persist_result=False)
    def not_persisting() -> list[Any]:
        return [
            bare(1, return_state=True),
            bare(1, return_state=True),
            own(1, return_state=True),
            own(1, return_state=True),
        ]

    assert [s.name for s in persisting()] == ["Completed", "Cached"]
    assert [s.name for s in not_persisting()] == ["Completed", "Completed", "Completed", "Cached"]


def test_persist_by_default_caches_tasks_that_leave_persist_result_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @task
    def bare(x: int) -> int:
        return x

    @flow(persist_result=False)
    def not_persisting() -> list[Any]:
        return [bare(1, return_state=True), bare(1, return_state=True)]

    monkeypatch.setenv("TASKSTASH_RESULTS_PERSIST_BY_DEFAULT", "true")
    assert [s.name for s in _twice_in_a_flow(bare)] == ["Completed", "Cached"]
    assert [s.name for s in not_persisting()] == ["Completed", "Completed"]


def test_explain_says_why_a_task_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    @task
    def bare(x: int) -> int:
        return x

    @task(cache_policy=INPUTS)
    def keyed(x: int) -> int:
        return x

    assert "TASKSTASH_RESULTS_PERSIST_BY_DEFAULT" in explain(bare, 1).reason
    monkeypatch.setenv("TASKSTASH_TASKS_DISABLE_CACHING", "1")
    assert explain(keyed, 1).reason == "TASKSTASH_TASKS_DISABLE_CACHING is set"
