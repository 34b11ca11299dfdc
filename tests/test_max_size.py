"""TASKSTASH_MAX_SIZE: the index never holds more bytes of results than the limit, least recently
used records going first, whichever process writes.

The tasks live in a module file, so that another process (a real one) computes the same keys.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from taskstash import Cache, explain, settings
from taskstash.cli import main
from taskstash.exceptions import ResultTooLargeError
from taskstash.settings import parse_size
from taskstash.store import LocalStorage, Store, make_header, resolve_serializer

# Every test runs on each index database, SQLite and PostgreSQL.
pytestmark = pytest.mark.usefixtures("index_backend")

LIMIT = "6.5kB"  # 6500 bytes: seven results of about 900 bytes
MODULE = "sized_tasks"
SOURCE = """\
from taskstash import task
from taskstash.cache_policies import INPUTS



@task(cache_policy=INPUTS, cache_result_in_memory=False)
def blob(i: int, size: int = 500) -> bytes:
    return bytes(size) + i.to_bytes(4, "big")
"""


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("TASKSTASH_MAX_SIZE", LIMIT)
    assert settings.reload().max_size == 6500
    return 6500


@pytest.fixture
def sized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(directory))
    yield importlib.import_module(MODULE)
    sys.modules.pop(MODULE, None)


def in_another_process(module: ModuleType, code: str) -> None:
    """Runs `code` (with `blob` imported) in a new Python process with this environment."""
    directory = Path(str(module.__file__)).parent
    subprocess.run(
        [sys.executable, "-c", f"from {MODULE} import blob\n{code}"],
        cwd=directory,
        env=os.environ.copy(),
        check=True,
        timeout=60,
    )


def keys_of(module: ModuleType, *items: int) -> list[str]:
    keys = [explain(module.blob, i).key for i in items]
    assert None not in keys
    return [str(key) for key in keys]


def assert_index_matches_files(home: Path) -> None:
    """Every row has its file and every file its row: evicted records left nothing behind."""
    files = {p.relative_to(home / "storage").as_posix() for p in (home / "storage").rglob("*")}
    files = {f for f in files if (home / "storage" / f).is_file()}
    assert {r.location for r in Cache().records()} == files


def test_storing_past_the_limit_evicts_the_oldest(
    limited: int, sized: ModuleType, taskstash_home: Path
) -> None:
    for i in range(20):
        sized.blob(i)
        assert Cache().totals()[1] <= limited, i
    kept = {r.key for r in Cache().records()}
    keys = keys_of(sized, *range(20))
    assert 5 <= len(kept) < 20
    assert kept == set(keys[-len(kept) :])  # the newest ones, as none was hit
    assert Cache().totals() == (len(kept), sum(r.size_bytes for r in Cache().records()))
    assert_index_matches_files(taskstash_home)


def test_a_recently_hit_record_survives_and_other_processes_evict_too(
    limited: int, sized: ModuleType, taskstash_home: Path
) -> None:
    for i in range(5):
        sized.blob(i)
    keys = keys_of(sized, *range(5))
    in_another_process(sized, "blob(0)")  # a hit, written to the index when the process ends
    assert Cache().record(keys[0]).hit_count == 1
    in_another_process(sized, "for i in range(100, 104):\n    blob(i)")

    assert Cache().totals()[1] <= limited
    kept = {r.key for r in Cache().records()}
    assert kept >= set(keys_of(sized, *range(100, 104)))  # the other process's results
    assert keys[0] in kept  # hit after keys 1..4 were stored: used more recently than they
    evicted = [key for key in keys if key not in kept]
    assert evicted  # this process's records made room for the other's
    assert evicted == keys[1 : 1 + len(evicted)]  # least recently used first
    assert_index_matches_files(taskstash_home)
    assert sized.blob(0, return_state=True).is_cached()


def test_a_record_hit_in_this_process_survives_before_its_hit_is_written(
    limited: int, sized: ModuleType
) -> None:
    for i in range(5):
        sized.blob(i)
    assert sized.blob(0, return_state=True).is_cached()
    for i in range(100, 104):
        sized.blob(i)
    assert keys_of(sized, 0)[0] in {r.key for r in Cache().records()}


def test_a_result_larger_than_the_limit_is_returned_and_not_stored(
    sized: ModuleType,
    taskstash_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TASKSTASH_MAX_SIZE", "100kB")
    assert settings.reload().max_size == 100_000
    for i in range(3):
        sized.blob(i)
    kept = Cache().records()
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        big = sized.blob(7, size=120_000)
        assert big == bytes(120_000) + (7).to_bytes(4, "big")
        state = sized.blob(7, size=120_000, return_state=True)
    assert not state.is_cached()
    assert state.result() == big
    assert Cache().records() == kept  # nothing evicted to make room for it
    assert_index_matches_files(taskstash_home)  # and no file (nor temporary file) left
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "TASKSTASH_MAX_SIZE" in warning
    assert "100000 bytes" in warning
    assert all(sized.blob(i, return_state=True).is_cached() for i in range(3))


def test_the_store_refuses_a_result_larger_than_its_limit_before_writing_it(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "index.db")
    store.max_bytes = 1000
    storage = LocalStorage(tmp_path / "storage")
    payload = bytes(2000)
    header = make_header(
        "k" * 32, payload, task_name="t", task_qualname="t", serializer="pickle", created_at=1.0
    )
    with pytest.raises(ResultTooLargeError, match="1000 bytes") as raised:
        store.save(header, payload, storage, "big")
    assert raised.value.limit == 1000
    with pytest.raises(ResultTooLargeError, match="1000 bytes"):
        store.save_value(
            "k" * 32,
            payload,
            resolve_serializer("pickle"),
            storage,
            "big",
            task_name="t",
            task_qualname="t",
            created_at=1.0,
        )
    assert not [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    assert store.lookup("k" * 32, 2.0) is None
    store.close()


def test_an_invalid_limit_is_warned_about_and_refused_by_the_command(
    monkeypatch: pytest.MonkeyPatch,
    sized: ModuleType,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = "TASKSTASH_MAX_SIZE='oodles' is not a size (write it like 10000, 500MB or 2GiB"
    monkeypatch.setattr(settings, "_warned", set())  # warned once per process: again here
    with monkeypatch.context() as patch:
        patch.setenv("TASKSTASH_MAX_SIZE", "oodles")
        assert settings.reload().max_size is None  # the default: no limit
        assert sized.blob(1) == bytes(500) + b"\0\0\0\1"  # a call never fails for it
        assert [r.getMessage() for r in caplog.records if message in r.getMessage()] != []
        assert main(["stats"]) == 2
        assert f"taskstash: error: {message}" in capsys.readouterr().err
        done = subprocess.run(
            [sys.executable, "-m", "taskstash", "stats"],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert message in done.stderr
        assert "Traceback" not in done.stderr
    settings.reload()


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10000", 10_000),
        ("0", 0),
        ("512B", 512),
        ("4k", 4_000),
        ("4kB", 4_000),
        ("4KiB", 4_096),
        ("500MB", 500_000_000),
        ("500 mb", 500_000_000),
        ("1.5GB", 1_500_000_000),
        ("2GiB", 2 * 1024**3),
        ("1TB", 10**12),
        ("1TiB", 1024**4),
        (" 3 MiB ", 3 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "MB", "-1MB", "1.2.3", "10 XB", "5 KiBB", "1e6"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
