"""The `taskstash` command on a real cache: `main(argv)` in this process, and `python -m taskstash`
and `sqlite-utils` as real processes.

Every test has its own TASKSTASH_HOME (tests/conftest.py), which the command uses by default.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import run, run_json
from index_support import SQLITE_ONLY, index_sql, lose_index

from taskstash import Cache, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.cli import main
from taskstash.store.verify import WRITE_GRACE_SECONDS
from taskstash.tasks import Task

# Every test runs on each index database, SQLite and PostgreSQL.
pytestmark = pytest.mark.usefixtures("index_backend")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "schema.md"

PIPELINE = """\
from taskstash import task
from taskstash.cache_policies import INPUTS



@task(cache_policy=INPUTS)
def add_one(x: int) -> int:
    return x + 1


not_a_task = 42
"""


def cached(name: str, *, expires: datetime.timedelta | None = None) -> Task[[int], int]:
    def body(x: int) -> int:
        return x + 1

    body.__name__ = body.__qualname__ = name
    return task(cache_policy=INPUTS, cache_result_in_memory=False, cache_expiration=expires)(body)


def result_files(home: Path) -> set[Path]:
    return {p for p in (home / "storage").rglob("*") if p.is_file()}


@pytest.fixture
def filled() -> list[str]:
    """add_one(1..3) (add_one(1) hit twice), then brief(1), expired by now: keys, oldest first."""
    add_one = cached("add_one")
    brief = cached("brief", expires=datetime.timedelta(milliseconds=1))
    for x in (1, 2, 3, 1, 1):
        add_one(x)
    brief(1)
    time.sleep(0.005)
    return [r.key for r in reversed(Cache().records())]


# ls and show ------------------------------------------------------------------------------------


def test_ls_prints_a_table_newest_first(
    capsys: pytest.CaptureFixture[str], filled: list[str]
) -> None:
    code, out, err = run(capsys, "ls")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["KEY", "TASK", "CREATED", "SIZE", "HITS", "EXPIRES", "ARGUMENTS"]
    assert [row.split()[:2] for row in rows] == [
        [filled[3][:12], "brief"],
        [filled[2][:12], "add_one"],
        [filled[1][:12], "add_one"],
        [filled[0][:12], "add_one"],
    ]
    assert rows[-1].split()[-2] == "never"
    assert rows[-1].split()[-1].startswith("x=")
    assert re.search(r"\d+ B", rows[0])


def test_ls_json_filters_and_limits(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    listed = run_json(capsys, "ls")
    assert [r["key"] for r in listed] == filled[::-1]
    assert set(listed[0]) >= {"key", "task_name", "created_at", "expires_at", "size_bytes"}
    assert [r["key"] for r in run_json(capsys, "ls", "--task", "add_one")] == filled[2::-1]
    assert [r["key"] for r in run_json(capsys, "ls", "--limit", "2")] == filled[:1:-1]
    assert [r["key"] for r in run_json(capsys, "ls", "--expired")] == [filled[3]]
    assert run_json(capsys, "ls", "--older-than", "1h") == []
    index_sql("UPDATE records SET created_at = created_at - 7200 WHERE key = ?", (filled[0],))
    assert [r["key"] for r in run_json(capsys, "ls", "--older-than", "1h")] == [filled[0]]


def test_ls_rejects_a_bad_age(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["ls", "--older-than", "soon"])
    assert raised.value.code == 2
    assert "'soon' is not an age" in capsys.readouterr().err


def test_show_a_record_by_key_prefix(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    code, out, _ = run(capsys, "show", filled[1][:8])
    assert code == 0
    fields = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert fields["key"] == filled[1]
    assert fields["task_name"] == "add_one"
    shown = run_json(capsys, "show", filled[0])
    assert (shown["key"], shown["hit_count"]) == (filled[0], 0)  # hits not written yet


def test_show_an_unknown_key_fails(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    code, out, err = run(capsys, "show", "nosuchkey")
    assert code == 1
    assert out == ""
    assert err.startswith("taskstash: error: no record has a key starting with 'nosuchkey' in ")
    assert err.endswith("; list them with `taskstash ls`\n")


def test_index_and_storage_options_choose_another_cache(
    capsys: pytest.CaptureFixture[str], filled: list[str], tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    assert run_json(capsys, "--index", str(other), "ls") == []
    assert other.exists()
    assert len(run_json(capsys, "ls")) == 4


# stats ------------------------------------------------------------------------------------------


def test_stats_table_and_json(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    code, out, _ = run(capsys, "stats")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TASK", "RECORDS", "SIZE", "HITS", "HIT", "RATE", "TIME", "SAVED"]
    assert lines[1].split()[:2] == ["add_one", "3"]
    assert lines[1].split()[4:6] == ["2", "40%"]  # 2 hits, 3 computations
    assert lines[2].split()[:2] == ["brief", "1"]
    assert lines[-1].startswith("4 records, ")
    assert lines[-1].endswith(f" in {Cache().path}")

    stats = run_json(capsys, "stats")
    assert stats["records"] == 4
    assert stats["bytes"] == sum(f.stat().st_size for f in result_files(settings.current().home))
    by_task = {s["task_name"]: s for s in stats["tasks"]}
    assert by_task["add_one"]["hits"] == 2
    assert by_task["add_one"]["computations"] == 3
    assert by_task["add_one"]["hit_rate"] == 0.4
    assert by_task["brief"]["records"] == 1


# explain ----------------------------------------------------------------------------------------


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Path]:
    """A module file defining the task add_one; the command imports it as `pipeline`."""
    path = tmp_path / "project" / "pipeline.py"
    path.parent.mkdir()
    path.write_text(PIPELINE)
    saved = sys.path[:]
    yield path
    sys.path[:] = saved
    sys.modules.pop("pipeline", None)


def run_pipeline(path: Path, *args: int) -> None:
    """Runs add_one(*args) in another process, as a user's program importing the module."""
    code = "import sys, pipeline; [pipeline.add_one(int(a)) for a in sys.argv[1:]]"
    subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=path.parent,
        env=os.environ.copy(),
        check=True,
        timeout=60,
    )


