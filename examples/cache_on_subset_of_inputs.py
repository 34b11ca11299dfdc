"""Cache based on a subset of inputs: `INPUTS - 'debug'` leaves `debug` out of the key.

Run: python examples/cache_on_subset_of_inputs.py
"""

import time

from taskstash import task
from taskstash.cache_policies import INPUTS


@task(cache_policy=INPUTS - "debug")
def my_stateful_task(x: int, debug: bool = False) -> int:
    print("sleeping")
    time.sleep(0.2)
    return x + 1


print("x=1 ->", my_stateful_task(x=1))  # sleeps
print("x=1, debug=True ->", my_stateful_task(x=1, debug=True))  # does not sleep
print("x=1, debug=False ->", my_stateful_task(x=1, debug=False))  # does not sleep
