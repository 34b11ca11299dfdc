"""Task runners: mapped small tasks on a 2-worker Dask LocalCluster and on a thread pool.

Each row is one wall time for mapping `runner_tasks` calls of a small function and gathering
the results: bare Dask (`client.map`) against taskstash's `DaskTaskRunner` in a flow, cold (every
call computed and stored, by the workers, in an empty cache) and warm (every call a hit); then
`concurrent.futures.ThreadPoolExecutor.map` against `ThreadPoolTaskRunner`, cold and warm. The
overhead per task is the difference to the bare run of its group, divided by the number of
tasks. The cluster's workers are processes on 127.0.0.1 with two threads each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskstash import flow, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store.registry import open_store
from taskstash.task_runners import TaskRunner, ThreadPoolTaskRunner

from .peers import installed, taskstash_home
from .plan import Plan
from .results import Timing

SECTION = "runners"
DASK = "mapped-dask"
THREADS = "mapped-threads"
BARE = {DASK: "dask client.map", THREADS: "concurrent.futures thread pool"}
RUNNER = {DASK: "taskstash DaskTaskRunner", THREADS: "taskstash ThreadPoolTaskRunner"}
SETUP = "Dask: LocalCluster, 2 worker processes x 2 threads; thread pools of 8 threads"


def small(x: int) -> int:
    """The work of each task: next to nothing, so that what is measured is the overhead."""
    return x * 2


cached_small = task(cache_policy=INPUTS, name="small")(small)


def _timing(case: str, contender: str, tasks: int, run: Callable[[], object]) -> Timing:
    """One wall time of `run`, kept as seconds per task (the harness's unit: per call)."""
    started = time.perf_counter()
    run()
    return Timing(SECTION, case, contender, [(time.perf_counter() - started) / tasks], tasks)


def _mapped_in_flow(runner: TaskRunner[Any], tasks: int) -> Callable[[], object]:
    @flow(task_runner=runner)
    def mapped() -> list[int]:
        return cached_small.map(range(tasks)).result()

    return mapped


def _dask(tasks: int) -> list[Timing]:
    if not installed("distributed"):
        return [
            Timing(SECTION, DASK, label, note="not installed")
            for label in (BARE[DASK], f"{RUNNER[DASK]}, cold", f"{RUNNER[DASK]}, warm")
        ]
    import distributed

    from taskstash.dask import DaskTaskRunner

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
        bare = _timing(
            DASK, BARE[DASK], tasks, lambda: client.gather(client.map(small, range(tasks)))
        )
        run = _mapped_in_flow(DaskTaskRunner(cluster=cluster), tasks)
        cold = _timing(DASK, f"{RUNNER[DASK]}, cold", tasks, run)
        warm = _timing(DASK, f"{RUNNER[DASK]}, warm", tasks, run)
    return [bare, cold, warm]


def _threads(tasks: int) -> list[Timing]:
    with ThreadPoolExecutor(8) as pool:
        bare = _timing(THREADS, BARE[THREADS], tasks, lambda: list(pool.map(small, range(tasks))))
    run = _mapped_in_flow(ThreadPoolTaskRunner(max_workers=8), tasks)
    cold = _timing(THREADS, f"{RUNNER[THREADS]}, cold", tasks, run)
    warm = _timing(THREADS, f"{RUNNER[THREADS]}, warm", tasks, run)
    # The hits counted in the background are written before the scratch directory goes.
    open_store(settings.current().index_path).flush_hits()
    return [bare, cold, warm]


@contextmanager
def _quiet() -> Iterator[None]:
    """No "Finished in state" line per task, here and on the workers (which inherit it)."""
    saved = os.environ.get("TASKSTASH_LOGGING_LEVEL")
    os.environ["TASKSTASH_LOGGING_LEVEL"] = "WARNING"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TASKSTASH_LOGGING_LEVEL"]
        else:
            os.environ["TASKSTASH_LOGGING_LEVEL"] = saved
        settings.reload()


def run_runners(plan: Plan, root: Path) -> list[Timing]:
    """Measures every row, each runner with an empty cache home under `root`.

    The cluster's workers start after the home is set, so they inherit it.
    """
    with _quiet(), taskstash_home(root / "runners-dask"):
        timings = _dask(plan.runner_tasks)
    with _quiet(), taskstash_home(root / "runners-threads"):
        timings += _threads(plan.runner_tasks)
    return timings


def render(timings: list[Timing]) -> str:
    """A Markdown table: wall time and overhead per task against the bare run of its group."""
    lines = ["| run | wall time | overhead per task |", "|---|---:|---:|"]
    bare: dict[str, float] = {}
    for timing in timings:
        if timing.median is None:
            lines.append(f"| {timing.contender} | {timing.note} | |")
            continue
        if timing.contender == BARE[timing.case]:
            bare[timing.case] = timing.median
            overhead = "(baseline)"
        elif timing.case in bare:
            overhead = f"{(timing.median - bare[timing.case]) * 1e6:,.0f} µs"
        else:
            overhead = "—"
        wall = timing.median * timing.calls
        lines.append(f"| {timing.contender} | {wall * 1000:,.0f} ms | {overhead} |")
    return "\n".join(lines) + "\n"
