"""taskstash: cache the results of Python functions.

Users import from here; everything below `taskstash._native` is private.
"""

from taskstash._native import __version__
from taskstash.exceptions import HashingError, TaskstashError
from taskstash.hashing import hash_bytes, hash_objects, register

__all__ = [
    "HashingError",
    "TaskstashError",
    "__version__",
    "hash_bytes",
    "hash_objects",
    "register",
]
