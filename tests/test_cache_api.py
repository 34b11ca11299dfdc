"""`taskstash.Cache`: listing, statistics, removing and checking the records of a real cache.

Every test works on its own TASKSTASH_HOME (tests/conftest.py): a real SQLite index and real
result files, filled by calling cached tasks.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from index_support import SQLITE_ONLY, index_sql, index_sql_many, lose_index

from taskstash import Cache, explain, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store import Record
from taskstash.store.verify import WRITE_GRACE_SECONDS
from taskstash.tasks import Task

# Every test runs on each index database, SQLite and PostgreSQL.
pytestmark = pytest.mark.usefixtures("index_backend")

SLEEP = 0.05


class Counter:
    """Counts how often a task body really ran, by argument."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x: int) -> int:
        self.calls.append(x)
        return x


def cached(
    name: str, ran: Counter, *, expires: datetime.timedelta | None = None
) -> Task[[int], int]:
    """A task keyed by its input, never answered from memory: every hit reads the index."""

    def body(x: int) -> int:
        return ran(x) * 10

    body.__name__ = body.__qualname__ = name
    return task(cache_policy=INPUTS, cache_result_in_memory=False, cache_expiration=expires)(body)


def key_of(fn: Task[[int], int], x: int) -> str:
    key = explain(fn, x).key
    assert key is not None
    return key


def file_of(record: Record) -> Path:
    return Path(record.storage) / record.location


def result_files(home: Path) -> set[Path]:
    return {p for p in (home / "storage").rglob("*") if p.is_file()}


def age(home: Path, key: str, seconds: float) -> None:
    """Makes a record look `seconds` older (its creation time moves back)."""
    index_sql("UPDATE records SET created_at = created_at - ? WHERE key = ?", (seconds, key))


@pytest.fixture
def ran() -> Counter:
    return Counter()


@pytest.fixture
def alpha(ran: Counter) -> Task[[int], int]:
    return cached("alpha", ran)


@pytest.fixture
def brief(ran: Counter) -> Task[[int], int]:
    """Its records expire a millisecond after they are stored."""
    return cached("brief", ran, expires=datetime.timedelta(milliseconds=1))


@pytest.fixture
def filled(alpha: Task[[int], int], brief: Task[[int], int]) -> list[str]:
    """alpha(1), alpha(2), alpha(3), then brief(1) (expired by now): keys, oldest first."""
    for x in (1, 2, 3):
        alpha(x)
    brief(1)
    time.sleep(0.005)
    return [key_of(alpha, 1), key_of(alpha, 2), key_of(alpha, 3), key_of(brief, 1)]


# looking ----------------------------------------------------------------------------------------


def test_records_are_listed_newest_first(filled: list[str]) -> None:
    records = Cache().records()
    assert [r.key for r in records] == filled[::-1]
    assert [r.task_name for r in records] == ["brief", "alpha", "alpha", "alpha"]
    assert all(file_of(r).is_file() for r in records)
    assert [r.key for r in Cache().records(limit=2)] == filled[:1:-1]


def test_records_filter_by_task_expiry_age_and_key_prefix(
    filled: list[str], taskstash_home: Path
) -> None:
    cache = Cache()
    assert [r.key for r in cache.records(task="alpha")] == filled[2::-1]
    assert [r.key for r in cache.records(task="alpha", limit=1)] == [filled[2]]
    assert cache.records(task="nobody") == []
    assert [r.key for r in cache.records(expired=True)] == [filled[3]]
    assert [r.key for r in cache.records(expired=False)] == filled[2::-1]
    assert cache.records(older_than=60) == []
    age(taskstash_home, filled[0], 3600)
    assert [r.key for r in cache.records(older_than=60)] == [filled[0]]
    assert cache.records(older_than=2 * 3600) == []
    for key in filled:
        assert [r.key for r in cache.records(key_prefix=key[:12])] == [key]
    assert cache.records(key_prefix="xyz") == []


def test_record_by_full_key_or_unique_prefix(filled: list[str]) -> None:
    cache = Cache()
    for key in filled:
        assert cache.record(key).key == key
        assert cache.record(key[:10]).key == key


def test_record_that_does_not_exist_is_a_key_error(filled: list[str]) -> None:
    with pytest.raises(KeyError, match="no record with a key starting with 'xyz'"):
        Cache().record("xyz")


