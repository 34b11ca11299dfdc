"""The contenders: how each library caches a function, and whether it is installed.

Every contender caches in its own directory; taskstash's are under a fresh TASKSTASH_HOME per
case (`taskstash_home`). Peers are imported only when used, so a missing one costs nothing but
its rows, which read "not installed".
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import taskstash
from taskstash import task
from taskstash.cache_policies import INPUTS, CachePolicy

Memoize = Callable[[Callable[..., Any], Path, ExitStack], Callable[..., Any]]
"""Caches a function in a directory; whatever must be closed afterwards goes on the stack."""

NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class Contender:
    """One way of caching a function.

    Attributes:
        key: Stable id, used on worker command lines.
        label: Row label in the report.
        module: What must be importable for it to run.
        persistent: Whether results outlive the process (on disk).
        memoize: Wraps a function so that its calls are cached.
        hashable_args: Only hashable arguments (no numpy arrays) can be cached.
        connect: Start-up work a long-lived process would have done before its first call
            (Prefect starts its API server), done by each stampede process before the start.
    """

    key: str
    label: str
    module: str
    persistent: bool
    memoize: Memoize
    hashable_args: bool = False
    connect: Callable[[], None] | None = None

    @property
    def installed(self) -> bool:
        """Whether its library can be imported."""
        return installed(self.module)


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def version(distribution: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


_TASKSTASH_VARIABLES = (
    "TASKSTASH_HOME",
    "TASKSTASH_INDEX_PATH",
    "TASKSTASH_INDEX_URL",
    "TASKSTASH_LOCAL_STORAGE_PATH",
    "TASKSTASH_TASKS_REFRESH_CACHE",
    "TASKSTASH_SIGNING_KEY",
)


@contextmanager
def taskstash_home(home: Path) -> Iterator[Path]:
    """Points taskstash at a fresh cache home with default settings, then restores the old ones.

    The other variables are unset so that the user's environment (a signing key, a refresh flag)
    does not change what is measured; a fresh home is a fresh store, whose memory layer is empty.
    """
    saved = {name: os.environ.pop(name, None) for name in _TASKSTASH_VARIABLES}
    os.environ["TASKSTASH_HOME"] = str(home)
    taskstash.settings.reload()
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        taskstash.settings.reload()


def _taskstash(policy: CachePolicy, memory: bool) -> Memoize:
    def memoize(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
        # The index and results go to the case's TASKSTASH_HOME (see `taskstash_home`).
        return task(cache_policy=policy, cache_result_in_memory=memory)(fn)

    return memoize


def _lru_cache(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    # Unbounded: the floor, with no eviction work at all.
    return functools.lru_cache(maxsize=None)(fn)


def _cachebox(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    import cachebox

    # Its default: an unbounded LRUCache, with a stampede lock.
    cached: Callable[..., Any] = cachebox.cached()(fn)
    return cached


def _diskcache(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    import diskcache

    # Its default size limit (2**30 bytes) would evict a 1 GiB result as soon as it is stored;
    # under the limit, its value changes nothing (each store compares the volume with it).
    cache = stack.enter_context(diskcache.Cache(str(directory), size_limit=1 << 40))
    memoized: Callable[..., Any] = cache.memoize()(fn)
    return memoized


def _joblib(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    import joblib

    memoized: Callable[..., Any] = joblib.Memory(str(directory), verbose=0).cache(fn)
    return memoized


def _joblib_mmap(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    import joblib

    # Arrays in a stored result (also a DataFrame's blocks) come back mapped, read-only.
    memoized: Callable[..., Any] = joblib.Memory(str(directory), mmap_mode="r", verbose=0).cache(fn)
    return memoized


def _cachier(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    from cachier import cachier

    # Its defaults otherwise: the pickle backend, one file per function, reloaded on each call.
    memoized: Callable[..., Any] = cachier(cache_dir=str(directory))(fn)
    return memoized


def _prefect(fn: Callable[..., Any], directory: Path, stack: ExitStack) -> Callable[..., Any]:
    # Prefect's INPUTS keys hold the arguments only, not the task: every case needs storage of
    # its own, or add_one(1) would hit array_result(1)'s record. A result_storage object would
    # have to be saved to a server first, so the storage is set through Prefect's settings: the
    # variable for a process that has not imported Prefect yet (whose threads do not see
    # temporary settings), and temporary settings for one that has.
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(directory)
    from prefect import task as prefect_task
    from prefect.cache_policies import INPUTS as PREFECT_INPUTS
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    stack.enter_context(temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(directory)}))
    memoized: Callable[..., Any] = prefect_task(cache_policy=PREFECT_INPUTS, persist_result=True)(
        fn
    )
    return memoized


def _prefect_connect() -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()


LRU_CACHE = Contender("lru_cache", "functools.lru_cache", "functools", False, _lru_cache, True)
CACHEBOX = Contender("cachebox", "cachebox.cached", "cachebox", False, _cachebox, True)
TASKSTASH = Contender(
    "taskstash", "taskstash (memory layer on, default)", "taskstash", True, _taskstash(INPUTS, True)
)
TASKSTASH_DISK = Contender(
    "taskstash-disk", "taskstash (memory layer off)", "taskstash", True, _taskstash(INPUTS, False)
)
DISKCACHE = Contender("diskcache", "diskcache Cache.memoize", "diskcache", True, _diskcache)
JOBLIB = Contender("joblib", "joblib.Memory", "joblib", True, _joblib)
JOBLIB_MMAP = Contender("joblib-mmap", "joblib.Memory(mmap_mode='r')", "joblib", True, _joblib_mmap)
CACHIER = Contender("cachier", "cachier", "cachier", True, _cachier)
PREFECT = Contender(
    "prefect", "Prefect task (INPUTS)", "prefect", True, _prefect, connect=_prefect_connect
)

LATENCY_CONTENDERS = (
    LRU_CACHE,
    CACHEBOX,
    TASKSTASH,
    TASKSTASH_DISK,
    DISKCACHE,
    JOBLIB,
    CACHIER,
    PREFECT,
)
"""Hit and miss cases, in report order."""

SERIALIZABLE = Contender(
    "taskstash-serializable",
    "taskstash SERIALIZABLE",
    "taskstash",
    True,
    _taskstash(INPUTS.configure(isolation_level="SERIALIZABLE"), True),
)
READ_COMMITTED = Contender(
    "taskstash-read-committed",
    "taskstash READ_COMMITTED",
    "taskstash",
    True,
    _taskstash(INPUTS, True),
)

STAMPEDE_CONTENDERS = (
    SERIALIZABLE,
    READ_COMMITTED,
    DISKCACHE,
    JOBLIB,
    CACHIER,
    CACHEBOX,
    LRU_CACHE,
    PREFECT,
)
"""The stampede's contenders: taskstash in both isolation levels, peers with their defaults."""

LARGE_CONTENDERS = (TASKSTASH, DISKCACHE, JOBLIB, JOBLIB_MMAP)
"""The large results' contenders: the persistent caches that can hit in a fresh process and
store results as they are (cachier and Prefect pickle them whole, as the pickle baseline does)."""

BY_KEY = {
    contender.key: contender
    for contender in (*LATENCY_CONTENDERS, *STAMPEDE_CONTENDERS, *LARGE_CONTENDERS)
}

BENCH_EXTRA = (
    "cachebox",
    "diskcache",
    "joblib",
    "cachier",
    "numpy",
    "pandas",
    "pyarrow",
    "xxhash",
)
"""Modules of the `bench` extra a full run needs (Prefect is optional: too heavy to require)."""

DISTRIBUTIONS = (
    "taskstash",
    "numpy",
    "pandas",
    "pyarrow",
    "xxhash",
    "cloudpickle",
    "cachebox",
    "diskcache",
    "joblib",
    "cachier",
    "prefect",
    "matplotlib",
)
"""Versions recorded in the report."""
