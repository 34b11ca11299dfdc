"""Result storages and indexes that someone else tampered with.

Whoever can write a FIFO into the storage must not hang a call, `verify` or `reindex`; whoever
can write the index must gain no read or delete outside the storages this process configured,
and, with a signing key, no way to make one key answer with another key's signed result.
Anything that could hang runs in a subprocess with a timeout, so a hang fails the test.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskstash import Cache, explain, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store import Store, encode_result, make_header
from taskstash.tasks import Task

SCRIPT_TIMEOUT = 60
STRANGER = "f" * 32


def run_script(code: str, *, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Runs `code` in a new Python process with this environment; a hang fails the test."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        input=stdin.decode("latin-1"),
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def forged(key: str, value: object) -> bytes:
    """A sound, unsigned result file for `key` holding `value`."""
    payload = pickle.dumps(value, protocol=5)
    header = make_header(
        key, payload, task_name="f", task_qualname="f", serializer="pickle", created_at=1.0
    )
    return b"".join(encode_result(header, payload))


def edit_rows(index: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(index) as conn:
        assert conn.execute(sql, params).rowcount >= 1


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- FIFOs and other files that are not regular files ---------------------------------------

FIFO_SCRIPT = """
import logging, os, sys
from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.tasks import Task
from taskstash.store import Store

Store.large_result_bytes = {large_result_bytes}
logging.getLogger("taskstash").addHandler(logging.StreamHandler(sys.stdout))

@task(cache_policy=INPUTS, cache_result_in_memory=False)
def double(x):
    return 2 * x

def make_fifo(location):
    path = os.path.join(os.environ["TASKSTASH_HOME"], "storage", location)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path)

assert double(1) == 2
(record,) = Cache().records()
make_fifo(record.location)
state = double(1, return_state=True)
print("cached:", state.is_cached(), "value:", state.result())
make_fifo(record.location)
make_fifo("zz/stray")
report = Cache().verify()
print("damaged:", report.damaged == [record.key])
print("reindexed:", Cache().reindex())
"""


@pytest.mark.parametrize("large", [False, True], ids=["small", "streamed"])
def test_a_fifo_in_the_storage_is_a_miss_and_hangs_nothing(large: bool) -> None:
    # Streamed: every result is read as a stream (`open_read`), as a large one is.
    out = run_script(FIFO_SCRIPT.format(large_result_bytes=0 if large else 1 << 20)).stdout
    assert "cached: False value: 2" in out
    assert "damaged: True" in out
    assert "reindexed: 0" in out  # neither the FIFO at the record's path nor the stray one
    warnings = [line for line in out.splitlines() if "not a regular file" in line]
    assert len(warnings) == 1, out  # the miss, warned once like a damaged file


def test_reading_a_fifo_location_refuses_without_blocking(tmp_path: Path) -> None:
    done = run_script(
        f"""
        import os
        from taskstash.store import LocalStorage
        storage = LocalStorage({str(tmp_path)!r})
        os.mkfifo(os.path.join(storage.root, "fifo"))
        for read in (storage.read, storage.open_read):
            try:
                read("fifo")
            except OSError as exc:
                print("refused:", exc)
        """
    )
    assert done.stdout.count("refused:") == 2
    assert "not a regular file" in done.stdout


# --- index rows naming places outside the configured storages -------------------------------


@pytest.fixture
def double() -> Task[[int], int]:
    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def double(x: int) -> int:
        return 2 * x

    return double


@pytest.fixture(params=[None, "s3cret"], ids=["unsigned", "signed"])
def signing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.param is not None:
        monkeypatch.setenv("TASKSTASH_SIGNING_KEY", request.param)
    settings.reload()
    yield
    monkeypatch.delenv("TASKSTASH_SIGNING_KEY", raising=False)
    settings.reload()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the storage, with a file a hostile row will name."""
    directory = tmp_path / "victim"
    directory.mkdir()
    (directory / "other.txt").write_bytes(forged(STRANGER, "other"))
    return directory


def point_at_victim(index: Path, victim: Path, key: str) -> None:
    """Makes the row of `key` name the victim's file, a sound result file of that key."""
    (victim / "precious.txt").write_bytes(forged(key, "forged"))
    edit_rows(
        index,
        "UPDATE records SET storage = ?, location = 'precious.txt', checksum = ? WHERE key = ?",
        str(victim),
        make_header(
            key,
            pickle.dumps("forged", protocol=5),
            task_name="f",
            task_qualname="f",
            serializer="pickle",
            created_at=1.0,
        ).checksum,
        key,
    )


def assert_untouched(victim: Path, key: str) -> None:
    assert (victim / "precious.txt").read_bytes() == forged(key, "forged")
    assert (victim / "other.txt").read_bytes() == forged(STRANGER, "other")
    assert STRANGER not in {r.key for r in Cache().records()}  # the victim was not read