def test_an_ambiguous_prefix_is_a_value_error(alpha: Task[[int], int]) -> None:
    keys = [key_of(alpha, x) for x in range(17)]
    for x in range(17):
        alpha(x)
    # 17 keys, 16 hex digits: two of them share a first digit.
    shared = next(k[0] for k in keys if sum(other[0] == k[0] for other in keys) > 1)
    with pytest.raises(ValueError, match="several keys start with"):
        Cache().record(shared)


# statistics -------------------------------------------------------------------------------------


def test_stats_count_hits_computations_and_time_saved(ran: Counter) -> None:
    def slow_body(x: int) -> int:
        time.sleep(SLEEP)
        return ran(x)

    slow = task(cache_policy=INPUTS, cache_result_in_memory=False, name="slow")(slow_body)
    other = cached("other", ran)
    slow(1)
    slow(2)
    slow.with_options(refresh_cache=True)(1)  # computed again: 3 computations, 2 records
    for x in (1, 1, 1, 2):
        slow(x)  # 4 hits, still pending in this process: stats() writes them first
    other(5)
    assert ran.calls == [1, 2, 1, 5]

    stats = Cache().stats()
    assert [s.task_name for s in stats] == ["slow", "other"]  # most hits first
    slow_stats, other_stats = stats
    records = {r.key: r for r in Cache().records(task="slow")}
    assert slow_stats.records == 2
    assert slow_stats.total_bytes == sum(r.size_bytes for r in records.values())
    assert slow_stats.hits == 4
    assert slow_stats.computations == 3
    assert slow_stats.hit_rate == pytest.approx(4 / 7, abs=1e-4)
    compute = {r.key: r.compute_seconds for r in records.values()}
    assert all(seconds >= SLEEP for seconds in compute.values())
    assert slow_stats.compute_seconds_saved == pytest.approx(
        3 * compute[key_of(slow, 1)] + 1 * compute[key_of(slow, 2)]
    )
    assert slow_stats.compute_seconds_saved >= 4 * SLEEP
    assert (other_stats.records, other_stats.hits, other_stats.computations) == (1, 0, 1)
    assert other_stats.hit_rate == 0.0
    assert other_stats.compute_seconds_saved == 0.0


def test_stats_agree_with_the_task_stats_view(filled: list[str], alpha: Task[[int], int]) -> None:
    alpha(1)
    alpha(2)
    cache = Cache()
    stats = cache.stats()
    view = cache.store.index.connection().execute(
        "SELECT task_name, records, total_bytes, hits, computations, hit_rate, "
        "compute_seconds_saved, kind FROM task_stats ORDER BY hits DESC, task_name, kind"
    )
    assert [tuple(vars(s).values()) for s in stats] == [tuple(row) for row in view]


def test_stats_of_an_empty_cache() -> None:
    assert Cache().stats() == []
    assert Cache().totals() == (0, 0)


def test_totals_are_the_records_and_bytes_of_the_files(
    filled: list[str], taskstash_home: Path
) -> None:
    files = result_files(taskstash_home)
    assert Cache().totals() == (4, sum(f.stat().st_size for f in files))
    Cache().invalidate(filled[0])
    assert Cache().totals() == (3, sum(f.stat().st_size for f in result_files(taskstash_home)))


# removing ---------------------------------------------------------------------------------------


def test_invalidate_removes_the_record_and_its_file(
    filled: list[str], alpha: Task[[int], int], ran: Counter
) -> None:
    cache = Cache()
    path = file_of(cache.record(filled[1]))
    assert cache.invalidate(filled[1][:8])
    assert not path.exists()
    assert filled[1] not in {r.key for r in cache.records()}
    assert not cache.invalidate(filled[1])
    assert alpha(2) == 20
    assert ran.calls[-1] == 2  # computed again
    assert alpha(1) == 10
    assert ran.calls[-1] == 2  # the others still hit


def test_prune_expired_removes_only_expired_records(
    filled: list[str], taskstash_home: Path
) -> None:
    cache = Cache()
    expired = cache.record(filled[3])
    pruned = cache.prune(expired=True)
    assert (pruned.records, pruned.bytes, pruned.keys) == (1, expired.size_bytes, [filled[3]])
    assert not file_of(expired).exists()
    assert {r.key for r in cache.records()} == set(filled[:3])
    assert len(result_files(taskstash_home)) == 3
    assert cache.prune(expired=True).records == 0


