"""Async tasks leave the event loop free while their results are read, saved and committed.

Each test proves it by structure, never by time: a result whose pickling or unpickling (or a
commit hook) waits until a ticker coroutine beside it has run, which the ticker can only do if
the loop is free meanwhile. Short work stays on the loop (a thread hop would cost more), which
a counting executor shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import pytest
from index_support import index_sql
from pg_support import PostgresServer

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store.hits import flush_all_hits
from taskstash.transactions import Transaction, get_transaction, transaction

P = ParamSpec("P")
R = TypeVar("R")
Isolation = Literal["READ_COMMITTED", "SERIALIZABLE"]

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GUARD = 10.0
"""How long storage work waits for the ticker before going on without it: reached only when
the loop is blocked, and then the test fails."""


class Gate:
    """Lets storage work in progress wait until the event loop has run the ticker.

    Attributes:
        seen: Each wait: what waited, on which thread, and whether the ticker let it go.
        holding: The step that, once the ticker ran, also waits for `release`.
        held: Set while the `holding` step waits for `release`.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []
        self.holding: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self._waiting: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()

    def wait_for_loop(self, what: str) -> None:
        event = threading.Event()
        self._waiting.put(event)
        ticked = event.wait(GUARD)
        self.seen.append((what, threading.get_ident(), ticked))
        if what == self.holding:
            self.held.set()
            self.release.wait(GUARD)

    @contextlib.asynccontextmanager
    async def ticking(self) -> AsyncIterator[None]:
        """Runs the ticker for the block: it lets every waiting step go, again and again."""
        stop = asyncio.Event()

        async def tick() -> None:
            while not stop.is_set():
                while not self._waiting.empty():
                    self._waiting.get().set()
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            stop.set()
            await ticker

    def steps(self) -> list[str]:
        return sorted(what for what, _, _ in self.seen)


_GATE = Gate()


@pytest.fixture
def gate() -> Gate:
    global _GATE
    _GATE = Gate()
    return _GATE


class Probe:
    """A large result whose pickling and unpickling wait for the event loop (see `Gate`)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Probe) and other.payload == self.payload

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Callable[[bytes], Probe], tuple[bytes]]:
        _GATE.wait_for_loop("save")
        return _rebuilt, (self.payload,)


def _rebuilt(payload: bytes) -> Probe:
    _GATE.wait_for_loop("load")
    return Probe(payload)


def large(i: int) -> Probe:
    return Probe(bytes([i]) * (4 * MIB))


def rows() -> int:
    return int(index_sql("SELECT count(*) FROM records")[0][0])


def held_locks() -> int:
    return int(index_sql("SELECT count(*) FROM locks")[0][0])


def files(home: Path) -> list[str]:
    """Every file in the storage, temporary ones included."""
    storage = home / "storage"
    return sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())


def on_the_loop_thread(gate: Gate, loop_thread: int) -> list[str]:
    """The steps that ran on the loop's thread, or that the loop did not tick during."""
    return [what for what, thread, ticked in gate.seen if thread == loop_thread or not ticked]


@pytest.mark.usefixtures("index_backend")
def test_large_results_are_saved_and_read_while_the_loop_runs(gate: Gate) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS)
    async def produce(i: int) -> Probe:
        ran.append(i)
        return large(i)

    async def main() -> tuple[int, list[Probe], list[Probe]]:
        async with gate.ticking():
            cold = await asyncio.gather(*(produce(i) for i in range(3)))
            warm = await asyncio.gather(*(produce(i) for i in range(3)))
        return threading.get_ident(), cold, warm

    loop_thread, cold, warm = asyncio.run(main())
    assert cold == warm == [large(i) for i in range(3)]
    assert sorted(ran) == [0, 1, 2]
    assert gate.steps() == ["load"] * 3 + ["save"] * 3
    assert on_the_loop_thread(gate, loop_thread) == []


@pytest.mark.parametrize("isolation", ["READ_COMMITTED", "SERIALIZABLE"])
def test_concurrent_calls_of_one_large_result_keep_the_loop_free(
    gate: Gate, isolation: Isolation
) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level=isolation))
    async def produce(i: int) -> Probe:
        ran.append(i)
        await asyncio.sleep(0.01)  # the other calls are waiting meanwhile
        return large(i)

    async def main() -> tuple[int, list[Probe]]:
        async with gate.ticking():
            values = await asyncio.gather(*(produce(7) for _ in range(4)))
        return threading.get_ident(), values

    loop_thread, values = asyncio.run(main())
    assert values == [large(7)] * 4
    if isolation == "SERIALIZABLE":
        assert ran == [7]  # the waiters read the holder's record, off the loop
        assert gate.steps() == ["load"] * 3 + ["save"]
    assert on_the_loop_thread(gate, loop_thread) == []
    assert held_locks() == 0


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the work handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_only_large_results_and_remote_storage_leave_the_loop() -> None:
    @task(cache_policy=INPUTS)
    async def echo(value: Any) -> Any:
        return value

    small: list[Any] = [
        1,
        "text",
        b"x" * 1000,
        np.arange(100),
        {"a": [1.5, None, (True, "b")], "b": np.zeros(10)},
    ]
    remembered = b"m" * (256 << 10)  # too large for the loop, small enough for the memory layer

    async def main() -> dict[str, int]:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        handed: dict[str, int] = {}
        phases: list[tuple[str, list[Any]]] = [("small", small), ("remembered", [remembered])]
        for phase, values in phases:
            for run in ("cold", "warm"):
                before = executor.submitted
                np.testing.assert_equal(await asyncio.gather(*(echo(v) for v in values)), values)
                handed[f"{phase} {run}"] = executor.submitted - before
        before = executor.submitted
        assert await echo(b"L" * (4 * MIB)) == b"L" * (4 * MIB)  # saved and committed
        assert await echo(b"L" * (4 * MIB)) == b"L" * (4 * MIB)  # read
        handed["large"] = executor.submitted - before
        return handed

    handed = asyncio.run(main())
    assert handed == {
        "small cold": 0,
        "small warm": 0,
        "remembered cold": 2,  # the save and the commit
        "remembered warm": 0,  # a hit of the memory layer
        "large": 3,  # the save, the commit, the read
    }


