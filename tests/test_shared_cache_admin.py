"""Looking after a shared cache from one machine: adopting a bucket's records, listing, counting
and checking them, and removing them from this machine's index without taking them from the
others (unless asked).

Machine "a" is a process with its own home that stores records in a bucket of the local S3
server; this test process is machine "b", whose settings file names the bucket.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from cli_support import run, run_json
from s3_support import MotoServer
from test_sharing import run as run_machine

from taskstash import Cache, settings

NAME = "shared-bucket"


@pytest.fixture
def bucket(s3: MotoServer, tmp_path: Path, taskstash_home: Path) -> str:
    """The bucket's URL, with two records machine "a" stored there; "b" knows it as NAME."""
    url = f"s3://taskstash-test/{tmp_path.name}"
    for x in ("1", "2"):
        run_machine(tmp_path / "a", url, x)
    taskstash_home.mkdir()
    (taskstash_home / "config.toml").write_text(f'[storages.{NAME}]\nurl = "{url}"\n')
    settings.reload()
    return url


def rows(home: Path) -> set[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(home / "index.db")) as conn:
        return set(conn.execute("SELECT key, storage, location FROM records").fetchall())


def test_reindex_with_a_storage_adopts_every_record_of_a_bucket(
    bucket: str, tmp_path: Path, taskstash_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "reindex", "--storage", NAME)
    assert code == 0
    assert out.startswith(f"adopted 2 records of {bucket} into ")
    assert rows(taskstash_home) == rows(tmp_path / "a")
    # Again: nothing new, and nothing else in the index is touched.
    again = run_json(capsys, "reindex", "--storage", NAME)
    assert (again["files"], again["adopted"], again["known"]) == (2, 0, 2)
    listed = run_json(capsys, "ls", "--storage", NAME)
    assert sorted(r["key"] for r in listed) == sorted(key for key, _, _ in rows(tmp_path / "a"))
    stats = run_json(capsys, "--storage", NAME, "stats")  # before the command works as well
    assert (stats["records"], [t["task_name"] for t in stats["tasks"]]) == (2, ["shared"])


def test_ls_and_stats_with_a_storage_see_only_its_records(
    bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskstash import task
    from taskstash.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def local(x: int) -> int:
        return x

    local(1)  # a record in this machine's own storage
    run(capsys, "reindex", "--storage", NAME)
    assert len(run_json(capsys, "ls")) == 3
    assert {r["storage"] for r in run_json(capsys, "ls", "--storage", NAME)} == {bucket}
    assert run_json(capsys, "stats", "--storage", NAME)["records"] == 2
    assert run_json(capsys, "stats")["records"] == 3


def test_clearing_a_shared_storage_keeps_its_objects_unless_asked(
    bucket: str, s3: MotoServer, taskstash_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "reindex", "--storage", NAME)
    code, out, _ = run(capsys, "clear", "--yes", "--storage", NAME)
    assert code == 0
    assert "removed 2 records" in out
    assert "kept 2 objects in shared storage" in out
    assert rows(taskstash_home) == set()
    assert len(s3.objects("taskstash-test")) == 2  # the other machine's records are still there
    run(capsys, "reindex", "--storage", NAME)
    removed = run_json(capsys, "clear", "--yes", "--storage", NAME, "--delete-objects")
    assert (removed["records"], removed["kept_objects"]) == (2, 0)
    assert s3.objects("taskstash-test") == {}


def test_pruning_keeps_shared_objects_through_the_api_too(
    bucket: str, s3: MotoServer, taskstash_home: Path
) -> None:
    cache = Cache(storage=NAME)
    seen: list[tuple[int, int]] = []
    assert cache.adopt(progress=lambda done, total: seen.append((done, total))).adopted == 2
    assert seen[-1] == (2, 2)
    pruned = cache.prune(keep_newest=0)
    assert (pruned.records, pruned.kept_objects) == (2, 2)
    assert len(s3.objects("taskstash-test")) == 2
    cache.adopt()
    assert cache.prune(keep_newest=0, delete_objects=True).kept_objects == 0
    assert s3.objects("taskstash-test") == {}


def test_verify_of_a_shared_storage_counts_other_machines_records_as_fine(
    bucket: str, s3: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "verify", "--fix", "--storage", NAME)
    assert report["ok"]
    assert len(report["unindexed"]) == 2
    assert report["orphans"] == []
    assert len(s3.objects("taskstash-test")) == 2
    code, out, _ = run(capsys, "verify", "--storage", NAME)
    assert code == 0
    assert "2 files of a shared storage not in this index" in out
