"""Flows: runs, names, parameters and the log lines of the seed's format."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskstash import Completed, Failed, State, flow, task
from taskstash.cache_policies import FLOW_PARAMETERS, INPUTS
from taskstash.context import current_flow_run
from taskstash.log import DATE_FORMAT, FORMAT

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (INFO|ERROR) \| (.*)$")


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """Log lines of the `taskstash` logger, formatted as its console handler formats them."""
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
    found = [LINE.match(line) for line in lines]
    assert all(found), lines
    return [match.group(2) for match in found if match]


def test_the_seed_flow_logs_in_the_seed_format(lines: list[str]) -> None:
    @task(persist_result=True)
    def add_one(x: int) -> int:
        return x + 1

    @flow
    def my_flow() -> None:
        add_one(1)
        add_one(1)
        add_one(2)

    my_flow()
    logged = messages(lines)
    run = re.match(
        r"Flow run '([a-z]+-[a-z]+)' - Beginning flow run '\1' for flow 'my-flow'$", logged[0]
    )
    assert run, logged[0]
    name = run.group(1)
    states = [re.sub(r"'add_one-[0-9a-f]{3}'", "'add_one-xxx'", m) for m in logged[1:4]]
    assert states == [
        "Task run 'add_one-xxx' - Finished in state Completed()",
        "Task run 'add_one-xxx' - Finished in state Cached(type=COMPLETED)",
        "Task run 'add_one-xxx' - Finished in state Completed()",
    ]
    assert logged[4] == f"Flow run '{name}' - Finished in state Completed()"


def test_a_failing_flow_logs_failed_and_raises(lines: list[str]) -> None:
    @flow(name="broken")
    def broken() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        broken()
    assert messages(lines)[-1].endswith("Finished in state Failed(message=\"KeyError: 'missing'\")")
    state = broken(return_state=True)
    assert isinstance(state, Failed)


def test_flow_runs_have_ids_names_and_bound_parameters() -> None:
    seen = []

    @flow
    def pipeline(x: int, mode: str = "fast") -> str:
        run = current_flow_run()
        assert run is not None
        seen.append(run)
        return mode

    assert pipeline(1) == "fast"
    assert isinstance(pipeline(2, return_state=True), Completed)
    first, second = seen
    assert first.parameters == {"x": 1, "mode": "fast"}
    assert first.flow_name == "pipeline"
    assert first.id != second.id
    assert current_flow_run() is None


def test_flow_parameters_key_tasks_by_the_flows_arguments() -> None:
    ran = []

    @task(cache_policy=FLOW_PARAMETERS)
    def load() -> int:
        ran.append(1)
        return len(ran)

    @flow
    def report(day: str) -> int:
        return load()

    assert report("mon") == 1
    assert report("mon") == 1
    assert report("tue") == 2


def test_async_flows_run_tasks_inside_their_run() -> None:
    @task(persist_result=True)
    async def twice(x: int) -> int:
        return 2 * x

    @flow
    async def pipeline() -> list[object]:
        return [await twice(1), await twice(1, return_state=True)]

    value, state = asyncio.run(pipeline())
    assert value == 2
    assert state.is_cached()  # type: ignore[attr-defined]


def test_a_sync_flow_runs_the_async_tasks_it_calls(lines: list[str]) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        ran.append(x)
        run = current_flow_run()
        assert run is not None  # the task runs inside the flow's run
        return x * 2

    @flow
    def pipeline(x: int) -> int:
        # Typed as coroutines (the type cannot see the flow); run to their values here.
        first: object = fetch(x)
        second: object = fetch(x)  # a hit
        assert isinstance(first, int)
        assert isinstance(second, int)
        return first + second

    assert pipeline(3) == 12
    assert ran == [3]
    assert any("Finished in state Cached(type=COMPLETED)" in m for m in messages(lines))
    assert messages(lines)[-1].endswith("Finished in state Completed()")


def test_a_sync_flow_called_from_async_code_runs_its_async_tasks() -> None:
    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @flow
    def pipeline(x: int) -> int:
        return double(x) + 1  # type: ignore[operator]

    async def main() -> int:
        return pipeline(4)  # a sync call with this thread's loop running

    assert asyncio.run(main()) == 9


def test_outside_a_sync_flow_an_async_task_is_awaited_as_usual() -> None:
    @task
    async def double(x: int) -> int:
        return x * 2

    @flow
    async def pipeline(x: int) -> int:
        return await double(x)

    assert asyncio.run(double(2)) == 4
    assert asyncio.run(pipeline(5)) == 10


def test_a_spawned_process_the_flow_starts_belongs_to_its_run(taskstash_home: Path) -> None:
    import multiprocessing

    from runner_support import in_run, run_of_this_process

    @flow
    def pipeline() -> tuple[str, tuple[str | None, int], State[int]]:
        run = current_flow_run()
        assert run is not None
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            child = pool.apply(run_of_this_process, (1,))
        return str(run.id), child, in_run(1, return_state=True)

    run_id, (child_run, value), state = pipeline()
    assert child_run == run_id  # the spawned process ran inside the flow's run
    assert value == 2
    assert state.is_completed()
    assert state.name == "Cached"  # keyed by the same run: a hit
    assert "TASKSTASH_FLOW_RUN" not in os.environ  # handed down only while the run lasts


def test_a_run_that_json_cannot_carry_is_not_handed_down() -> None:
    from taskstash.context import FlowRun, _encoded

    assert _encoded(FlowRun("f", "n", {"x": 1})) is not None
    assert _encoded(FlowRun("f", "n", {"x": (1, 2)})) is None  # a tuple would come back a list
    assert _encoded(FlowRun("f", "n", {"x": object()})) is None