def test_a_row_naming_another_directory_is_neither_read_nor_deleted_by_a_call(
    signing: None,
    double: Task[[int], int],
    victim: Path,
    taskstash_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    double(1)
    (record,) = Cache().records()
    point_at_victim(taskstash_home / "index.db", victim, record.key)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        state = double(1, return_state=True)
    assert not state.is_cached()
    assert state.result() == 2  # not the victim's "forged"
    assert_untouched(victim, record.key)
    assert any(str(victim) in w and "not configured" in w for w in warnings_of(caplog))
    assert Cache().record(record.key).storage == str(taskstash_home / "storage")
    assert double(1, return_state=True).is_cached()


@pytest.mark.parametrize(
    "remove",
    [
        pytest.param(lambda: Cache().clear(), id="clear"),
        pytest.param(lambda: Cache().prune(older_than=0), id="prune"),
        pytest.param(lambda: Cache().prune(max_size=0), id="prune-max-size"),
        pytest.param(lambda: Cache().invalidate(""), id="invalidate"),
        pytest.param(lambda: Cache().verify(fix=True), id="verify-fix"),
        pytest.param(lambda: Cache().reindex(), id="reindex"),
    ],
)
def test_a_row_naming_another_directory_is_never_touched_by_maintenance(
    remove: Callable[[], object], double: Task[[int], int], victim: Path, taskstash_home: Path
) -> None:
    double(1)
    (record,) = Cache().records()
    point_at_victim(taskstash_home / "index.db", victim, record.key)
    remove()
    assert_untouched(victim, record.key)
    assert all(r.storage != str(victim) or r.key == record.key for r in Cache().records())


def test_a_row_naming_another_directory_is_not_evicted_from_there(
    double: Task[[int], int], victim: Path, taskstash_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    double(1)
    (record,) = Cache().records()
    point_at_victim(taskstash_home / "index.db", victim, record.key)
    monkeypatch.setenv("TASKSTASH_MAX_SIZE", str(record.size_bytes + 10))
    settings.reload()
    double(2)  # evicts the record of double(1), the least recently used
    assert [r.key for r in Cache().records()] != [record.key]
    assert_untouched(victim, record.key)


def test_a_row_location_escaping_the_storage_is_refused(
    double: Task[[int], int], victim: Path, taskstash_home: Path
) -> None:
    double(1)
    (record,) = Cache().records()
    (victim / "precious.txt").write_bytes(forged(record.key, "forged"))
    escape = os.path.relpath(victim / "precious.txt", taskstash_home / "storage")
    edit_rows(taskstash_home / "index.db", "UPDATE records SET location = ?", escape)
    assert double(1) == 2  # a miss, and the superseded "file" is not deleted
    assert_untouched(victim, record.key)
    edit_rows(taskstash_home / "index.db", "UPDATE records SET location = ?", escape)
    Cache().clear()
    assert_untouched(victim, record.key)


def test_a_row_naming_stdin_is_a_miss(taskstash_home: Path) -> None:
    key_and_value = textwrap.dedent(
        """
        from taskstash import Cache, task
        from taskstash.cache_policies import INPUTS

        @task(cache_policy=INPUTS, cache_result_in_memory=False)
        def double(x):
            return 2 * x
        """
    )
    done = run_script(key_and_value + "\ndouble(1)\nprint(Cache().records()[0].key)")
    key = done.stdout.split()[-1]
    data = forged(key, "read from stdin")
    edit_rows(
        taskstash_home / "index.db",
        "UPDATE records SET storage = '/proc/self/fd', location = '0', checksum = ?",
        make_header(
            key,
            pickle.dumps("read from stdin", protocol=5),
            task_name="f",
            task_qualname="f",
            serializer="pickle",
            created_at=1.0,
        ).checksum,
    )
    done = run_script(key_and_value + "\nprint(repr(double(1)))", stdin=data)
    assert done.stdout.split()[-1] == "2"


# --- signed records answer their own key only -----------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["small", "streamed"])
def test_a_signed_record_answers_only_its_own_key(
    streamed: bool,
    monkeypatch: pytest.MonkeyPatch,
    taskstash_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if streamed:  # every result read as a stream, as a large one is
        monkeypatch.setattr(Store, "large_result_bytes", 0)
    monkeypatch.setenv("TASKSTASH_SIGNING_KEY", "s3cret")
    settings.reload()

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def is_admin(user: str) -> bool:
        return user == "root"

    assert is_admin("root") is True
    assert is_admin("mallory") is False
    root = Cache().record(str(explain(is_admin, "root").key))
    mallory = Cache().record(str(explain(is_admin, "mallory").key))
    edit_rows(
        taskstash_home / "index.db",
        "UPDATE records SET location = ?, checksum = ? WHERE key = ?",
        root.location,
        root.checksum,
        mallory.key,
    )
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert is_admin("mallory") is False
    assert any(root.key in w for w in warnings_of(caplog)), warnings_of(caplog)
    assert is_admin("root") is True
