"""Flows: runs, names, parameters and the log lines of the seed's format."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import pytest

from taskstash import Completed, Failed, flow, task
from taskstash.cache_policies import FLOW_PARAMETERS
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
