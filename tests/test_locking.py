"""Lock managers keep one contract; SERIALIZABLE tasks compute each key once."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from taskstash import LockCycleError, settings, task
from taskstash.cache_policies import INPUTS, CacheKeyFnPolicy
from taskstash.locking import LockManager, MemoryLockManager, SQLiteLockManager
from taskstash.postgres_locks import PostgresLockManager


@pytest.fixture
def key() -> str:
    """A key no other test uses: the memory manager's table is shared by the whole process."""
    return f"k-{uuid.uuid4()}"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> LockManager:
    if request.param == "memory":
        return MemoryLockManager()
    if request.param == "postgresql":
        return PostgresLockManager(request.getfixturevalue("postgres_index"))
    return SQLiteLockManager(tmp_path / "index.db")


# the contract ----------------------------------------------------------------------------------


def test_acquire_release_and_queries(manager: LockManager, key: str) -> None:
    assert not manager.is_locked(key)
    assert manager.acquire_lock(key, "alice")
    assert manager.is_locked(key)
    assert manager.is_lock_holder(key, "alice")
    assert not manager.is_lock_holder(key, "bob")
    manager.release_lock(key, "alice")
    assert not manager.is_locked(key)


def test_the_holder_may_acquire_again(manager: LockManager, key: str) -> None:
    assert manager.acquire_lock(key, "alice")
    assert manager.acquire_lock(key, "alice", acquire_timeout=0)


