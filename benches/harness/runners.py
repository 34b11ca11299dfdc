"""Task runners: mapped small tasks on a 2-worker Dask LocalCluster and on a thread pool.

    python -m benches.harness.runners [--tasks 1000]

Each line is one wall time for mapping `tasks` calls of a small function and gathering the
results: bare Dask (`client.map`) against taskstash's `DaskTaskRunner` in a flow, cold (every
call computed and stored, by the workers, in an empty cache) and warm (every call a hit); then
`concurrent.futures.ThreadPoolExecutor.map` against `ThreadPoolTaskRunner`, cold and warm. The
overhead per task is the difference to the bare run, divided by the number of tasks. The
cluster's workers are processes on 127.0.0.1 with two threads each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskstash import flow, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store.registry import open_store
from taskstash.task_runners import TaskRunner, ThreadPoolTaskRunner


def small(x: int) -> int:
    """The work of each task: next to nothing, so that what is measured is the overhead."""
    return x * 2


cached_small = task(cache_policy=INPUTS, name="small")(small)


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _mapped_in_flow(runner: TaskRunner[Any], tasks: int) -> Callable[[], object]:
    @flow(task_runner=runner)
    def mapped() -> list[int]:
        return cached_small.map(range(tasks)).result()

    return mapped


def measure(tasks: int) -> list[tuple[str, float]]:
    """The wall times, in seconds, of every line of the table."""
    import distributed

    times: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["TASKSTASH_HOME"] = home
        os.environ["TASKSTASH_LOGGING_LEVEL"] = "WARNING"
        settings.reload()
        with (
            distributed.LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=2,
                threads_per_worker=2,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            client.gather(client.map(small, range(10), pure=False))  # workers warmed up
            times.append(
                ("dask client.map", _timed(lambda: client.gather(client.map(small, range(tasks)))))
            )
            from taskstash.dask import DaskTaskRunner

            run = _mapped_in_flow(DaskTaskRunner(cluster=cluster), tasks)
            times.append(("taskstash DaskTaskRunner, cold", _timed(run)))
            times.append(("taskstash DaskTaskRunner, warm", _timed(run)))
        with ThreadPoolExecutor(8) as pool:
            times.append(
                (
                    "concurrent.futures thread pool",
                    _timed(lambda: list(pool.map(small, range(tasks)))),
                )
            )
        os.environ["TASKSTASH_HOME"] = os.path.join(home, "threads")
        settings.reload()
        run = _mapped_in_flow(ThreadPoolTaskRunner(max_workers=8), tasks)
        times.append(("taskstash ThreadPoolTaskRunner, cold", _timed(run)))
        times.append(("taskstash ThreadPoolTaskRunner, warm", _timed(run)))
        # The hits counted in the background are written before the directory goes.
        open_store(settings.current().index_path).flush_hits()
    return times


def table(times: list[tuple[str, float]], tasks: int) -> str:
    """A Markdown table: wall time and overhead per task against the bare run above it."""
    lines = ["| run | wall time | overhead per task |", "|---|---:|---:|"]
    bare = 0.0
    for name, seconds in times:
        if not name.startswith("taskstash"):
            bare = seconds
            overhead = "(baseline)"
        else:
            overhead = f"{(seconds - bare) / tasks * 1e6:,.0f} µs"
        lines.append(f"| {name} | {seconds * 1000:,.0f} ms | {overhead} |")
    return "\n".join(lines)


def main() -> None:
    """Measures and prints the table."""
    parser = argparse.ArgumentParser(prog="python -m benches.harness.runners")
    parser.add_argument("--tasks", type=int, default=1000)
    tasks = parser.parse_args().tasks
    print(f"{tasks} mapped tasks; Dask: LocalCluster, 2 worker processes x 2 threads")
    print(table(measure(tasks), tasks))


if __name__ == "__main__":
    main()
