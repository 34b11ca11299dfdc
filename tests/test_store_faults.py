"""When the storage layer fails: a damaged index, full or read-only storage, links, modes.

Everything here is real: damaged SQLite files, tmpfs mounts (full, then read-only), symbolic
links, child processes. The mount tests need root (or CAP_SYS_ADMIN) and are skipped otherwise.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import mounts
import pytest
from index_support import index_sql

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.exceptions import CacheCorruptedError, CorruptIndexError, TaskstashError
from taskstash.store import (
    SCHEMA_VERSION,
    LocalStorage,
    Store,
    default_location,
    make_header,
    open_store,
    rebuild_index,
)

NOW = 1_700_000_000.0
RECORDS = 300  # enough rows for the index to span several pages


def key_of(n: int) -> str:
    return f"{n:032x}"


def save(store: Store, storage: LocalStorage, n: int, created_at: float = NOW) -> None:
    payload = f"result {n}".encode()
    header = make_header(
        key_of(n),
        payload,
        task_name="t",
        task_qualname="tests.t",
        serializer="pickle",
        created_at=created_at,
    )
    store.save(header, payload, storage, default_location(key_of(n)))


def populated(tmp_path: Path) -> tuple[Path, LocalStorage]:
    """An index with RECORDS rows and their files; its connections closed (WAL checkpointed)."""
    path = tmp_path / "index.db"
    storage = LocalStorage(tmp_path / "storage")
    store = Store(path)
    for n in range(RECORDS):
        save(store, storage, n)
    store.close()
    return path, storage


def not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite file" * 400)


def truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def malformed(path: Path) -> None:
    # Every page but the first (the file header and the schema) overwritten with noise.
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(4096)
        file.write(random.Random(0).randbytes(size - 4096))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "not a database": not_a_database,
    "truncated": truncated,
    "malformed": malformed,
}


def files_of(storage: LocalStorage) -> dict[str, bytes]:
    return {loc: Path(storage.path(loc)).read_bytes() for loc in storage.locations()}


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    return count


# --- a damaged index ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_index_raises_an_error_naming_the_file_and_the_cure(
    damage: str, tmp_path: Path
) -> None:
    path, _ = populated(tmp_path)
    DAMAGES[damage](path)
    with pytest.raises(CorruptIndexError) as info:
        Store(path).lookup(key_of(1), NOW)
    assert isinstance(info.value, CacheCorruptedError)
    assert isinstance(info.value, TaskstashError)
    assert info.value.path == str(path)
    message = str(info.value)
    assert str(path) in message
    assert "taskstash.store.rebuild_index(" in message


@pytest.mark.parametrize("damage", DAMAGES)
def test_rebuild_moves_the_damaged_index_aside_and_adopts_every_result_file(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, storage = populated(tmp_path)
    DAMAGES[damage](path)
    damaged_bytes = path.read_bytes()
    files = files_of(storage)
    Path(storage.root, "zz").mkdir()
    Path(storage.root, "zz", "not-a-result").write_bytes(b"junk")
    with caplog.at_level(logging.INFO, logger="taskstash"):
        assert rebuild_index(path, storage) == RECORDS
    assert any(f"{RECORDS + 1} result files; 1 files skipped" in m for m in caplog.messages)
    (aside,) = tmp_path.glob("index.db.damaged-*")
    assert re.fullmatch(r"index\.db\.damaged-\d+", aside.name)
    assert aside.read_bytes() == damaged_bytes  # kept as it was, for a post-mortem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    files["zz/not-a-result"] = b"junk"
    assert files_of(storage) == files  # not one result file touched, not even the junk
    store = Store(path)
    for n in (0, RECORDS - 1):
        record = store.lookup(key_of(n), NOW)
        assert record is not None
        assert record.location == default_location(key_of(n))
        assert record.size_bytes == len(files[record.location])
        assert bytes(store.load(record, storage) or b"") == f"result {n}".encode()
    store.close()


def test_rebuild_of_a_sound_index_keeps_hit_counts_and_follows_the_files(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    storage = LocalStorage(tmp_path / "storage")
    store = Store(path)
    for n in range(3):
        save(store, storage, n)
    store.note_hit(key_of(0), NOW + 1)
    store.flush_hits()
    storage.delete(default_location(key_of(1)))  # a row whose file is gone
    orphan = Store(tmp_path / "elsewhere.db")  # a file with no row in this index
    save(orphan, storage, 7)
    orphan.close()
    save(store, LocalStorage(tmp_path / "newer"), 2, created_at=NOW + 5)  # key 2, twice
    store.close()
    assert rebuild_index(path, storage, tmp_path / "newer") == 3
    assert not list(tmp_path.glob("*.damaged-*"))
    with sqlite3.connect(path) as conn:
        found = dict(conn.execute("SELECT key, hit_count FROM records").fetchall())
        newest = conn.execute("SELECT storage FROM records WHERE key = ?", (key_of(2),))
        assert newest.fetchone()[0] == str((tmp_path / "newer").resolve())
    assert found == {key_of(0): 1, key_of(2): 0, key_of(7): 0}


def test_rebuild_needs_a_storage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one result storage"):
        rebuild_index(tmp_path / "index.db")


def test_a_store_in_use_recovers_once_its_index_is_rebuilt(tmp_path: Path) -> None:
    path, storage = populated(tmp_path)
    store = open_store(path)
    assert store.lookup(key_of(5), NOW) is not None
    store.close()  # the next use opens the file again
    malformed(path)
    with pytest.raises(CorruptIndexError):
        store.lookup(key_of(5), NOW)
    assert rebuild_index(path, storage) == RECORDS
    assert store.lookup(key_of(5), NOW) is not None  # the same store, on the new file


# A child that calls a task twice and reports what ran and what was logged.
CHILD = """
import json, logging
from taskstash import task
from taskstash.cache_policies import INPUTS

