"""Dask workers sharing one cache through a PostgreSQL index and an S3 bucket, each worker a
process with a home (settings, local index) of its own."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import runner_support as rs
from s3_support import MotoServer

from taskstash import Cached, Completed, flow, settings, unmapped

distributed = pytest.importorskip("distributed")
from dask_support import cli_cluster, local_cluster  # noqa: E402 - needs distributed

from taskstash.dask import DaskTaskRunner  # noqa: E402


def test_serializable_calls_on_workers_sharing_a_postgres_index_compute_each_key_once(
    postgres_index: str, tmp_path: Path
) -> None:
    log = tmp_path / "computed.log"
    workers = [
        {
            "TASKSTASH_HOME": str(tmp_path / f"worker-{i}"),
            "TASKSTASH_INDEX_URL": postgres_index,
            "TASKSTASH_LOCAL_STORAGE_PATH": str(tmp_path / "shared-storage"),
        }
        for i in range(2)
    ]
    keys = [x % 3 for x in range(30)]

    with cli_cluster(workers, tmp_path) as address:

        @flow(task_runner=DaskTaskRunner(address=address))
        def stampede() -> tuple[list[Any], list[int]]:
            futures = rs.counted.map(keys, unmapped(str(log)))
            values = futures.result()
            return [future.state for future in futures], values

        states, values = stampede()

    assert values == [x * x for x in keys]
    computed = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(x) for x, _ in computed) == [0, 1, 2]
    assert os.getpid() not in {int(pid) for _, pid in computed}
    assert Counter(type(state) for state in states) == {Completed: 3, Cached: 27}


def in_bucket(runner: DaskTaskRunner, n: int) -> tuple[list[Any], list[tuple[int, int]]]:
    """Maps `rs.in_bucket` over `range(n)` in a flow run on `runner`: the states and the values."""

    @flow(task_runner=runner)
    def pipeline() -> tuple[list[Any], list[tuple[int, int]]]:
        futures = rs.in_bucket.map(range(n))
        values = futures.result()
        return [future.state for future in futures], values

    return pipeline()


def test_workers_store_results_in_a_bucket_that_a_new_cluster_adopts(
    s3: MotoServer, tmp_path: Path
) -> None:
    settings.reload()  # the workers inherit this process's environment: the AWS endpoint too
    with local_cluster() as cluster:
        states, values = in_bucket(DaskTaskRunner(cluster=cluster), 40)
    assert [type(state) for state in states] == [Completed] * 40
    assert [value for value, _ in values] == [2 * x for x in range(40)]
    assert os.getpid() not in {pid for _, pid in values}
    objects = s3.objects("taskstash-test")
    assert len(objects) == 40
    assert all(name.startswith("dask/") for name in objects)

    # New workers with empty homes: every record comes from the bucket.
    workers = [{"TASKSTASH_HOME": str(tmp_path / f"worker-{i}")} for i in range(2)]
    with cli_cluster(workers, tmp_path) as address:
        states, adopted = in_bucket(DaskTaskRunner(address=address), 40)
    assert [type(state) for state in states] == [Cached] * 40
    assert adopted == values
    assert s3.objects("taskstash-test").keys() == objects.keys()
