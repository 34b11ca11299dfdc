"""The exceptions taskstash raises."""

from taskstash._native import HashingError

__all__ = [
    "HashingError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "TaskstashError",
    "UnfinishedRun",
    "UpstreamTaskError",
]


class TaskstashError(Exception):
    """Base of taskstash's own errors, apart from `HashingError`.

    `HashingError` is raised by the native key encoder and derives from `ValueError`: a value
    that cannot be hashed is a bad argument.
    """


class SerializationError(TaskstashError):
    """A result could not be serialized or deserialized by its task's serializer.

    Raised, for example, by the `"json"` serializer for a value JSON cannot represent. The
    original exception is chained as `__cause__`.
    """


class CacheCorruptedError(TaskstashError):
    """Something the cache stored is damaged: a result file or the index."""


class CorruptResultError(CacheCorruptedError):
    """A result file is not a valid taskstash result (bad magic, version, length or checksum)."""


class IndexUnusableError(TaskstashError):
    """The index file cannot be used by this taskstash: damaged, or written by a newer release.

    Task calls run uncached while it lasts (with one warning per task); the message says what
    to do.

    Attributes:
        path: The index file.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class CorruptIndexError(CacheCorruptedError, IndexUnusableError):
    """The index file is not a database, or is truncated or malformed.

    The message names the file and how to rebuild it from the result files
    (`taskstash.store.rebuild_index`); the result files themselves are never touched.
    """


class IndexUnreachableError(IndexUnusableError, ConnectionError):
    """The index's database server cannot be reached, or dropped the connection.

    A `ConnectionError` too (so an `OSError`): like a storage that cannot be reached, it makes
    task calls run uncached (one warning per task) until the server answers again, and the
    next operation connects anew.

    Attributes:
        path: The index's URL, without its password.
    """

    def __init__(self, message: str, path: str) -> None:
        IndexUnusableError.__init__(self, message, path)


class IndexTooNewError(IndexUnusableError):
    """The index file has a newer schema than this taskstash knows (`PRAGMA user_version`).

    Another taskstash release, say in another virtualenv sharing the same home, upgraded it.

    Attributes:
        path: The index file.
        version: The file's schema version.
        supported: The newest schema version this taskstash knows.
    """

    def __init__(self, message: str, path: str, version: int, supported: int) -> None:
        super().__init__(message, path)
        self.version = version
        self.supported = supported


class LockCycleError(TaskstashError):
    """A SERIALIZABLE call needs a lock that a task run it is running inside holds.

    It would wait for its own caller forever: two nested calls with one cache key (a
    `cache_key_fn` shared by two tasks, say) can never finish, so the inner call fails instead.
    """


class ResultTooLargeError(TaskstashError):
    """A result is larger than the cache's size limit (`TASKSTASH_MAX_SIZE`), so not stored.

    Storing it would evict every other record and still leave the cache over its limit.

    Attributes:
        size: The result file's size in bytes, or, for a result streamed into its file, the
            bytes written when it passed the limit (the writing stops there).
        limit: The limit, in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"a result of {size} bytes or more is larger than the cache's size limit of "
            f"{limit} bytes"
        )
        self.size = size
        self.limit = limit


__all__ += [
    "CacheCorruptedError",
    "CorruptIndexError",
    "CorruptResultError",
    "IndexTooNewError",
    "IndexUnreachableError",
    "IndexUnusableError",
    "LockCycleError",
    "ResultTooLargeError",
    "SerializationError",
]


class UpstreamTaskError(TaskstashError):
    """A submitted task did not run: a future it depends on ended without a value.

    Its state is `NotReady`; the message names the upstream task run and how it ended.
    """


class UnfinishedRun(TaskstashError):
    """The result of a run that has not ended was asked for."""


class MappingMissingIterable(TaskstashError, TypeError):
    """`task.map(...)` was given no iterable argument to map over."""


class MappingLengthMismatch(TaskstashError, ValueError):
    """`task.map(...)` was given iterables of different lengths."""