def test_explain_a_task_of_a_module_file(
    capsys: pytest.CaptureFixture[str], pipeline: Path
) -> None:
    target = f"{pipeline}:add_one"
    code, out, _ = run(capsys, "explain", target, "--arg", "x=1")
    assert code == 0
    assert re.fullmatch(r"add_one: miss \(key [0-9a-f]{32}\); the task has no records yet\n", out)

    run_pipeline(pipeline, 1)
    code, out, _ = run(capsys, "explain", target, "--arg", "x=1")
    assert code == 0
    assert out.startswith("add_one: hit (key ")
    hit = run_json(capsys, "explain", target, "--arg", "x=1")
    assert hit["hit"] is True
    assert hit["differs"] == []
    assert hit["nearest"] == hit["key"] == Cache().records()[0].key

    code, out, _ = run(capsys, "explain", target, "--arg", "x=2")
    assert code == 0
    assert out.startswith("add_one: miss (key ")
    assert out.rstrip().endswith(f"the nearest record {hit['key']} differs in: inputs (x changed)")
    miss = run_json(capsys, "explain", target, "--arg", "x=2")
    assert miss["hit"] is False
    assert miss["differs"] == ["inputs", "inputs:x"]
    assert miss["nearest"] == hit["key"]
    assert miss["key"] != hit["key"]
    assert set(miss["components"]) == {"inputs", "inputs:x"}


def test_explain_refuses_what_is_not_a_task(
    capsys: pytest.CaptureFixture[str], pipeline: Path
) -> None:
    code, _, err = run(capsys, "explain", f"{pipeline}:not_a_task")
    assert code == 1
    assert "is not a task" in err
    code, _, err = run(capsys, "explain", f"{pipeline}:nothing_here")
    assert code == 1
    assert "has no 'nothing_here'" in err
    code, _, err = run(capsys, "explain", f"{pipeline}:add_one", "--arg", "1")
    assert code == 2
    assert "is not NAME=VALUE" in err


# prune and clear --------------------------------------------------------------------------------


