"""A flow given a cache policy is cached as a whole: a repeated call returns the stored value
without running its body or any task in it. In this process; tests/test_flow_caching_edits.py
runs flows in fresh processes and edits their code."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from taskstash import Cache, Cached, Completed, Failed, TaskstashWarning, explain, flow, task
from taskstash.cache_policies import DEFAULT, INPUTS, NO_CACHE, TASK_SOURCE, CachePolicy
from taskstash.exceptions import LockCycleError
from taskstash.log import DATE_FORMAT, FORMAT
from taskstash.transactions import transaction

# Where the index is involved, each test runs on SQLite and on PostgreSQL.
INDEXES = pytest.mark.usefixtures("index_backend")


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Lines of the `taskstash` logger at INFO and above, as its console handler formats them."""
    collected: list[str] = []
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(formatter.format(record))

    logger = logging.getLogger("taskstash")
    handler = Collect(level=logging.INFO)
    logger.addHandler(handler)
    yield collected
    logger.removeHandler(handler)


def messages(lines: list[str]) -> list[str]:
    """The messages of log lines in the seed's format (`16:28:51.276 | INFO | message`)."""
    found = [re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ \| (.*)", line) for line in lines]
    assert all(found), lines
    return [match.group(1) for match in found if match]


@INDEXES
def test_a_three_task_flow_called_twice_computes_once(logged: list[str]) -> None:
    ran: list[str] = []

    @task(persist_result=True)  # DEFAULT: keyed by the flow run, so never reused across runs
    def load(n: int) -> list[int]:
        ran.append("load")
        return list(range(n))

    @task(persist_result=True)
    def keep_odd(rows: list[int]) -> list[int]:
        ran.append("keep_odd")
        return [r for r in rows if r % 2]

    @task(persist_result=True)
    def total(rows: list[int]) -> int:
        ran.append("total")
        return sum(rows)

    @flow(cache_policy=INPUTS + TASK_SOURCE)
    def pipeline(n: int) -> int:
        ran.append("pipeline")
        return total(keep_odd(load(n)))

    assert pipeline(10) == 25
    assert ran == ["pipeline", "load", "keep_odd", "total"]
    logged.clear()
    assert pipeline(10) == 25
    assert ran == ["pipeline", "load", "keep_odd", "total"]  # no body ran the second time
    beginning, end = messages(logged)
    name = re.fullmatch(r"Flow run '([a-z]+-[a-z]+)' - .*", beginning)
    assert name, beginning
    assert beginning == f"Flow run '{name[1]}' - Beginning flow run '{name[1]}' for flow 'pipeline'"
    assert end == f"Flow run '{name[1]}' - Finished in state Cached(type=COMPLETED)"
    flows = Cache().records(kind="flow")
    assert [(r.task_name, r.kind, r.parameters) for r in flows] == [("pipeline", "flow", "n=10")]


@INDEXES
def test_a_changed_parameter_misses() -> None:
    ran: list[int] = []

    @flow(cache_policy=INPUTS)
    def square(x: int, offset: int = 0) -> int:
        ran.append(x)
        return x * x + offset

    assert [square(2), square(3), square(2), square(x=2, offset=0)] == [4, 9, 4, 4]
    assert square(2, offset=1) == 5
    assert ran == [2, 3, 2]


def test_return_state_gives_a_cached_state_with_the_value() -> None:
    @flow(cache_policy=INPUTS)
    def double(x: int) -> int:
        return 2 * x

    first = double(4, return_state=True)
    second = double(4, return_state=True)
    assert isinstance(first, Completed)
    assert not first.is_cached()
    assert isinstance(second, Cached)
    assert second.is_completed()
    assert second.result() == 8
    assert repr(second) == "Cached(type=COMPLETED)"


@INDEXES
def test_a_flow_that_raises_stores_nothing_but_the_tasks_it_finished() -> None:
    ran: list[str] = []
    fail = [True]

    @task(cache_policy=INPUTS)
    def fetch(x: int) -> int:
        ran.append("fetch")
        return x + 1

    @flow(cache_policy=INPUTS)
    def pipeline(x: int) -> int:
        ran.append("pipeline")
        value = fetch(x)
        if fail[0]:
            raise RuntimeError("the disk is full")
        return value

    with pytest.raises(RuntimeError, match="the disk is full"):
        pipeline(1)
    state = pipeline(1, return_state=True)
    assert isinstance(state, Failed)
    assert [r.kind for r in Cache().records()] == ["task"]  # fetch's: the next run resumes
    fail[0] = False
    assert pipeline(1) == 2
    assert pipeline(1) == 2
    assert ran == ["pipeline", "fetch", "pipeline", "pipeline"]
    assert sorted(r.kind for r in Cache().records()) == ["flow", "task"]


@INDEXES
def test_a_cached_subflow_inside_an_uncached_flow() -> None:
    ran: list[str] = []

    @flow(cache_policy=INPUTS)
    def expensive(x: int) -> int:
        ran.append("expensive")
        return x * 100

    @flow
    def outer(x: int) -> int:
        ran.append("outer")
        return expensive(x) + expensive(x) + 1

    assert outer(2) == 401
    assert outer(2) == 401
    assert ran == ["outer", "expensive", "outer"]
    assert [r.task_name for r in Cache().records()] == ["expensive"]


def test_run_id_keys_a_subflow_by_the_run_it_is_called_in() -> None:
    ran: list[int] = []

    @flow(cache_policy=DEFAULT)
    def step(x: int) -> int:
        ran.append(x)
        return x + 1

    @flow
    def outer() -> int:
        return step(1) + step(1)

    assert outer() == 4
    assert outer() == 4
    assert ran == [1, 1]  # a hit within a run, a miss in the next
    # Called at the top level, a flow has no enclosing run: with RUN_ID, nothing is stored.
    assert step(5) == step(5) == 6
    assert ran == [1, 1, 5, 5]
    assert len(Cache().records()) == 2  # one in each run of outer


def test_async_flows_are_cached() -> None:
    ran: list[int] = []

    @task(persist_result=True)
    async def fetch(x: int) -> int:
        ran.append(x)
        await asyncio.sleep(0)
        return x * 3

    @flow(cache_policy=INPUTS)
    async def pipeline(x: int) -> int:
        return await fetch(x) + 1

    assert asyncio.run(pipeline(2)) == 7
    state = asyncio.run(pipeline(2, return_state=True))
    assert isinstance(state, Cached)
    assert state.result() == 7
    assert ran == [2]


def test_a_flow_without_caching_options_is_not_cached() -> None:
    ran: list[int] = []

    @flow(persist_result=True)  # for the tasks inside: the flow itself is not cached
    def pipeline(x: int) -> int:
        ran.append(x)
        return x

    assert pipeline.cache_task is None
    assert pipeline(1) == pipeline(1) == 1
    assert ran == [1, 1]
    assert Cache().records() == []
    for options in ({"cache_policy": NO_CACHE}, {"cache_policy": None}):
        uncached = flow(**options)(pipeline.fn)
        assert uncached.cache_task is None


def test_options_that_do_nothing_without_caching_are_warned_about() -> None:
    def body(x: int) -> int:
        return x

    with pytest.warns(TaskstashWarning, match="persist_result=False turns caching off"):
        off = flow(cache_policy=INPUTS, persist_result=False)(body)
    assert off.cache_task is None
    with pytest.warns(TaskstashWarning, match="is not cached, so cache_expiration does nothing"):
        flow(cache_expiration=datetime.timedelta(hours=1))(body)


def test_expiration_refresh_and_a_key_function() -> None:
    ran: list[str] = []

    @flow(cache_policy=INPUTS, cache_expiration=datetime.timedelta(0))
    def stale(x: int) -> int:
        ran.append("stale")
        return x

    @flow(cache_policy=INPUTS, refresh_cache=True)
    def fresh(x: int) -> int:
        ran.append("fresh")
        return x

    @flow(cache_key_fn=lambda context, parameters: f"day-{parameters['day']}")
    def daily(day: str, verbose: bool = False) -> str:
        ran.append("daily")
        return day.upper()

    stale(1)
    stale(1)
    fresh(1)
    fresh(1)
    assert daily("mon") == daily("mon", verbose=True) == "MON"
    assert ran == ["stale", "stale", "fresh", "fresh", "daily"]


def test_the_flows_result_options_apply_to_its_records_and_its_tasks(tmp_path: Any) -> None:
    @task(persist_result=True)
    def inner(x: int) -> int:
        return x

    @flow(cache_policy=INPUTS, result_storage=tmp_path / "flows", result_serializer="json")
    def pipeline(x: int) -> dict[str, int]:
        return {"x": inner(x)}

    assert pipeline(1) == {"x": 1}
    assert pipeline(1) == {"x": 1}
    records = {r.kind: r for r in Cache().records()}
    assert records["flow"].storage == records["task"].storage == str(tmp_path / "flows")
    assert records["flow"].serializer == records["task"].serializer == "json"


def test_an_argument_with_no_canonical_form_runs_uncached_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []

    @flow(cache_policy=INPUTS)
    def guarded(x: int, lock: Any) -> int:
        ran.append(x)
        return x

    lock = threading.Lock()
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        guarded(1, lock)
        guarded(1, lock)
    assert ran == [1, 1]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("Flow 'guarded': argument 'lock' cannot be hashed")
    assert "INPUTS - 'lock', give the flow a cache_key_fn" in warning
    assert warning.endswith("(Said once per flow.)")


def test_with_options_and_pickling_keep_the_key() -> None:
    ran: list[int] = []

    def body(x: int) -> int:
        ran.append(x)
        return x + 1

    plain = flow(body)
    cached = plain.with_options(cache_policy=INPUTS + TASK_SOURCE)
    assert plain.cache_task is None
    assert cached.cache_task is not None
    assert cached(1) == 2
    again = cloudpickle.loads(cloudpickle.dumps(cached))  # by value: a function of this test
    assert again(1) == 2
    renamed = cached.with_options(name="other")
    assert renamed(1) == 2  # another flow: its own records
    assert cached.with_options(refresh_cache=False)(1) == 2
    assert ran == [1, 1]
    with pytest.raises(TypeError, match="unknown flow option"):
        cached.with_options(retries=3)


def test_submitted_tasks_inside_a_cached_flow() -> None:
    ran: list[int] = []

    @task(persist_result=True)
    def square(x: int) -> int:
        ran.append(x)
        return x * x

    @flow(cache_policy=INPUTS)
    def squares(n: int) -> list[int]:
        return square.map(range(n)).result()

    assert squares(4) == [0, 1, 4, 9]
    assert squares(4) == [0, 1, 4, 9]
    assert sorted(ran) == [0, 1, 2, 3]


def test_serializable_callers_of_one_key_run_the_flow_once() -> None:
    ran: list[int] = []

    @flow(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def slow(x: int) -> int:
        ran.append(x)
        time.sleep(0.05)  # gives the other callers time to arrive while it runs
        return x * 2

    results: list[int] = []
    callers = [threading.Thread(target=lambda: results.append(slow(3))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert results == [6, 6, 6, 6]
    assert ran == [3]


def test_a_serializable_flow_calling_itself_with_its_key_fails_instead_of_hanging() -> None:
    @flow(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def recurse(x: int) -> int:
        return recurse(x) + 1  # the same key: it would wait for its own lock

    with pytest.raises(LockCycleError, match="recurse"):
        recurse(1)
    assert Cache().records() == []


def test_a_flow_called_in_a_transaction_commits_with_it() -> None:
    ran: list[int] = []

    @flow(cache_policy=INPUTS)
    def pipeline(x: int) -> int:
        ran.append(x)
        return x

    def fail_after_the_flow() -> None:
        with transaction():
            pipeline(1)
            raise ValueError("later")

    with pytest.raises(ValueError, match="later"):
        fail_after_the_flow()
    assert Cache().records() == []
    with transaction():
        pipeline(1)
    pipeline(1)
    assert ran == [1, 1]


def test_a_cached_flow_maps_its_tasks_on_dask_then_skips_them() -> None:
    pytest.importorskip("distributed")
    import runner_support as rs
    from dask_support import local_cluster

    from taskstash.dask import DaskTaskRunner

    with local_cluster(n_workers=1) as cluster:

        @flow(cache_policy=INPUTS, task_runner=DaskTaskRunner(cluster=cluster))
        def doubles(n: int) -> list[tuple[int, int]]:
            return rs.where.map(range(n)).result()

        first = doubles(4)
        second = doubles(4, return_state=True)
    assert [value for value, _ in first] == [0, 2, 4, 6]
    assert {pid for _, pid in first} != {os.getpid()}  # computed on the worker
    assert isinstance(second, Cached)
    assert second.result() == first


@INDEXES
def test_explain_tells_why_a_flow_call_would_miss() -> None:
    @flow(cache_policy=INPUTS + TASK_SOURCE)
    def report(region: str, year: int = 2024) -> str:
        return f"{region}-{year}"

    report("north")
    assert explain(report, "north").hit
    missed = str(explain(report, "south"))
    assert missed.startswith("report: miss (key ")
    assert missed.endswith("differs in: inputs (region changed)")
    assert str(explain(flow(report.fn), "north")) == (
        "report: this call is not cached (the flow is not cached: it has no cache_policy or "
        "cache_key_fn)"
    )
    with pytest.raises(TypeError):
        explain(report, "north", month=1)


@dataclasses.dataclass(frozen=True)
class Broken(CachePolicy):
    def compute_key(self, *args: Any, **kwargs: Any) -> str | None:
        raise RuntimeError("no key today")


def test_a_policy_that_raises_fails_the_flow_run_as_logged(logged: list[str]) -> None:
    ran: list[int] = []

    @flow(cache_policy=Broken())
    def pipeline() -> None:
        ran.append(1)

    with pytest.raises(RuntimeError, match="no key today"):
        pipeline()
    beginning, end = messages(logged)
    assert beginning.endswith("for flow 'pipeline'")
    assert end.endswith("- Finished in state Failed(message='RuntimeError: no key today')")
    assert ran == []
