"""Looking after a big cache: `taskstash ls`, `stats`, `prune` and a hit at a million records.

Measure (build for speed first: `maturin develop --release`) with

    pytest benches/test_bench_management.py --benchmark-enable --benchmark-group-by=group \
        --benchmark-columns=min,median,max

Targets, asserted by a measured run, at 1,000,000 records:

- `taskstash ls --task X --limit 20` <= 200 ms and `taskstash stats` <= 1 s, as whole commands
  (a new `python -m taskstash` process each time: start-up and imports included);
- `taskstash prune --expired` removing 100,000 expired records <= 5 s (their files already gone;
  with files, the time is reported: the file system's share varies too much from disk to disk);
- a cache hit (memory layer off) within 1.5x of a hit on an index of 1,000 records;
- and, for `taskstash explain`, <= 1 s (it once listed the whole index).

The default smoke run (`--benchmark-disable`) builds an index of 2,000 records instead and runs
each benchmark once, untimed, checking only the results, so that the test suite stays fast.

The index, generated here and never committed: one real record (the one hit), live rows from
`harness.indexgen.populate_index` across ten tasks, and a tenth of the rows expired, of task
`expiring`. Generated rows point at result files that do not exist (only the index is
exercised), except when pruning `with-files`: then each expired record has a real small file,
written and synced to disk first (expired results are old files), which the prune unlinks. The
`rows-only` prune shows the share of the index and of taskstash itself. Every row is inserted
with SQL, so the triggers keep the `totals` table right.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import pytest
from harness.indexgen import populate_index

from taskstash import Cache, explain, task
from taskstash.cache_policies import INPUTS
from taskstash.cli import main
from taskstash.tasks import Task

MEASURED_RECORDS = 1_000_000
SMOKE_RECORDS = 2_000
SMALL_RECORDS = 1_000
TASKS = tuple(f"task_{i}" for i in range(10))
EXPIRED_RESULT = b"an expired result, 64 bytes: what prune unlinks".ljust(64, b".")
COMMON_TASK = "task_3"
RARE_TASK = "add_one"  # the one real record's task
EXPIRING_TASK = "expiring"

LS_SECONDS = 0.2
STATS_SECONDS = 1.0
PRUNE_SECONDS = 5.0
EXPLAIN_SECONDS = 1.0
HIT_RATIO = 1.5

GROUP = "management"


P = ParamSpec("P")
R = TypeVar("R")


class Benchmark(Protocol):
    """The parts of pytest-benchmark's `benchmark` fixture used here."""

    disabled: bool
    extra_info: dict[str, Any]  # saved with the timings

    def __call__(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def pedantic(
        self, target: Callable[[], R], *, rounds: int = 1, warmup_rounds: int = 0
    ) -> R: ...


def benchmarks_measured(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times the benchmarks (its own rule)."""
    disabled = bool(config.getoption("benchmark_disable")) and not config.getoption(
        "benchmark_enable"
    )
    return not disabled


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`records`: the size of the big index, by mode, shared by the module's tests."""
    if "records" in metafunc.fixturenames:
        count = MEASURED_RECORDS if benchmarks_measured(metafunc.config) else SMOKE_RECORDS
        metafunc.parametrize("records", [count], ids=[f"{count}records"], scope="module")


COMPUTED: list[int] = []


def add_one(x: int) -> int:
    COMPUTED.append(x)
    return x + 1


@dataclass
class Index:
    """A generated index, its storage, and the task whose one real record it holds."""

    path: Path
    storage: Path
    records: int
    expired: int
    cached: Task[[int], int]

    def command(self, *argv: str) -> list[str]:
        return ["--index", str(self.path), "--storage", str(self.storage), *argv]


def make_index(directory: Path, records: int, expired: int) -> Index:
    path, storage = directory / "index.db", directory / "storage"
    cached = task(
        cache_policy=INPUTS.configure(key_storage=str(path)),
        result_storage=str(storage),
        cache_result_in_memory=False,
    )(add_one)
    assert cached(1) == 2  # creates the index and the record to be hit: the template
    generated = populate_index(path, records - 1 - expired, task_names=TASKS)
    assert generated.total == records - expired
    add_expired(path, storage, expired)
    index = Index(path, storage, records, expired, cached)
    assert Cache(path, storage).totals()[0] == records
    return index


def add_expired(path: Path, storage: Path, count: int) -> None:
    """Inserts `count` expired records of EXPIRING_TASK (their files: `write_expired_files`)."""
    rng = random.Random(1)
    now = time.time()
    rows = []
    for i in range(count):
        key = f"{rng.getrandbits(128):032x}"
        created = now - 3600 - 30 * 86_400 * (1 - i / max(count, 1))  # expired an hour ago or more
        location = f"{key[:2]}/{key}"
        rows.append((key, created, created + 60, str(storage), location, f"{i:032x}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO records (key, task_name, task_qualname, created_at, expires_at, "
            "size_bytes, serializer, storage, location, checksum) VALUES (?, "
            f"'{EXPIRING_TASK}', 'generated.{EXPIRING_TASK}', ?, ?, {len(EXPIRED_RESULT)}, "
            "'pickle', ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def write_expired_files(index: Index, *, sync: bool) -> int:
    """Writes the result file of every EXPIRING_TASK record; with `sync`, to the disk, as the
    results of records that expired long ago are."""
    written = 0
    for record in Cache(index.path, index.storage).records(task=EXPIRING_TASK):
        file = index.storage / record.location
        file.parent.mkdir(mode=0o700, exist_ok=True)
        file.write_bytes(EXPIRED_RESULT)
        written += 1
    if sync:
        os.sync()
    return written


def result_files(index: Index) -> list[Path]:
    return [p for p in index.storage.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def big(records: int, tmp_path_factory: pytest.TempPathFactory) -> Index:
    return make_index(tmp_path_factory.mktemp("big-index"), records, records // 10)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Index:
    return make_index(tmp_path_factory.mktemp("small-index"), SMALL_RECORDS, 0)


def in_process(*argv: str) -> str:
    """`taskstash *argv` in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def timed_commands(
    benchmark: Benchmark, argv: list[str], rounds: int = 5, warmup_rounds: int = 1
) -> tuple[str, list[float]]:
    """Runs `python -m taskstash *argv` as a new process per round: its output and the times.

    The times are those of the measured rounds only.
    """
    seconds: list[float] = []

    def command() -> str:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "taskstash", *argv],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        seconds.append(time.perf_counter() - started)
        return done.stdout

    out = benchmark.pedantic(command, rounds=rounds, warmup_rounds=warmup_rounds)
    return out, seconds[-rounds:]


def check_target(benchmark: Benchmark, seconds: list[float], target: float | None) -> None:
    """Saves the median time with the benchmark; in a measured run, asserts it meets `target`."""
    median = statistics.median(seconds)
    benchmark.extra_info.update(median_seconds=median, target_seconds=target)
    if target is not None and not benchmark.disabled:
        assert median <= target, f"median {median:.3f} s > target {target} s"


# ls and stats -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group=f"{GROUP}-ls")
@pytest.mark.parametrize("task_name", [COMMON_TASK, RARE_TASK])
def test_ls_task_limit_20(benchmark: Benchmark, big: Index, task_name: str) -> None:
    argv = big.command("ls", "--task", task_name, "--limit", "20", "--json")
    out, seconds = timed_commands(benchmark, argv)
    listed = json.loads(out)
    assert {r["task_name"] for r in listed} == {task_name}
    assert len(listed) == (20 if task_name == COMMON_TASK else 1)
    created = [r["created_at"] for r in listed]
    assert created == sorted(created, reverse=True)
    assert json.loads(in_process(*argv)) == listed
    check_target(benchmark, seconds, LS_SECONDS)


@pytest.mark.benchmark(group=f"{GROUP}-stats")
def test_stats(benchmark: Benchmark, big: Index) -> None:
    out, seconds = timed_commands(benchmark, big.command("stats", "--json"))
    stats = json.loads(out)
    assert stats["records"] == big.records
    by_task = {s["task_name"]: s for s in stats["tasks"]}
    assert set(by_task) == {*TASKS, RARE_TASK, EXPIRING_TASK}
    assert sum(s["records"] for s in by_task.values()) == big.records
    assert sum(s["total_bytes"] for s in by_task.values()) == stats["bytes"]
    check_target(benchmark, seconds, STATS_SECONDS)


@pytest.mark.benchmark(group=f"{GROUP}-explain")
def test_explain(benchmark: Benchmark, big: Index) -> None:
    seconds: list[float] = []

    def explained() -> str:
        started = time.perf_counter()
        found = str(explain(big.cached, 1))
        seconds.append(time.perf_counter() - started)
        return found

    assert explained().startswith("add_one: hit (key ")
    assert benchmark.pedantic(explained, rounds=3).startswith("add_one: hit (key ")
    check_target(benchmark, seconds, EXPLAIN_SECONDS)


# prune ------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group=f"{GROUP}-prune")
@pytest.mark.parametrize("files", ["with-files", "rows-only"])
def test_prune_expired(benchmark: Benchmark, big: Index, files: str) -> None:
    # Rows only (their files already gone): the index's share and taskstash's own, held to the
    # target. With files, the file system's unlinking is timed too: reported, not held to it, as
    # it is most of the time on some disks (80 us a file synced to a virtual disk with online
    # discard, against 10 us for one still in the page cache).
    if files == "with-files":
        assert write_expired_files(big, sync=not benchmark.disabled) == big.expired
    assert len(result_files(big)) == (big.expired if files == "with-files" else 0) + 1
    try:
        argv = big.command("prune", "--expired", "--json")
        out, seconds = timed_commands(benchmark, argv, rounds=1, warmup_rounds=0)
        pruned = json.loads(out)
        assert pruned["records"] == big.expired
        assert pruned["bytes"] == big.expired * len(EXPIRED_RESULT)
        cache = Cache(big.path, big.storage)
        assert cache.totals()[0] == big.records - big.expired
        assert result_files(big) == [big.storage / cache.record(add_one_key(big)).location]
        check_target(benchmark, seconds, PRUNE_SECONDS if files == "rows-only" else None)
    finally:  # the other benchmarks need them back, whatever the order they run in
        Cache(big.path, big.storage).clear(task=EXPIRING_TASK)
        add_expired(big.path, big.storage, big.expired)


def add_one_key(index: Index) -> str:
    key = explain(index.cached, 1).key
    assert key is not None
    return key


# hits -------------------------------------------------------------------------------------------


def hits(cached: Callable[[int], int], calls: int) -> float:
    """Seconds per hit over `calls` hits."""
    before = len(COMPUTED)
    started = time.perf_counter()
    for _ in range(calls):
        cached(1)
    elapsed = time.perf_counter() - started
    assert len(COMPUTED) == before, "a hit ran the function"
    return elapsed / calls


@pytest.mark.benchmark(group=f"{GROUP}-hit")
@pytest.mark.parametrize("index_size", ["small", "big"])
def test_hit(benchmark: Benchmark, index_size: str, small: Index, big: Index) -> None:
    index = small if index_size == "small" else big
    assert index.cached(1, return_state=True).is_cached()
    before = len(COMPUTED)
    assert benchmark(index.cached, 1) == 2
    assert len(COMPUTED) == before


def test_hit_at_scale_is_within_ratio_of_a_small_index(
    big: Index,
    small: Index,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    measured = benchmarks_measured(request.config)
    calls, reps = (2000, 15) if measured else (5, 1)
    samples: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(reps):  # alternating, so that the machine's drift favours neither
        samples["small"].append(hits(small.cached, calls))
        samples["big"].append(hits(big.cached, calls))
    small_hit, big_hit = (statistics.median(samples[name]) for name in ("small", "big"))
    ratio = big_hit / small_hit
    record_property("hit_seconds", {"small": small_hit, "big": big_hit, "ratio": ratio})
    print(  # shown with -s or -rP
        f"hit at {SMALL_RECORDS} records {small_hit * 1e6:.1f} us, at {big.records} records "
        f"{big_hit * 1e6:.1f} us: {ratio:.2f}x"
    )
    if measured:
        assert ratio <= HIT_RATIO
