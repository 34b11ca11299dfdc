"""Cache on multiple criteria: INPUTS + TASK_SOURCE reuses a result as long as both the inputs
and the task's code are the same.

Run: python examples/multiple_criteria.py
"""

from taskstash import task
from taskstash.cache_policies import INPUTS, TASK_SOURCE

calls: list[int] = []


@task(cache_policy=INPUTS + TASK_SOURCE)
def my_task(x: int) -> int:
    calls.append(x)
    return x + 1


for x in (1, 1, 2):
    state = my_task(x, return_state=True)
    print(f"my_task({x}) -> {state.result()} ({'cached' if state.is_cached() else 'ran'})")