warnings = []

class Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())

logging.getLogger("taskstash").addHandler(Collect())
ran = []

@task(cache_policy=INPUTS, cache_result_in_memory=False)
def tenfold(x: int) -> int:
    ran.append(x)
    return 10 * x

print(json.dumps({"values": [tenfold(1), tenfold(1)], "ran": len(ran), "warnings": warnings}))
"""


def run_child() -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize("damage", ["not a database", "malformed"])
def test_a_task_runs_uncached_on_a_damaged_index_and_hits_again_after_rebuild(
    damage: str, taskstash_home: Path
) -> None:
    current = settings.current()
    assert run_child() == {"values": [10, 10], "ran": 1, "warnings": []}
    # Enough rows for the malformed pages to hold some of them.
    store = Store(current.index_path)
    for n in range(RECORDS):
        save(store, LocalStorage(taskstash_home / "other"), n)
    store.close()
    files = files_of(LocalStorage(current.local_storage_path))
    DAMAGES[damage](current.index_path)
    report = run_child()
    assert report["values"] == [10, 10]
    assert report["ran"] == 2  # uncached, but the user's calls succeed
    warnings = report["warnings"]
    assert isinstance(warnings, list)
    (warning,) = warnings  # once per task
    assert "is damaged" in warning
    assert str(current.index_path) in warning
    assert "rebuild_index" in warning
    assert "uncached" in warning
    assert files_of(LocalStorage(current.local_storage_path)) == files  # no result touched
    assert rebuild_index(current.index_path, current.local_storage_path) == 1
    assert run_child() == {"values": [10, 10], "ran": 0, "warnings": []}


# --- full and read-only storage (real tmpfs mounts) ---------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test, unmounted afterwards whatever happens."""
    with mounts.tmpfs(tmp_path / "mnt", "64k") as mount_point:
        yield mount_point


def files_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


@pytest.fixture
def log() -> Iterator[list[str]]:
    """Warnings of the `taskstash` logger."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("taskstash").addHandler(handler)
    yield messages
    logging.getLogger("taskstash").removeHandler(handler)


def records_in_index() -> int:
    """The rows of the current index (`TASKSTASH_INDEX_URL` or the file)."""
    count: int = index_sql("SELECT count(*) FROM records")[0][0]
    return count


def test_a_full_storage_returns_the_value_and_leaves_nothing_behind(
    index_backend: str, tmpfs: Path, log: list[str]
) -> None:
    runs: list[int] = []

    @task(cache_policy=INPUTS, result_storage=str(tmpfs), cache_result_in_memory=False)
    def blob(size: int) -> bytes:
        runs.append(size)
        return b"x" * size

    assert blob(200_000) == b"x" * 200_000  # more than the 64 KiB the storage holds
    assert blob(200_000) == b"x" * 200_000
    assert runs == [200_000, 200_000]
    (warning,) = log
    assert "could not be stored" in warning
    assert "No space left on device" in warning
    assert files_in(tmpfs) == []  # the partial temporary file was removed
    assert records_in_index() == 0
    # The space is free again: a result of half the storage's size fits.
    assert blob(30_000) == b"x" * 30_000
    assert blob(30_000) == b"x" * 30_000
    assert runs == [200_000, 200_000, 30_000]
    assert len(files_in(tmpfs)) == 1


def test_a_read_only_storage_serves_hits_and_returns_new_values_uncached(
    index_backend: str, tmpfs: Path, log: list[str]
) -> None:
    runs: list[int] = []

    @task(cache_policy=INPUTS, result_storage=str(tmpfs), cache_result_in_memory=False)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    assert square(3) == 9
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    assert square(3) == 9  # still a hit: reading needs no write
    assert square(4) == 16
    assert square(4) == 16
    assert runs == [3, 4, 4]
    (warning,) = log
    assert "could not be stored" in warning
    assert "Read-only file system" in warning
    assert len(files_in(tmpfs)) == 1
    assert records_in_index() == 1


# --- owner-only modes ---------------------------------------------------------------------


def test_everything_taskstash_creates_is_owner_only_whatever_the_umask(
    taskstash_home: Path,
) -> None:
    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def identity(x: int) -> int:
        return x

    previous = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        identity(1)
    finally:
        os.umask(previous)
    current = settings.current()
    (result,) = files_in(current.local_storage_path)
    expected = {
        taskstash_home: 0o700,
        current.index_path: 0o600,
        Path(f"{current.index_path}-wal"): 0o600,
        Path(f"{current.index_path}-shm"): 0o600,
        current.local_storage_path: 0o700,
        result.parent: 0o700,
        result: 0o600,
    }
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in expected} == expected


# --- symbolic links inside the storage ----------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[LocalStorage, Path]:
    """A storage whose directory `evil` (and `deep/evil`) is a link to a directory outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "storage"
    (root / "deep").mkdir(parents=True)
    (root / "evil").symlink_to(outside)
    (root / "deep" / "evil").symlink_to(outside)
    return LocalStorage(root), outside