def test_prune_needs_a_reason(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    code, _, err = run(capsys, "prune")
    assert code == 2
    assert "say what to prune" in err
    assert Cache().totals()[0] == 4


def test_prune_expired_dry_run_then_for_real(
    capsys: pytest.CaptureFixture[str], filled: list[str], taskstash_home: Path
) -> None:
    code, out, _ = run(capsys, "prune", "--expired", "--dry-run")
    assert code == 0
    assert out.startswith("would remove 1 record, ")
    assert Cache().totals()[0] == 4
    assert len(result_files(taskstash_home)) == 4
    planned = run_json(capsys, "prune", "--expired", "--dry-run")
    assert planned["keys"] == [filled[3]]

    done = run_json(capsys, "prune", "--expired")
    assert done == planned
    assert Cache().totals()[0] == 3
    assert len(result_files(taskstash_home)) == 3
    code, out, _ = run(capsys, "prune", "--expired")
    assert out.startswith("removed 0 records")


def test_prune_to_a_size_evicts_the_least_recently_used(
    capsys: pytest.CaptureFixture[str], filled: list[str]
) -> None:
    # add_one(1) was hit after add_one(2) and (3) were stored: add_one(2) is used least recently.
    total = Cache().totals()[1]
    pruned = run_json(capsys, "prune", "--max-size", str(total - 1))
    assert pruned["keys"] == [filled[1]]
    assert Cache().totals()[1] == total - pruned["bytes"]
    kept = Cache().record(filled[3]).size_bytes  # the most recently used record fits
    pruned = run_json(capsys, "prune", "--max-size", f"{kept}B")
    assert sorted(pruned["keys"]) == sorted([filled[2], filled[0]])
    assert Cache().totals() == (1, Cache().record(filled[3]).size_bytes)
    with pytest.raises(SystemExit) as raised:
        main(["prune", "--max-size", "plenty"])
    assert raised.value.code == 2
    assert "'plenty' is not a size" in capsys.readouterr().err


def test_clear_needs_a_task_or_yes(capsys: pytest.CaptureFixture[str], filled: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["clear"])
    assert raised.value.code == 2
    assert "one of the arguments --task --yes is required" in capsys.readouterr().err
    assert Cache().totals()[0] == 4


def test_clear_a_task_then_everything(
    capsys: pytest.CaptureFixture[str], filled: list[str], taskstash_home: Path
) -> None:
    cleared = run_json(capsys, "clear", "--task", "brief")
    assert cleared["keys"] == [filled[3]]
    assert Cache().totals()[0] == 3
    code, out, _ = run(capsys, "clear", "--yes")
    assert code == 0
    assert out.startswith("removed 3 records, ")
    assert Cache().totals() == (0, 0)
    assert result_files(taskstash_home) == set()


# verify and reindex -----------------------------------------------------------------------------


def test_verify_fails_on_problems_until_fixed(
    capsys: pytest.CaptureFixture[str], filled: list[str], taskstash_home: Path
) -> None:
    code, out, _ = run(capsys, "verify")
    assert code == 0
    assert "all is well" in out

    lost = Cache().record(filled[0])
    (Path(lost.storage) / lost.location).unlink()
    stray = taskstash_home / "storage" / "stray"
    stray.write_bytes(b"?")
    past = time.time() - WRITE_GRACE_SECONDS - 60  # younger files may be saves in progress
    os.utime(stray, (past, past))
    code, out, _ = run(capsys, "verify")
    assert code == 1
    assert "1 row whose file is missing:" in out
    assert f"  {lost.key}" in out
    assert "1 file without a row:" in out
    assert "run `taskstash verify --fix`" in out
    report = json.loads(run(capsys, "verify", "--json")[1])
    assert (report["ok"], report["missing"], report["orphans"]) == (False, [lost.key], [str(stray)])

    code, out, _ = run(capsys, "verify", "--fix")
    assert code == 0
    assert "fixed: bad rows and stray files removed" in out
    assert not stray.exists()
    code, out, _ = run(capsys, "verify")
    assert code == 0
    assert "checked 3 records and 3 files" in out


def test_reindex_after_the_index_is_lost(
    capsys: pytest.CaptureFixture[str], filled: list[str], taskstash_home: Path
) -> None:
    lose_index(taskstash_home)
    code, out, _ = run(capsys, "reindex")
    assert code == 0
    assert out == f"rebuilt {Cache().path}: 4 records\n"
    assert sorted(r["key"] for r in run_json(capsys, "ls")) == sorted(filled)
    assert run_json(capsys, "reindex") == {"records": 4, "index": Cache().path}


# as real processes ------------------------------------------------------------------------------


def test_python_m_taskstash_runs_the_command(filled: list[str], taskstash_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskstash", "stats", "--json"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    stats = json.loads(done.stdout)
    assert stats["records"] == 4
    assert {s["task_name"] for s in stats["tasks"]} == {"add_one", "brief"}
    bad = subprocess.run(
        [sys.executable, "-m", "taskstash", "show", "nosuchkey"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "no record has a key starting with 'nosuchkey'" in bad.stderr
    assert "Traceback" not in bad.stderr


def sqlite_utils() -> str:
    pytest.importorskip("sqlite_utils")
    found = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent)) or shutil.which(
        "sqlite-utils"
    )
    if found is None:
        pytest.skip("the sqlite-utils command is not installed")
    return found


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


@SQLITE_ONLY
def test_docs_queries_run_in_sqlite_utils(filled: list[str]) -> None:
    command = sqlite_utils()
    Cache().stats()  # writes this process's pending hits, as a finished program would have
    queries = [q for q in doc_queries() if "(PostgreSQL" not in q.splitlines()[0]]
    assert len(queries) >= 4
    results: dict[str, list[dict[str, Any]]] = {}
    for sql in queries:
        # `--` ends the options: each query starts with an SQL comment, `-- ...`, which the
        # command would otherwise take for an option.
        done = subprocess.run(
            [command, "query", Cache().path, "--", sql],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (sql, done.stderr)
        rows = results[sql] = json.loads(done.stdout)
        assert isinstance(rows, list), sql
        assert rows, sql
        assert all(isinstance(row, dict) and row.keys() == rows[0].keys() for row in rows), sql
    saved = next(rows for sql, rows in results.items() if "seconds_saved" in sql)
    assert {row["task_name"]: row["hits"] for row in saved} == {"add_one": 2, "brief": 0}
    expired = next(rows for sql, rows in results.items() if "Expired records" in sql)
    assert [row["key"] for row in expired] == [filled[3]]
