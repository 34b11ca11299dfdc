"""Tasks and flows at module level, for tests that run them in other processes.

Processes that unpickle them (a ProcessPoolExecutor's, Dask workers) import this module by name.
"""

from __future__ import annotations

import os
import time
from typing import Any

from taskstash import flow, task
from taskstash.cache_policies import INPUTS


@task(cache_policy=INPUTS)
def square(x: int) -> int:
    return x * x


@task(cache_policy=INPUTS)
def where(x: int) -> tuple[int, int]:
    """`x * 2` and the id of the process that computed it."""
    return x * 2, os.getpid()


@task(cache_policy=INPUTS)
def add(x: int, y: int) -> int:
    return x + y


@task(cache_policy=INPUTS)
async def add_async(x: int, y: int) -> int:
    return x + y


@task
def fails(message: str) -> None:
    raise ValueError(message)


@task
def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Model:
    @task(cache_policy=INPUTS)
    def fit(self, x: int) -> int:
        return x + 1


@flow
def squares(n: int) -> list[int]:
    return square.map(range(n)).result()


def run_task_here(x: int) -> Any:
    """What a ProcessPoolExecutor runs: a task's call in a process of its own."""
    return square(x, return_state=True)


@task
def flow_run_id() -> Any:
    """The id of the flow run the call belongs to, where it runs."""
    from taskstash.context import current_flow_run

    run = current_flow_run()
    return None if run is None else run.id


class DiesWhilePickled:
    """A result whose serialization kills its process, unless `marker` exists (then creates it).

    Stands for a worker lost in the middle of writing a record.
    """

    def __init__(self, marker: str, value: int) -> None:
        self.marker = marker
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(1)
        return (DiesWhilePickled, (self.marker, self.value))


@task(cache_policy=INPUTS)
def dies_while_saving(marker: str, value: int) -> DiesWhilePickled:
    return DiesWhilePickled(marker, value)


@task(cache_policy=INPUTS)
def always_dies(x: int) -> int:
    os._exit(1)


@task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
def counted(x: int, log: str) -> int:
    """`x * x`, slowly; each computation appends `x` and its process's id to the file `log`."""
    with open(log, "a") as file:
        file.write(f"{x} {os.getpid()}\n")
    time.sleep(0.2)
    return x * x


@task(cache_policy=INPUTS, result_storage="s3://taskstash-test/dask")
def in_bucket(x: int) -> tuple[int, int]:
    """`x * 2` and the id of the process that computed it, the record stored in a bucket."""
    return x * 2, os.getpid()


@task(persist_result=True)  # DEFAULT: keyed by the flow run too
def in_run(x: int) -> int:
    return x + 1


def run_of_this_process(x: int) -> tuple[str | None, int]:
    """The flow run a process finds itself in, and a call of `in_run` made there."""
    from taskstash.context import current_flow_run

    run = current_flow_run()
    return (None if run is None else str(run.id)), in_run(x)
