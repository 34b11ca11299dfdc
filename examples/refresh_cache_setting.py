"""TASKSTASH_TASKS_REFRESH_CACHE=true refreshes every task whose refresh_cache is unset, while a
task with refresh_cache=False still reads its records.

Run: python examples/refresh_cache_setting.py
"""

import os
import random

os.environ["TASKSTASH_TASKS_REFRESH_CACHE"] = "true"  # normally set in the shell

from taskstash import task
from taskstash.cache_policies import TASK_SOURCE


@task(cache_policy=TASK_SOURCE, refresh_cache=False)
def caching_task() -> float:
    return random.random()


@task(cache_policy=TASK_SOURCE)
def refreshing_task() -> float:
    return random.random()


print("refresh_cache=False reads its record:", caching_task() == caching_task())
print("refresh_cache unset is refreshed:", refreshing_task() != refreshing_task())
