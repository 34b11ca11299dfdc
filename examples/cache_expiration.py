"""Cache with an expiration: after `cache_expiration` the call runs again.

Run: python examples/cache_expiration.py
"""

import time
from datetime import timedelta

from taskstash import task
from taskstash.cache_policies import INPUTS


@task(cache_policy=INPUTS, cache_expiration=timedelta(seconds=1))
def my_stateful_task(x: int) -> int:
    print("sleeping")
    time.sleep(0.2)
    return x + 1


print("x=1 ->", my_stateful_task(x=1))  # sleeps
print("x=1 ->", my_stateful_task(x=1))  # does not sleep
time.sleep(1.1)  # ... the expiration passes ...
print("x=1 ->", my_stateful_task(x=1))  # sleeps again
