"""Caching a whole flow: a repeated call returns its stored value without running any task.

Run: python examples/flow_caching.py, twice: the second run computes nothing.
Each task that runs prints its name; the log (on standard error) shows the flow runs.
"""

from taskstash import flow, task
from taskstash.cache_policies import INPUTS, TASK_SOURCE


@task(persist_result=True)
def load(day: str) -> list[float]:
    print("load")
    return [1.0, 2.5, float(len(day))]


@task(persist_result=True)
def clean(rows: list[float]) -> list[float]:
    print("clean")
    return [row for row in rows if row > 1]


@task(persist_result=True)
def summarize(rows: list[float]) -> float:
    print("summarize")
    return sum(rows) / len(rows)


@flow(cache_policy=INPUTS + TASK_SOURCE)
def daily_report(day: str) -> float:
    return summarize(clean(load(day)))


if __name__ == "__main__":
    print("report:", daily_report("2024-05-01"))  # runs the three tasks
    print("report:", daily_report("2024-05-01"))  # the stored value: no task runs