def test_prune_older_than(filled: list[str], taskstash_home: Path) -> None:
    age(taskstash_home, filled[0], 7200)
    age(taskstash_home, filled[1], 1800)
    pruned = Cache().prune(older_than=3600)
    assert pruned.keys == [filled[0]]
    assert {r.key for r in Cache().records()} == set(filled[1:])


def test_prune_by_task(filled: list[str], taskstash_home: Path) -> None:
    for key in filled:
        age(taskstash_home, key, 7200)
    pruned = Cache().prune(older_than=3600, task="brief")
    assert pruned.keys == [filled[3]]
    assert {r.task_name for r in Cache().records()} == {"alpha"}


def test_prune_to_a_size_evicts_least_recently_used_first(
    alpha: Task[[int], int], ran: Counter, taskstash_home: Path
) -> None:
    for x in (1, 2, 3, 4):
        alpha(x)
    alpha(1)  # the oldest record is the most recently used one now
    cache = Cache()
    sizes = {r.key: r.size_bytes for r in cache.records()}
    one, two, three, four = (key_of(alpha, x) for x in (1, 2, 3, 4))
    limit = sizes[one] + sizes[four]
    pruned = cache.prune(max_size=limit)
    assert sorted(pruned.keys) == sorted([two, three])
    assert pruned.bytes == sizes[two] + sizes[three]
    assert cache.totals() == (2, limit)
    assert {r.key for r in cache.records()} == {one, four}
    assert len(result_files(taskstash_home)) == 2
    calls = len(ran.calls)
    alpha(1)
    alpha(4)
    assert len(ran.calls) == calls  # both still hit
    assert cache.prune(max_size=limit).records == 0


def test_a_dry_run_removes_nothing_and_reports_what_would_go(
    filled: list[str], taskstash_home: Path
) -> None:
    age(taskstash_home, filled[0], 7200)
    cache = Cache()
    before = (cache.records(), cache.totals(), result_files(taskstash_home))
    planned = cache.prune(expired=True, older_than=3600, dry_run=True)
    assert sorted(planned.keys) == sorted([filled[0], filled[3]])
    assert (cache.records(), cache.totals(), result_files(taskstash_home)) == before
    done = cache.prune(expired=True, older_than=3600)
    assert (done.records, done.bytes, sorted(done.keys)) == (
        planned.records,
        planned.bytes,
        sorted(planned.keys),
    )
    assert cache.totals()[0] == 2


def test_prune_reports_progress(filled: list[str]) -> None:
    seen: list[tuple[int, int]] = []
    Cache().prune(expired=True, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)]


def test_clear_a_task_then_everything(filled: list[str], taskstash_home: Path) -> None:
    cache = Cache()
    cleared = cache.clear(task="alpha")
    assert sorted(cleared.keys) == sorted(filled[:3])
    assert [r.key for r in cache.records()] == [filled[3]]
    assert len(result_files(taskstash_home)) == 1
    assert cache.clear().keys == [filled[3]]
    assert cache.records() == []
    assert cache.totals() == (0, 0)
    assert result_files(taskstash_home) == set()


# checking ---------------------------------------------------------------------------------------


def test_a_healthy_cache_verifies_ok(filled: list[str]) -> None:
    report = Cache().verify()
    assert report.ok
    assert (report.records, report.files) == (4, 4)
    assert report.missing == report.damaged == report.orphans == report.temporary == []
    assert report.integrity == []
    assert not report.fixed


