"""The task runner contract, checked against every runner: the thread pool and Dask.

The Dask runner connects to a LocalCluster of two worker processes on 127.0.0.1, started once;
its workers and this process share one cache home, so a plain call here finds what a worker
stored. Arguments are salted per test, since the home outlives a test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_support as rs
from s3_support import environment

from taskstash import Cached, Completed, flow, settings, unmapped
from taskstash.exceptions import UpstreamTaskError
from taskstash.futures import TaskFuture, as_completed, wait
from taskstash.task_runners import TaskRunner, ThreadPoolTaskRunner

distributed = pytest.importorskip("distributed")
from dask_support import local_cluster  # noqa: E402 - needs distributed

from taskstash.dask import DaskTaskRunner  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    home = tmp_path_factory.mktemp("dask-home")
    with environment({"TASKSTASH_HOME": str(home), "TASKSTASH_LOGGING_LEVEL": "WARNING"}):
        cluster = local_cluster()
    with cluster:
        yield cluster, home


@pytest.fixture(params=["threadpool", "dask"])
def make_runner(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], TaskRunner[Any]]:
    if request.param == "threadpool":
        return ThreadPoolTaskRunner
    cluster, home = request.getfixturevalue("cluster")
    monkeypatch.setenv("TASKSTASH_HOME", str(home))
    settings.reload()
    return lambda: DaskTaskRunner(cluster=cluster)


@pytest.fixture
def salt() -> int:
    return uuid.uuid4().int % 10**12


def test_submit_runs_sync_and_async_tasks(make_runner: Any, salt: int) -> None:
    with make_runner() as runner:
        sync = runner.submit(rs.add, {"x": salt, "y": 1})
        async_ = runner.submit(rs.add_async, {"x": salt, "y": 2})
        assert isinstance(sync, TaskFuture)
        assert sync.result() == salt + 1
        assert async_.result() == salt + 2
        assert isinstance(sync.state, Completed)


def test_map_keeps_the_order_of_the_items(make_runner: Any, salt: int) -> None:
    with make_runner() as runner:
        futures = runner.map(rs.add, {"x": [salt, salt + 1, salt + 2], "y": unmapped(10)})
        assert futures.result() == [salt + 10, salt + 11, salt + 12]


def test_futures_in_arguments_are_replaced_by_their_values(make_runner: Any, salt: int) -> None:
    with make_runner() as runner:
        a = runner.submit(rs.add, {"x": salt, "y": 1})
        b = runner.submit(rs.add, {"x": a, "y": a})
        total = runner.submit(rs.add, {"x": b, "y": 0})
        assert total.result() == 2 * (salt + 1)


def test_a_failed_upstream_leaves_the_call_not_ready(make_runner: Any) -> None:
    with make_runner() as runner:
        failed = runner.submit(rs.fails, {"message": "boom"})
        downstream = runner.submit(rs.add, {"x": failed, "y": 1})
        waiting = runner.submit(rs.square, {"x": 2}, wait_for=[failed])
        with pytest.raises(ValueError, match="boom"):
            failed.result()
        assert isinstance(failed.result(raise_on_failure=False), ValueError)
        assert failed.state.is_failed()
        for future in (downstream, waiting):
            future.wait()
            assert future.state.name == "NotReady"
            with pytest.raises(UpstreamTaskError, match="'fails' ended in Failed"):
                future.result()


def test_calls_are_cached_as_plain_calls_are(make_runner: Any, salt: int) -> None:
    with make_runner() as runner:
        first = runner.submit(rs.square, {"x": salt})
        first.wait()
        again = runner.submit(rs.square, {"x": salt})
        again.wait()
    assert isinstance(first.state, Completed)
    assert isinstance(again.state, Cached)
    # The key computed where the call ran is the one a plain call here computes.
    assert isinstance(rs.square(salt, return_state=True), Cached)
    assert again.result() == salt * salt


def test_leaving_the_runner_waits_for_every_call(make_runner: Any) -> None:
    with make_runner() as runner:
        futures = runner.map(rs.sleeps, {"seconds": [0.2, 0.3]})
    assert all(future.state.is_completed() for future in futures)
    assert futures.result() == [0.2, 0.3]


def test_wait_and_as_completed_work_on_its_futures(make_runner: Any, salt: int) -> None:
    with make_runner() as runner:
        futures = runner.map(rs.add, {"x": [salt, salt], "y": [1, 2]})
        done, not_done = wait(futures, timeout=60)
        assert done == set(futures)
        assert not not_done
        assert sorted(f.result() for f in as_completed(futures)) == [salt + 1, salt + 2]


def test_a_runner_must_be_started(make_runner: Any) -> None:
    runner = make_runner()
    with pytest.raises(RuntimeError, match="not started"):
        runner.submit(rs.square, {"x": 1})


def test_duplicates_are_equal_and_unstarted(make_runner: Any) -> None:
    runner = make_runner()
    copied = runner.duplicate()
    assert copied == runner
    assert copied is not runner


def test_a_flows_calls_belong_to_its_run(make_runner: Any) -> None:
    @flow(task_runner=make_runner())
    def my_flow() -> tuple[Any, Any]:
        from taskstash.context import current_flow_run

        run = current_flow_run()
        assert run is not None
        return run.id, rs.flow_run_id.submit().result()

    outer, inner = my_flow()
    assert outer == inner


def test_a_flow_orders_calls_with_wait_for_and_gets_states(make_runner: Any, salt: int) -> None:
    @flow(task_runner=make_runner())
    def my_flow() -> tuple[list[Any], list[Any]]:
        first = rs.sleeps.submit(0.2)
        after = rs.add.submit(salt, 1, wait_for=[first])
        mapped = rs.add.map([salt, salt + 1], unmapped(2), wait_for=[first])
        state = rs.add.submit(salt, 3, return_state=True)
        states = rs.add.map([salt, salt + 1], unmapped(4), return_state=True)
        values = [after.result(), mapped.result(), state.result()]
        return values, [first.state, after.state, *mapped, state, *states]

    values, states = my_flow()
    assert values == [salt + 1, [salt + 2, salt + 3], salt + 3]
    first, after, *rest = states
    assert isinstance(first, Completed)
    assert isinstance(after, Completed)
    assert [type(state.state if isinstance(state, TaskFuture) else state) for state in rest] == [
        Completed
    ] * 5


def test_async_tasks_run_from_sync_and_async_flows(make_runner: Any, salt: int) -> None:
    @flow(task_runner=make_runner())
    def sync_flow() -> list[Any]:
        submitted = rs.add_async.submit(salt, 1)
        return [submitted.result(), rs.add_async.map([salt, salt], [2, 3]).result()]

    @flow(task_runner=make_runner())
    async def async_flow() -> list[Any]:
        submitted = rs.add_async.submit(salt, 4)
        return [
            submitted.result(),
            rs.add_async.map([salt], [5]).result(),
            await rs.add_async(salt, 6),
        ]

    assert sync_flow() == [salt + 1, [salt + 2, salt + 3]]
    assert asyncio.run(async_flow()) == [salt + 4, [salt + 5], salt + 6]