@pytest.mark.usefixtures("s3")
def test_results_on_an_object_store_are_read_and_written_off_the_loop_however_small() -> None:
    @task(
        cache_policy=INPUTS,
        result_storage="s3://taskstash-test/async",
        cache_result_in_memory=False,
    )
    async def add(x: int) -> int:
        return x + 1

    async def main() -> list[int]:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        handed = []
        for _ in ("cold", "warm"):
            before = executor.submitted
            assert await add(1) == 2
            handed.append(executor.submitted - before)
        return handed

    assert asyncio.run(main()) == [2, 1]  # the lookup and the upload; the download


def test_a_large_result_in_a_transaction_is_staged_off_the_loop_and_committed_with_it(
    gate: Gate, taskstash_home: Path
) -> None:
    @task(cache_policy=INPUTS)
    async def produce(i: int) -> Probe:
        return large(i)

    async def main() -> int:
        async with gate.ticking():
            with transaction():
                assert await produce(1) == large(1)
                assert rows() == 0  # staged, not yet visible
            assert rows() == 1
            with contextlib.suppress(ValueError), transaction():
                await produce(2)
                raise ValueError("the block fails")
            assert rows() == 1
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert gate.steps() == ["save", "save"]
    assert on_the_loop_thread(gate, loop_thread) == []
    assert len(files(taskstash_home)) == 1  # the rolled back file is gone, no temporary left


def test_the_commit_of_large_results_runs_off_the_loop_in_the_calls_context(gate: Gate) -> None:
    committed: list[tuple[Transaction, Transaction | None]] = []

    @task(cache_policy=INPUTS)
    async def inner(i: int) -> Probe:
        return large(i)

    @task(cache_policy=INPUTS)
    async def outer(i: int) -> int:
        await inner(i)
        assert rows() == 0  # the inner record waits for the outer call's commit
        return i

    @inner.on_commit
    def hook(txn: Transaction) -> None:
        gate.wait_for_loop("commit")
        committed.append((txn, get_transaction()))

    async def main() -> int:
        async with gate.ticking():
            assert await outer(3) == 3
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert rows() == 2
    assert gate.steps() == ["commit", "save"]
    assert on_the_loop_thread(gate, loop_thread) == []
    [(txn, current)] = committed
    assert txn.is_committed()
    assert current is not None
    assert txn.get_parent() is current  # the outer call's, as in a sync call


@pytest.mark.parametrize("isolation", ["READ_COMMITTED", "SERIALIZABLE"])
@pytest.mark.parametrize(
    ("step", "records", "runs"),
    [
        ("save", 0, 2),  # nothing was stored: the next call runs again
        ("commit", 1, 1),  # the commit ends whole before the call is cancelled
        ("load", 1, 1),  # the record stays
    ],
)
def test_a_call_cancelled_during_storage_work_leaves_no_partial_record_and_no_lock(
    gate: Gate,
    taskstash_home: Path,
    isolation: Isolation,
    step: str,
    records: int,
    runs: int,
) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level=isolation))
    async def produce(i: int) -> Probe:
        ran.append(i)
        return large(i)

    produce.on_commit(lambda txn: gate.wait_for_loop("commit"))
    after: list[Transaction | None] = []

    async def call() -> None:
        try:
            await produce(1)
        except asyncio.CancelledError:
            after.append(get_transaction())
            raise

    async def main() -> None:
        async with gate.ticking():
            if step == "load":
                await produce(1)
            gate.holding = step
            running = asyncio.create_task(call())
            while not gate.held.is_set():
                await asyncio.sleep(0.001)
            running.cancel()
            gate.release.set()
            with pytest.raises(asyncio.CancelledError):
                await running
            assert rows() == records
            assert held_locks() == 0
            gate.holding = None
            assert await produce(1) == large(1)

    asyncio.run(main())
    assert after == [None]
    assert ran == [1] * runs
    assert len(files(taskstash_home)) == 1  # no partial or temporary file


def test_an_index_server_that_cannot_be_reached_means_uncached_async_calls(
    postgres_server: PostgresServer,
    postgres_index: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TASKSTASH_INDEX_URL", postgres_index)
    settings.reload()
    ran: list[int] = []

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    async def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    async def main() -> None:
        assert await double(1) == 2
        flush_all_hits()  # earlier tests' pending hits go now, not while the server is down
        postgres_server.stop()
        try:
            with caplog.at_level(logging.WARNING, logger="taskstash"):
                assert await double(1) == 2  # looked up in a thread, which cannot reach it
                assert await double(2) == 4
        finally:
            postgres_server.start()
        assert await double(3) == 6
        assert await double(3) == 6

    asyncio.run(main())
    assert ran == [1, 1, 2, 3]  # uncached while the server is down, cached again after
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1


def test_the_stall_benchmark_runs() -> None:
    command = ["-m", "benches.async_storage", "--calls", "3", "--mib", "0.25", "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    runs = [line.split()[:2] for line in done.stdout.splitlines() if line.startswith("o")]
    assert runs == [["off", "cold"], ["off", "warm"], ["on", "cold"], ["on", "warm"]]
