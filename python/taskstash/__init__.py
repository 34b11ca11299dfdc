"""taskstash: cache the results of Python functions.

    from taskstash import task, flow
    from taskstash.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def add_one(x: int) -> int:
        return x + 1

Users import from here and from `taskstash.cache_policies`; `taskstash._native` is private.
"""

from typing import TYPE_CHECKING

from taskstash import settings
from taskstash._native import __version__
from taskstash.annotations import unmapped
from taskstash.exceptions import HashingError, LockCycleError, TaskstashError
from taskstash.flows import Flow, flow
from taskstash.hashing import hash_bytes, hash_objects, register
from taskstash.lazy import lazy_exports
from taskstash.states import Cached, Completed, Failed, State
from taskstash.tasks import Task, TaskstashWarning, task

if TYPE_CHECKING:
    from taskstash.cache import Cache
    from taskstash.explanations import Explanation, explain

__all__ = [
    "Cache",
    "Cached",
    "Completed",
    "Explanation",
    "Failed",
    "Flow",
    "HashingError",
    "LockCycleError",
    "State",
    "Task",
    "TaskstashError",
    "TaskstashWarning",
    "__version__",
    "explain",
    "flow",
    "hash_bytes",
    "hash_objects",
    "register",
    "settings",
    "task",
    "unmapped",
]

# The cache's management interface loads the index and storages: on first use.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Cache": "taskstash.cache",
        "Explanation": "taskstash.explanations",
        "explain": "taskstash.explanations",
    },
)