@pytest.mark.parametrize("location", ["evil/x", "deep/evil/x", "evil/sub/x"])
def test_writing_through_a_linked_directory_is_refused(
    location: str, linked: tuple[LocalStorage, Path]
) -> None:
    storage, outside = linked
    with pytest.raises(OSError, match="symbolic link inside the result storage") as info:
        storage.write(location, b"data")
    assert info.value.errno == errno.ELOOP
    assert list(outside.iterdir()) == []


def test_deleting_through_a_linked_directory_is_refused(linked: tuple[LocalStorage, Path]) -> None:
    storage, outside = linked
    (outside / "victim").write_text("keep me")
    with pytest.raises(OSError, match="symbolic link"):
        storage.delete("evil/victim")
    assert (outside / "victim").read_text() == "keep me"


def test_writing_over_a_linked_file_replaces_the_link_not_its_target(
    linked: tuple[LocalStorage, Path],
) -> None:
    storage, outside = linked
    (outside / "target").write_text("keep me")
    link = Path(storage.root, "file")
    link.symlink_to(outside / "target")
    storage.write("file", b"result")
    assert not link.is_symlink()
    assert link.read_bytes() == b"result"
    assert (outside / "target").read_text() == "keep me"


def test_a_task_whose_storage_key_leads_through_a_link_is_not_cached(
    index_backend: str, linked: tuple[LocalStorage, Path], log: list[str]
) -> None:
    storage, outside = linked
    runs: list[int] = []

    @task(
        cache_policy=INPUTS,
        result_storage=storage.root,
        result_storage_key="evil/{parameters[x]}",
        cache_result_in_memory=False,
    )
    def f(x: int) -> int:
        runs.append(x)
        return x

    assert f(1) == 1
    assert f(1) == 1
    assert runs == [1, 1]
    (warning,) = log
    assert "symbolic link" in warning
    assert list(outside.iterdir()) == []


def test_reading_follows_links_but_serves_only_what_the_index_recorded(
    index_backend: str, tmp_path: Path, log: list[str]
) -> None:
    # Allowed by design: a read is checked against the index, so a link cannot change a hit.
    storage = LocalStorage(tmp_path / "storage")
    store = Store(settings.current().index)
    save(store, storage, 1)
    shard = Path(storage.root, default_location(key_of(1))).parent
    moved = tmp_path / "moved"
    shard.rename(moved)
    shard.symlink_to(moved)
    record = store.lookup(key_of(1), NOW)
    assert record is not None
    assert bytes(store.load(record, storage) or b"") == b"result 1"
    (moved / key_of(1)).write_bytes(b"something else")
    assert store.load(record, storage) is None
    assert len(log) == 1
    store.close()


def test_an_index_that_cannot_be_created_does_not_fail_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the index's directory should be")
    monkeypatch.setenv("TASKSTASH_INDEX_PATH", str(blocker / "index.db"))
    settings.reload()
    ran: list[int] = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    captured: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Collect()
    logging.getLogger("taskstash").addHandler(handler)
    try:
        assert double(2) == 4
        assert double(2) == 4
    finally:
        logging.getLogger("taskstash").removeHandler(handler)
    assert ran == [2, 2]
    warnings = [r.getMessage() for r in captured if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the cache index cannot be used" in warnings[0]


def test_an_index_of_a_newer_schema_runs_calls_uncached_with_one_warning(
    taskstash_home: Path, log: list[str]
) -> None:
    path = settings.current().index_path
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:  # as a newer taskstash sharing this home left it
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    ran: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    assert [double(2), double(2), double(3)] == [4, 4, 6]
    assert ran == [2, 2, 3]
    (warning,) = log  # once per task
    assert str(path) in warning
    assert f"schema version {SCHEMA_VERSION + 1}" in warning
    assert f"knows up to {SCHEMA_VERSION}" in warning
    assert "upgrade taskstash" in warning
    assert "uncached" in warning
