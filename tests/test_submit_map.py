"""`task.submit`, `task.map`, futures, `wait`, `as_completed`: Prefect's behaviour.

Most tests are Prefect's (tests/test_tasks.py: TestTaskSubmit, TestTaskFutures, TestTaskMap,
TestNestedTasks; tests/test_futures.py), with imports renamed and `await state.result()` written
`state.result()` (taskstash's states hold their values).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from taskstash import Cached, Completed, State, flow, task, unmapped
from taskstash.annotations import allow_failure, quote
from taskstash.cache_policies import INPUTS, RUN_ID
from taskstash.context import current_flow_run
from taskstash.exceptions import MappingLengthMismatch, MappingMissingIterable, UpstreamTaskError
from taskstash.futures import TaskFuture, TaskFutureList, as_completed, wait
from taskstash.task_runners import ThreadPoolTaskRunner

# -- submit (Prefect's TestTaskSubmit) ---------------------------------------------------------


def test_sync_task_submitted_inside_sync_flow() -> None:
    @task
    def foo(x: int) -> int:
        return x

    @flow
    def bar() -> TaskFuture[int]:
        future = foo.submit(1)
        assert isinstance(future, TaskFuture)
        return future

    assert bar().result() == 1


def test_sync_task_with_return_state_true() -> None:
    @task
    def foo(x: int) -> int:
        return x

    @flow
    def bar() -> State[int]:
        state = foo.submit(1, return_state=True)
        assert isinstance(state, State)
        return state

    assert bar().result() == 1


async def _async_flow_submits(foo: Any) -> Any:
    @flow
    async def bar() -> Any:
        future = foo.submit(1)
        assert isinstance(future, TaskFuture)
        return future

    return await bar()


def test_async_task_submitted_inside_async_flow() -> None:
    @task
    async def foo(x: int) -> int:
        return x

    assert asyncio.run(_async_flow_submits(foo)).result() == 1


def test_sync_task_submitted_inside_async_flow() -> None:
    @task
    def foo(x: int) -> int:
        return x

    assert asyncio.run(_async_flow_submits(foo)).result() == 1


def test_async_task_submitted_inside_sync_flow() -> None:
    @task
    async def foo(x: int) -> int:
        return x

    @flow
    def bar() -> TaskFuture[int]:
        future = foo.submit(1)
        assert isinstance(future, TaskFuture)
        return future

    assert bar().result() == 1


def test_async_task_with_return_state_true() -> None:
    @task
    async def foo(x: int) -> int:
        return x

    @flow
    async def bar() -> State[int]:
        state = foo.submit(1, return_state=True)
        assert isinstance(state, State)
        return state

    assert asyncio.run(bar()).result() == 1


def test_task_failure_does_not_affect_flow() -> None:
    @task
    def foo() -> None:
        raise ValueError("Test")

    @flow
    def bar() -> str:
        foo.submit()
        return "bar"

    assert bar() == "bar"


def test_downstream_does_not_run_if_upstream_fails() -> None:
    ran: list[int] = []

    @task
    def fails() -> int:
        raise ValueError("Fail task!")

    @task
    def bar(y: int) -> int:
        ran.append(y)
        return y

    @flow
    def test_flow() -> TaskFuture[int]:
        f = fails.submit()
        return bar.submit(f)

    task_state = test_flow().state
    assert task_state.is_pending()
    assert task_state.name == "NotReady"
    assert not ran
    with pytest.raises(UpstreamTaskError, match="'fails' ended in Failed"):
        task_state.result()


def test_downstream_runs_if_upstream_succeeds() -> None:
    @task
    def foo(x: int) -> int:
        return x

    @task
    def bar(y: int) -> int:
        return y + 1

    @flow
    def test_flow() -> int:
        f = foo.submit(1)
        b = bar.submit(f)
        return b.result()

    assert test_flow() == 2


def test_downstream_receives_exception_if_upstream_fails_and_allow_failure() -> None:
    @task
    def fails() -> None:
        raise ValueError("Fail task!")

    @task
    def bar(y: Any) -> Any:
        return y

    @flow
    def test_flow() -> Any:
        f = fails.submit()
        b = bar.submit(allow_failure(f))
        return b.result()

    result = test_flow()
    assert isinstance(result, ValueError)
    assert "Fail task!" in str(result)


def test_downstream_receives_exception_in_collection_if_upstream_fails_and_allow_failure() -> None:
    @task
    def fails() -> None:
        raise ValueError("Fail task!")

    @task
    def bar(y: Any) -> Any:
        return y

    @flow
    def test_flow() -> Any:
        f = fails.submit()
        b = bar.submit(allow_failure([f, 1, 2]))
        return b.result()

    result = test_flow()
    assert isinstance(result, list), f"Expected list; got {type(result)}"
    assert isinstance(result[0], ValueError)
    assert result[1:] == [1, 2]


def test_futures_inside_collections_are_resolved() -> None:
    @task
    def one(x: int) -> int:
        return x

    @task
    def echo(value: Any) -> Any:
        return value

    @flow
    def test_flow() -> Any:
        a, b = one.submit(1), one.submit(2)
        return echo.submit({"a": [a, (b, {a})], "n": 3}).result()

    assert test_flow() == {"a": [1, (2, {1})], "n": 3}


def test_quoted_futures_are_passed_as_futures() -> None:
    @task
    def one() -> int:
        return 1

    @task
    def kind(value: Any) -> str:
        return type(value[0]).__name__

    @flow
    def test_flow() -> str:
        return kind.submit(quote([one.submit()])).result()

    assert test_flow() == "ConcurrentTaskFuture"


def test_wait_for_orders_tasks_that_exchange_no_data() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        time.sleep(0.2)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def test_flow() -> None:
        x = first.submit()
        second.submit(wait_for=[x]).wait()

    test_flow()
    assert order == ["first", "second"]


def test_wait_for_a_failed_upstream_leaves_the_task_not_ready() -> None:
    @task
    def failing_task() -> None:
        raise RuntimeError("I failed!")

    @task
    def downstream_task() -> str:
        return "downstream completed"

    @flow
    def test_flow() -> tuple[State[Any], State[Any]]:
        upstream = failing_task.submit()
        downstream = downstream_task.submit(wait_for=[upstream])
        upstream.wait()
        downstream.wait()
        return upstream.state, downstream.state

    upstream_state, downstream_state = test_flow()
    assert upstream_state.is_failed()
    assert downstream_state.is_pending()
    assert downstream_state.name == "NotReady"


def test_submit_outside_a_flow_runs_in_the_process_thread_pool() -> None:
    # Prefect refuses this (it needs a flow's runner); taskstash's tasks are cached functions
    # first, so a pool of the process runs them.
    @task
    def foo(x: int) -> int:
        return x * 2

    assert foo.submit(4).result() == 8
    assert [f.result() for f in foo.map([1, 2])] == [2, 4]


def test_submit_checks_the_arguments_at_once() -> None:
    @task
    def foo(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        foo.submit(1, 2)


# -- futures (Prefect's TestTaskFutures and tests/test_futures.py) -----------------------------


def test_wait_gets_final_state() -> None:
    @task
    async def foo() -> int:
        return 1

    @flow
    async def my_flow() -> None:
        future = foo.submit()
        future.wait()
        assert future.state.is_completed()

    asyncio.run(my_flow())


def test_wait_returns_none_with_timeout_exceeded() -> None:
    release = threading.Event()

    @task
    def foo() -> int:
        release.wait(10)
        return 1

    @flow
    def my_flow() -> None:
        future = foo.submit()
        future.wait(0.01)
        assert not future.state.is_completed()
        assert future.state.is_pending()
        release.set()

    my_flow()


def test_result_raises_with_timeout_exceeded() -> None:
    release = threading.Event()

    @task
    def foo() -> int:
        release.wait(10)
        return 1

    @flow
    def my_flow() -> None:
        future = foo.submit()
        with pytest.raises(TimeoutError):
            future.result(timeout=0.01)
        release.set()
        assert future.result(timeout=10) == 1

    my_flow()


def test_result_raises_exception_from_task() -> None:
    @task
    async def foo() -> None:
        raise ValueError("Test")

    @flow
    def my_flow() -> bool:
        future = foo.submit()
        with pytest.raises(ValueError, match="Test"):
            future.result()
        return True

    assert my_flow()


def test_result_returns_exception_from_task_if_asked() -> None:
    @task
    def foo() -> None:
        raise ValueError("Test")

    @flow
    def my_flow() -> None:
        future = foo.submit()
        result = future.result(raise_on_failure=False)
        assert isinstance(result, ValueError)
        assert str(result) == "Test"
        assert future.state.is_failed()

    my_flow()


def test_async_tasks_in_sync_flows_return_sync_futures() -> None:
    data = {"value": 1}

    @task
    async def get_data() -> dict[str, int]:
        return data

    @flow
    def test_flow() -> dict[str, int]:
        future = get_data.submit()
        result = future.result()
        assert result == data, "Retrieving the result returns data"
        return result

    assert test_flow() == data


def test_wait_with_timeout_splits_done_and_not_done() -> None:
    release = threading.Event()

    @task
    def quick() -> int:
        return 1

    @task
    def slow() -> int:
        release.wait(10)
        return 2

    @flow
    def test_flow() -> None:
        fast_one, slow_one = quick.submit(), slow.submit()
        fast_one.wait()
        done, not_done = wait([fast_one, slow_one], timeout=0.2)
        assert done == {fast_one}
        assert not_done == {slow_one}
        release.set()
        done, not_done = wait([fast_one, slow_one])
        assert done == {fast_one, slow_one}
        assert not not_done

    test_flow()


def test_as_completed_yields_in_completion_order() -> None:
    release = threading.Event()

    @task
    def waits() -> str:
        release.wait(10)
        return "slow"

    @task
    def quick() -> str:
        return "quick"

    @flow
    def test_flow() -> list[str]:
        slow_one, fast_one = waits.submit(), quick.submit()
        seen = []
        for future in as_completed([slow_one, fast_one, fast_one]):
            seen.append(future.result())
            release.set()
        return seen

    assert test_flow() == ["quick", "slow"]


def test_as_completed_times_out_naming_how_many_are_unfinished() -> None:
    release = threading.Event()

    @task
    def waits() -> None:
        release.wait(10)

    @flow
    def test_flow() -> None:
        futures = [waits.submit(), waits.submit()]
        with pytest.raises(TimeoutError, match=r"2 \(of 2\) futures unfinished"):
            list(as_completed(futures, timeout=0.05))
        release.set()

    test_flow()


def test_add_done_callback_is_called_with_the_future() -> None:
    called: list[Any] = []

    @task
    def foo() -> int:
        return 1

    @flow
    def test_flow() -> None:
        future = foo.submit()
        future.wait()
        future.add_done_callback(called.append)
        assert called == [future]

    test_flow()


# -- map (Prefect's TestTaskMap) ---------------------------------------------------------------


@task
async def add_one(x: int) -> int:
    return x + 1


@task
def add_together(x: int, y: int) -> int:
    return x + y


def test_simple_map() -> None:
    @flow
    def my_flow() -> Any:
        futures = add_one.map([1, 2, 3])
        assert all(isinstance(f, TaskFuture) for f in futures)
        return futures

    assert [state.result() for state in my_flow()] == [2, 3, 4]


def test_simple_map_return_state_true() -> None:
    @flow
    def my_flow() -> Any:
        states = add_one.map([1, 2, 3], return_state=True)
        assert all(isinstance(s, State) for s in states)
        return states

    assert [state.result() for state in my_flow()] == [2, 3, 4]


def test_map_can_take_tuple_and_generator_as_input() -> None:
    @flow
    def my_flow() -> Any:
        return add_one.map((1, 2, 3)).result(), add_one.map(i for i in (1, 2)).result()

    assert my_flow() == ([2, 3, 4], [2, 3])


def test_map_can_take_state_and_future_as_input() -> None:
    @task
    def some_numbers() -> list[int]:
        return [1, 2, 3]

    @flow
    def my_flow() -> Any:
        numbers_state = some_numbers(return_state=True)
        numbers_future = some_numbers.submit()
        return add_one.map(numbers_state).result(), add_one.map(numbers_future).result()

    assert my_flow() == ([2, 3, 4], [2, 3, 4])


def test_can_take_quoted_iterable_as_input() -> None:
    @flow
    def my_flow() -> Any:
        return add_together.map(quote(1), [1, 2, 3]).result()

    assert my_flow() == [2, 3, 4]


def test_map_over_futures_of_a_map() -> None:
    @flow
    def my_flow() -> Any:
        return add_one.map(add_one.map([1, 2, 3])).result()

    assert my_flow() == [3, 4, 5]


@pytest.mark.parametrize("explicit", [True, False])
def test_unmapped_int(explicit: bool) -> None:
    @flow
    def my_flow() -> Any:
        static = unmapped(5) if explicit else 5
        return add_together.map([1, 2, 3], static).result()

    assert my_flow() == [6, 7, 8]


def test_unmapped_iterable() -> None:
    @task
    def add_n_to_items(items: list[int], n: int) -> list[int]:
        return [item + n for item in items]

    @flow
    def my_flow() -> Any:
        return add_n_to_items.map(unmapped([10, 20]), n=[1, 2, 3]).result()

    assert my_flow() == [[11, 21], [12, 22], [13, 23]]


def test_map_refuses_no_iterable_and_lengths_that_differ() -> None:
    @flow
    def my_flow() -> None:
        with pytest.raises(MappingMissingIterable):
            add_together.map(1, 2)
        with pytest.raises(MappingLengthMismatch, match="unmapped"):
            add_together.map([1, 2], [1, 2, 3])

    my_flow()


def test_wait_and_results_of_mapped_tasks() -> None:
    @flow
    def my_flow() -> Any:
        futures = add_one.map([1, 2, 3])
        assert isinstance(futures, TaskFutureList)
        futures.wait()
        assert all(f.state.is_completed() for f in futures)
        return futures.result()

    assert my_flow() == [2, 3, 4]


def test_map_of_a_method_task_binds_the_instance() -> None:
    class Scaler:
        def __init__(self, k: int) -> None:
            self.k = k

        @task
        def scale(self, x: int) -> int:
            return self.k * x

    @flow
    def my_flow() -> Any:
        return Scaler(3).scale.map([1, 2]).result(), Scaler(2).scale.submit(5).result()

    assert my_flow() == ([3, 6], 10)


# -- nested submission (Prefect's TestNestedTasks) ---------------------------------------------


def test_nested_submitted_task_that_also_is_submitted() -> None:
    @task
    def inner_task() -> int:
        return 42

    @task
    def outer_task() -> int:
        return inner_task.submit().result()

    @flow
    def my_flow() -> int:
        return outer_task.submit().result()

    assert my_flow() == 42


def test_nested_map() -> None:
    @task
    def inner_task(x: int) -> int:
        return x * 2

    @task
    def outer_task(x: list[int]) -> int:
        return sum(future.result() for future in inner_task.map(x))

    @flow
    def my_flow() -> int:
        return outer_task([1, 2, 3])

    assert my_flow() == 12


def test_handles_recursively_submitted_tasks() -> None:
    # More than any bounded default pool: every level waits for the one it submitted.
    @task
    def recursive_task(n: int) -> int:
        if n == 0:
            return n
        return recursive_task.submit(n - 1).result()

    @flow
    def test_flow() -> TaskFuture[int]:
        return recursive_task.submit(40)

    assert test_flow().result() == 0


def test_the_flow_waits_for_what_it_submitted() -> None:
    finished: list[int] = []

    @task
    def slow(x: int) -> None:
        time.sleep(0.1)
        finished.append(x)

    @flow
    def test_flow() -> None:
        slow.map([1, 2, 3])

    test_flow()
    assert sorted(finished) == [1, 2, 3]


# -- the flow run, and cache semantics as in a plain call --------------------------------------


def test_submitted_tasks_belong_to_the_flow_run() -> None:
    @task
    def run_id() -> Any:
        run = current_flow_run()
        return run.id if run else None

    @flow
    def test_flow() -> tuple[Any, Any]:
        return current_flow_run().id, run_id.submit().result()  # type: ignore[union-attr]

    outer, inner = test_flow()
    assert outer == inner


@task
def run_id() -> Any:
    run = current_flow_run()
    return run.id if run else None


def in_a_thread(fn: Any) -> Any:
    """Calls `fn` in a new thread (which starts with a context of its own); its value."""
    values = []
    thread = threading.Thread(target=lambda: values.append(fn()))
    thread.start()
    thread.join()
    return values[0]


def test_a_task_called_in_a_thread_the_flow_started_belongs_to_the_flow_run() -> None:
    @task(cache_policy=RUN_ID)
    def once_per_run() -> int:
        return 1

    @flow
    def test_flow() -> tuple[Any, list[Any], Any]:
        here = once_per_run(return_state=True)
        with ThreadPoolExecutor(2) as pool:
            ids = [
                in_a_thread(run_id),
                pool.submit(run_id).result(),
                pool.submit(contextvars.copy_context().run, run_id).result(),
            ]
            there = pool.submit(once_per_run, return_state=True).result()
        return current_flow_run().id, ids, (here, there)  # type: ignore[union-attr]

    outer, ids, (here, there) = test_flow()
    assert ids == [outer] * 3
    assert isinstance(here, Completed)
    assert isinstance(there, Cached)  # RUN_ID: the same run's key
    assert in_a_thread(run_id) is None  # the run is over


def test_a_thread_started_in_a_subflow_belongs_to_the_subflow_run() -> None:
    @flow
    def child() -> tuple[Any, Any]:
        return current_flow_run().id, in_a_thread(run_id)  # type: ignore[union-attr]

    @flow
    def parent() -> tuple[Any, Any, Any]:
        inner, in_child = child()
        return current_flow_run().id, inner, (in_child, in_a_thread(run_id))  # type: ignore[union-attr]

    outer, inner, (in_child, in_parent) = parent()
    assert (in_child, in_parent) == (inner, outer)


def test_a_thread_started_while_flows_run_side_by_side_is_outside_any_flow_run() -> None:
    # No telling which of the two runs started the thread: its calls belong to neither.
    both_running = threading.Barrier(2)

    @flow
    def side(n: int) -> Any:
        both_running.wait(10)
        seen = in_a_thread(run_id)
        both_running.wait(10)
        return seen

    with ThreadPoolExecutor(2) as pool:
        seen = list(pool.map(side, [1, 2]))
    assert seen == [None, None]


@pytest.fixture
def task_lines() -> Any:
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    logger = logging.getLogger("taskstash")
    handler = Collect(level=logging.INFO)
    logger.addHandler(handler)
    yield collected
    logger.removeHandler(handler)


def test_submit_caches_exactly_as_a_plain_call(task_lines: list[str]) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    @flow
    def test_flow() -> list[State[int]]:
        first = square.submit(3, return_state=True)
        plain = square(3, return_state=True)
        submitted = square.submit(3, return_state=True)
        mapped = square.map([3, 4], return_state=True)
        return [first, plain, submitted, *mapped]

    states = test_flow()
    assert [type(state) for state in states] == [Completed, Cached, Cached, Cached, Completed]
    assert [state.result() for state in states] == [9, 9, 9, 9, 16]
    assert calls == [3, 4]
    finished = [line.split(" - ")[1] for line in task_lines if line.startswith("Task run")]
    completed, cached = "Finished in state Completed()", "Finished in state Cached(type=COMPLETED)"
    assert finished[:3] == [completed, cached, cached]
    assert sorted(finished[3:]) == [cached, completed]  # the mapped two run side by side


def test_serializable_computes_once_across_the_runners_threads() -> None:
    calls: list[int] = []
    started = threading.Barrier(8, timeout=10)

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)
        return x + 1

    @task
    def gate(x: int) -> int:
        started.wait()
        return slow(x)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def test_flow() -> list[int]:
        return gate.map([7] * 8).result()

    assert test_flow() == [8] * 8
    assert calls == [7]
