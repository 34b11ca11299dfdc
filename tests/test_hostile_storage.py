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
from pathlib import Path

import pytest

from taskstash.store import encode_result, make_header

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
