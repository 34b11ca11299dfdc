"""Dask: one cache across a real cluster's workers, clusters on loopback, workers lost mid-task."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import runner_support as rs
from s3_support import environment

from taskstash import Cache, Cached, Completed, flow, settings

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402 - a dependency of distributed
from dask_support import (  # noqa: E402 - needs distributed
    addresses,
    cli_cluster,
    local_cluster,
    wait_for_workers,
)

from taskstash.dask import DaskTaskRunner  # noqa: E402


def doubles(runner: DaskTaskRunner, n: int) -> tuple[list[Any], list[tuple[int, int]]]:
    """Maps `rs.where` over `range(n)` in a flow run on `runner`: the states and the values."""

    @flow(task_runner=runner)
    def pipeline(n: int) -> tuple[list[Any], list[tuple[int, int]]]:
        futures = rs.where.map(range(n))
        values = futures.result()
        return [future.state for future in futures], values

    return pipeline(n)


def listening() -> set[tuple[str, int]]:
    """The addresses this process and its children listen on."""
    import psutil

    me = psutil.Process()
    found = set()
    for process in [me, *me.children(recursive=True)]:
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port))
    return found


def test_a_started_cluster_listens_on_loopback_only() -> None:
    before = listening()
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1})
    with runner:
        found = addresses(runner.client)
        opened = listening() - before
        assert runner.submit(rs.square, {"x": 3}).result() == 9
    assert all(address.startswith("tcp://127.0.0.1:") for address in found), found
    # The scheduler, its HTTP server, the nanny and the worker; none on another interface.
    assert len(opened) >= 3
    assert {ip for ip, _ in opened} == {"127.0.0.1"}, opened


def test_200_mapped_calls_over_2_workers_are_computed_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    storage = tmp_path / "shared-storage"
    shared = {"TASKSTASH_HOME": str(home), "TASKSTASH_LOCAL_STORAGE_PATH": str(storage)}
    with environment(shared):
        settings.reload()
        with local_cluster() as cluster:
            states, values = doubles(DaskTaskRunner(cluster=cluster), 200)
            assert [type(state) for state in states] == [Completed] * 200
            assert [value for value, _ in values] == [2 * x for x in range(200)]
            assert len({pid for _, pid in values}) == 2  # both workers computed
            assert os.getpid() not in {pid for _, pid in values}

            again, same = doubles(DaskTaskRunner(cluster=cluster), 200)
            assert [type(state) for state in again] == [Cached] * 200
            assert same == values

    # A new cluster, `dask scheduler` and two `dask worker` processes, each worker with an
    # index of its own (empty) and the storage the first cluster wrote: records are adopted.
    workers = [
        {
            "TASKSTASH_HOME": str(tmp_path / f"worker-{i}"),
            "TASKSTASH_LOCAL_STORAGE_PATH": str(storage),
        }
        for i in range(2)
    ]
    with cli_cluster(workers, tmp_path) as address:
        states, adopted = doubles(DaskTaskRunner(address=address), 200)
    assert [type(state) for state in states] == [Cached] * 200
    assert adopted == values
    for i in range(2):  # each worker's own index holds the records it adopted
        worker_index = tmp_path / f"worker-{i}" / "index.db"
        assert len(Cache(index_path=worker_index, storage=storage).records()) > 0


def test_a_worker_killed_while_saving_leaves_no_partial_record(tmp_path: Path) -> None:
    marker = str(tmp_path / "died-once")
    with environment({"TASKSTASH_HOME": str(tmp_path / "home")}):
        settings.reload()
        with local_cluster() as cluster, DaskTaskRunner(cluster=cluster) as runner:
            # The first attempt's worker dies writing the result; Dask runs it again.
            future = runner.submit(rs.dies_while_saving, {"marker": marker, "value": 7})
            assert future.result(timeout=120).value == 7
            assert os.path.exists(marker)  # a worker did die
            assert isinstance(future.state, Completed)
            wait_for_workers(runner.client, 2)
        cache = Cache()
        assert len(cache.records(task="dies_while_saving")) == 1
        verified = cache.verify()
        assert not verified.missing
        assert not verified.damaged
        assert rs.dies_while_saving(marker, 7).value == 7
        assert isinstance(rs.dies_while_saving(marker, 7, return_state=True), Cached)


def test_a_call_that_kills_every_worker_fails_with_a_clear_state(tmp_path: Path) -> None:
    with environment({"TASKSTASH_HOME": str(tmp_path / "home")}):
        settings.reload()
        with local_cluster() as cluster, DaskTaskRunner(cluster=cluster) as runner:
            future = runner.submit(rs.always_dies, {"x": 1})
            future.wait(timeout=300)
            state = future.state
            assert state.is_failed()
            error = state.result(raise_on_failure=False)
            assert type(error).__name__ == "KilledWorker"
            assert "always_dies" in str(error)
            # The nannies restart the killed workers meanwhile: closing the cluster during a
            # restart trips an assertion inside distributed ("can only join a started process").
            cluster.wait_for_workers(2, timeout=120)
        assert Cache().records(task="always_dies") == []


def test_a_task_whose_source_the_workers_lack_keys_its_calls_as_here(tmp_path: Path) -> None:
    # The module exists only in this process: shipped by value, without its source file.
    package = tmp_path / "only-here"
    package.mkdir()
    (package / "only_here.py").write_text(
        "from taskstash import task\n"
        "from taskstash.cache_policies import INPUTS, TASK_SOURCE\n\n\n"
        "@task(cache_policy=INPUTS + TASK_SOURCE)\n"
        "def triple(x):\n"
        "    return 3 * x\n"
    )
    sys.path.insert(0, str(package))
    try:
        only_here = importlib.import_module("only_here")
    finally:
        sys.path.remove(str(package))
    (package / "only_here.py").unlink()
    workers = [{"TASKSTASH_HOME": str(tmp_path / f"worker-{i}")} for i in range(2)]
    for worker in workers:
        worker["TASKSTASH_LOCAL_STORAGE_PATH"] = str(tmp_path / "shared-storage")
    cloudpickle.register_pickle_by_value(only_here)
    try:
        with environment(workers[0]):
            settings.reload()
            assert isinstance(only_here.triple(5, return_state=True), Completed)
            with (
                cli_cluster(workers, tmp_path) as address,
                DaskTaskRunner(address=address) as runner,
            ):
                futures = [runner.submit(only_here.triple, {"x": 5}) for _ in range(4)]
                assert [future.result() for future in futures] == [15] * 4
                assert [type(future.state) for future in futures] == [Cached] * 4
    finally:
        cloudpickle.unregister_pickle_by_value(only_here)
        sys.modules.pop("only_here", None)
