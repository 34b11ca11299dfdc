"""The exceptions taskstash raises."""

from taskstash._native import HashingError

__all__ = ["HashingError", "TaskstashError"]


class TaskstashError(Exception):
    """Base of taskstash's own errors, apart from `HashingError`.

    `HashingError` is raised by the native key encoder and derives from `ValueError`: a value
    that cannot be hashed is a bad argument.
    """