def test_another_holder_waits_until_the_timeout(manager: LockManager, key: str) -> None:
    assert manager.acquire_lock(key, "alice")
    started = time.monotonic()
    assert not manager.acquire_lock(key, "bob", acquire_timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert not manager.acquire_lock(key, "bob", acquire_timeout=0)
    assert manager.acquire_lock(key + "-other", "bob", acquire_timeout=0)


def test_releasing_a_lock_one_does_not_hold_raises(manager: LockManager, key: str) -> None:
    with pytest.raises(ValueError, match="does not hold it"):
        manager.release_lock(key, "alice")
    manager.acquire_lock(key, "alice")
    with pytest.raises(ValueError, match="does not hold it"):
        manager.release_lock(key, "bob")
    assert manager.is_lock_holder(key, "alice")


def test_a_lease_frees_the_lock(manager: LockManager, key: str) -> None:
    assert manager.acquire_lock(key, "alice", hold_timeout=0.2)
    assert not manager.acquire_lock(key, "bob", acquire_timeout=0)
    assert manager.acquire_lock(key, "bob", acquire_timeout=2)
    assert manager.is_lock_holder(key, "bob")
    with pytest.raises(ValueError, match="does not hold it"):
        manager.release_lock(key, "alice")


def test_a_waiter_gets_the_lock_when_it_is_released(manager: LockManager, key: str) -> None:
    manager.acquire_lock(key, "alice")
    releaser = threading.Timer(0.2, manager.release_lock, args=(key, "alice"))
    releaser.start()
    try:
        assert manager.wait_for_lock(key, timeout=5)
        assert manager.acquire_lock(key, "bob", acquire_timeout=5)
    finally:
        releaser.join()
    assert not manager.wait_for_lock(key, timeout=0.1)


def test_async_waiters_do_not_block_the_event_loop(manager: LockManager, key: str) -> None:
    manager.acquire_lock(key, "alice")
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main() -> bool:
        releaser = asyncio.get_running_loop().call_later(0.15, manager.release_lock, key, "alice")
        try:
            got, _ = await asyncio.gather(
                manager.aacquire_lock(key, "bob", acquire_timeout=5), ticker()
            )
        finally:
            releaser.cancel()
        return got

    assert asyncio.run(main())
    assert len(ticks) == 5
    assert asyncio.run(manager.await_for_lock(key, timeout=0.05)) is False


# one lock table per process; managers that travel ----------------------------------------------


def test_memory_lock_managers_of_one_process_are_one() -> None:
    assert MemoryLockManager() is MemoryLockManager()


def test_memory_locks_are_seen_by_every_instance(key: str) -> None:
    assert MemoryLockManager().acquire_lock(key, "alice")
    assert MemoryLockManager().is_lock_holder(key, "alice")
    assert not MemoryLockManager().acquire_lock(key, "bob", acquire_timeout=0)
    MemoryLockManager().release_lock(key, "alice")


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_a_policy_with_a_memory_lock_manager_pickles_and_shares_its_locks(
    key: str, dumps: Callable[[object], bytes]
) -> None:
    policy = INPUTS.configure(lock_manager=MemoryLockManager(), isolation_level="SERIALIZABLE")
    assert policy.lock_manager.acquire_lock(key, "alice")
    loaded = pickle.loads(dumps(policy))
    assert loaded == policy
    assert loaded.lock_manager is MemoryLockManager()
    assert loaded.lock_manager.is_lock_holder(key, "alice")
    loaded.lock_manager.release_lock(key, "alice")
    assert not policy.lock_manager.is_locked(key)


def test_a_policy_with_an_sqlite_lock_manager_pickles_by_its_path(tmp_path: Path, key: str) -> None:
    policy = INPUTS.configure(
        lock_manager=SQLiteLockManager(tmp_path / "index.db"), isolation_level="SERIALIZABLE"
    )
    assert policy.lock_manager.acquire_lock(key, "alice")
    loaded = pickle.loads(cloudpickle.dumps(policy))
    assert isinstance(loaded.lock_manager, SQLiteLockManager)
    assert loaded.lock_manager.index.path == str(tmp_path / "index.db")
    assert loaded.lock_manager.is_lock_holder(key, "alice")
    assert not loaded.lock_manager.acquire_lock(key, "bob", acquire_timeout=0)


LOADS_IN_A_NEW_PROCESS = """
import pickle, sys
manager = pickle.loads(sys.stdin.buffer.read())
print(type(manager).__name__, manager.is_locked(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_manager_loaded_in_another_process(tmp_path: Path, key: str, kind: str) -> None:
    # The memory table is the process's own (none of its holders live elsewhere); the SQLite
    # one is the file's, shared by every process that opens it.
    manager: LockManager = (
        MemoryLockManager() if kind == "memory" else SQLiteLockManager(tmp_path / "index.db")
    )
    assert manager.acquire_lock(key, "alice")
    try:
        child = subprocess.run(
            [sys.executable, "-c", LOADS_IN_A_NEW_PROCESS, key],
            input=pickle.dumps(manager),
            capture_output=True,
            check=True,
        )
    finally:
        manager.release_lock(key, "alice")
    locked = kind == "sqlite"
    assert child.stdout.decode().split() == [type(manager).__name__, str(locked)]


def test_a_forked_child_starts_with_no_memory_locks(key: str) -> None:
    # Its threads are new: none holds a lock taken by a thread of the parent.
    manager = MemoryLockManager()
    assert manager.acquire_lock(key, "alice")
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            assert pool.submit(_locked_here, key).result() is False
    finally:
        manager.release_lock(key, "alice")


def _locked_here(key: str) -> bool:
    manager = MemoryLockManager()
    free = manager.acquire_lock(key, "child", acquire_timeout=0)
    return not free


# holders that die ------------------------------------------------------------------------------

HOLD = """
import sys, time
from taskstash.locking import SQLiteLockManager
SQLiteLockManager(sys.argv[1]).acquire_lock("k", "child")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def locked_by_child(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    index = tmp_path / "index.db"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(index)], stdout=subprocess.PIPE, text=True
    )
    with child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        yield child, index
        child.kill()


def test_a_killed_holder_is_noticed_at_once(
    locked_by_child: tuple[subprocess.Popen[str], Path],
) -> None:
    child, index = locked_by_child
    manager = SQLiteLockManager(index)
    assert manager.is_locked("k")
    assert not manager.acquire_lock("k", "parent", acquire_timeout=0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    started = time.monotonic()
    assert manager.acquire_lock("k", "parent", acquire_timeout=5)
    assert time.monotonic() - started < 1


def test_a_lock_held_from_another_host_waits_for_its_lease(tmp_path: Path) -> None:
    manager = SQLiteLockManager(tmp_path / "index.db")
    manager.acquire_lock("k", "remote", hold_timeout=0.3)
    with manager.index.transaction() as conn:  # as if written by a machine sharing the index
        conn.execute("UPDATE locks SET host = 'elsewhere', pid = 1 WHERE key = 'k'")
    assert not manager.acquire_lock("k", "local", acquire_timeout=0.1)
    assert manager.acquire_lock("k", "local", acquire_timeout=5)


# SERIALIZABLE tasks ----------------------------------------------------------------------------


def test_serializable_threads_compute_a_key_once(tmp_path: Path) -> None:
    computed: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def slow_square(x: int) -> int:
        computed.append(x)
        time.sleep(0.3)
        return x * x

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(slow_square, [7] * 8))
    assert results == [49] * 8
    assert computed == [7]


