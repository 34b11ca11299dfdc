"""The quickstart: persist_result=True caches with DEFAULT (inputs + task source + flow run).

Run: python examples/flow_quickstart.py
The log shows add_one(1) computed, then cached; add_one(2) computed.
"""

from taskstash import flow, task


@task(persist_result=True)
def add_one(x: int) -> int:
    return x + 1


@flow
def my_flow() -> None:
    add_one(1)  # will not be cached
    add_one(1)  # will be cached
    add_one(2)  # will not be cached


if __name__ == "__main__":
    my_flow()
