"""Ignore the cache: refresh_cache=True always runs the task and overwrites its record.

Run: python examples/refresh_cache.py
"""

import random

from taskstash import task
from taskstash.cache_policies import TASK_SOURCE


@task(cache_policy=TASK_SOURCE, refresh_cache=True)
def never_caching_task() -> float:
    return random.random()


first, second = never_caching_task(), never_caching_task()
print("two calls, two values:", first != second)