def test_verify_finds_every_kind_of_problem_and_fix_repairs_them(
    filled: list[str], alpha: Task[[int], int], ran: Counter, taskstash_home: Path
) -> None:
    cache = Cache()
    missing, truncated, garbage, healthy = (cache.record(k) for k in filled)
    file_of(missing).unlink()
    data = file_of(truncated).read_bytes()
    file_of(truncated).write_bytes(data[: len(data) // 2])
    file_of(garbage).write_bytes(b"not a result file at all" * 10)
    stray = taskstash_home / "storage" / "zz" / "stray"
    stray.parent.mkdir()
    stray.write_bytes(b"left behind")
    shard = file_of(healthy).parent
    temporary = shard / f".{healthy.key}.0123456789abcdef.tstmp"
    temporary.write_bytes(b"half a result")
    # Left by writes that ended long ago; files as young as these may be saves in progress.
    for path in (stray, temporary):
        past = time.time() - WRITE_GRACE_SECONDS - 60
        os.utime(path, (past, past))
    young_stray = stray.with_name("young")
    young_stray.write_bytes(b"about to be recorded")
    young_temporary = shard / f".{healthy.key}.fedcba9876543210.tstmp"
    young_temporary.write_bytes(b"being written")

    report = cache.verify()
    assert not report.ok
    assert report.records == 4
    assert report.missing == [missing.key]
    assert sorted(report.damaged) == sorted([truncated.key, garbage.key])
    assert report.orphans == [str(stray)]
    assert report.temporary == [str(temporary)]
    assert stray.exists()
    assert temporary.exists()  # verify without fix changes nothing
    assert cache.totals()[0] == 4

    fixed = cache.verify(fix=True)
    assert fixed.fixed
    assert fixed.ok
    assert not stray.exists()
    assert not temporary.exists()
    assert young_stray.exists()
    assert young_temporary.exists()
    assert [r.key for r in cache.records()] == [healthy.key]
    assert result_files(taskstash_home) == {file_of(healthy), young_stray, young_temporary}
    young_stray.unlink()
    young_temporary.unlink()

    again = cache.verify()
    assert again.ok
    assert not again.fixed
    assert (again.records, again.files) == (1, 1)
    calls = len(ran.calls)
    assert [alpha(1), alpha(2), alpha(3)] == [10, 20, 30]
    assert len(ran.calls) == calls + 3  # the removed rows were computed again


# Stores results through the index and storage of TASKSTASH_HOME, each file's row committed a
# moment after its file is in place, as every save does.
VERIFY_WRITER = """
import sys, time
from taskstash import settings
from taskstash.store import LocalStorage, default_location, make_header, open_store

current = settings.current()
store = open_store(current.index)
storage = LocalStorage(current.local_storage_path)
for i in range(int(sys.argv[1])):
    key = f"{i:032x}"
    payload = f"result {i}".encode() * 200
    header = make_header(key, payload, task_name="w", task_qualname="m.w",
                         serializer="pickle", created_at=time.time())
    store.save(header, payload, storage, default_location(key))
"""


def test_verify_fix_beside_a_writer_removes_nothing_it_stores(taskstash_home: Path) -> None:
    n = 300
    Cache()  # the index exists before the writer starts
    writer = subprocess.Popen(
        [sys.executable, "-c", VERIFY_WRITER, str(n)], stderr=subprocess.PIPE, text=True
    )
    rounds = 0
    while writer.poll() is None:
        Cache().verify(fix=True)
        rounds += 1
    _, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 0, stderr
    assert rounds > 1
    cache = Cache()
    assert cache.totals()[0] == n
    assert len(result_files(taskstash_home)) == n
    report = cache.verify()
    assert report.ok, report
    assert (report.records, report.files) == (n, n)


def test_verify_reports_progress(filled: list[str]) -> None:
    seen: list[tuple[int, int]] = []
    Cache().verify(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_reindex_rebuilds_a_deleted_index_from_the_files(
    filled: list[str], alpha: Task[[int], int], ran: Counter, taskstash_home: Path
) -> None:
    before = {r.key: r for r in Cache().records()}
    lose_index(taskstash_home)

    assert Cache().reindex() == 4
    after = {r.key: r for r in Cache().records()}
    assert after.keys() == before.keys()
    for key, record in after.items():
        old = before[key]
        assert (record.task_name, record.location, record.checksum, record.size_bytes) == (
            old.task_name,
            old.location,
            old.checksum,
            old.size_bytes,
        )
    assert Cache().totals() == (4, sum(r.size_bytes for r in before.values()))
    calls = len(ran.calls)
    assert [alpha(1), alpha(2), alpha(3)] == [10, 20, 30]
    assert len(ran.calls) == calls  # hits again
    assert Cache().verify().ok


@SQLITE_ONLY
def test_a_cache_can_name_its_index_and_storage(tmp_path: Path, ran: Counter) -> None:
    elsewhere = tmp_path / "elsewhere"
    index, storage = elsewhere / "index.db", elsewhere / "results"

    @task(
        cache_policy=INPUTS.configure(key_storage=str(index)),
        result_storage=str(storage),
        cache_result_in_memory=False,
    )
    def elsewhere_task(x: int) -> int:
        return ran(x)

    elsewhere_task(7)
    cache = Cache(index, storage)
    assert cache.path == str(index)
    assert [r.storage for r in cache.records()] == [str(storage)]
    assert Cache().records() == []  # the default cache is another one
    assert cache.verify().ok


def test_the_newest_records_of_a_task_are_found_in_a_big_index(
    alpha: Task[[int], int], taskstash_home: Path
) -> None:
    # Past a few thousand rows, records(task=..., limit=...) looks among the newest rows first:
    # it must find what a full listing would, for common, rare and long-idle tasks alike.
    alpha(1)
    now = time.time()
    rows = []
    for i in range(8000):
        if i < 300:
            name = "idle"  # only old records
        elif i % 1000 == 0:
            name = "rare"
        else:
            name = "common"
        expires = now - 1 if i % 7 == 0 else None
        rows.append((f"{i:032x}", name, f"generated.{name}", now - 8000 + i, expires, 100))
    index_sql_many(
        "INSERT INTO records (key, task_name, task_qualname, created_at, expires_at, "
        "size_bytes, serializer, storage, location, checksum) "
        "VALUES (?, ?, ?, ?, ?, ?, 'json', '/nowhere', 'x', 'x')",
        rows,
    )
    cache = Cache()
    assert cache.totals()[0] == 8001
    for name in ("common", "rare", "idle", "alpha"):
        every = cache.records(task=name)
        for limit in (1, 5, 20):
            assert cache.records(task=name, limit=limit) == every[:limit], (name, limit)
    for expired in (True, False):
        every = cache.records(expired=expired)
        assert cache.records(expired=expired, limit=20) == every[:20]
        assert (
            cache.records(task="idle", expired=expired, limit=20)
            == [r for r in every if r.task_name == "idle"][:20]
        )


def test_pruning_many_records_takes_several_transactions(
    alpha: Task[[int], int], taskstash_home: Path
) -> None:
    alpha(1)
    now = time.time()
    rows = [(f"{i:032x}", now - 100 + i / 1e4, now - 1) for i in range(6000)]
    index_sql_many(
        "INSERT INTO records (key, task_name, task_qualname, created_at, expires_at, "
        "size_bytes, serializer, storage, location, checksum) "
        "VALUES (?, 'old', 'generated.old', ?, ?, 10, 'json', '/nowhere', 'x', 'x')",
        rows,
    )
    seen: list[tuple[int, int]] = []
    pruned = Cache().prune(expired=True, progress=lambda done, total: seen.append((done, total)))
    assert (pruned.records, pruned.bytes) == (6000, 60_000)
    assert sorted(pruned.keys) == [key for key, _, _ in rows]
    assert len(seen) >= 2  # in more than one write transaction, so that tasks are not held up
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})
    assert seen[-1] == (6000, 6000)
    assert {total for _, total in seen} == {6000}
    assert Cache().totals() == (1, Cache().record(key_of(alpha, 1)).size_bytes)


@SQLITE_ONLY
def test_an_index_inside_the_storage_is_never_taken_for_a_result_file(
    monkeypatch: pytest.MonkeyPatch,
    taskstash_home: Path,
    ran: Counter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = taskstash_home / "storage" / "index.db"
    monkeypatch.setenv("TASKSTASH_INDEX_PATH", str(index))
    settings.reload()
    alpha = cached("alpha", ran)
    alpha(1)
    alpha(2)
    cache = Cache()
    report = cache.verify(fix=True)
    assert (report.orphans, report.files) == ([], 2)
    assert index.exists()
    with caplog.at_level(logging.INFO, logger="taskstash"):
        assert cache.reindex() == 2
    (line,) = [r.getMessage() for r in caplog.records if "Rebuilt" in r.getMessage()]
    assert "from 2 result files; 0 files skipped" in line
