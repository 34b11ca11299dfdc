"""Cache based on inputs: a call with inputs seen before does not run again.

Run: python examples/cache_on_inputs.py
"sleeping" is printed by each call that runs; calls answered from the cache print nothing.
"""

import time

from taskstash import task
from taskstash.cache_policies import INPUTS


@task(cache_policy=INPUTS)
def my_stateful_task(x: int) -> int:
    print("sleeping")
    time.sleep(0.2)  # stands for slow work
    return x + 1


print("x=1 ->", my_stateful_task(x=1))  # sleeps
print("x=1 ->", my_stateful_task(x=1))  # does not sleep
print("x=2 ->", my_stateful_task(x=2))  # sleeps
