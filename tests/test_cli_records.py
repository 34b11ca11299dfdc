"""Seeing and removing records with the `taskstash` command: `rm`, `prune --keep-newest`, `show`
in dates, `ls` limits and arguments, and counts in words that agree with them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cli_support import one_error_line, run, run_json
from index_support import index_sql

from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.cli import main
from taskstash.store import Index, Record
from taskstash.tasks import Task

# Every test runs on each index database, SQLite and PostgreSQL.
pytestmark = pytest.mark.usefixtures("index_backend")


def cached(name: str) -> Task[[int], int]:
    def body(x: int) -> int:
        return x + 1

    body.__name__ = body.__qualname__ = name
    return task(cache_policy=INPUTS, cache_result_in_memory=False)(body)


@pytest.fixture
def keys() -> list[str]:
    """load(1..3) then parse(1..2), created in that order: their keys, oldest first."""
    load, parse = cached("load"), cached("parse")
    for x in (1, 2, 3):
        load(x)
        time.sleep(0.002)
    for x in (1, 2):
        parse(x)
        time.sleep(0.002)
    return [r.key for r in reversed(Cache().records())]


def files(home: Path) -> int:
    return sum(1 for p in (home / "storage").rglob("*") if p.is_file())


# rm -------------------------------------------------------------------------------------------


def test_rm_removes_records_by_whole_key(
    capsys: pytest.CaptureFixture[str], keys: list[str], taskstash_home: Path
) -> None:
    code, out, err = run(capsys, "rm", keys[0])
    assert (code, err) == (0, "")
    assert re.fullmatch(r"removed 1 record, \d+ B\n", out)
    removed = run_json(capsys, "rm", keys[1], keys[2])
    assert (removed["records"], sorted(removed["keys"])) == (2, sorted(keys[1:3]))
    assert [r.key for r in Cache().records()] == keys[:2:-1]
    assert files(taskstash_home) == 2


def test_rm_by_prefix_needs_yes_and_one_match(
    capsys: pytest.CaptureFixture[str], keys: list[str]
) -> None:
    prefix = keys[3][:8]
    code, out, err = run(capsys, "rm", prefix)
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert f"{prefix!r} is only the start of the key {keys[3]} (task parse)" in line
    assert line.endswith("give the whole key, or add --yes")
    assert len(Cache().records()) == 5

    code, out, _ = run(capsys, "rm", "--yes", prefix)
    assert (code, out.startswith("removed 1 record, ")) == (0, True)
    assert keys[3] not in {r.key for r in Cache().records()}


def test_rm_of_an_unknown_or_ambiguous_key_removes_nothing(
    capsys: pytest.CaptureFixture[str], keys: list[str]
) -> None:
    code, out, err = run(capsys, "rm", keys[0], "feedface")
    assert (code, out) == (1, "")
    assert "no record has a key starting with 'feedface'" in one_error_line(err)
    assert len(Cache().records()) == 5  # keys[0] stays too: nothing goes unless all match
    code, out, err = run(capsys, "rm", "--yes", "")
    assert (code, out) == (2, "")
    assert "several keys start with ''; give more of the key" in one_error_line(err)


def test_cache_invalidate_removes_one_record(keys: list[str]) -> None:
    cache = Cache()
    assert cache.invalidate(keys[4][:10]) is True
    assert cache.invalidate(keys[4]) is False
    with pytest.raises(ValueError, match="several keys start with"):
        cache.invalidate("")
    assert len(cache.records()) == 4


# prune --keep-newest --------------------------------------------------------------------------


def test_prune_keeps_the_newest_records_of_each_task(
    capsys: pytest.CaptureFixture[str], keys: list[str], taskstash_home: Path
) -> None:
    planned = run_json(capsys, "prune", "--keep-newest", "1", "--dry-run")
    assert sorted(planned["keys"]) == sorted([keys[0], keys[1], keys[3]])
    assert len(Cache().records()) == 5
    only_load = run_json(capsys, "prune", "--keep-newest", "2", "--task", "load")
    assert only_load["keys"] == [keys[0]]
    code, out, _ = run(capsys, "prune", "--keep-newest", "1")
    assert code == 0
    assert out.startswith("removed 2 records, ")
    assert sorted(r.key for r in Cache().records()) == sorted([keys[2], keys[4]])
    assert files(taskstash_home) == 2
    assert run_json(capsys, "prune", "--keep-newest", "0")["records"] == 2
    assert Cache().totals() == (0, 0)


def test_prune_keep_newest_on_a_big_index(tmp_path: Path) -> None:
    index_path = tmp_path / "big.db"
    index = Index(index_path)
    tasks, per_task, keep = 40, 250, 3  # 10,000 records
    with index.transaction() as conn:
        for t in range(tasks):
            for n in range(per_task):
                Index.upsert(conn, fake_record(t, n))
    index.close()
    cache = Cache(index_path, tmp_path / "storage")
    started = time.perf_counter()
    planned = cache.prune(keep_newest=keep, dry_run=True)
    seconds = time.perf_counter() - started
    expected = {fake_record(t, n).key for t in range(tasks) for n in range(per_task - keep)}
    assert set(planned.keys) == expected
    assert seconds < 1.0, seconds  # one statement: about 25 ms on a 2-core VM
    assert cache.prune(keep_newest=keep).records == len(expected)
    assert cache.totals()[0] == tasks * keep
    with pytest.raises(ValueError, match="keep_newest must be 0 or more"):
        cache.prune(keep_newest=-1)


def fake_record(t: int, n: int) -> Record:
    """Record n of task t, newer for a larger n; no result file (a miss if ever looked up)."""
    return Record(
        key=f"{t:04x}{n:028x}",
        task_name=f"task{t}",
        task_qualname=f"pipeline.task{t}",
        created_at=1_700_000_000.0 + n,
        expires_at=None,
        last_hit_at=None,
        hit_count=0,
        size_bytes=100,
        serializer="cloudpickle",
        storage="/nonexistent",
        location=f"{t:02x}/{n}",
        checksum="0" * 32,
        compute_seconds=0.1,
        run_id=None,
    )


# show, ls, counts -----------------------------------------------------------------------------


def test_show_prints_dates_where_ls_does(
    capsys: pytest.CaptureFixture[str], keys: list[str]
) -> None:
    code, out, _ = run(capsys, "show", keys[0])
    assert code == 0
    fields = dict(line.split(maxsplit=1) for line in out.splitlines())
    record = Cache().record(keys[0])
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created_at))
    assert fields["created_at"] == f"{created} UTC"
    assert fields["expires_at"] == fields["last_hit_at"] == "never"
    assert re.fullmatch(rf"{record.size_bytes} \(\d+ B\)", fields["size_bytes"])
    (listed,) = [
        line for line in run(capsys, "ls")[1].splitlines() if line.startswith(keys[0][:12])
    ]
    assert created in listed
    assert run_json(capsys, "show", keys[0])["created_at"] == record.created_at


def test_ls_limit_must_not_be_negative(capsys: pytest.CaptureFixture[str], keys: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["ls", "--limit", "-5"])
    assert raised.value.code == 2
    assert "'-5' is not a count" in one_error_line(capsys.readouterr().err)
    assert run_json(capsys, "ls", "--limit", "0") == []


def test_counts_agree_with_their_nouns(
    capsys: pytest.CaptureFixture[str], keys: list[str], taskstash_home: Path
) -> None:
    lost = Cache().record(keys[0])
    (Path(lost.storage) / lost.location).unlink()
    out = run(capsys, "verify")[1]
    assert "checked 5 records and 4 files in " in out
    assert "\n1 row whose file is missing:\n" in out
    run(capsys, "verify", "--fix")
    run(capsys, "clear", "--task", "parse")
    run(capsys, "rm", keys[1])
    out = run(capsys, "verify")[1]
    assert out.startswith("checked 1 record and 1 file in ")
    assert run(capsys, "stats")[1].splitlines()[-1].startswith("1 record, ")
    index_sql("DELETE FROM records")
    assert run(capsys, "reindex")[1].endswith(": 1 record\n")


def test_ls_shows_each_records_arguments(
    capsys: pytest.CaptureFixture[str], keys: list[str]
) -> None:
    header, *rows = run(capsys, "ls")[1].splitlines()
    assert header.split()[-1] == "ARGUMENTS"
    for row, record in zip(rows, Cache().records(), strict=True):
        shown = " ".join(str(record.parameters).split())
        assert row.rstrip().endswith(shown[:39]), (row, shown)