def test_serializable_with_a_memory_lock_manager() -> None:
    computed: list[int] = []
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=MemoryLockManager())

    @task(cache_policy=policy, cache_result_in_memory=False)
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.2)
        return x

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(slow, [1, 2, 1, 2, 1, 2])) == [1, 2, 1, 2, 1, 2]
    assert sorted(computed) == [1, 2]


def test_serializable_async_tasks_compute_a_key_once() -> None:
    computed: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    async def fetch(x: int) -> int:
        computed.append(x)
        await asyncio.sleep(0.2)
        return x + 1

    async def main() -> list[int]:
        return list(await asyncio.gather(*(fetch(3) for _ in range(5))))

    assert asyncio.run(main()) == [4] * 5
    assert computed == [3]


def test_a_failing_holder_releases_the_lock_and_the_next_caller_computes() -> None:
    attempts: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1
    assert attempts == [1, 1]


PROCESS_STAMPEDE = """
import sys, time
from typing import Any

from taskstash import LockCycleError, settings, task
from taskstash.cache_policies import INPUTS, CacheKeyFnPolicy

@task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
def slow(x: int) -> int:
    with open(sys.argv[1], "a") as log:
        log.write("computed\\n")
    time.sleep(0.5)
    return x * 10

print(slow(4))
"""


def test_serializable_processes_compute_a_key_once(tmp_path: Path) -> None:
    log = tmp_path / "computations.log"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PROCESS_STAMPEDE), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert outputs == ["40"] * 4
    assert log.read_text().splitlines() == ["computed"]


def _key_by_path(context: object, parameters: dict[str, Any]) -> str:
    return str(parameters["path"])


def test_a_nested_call_of_the_key_its_caller_holds_fails_instead_of_hanging() -> None:
    serializable = CacheKeyFnPolicy(cache_key_fn=_key_by_path).configure(
        isolation_level="SERIALIZABLE"
    )

    @task(cache_policy=serializable)
    def load(path: str) -> str:
        return f"loaded {path}"

    @task(cache_policy=serializable)
    def parse(path: str) -> str:
        return load(path).upper()

    # Run where a hang cannot block the suite: a daemon thread with a deadline.
    raised: list[BaseException] = []

    def call() -> None:
        try:
            parse("data.csv")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the nested call hangs"
    (error,) = raised
    assert isinstance(error, LockCycleError)
    assert "task 'load' is called inside task run 'parse-" in str(error)
    # Nothing was stored, no lock stays behind: a different key still works, sequentially too.
    assert load("other.csv") == "loaded other.csv"
    assert not SQLiteLockManager(settings.current().index_path).is_locked("data.csv")


def test_a_nested_async_call_of_a_held_key_fails_too() -> None:
    serializable = CacheKeyFnPolicy(cache_key_fn=_key_by_path).configure(
        isolation_level="SERIALIZABLE"
    )

    @task(cache_policy=serializable)
    async def load(path: str) -> str:
        return f"loaded {path}"

    @task(cache_policy=serializable)
    async def parse(path: str) -> str:
        return (await load(path)).upper()

    async def main() -> str:
        return await asyncio.wait_for(parse("data.csv"), timeout=20)

    with pytest.raises(LockCycleError):
        asyncio.run(main())


def test_nested_calls_of_different_keys_and_sequential_calls_of_one_key_run() -> None:
    serializable = INPUTS.configure(isolation_level="SERIALIZABLE")

    @task(cache_policy=serializable)
    def inner(x: int) -> int:
        return x + 1

    @task(cache_policy=serializable)
    def outer(x: int) -> int:
        return inner(x) + inner(x + 1)  # scoped keys: never the outer call's key

    assert outer(1) == 5
    assert outer(1) == 5
    assert inner(1) == 2
