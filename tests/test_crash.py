"""Processes killed at the worst moments leave no partial record and block nobody."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taskstash import settings

# A child that calls one task; BIG makes its result large enough to be killed mid-write.
CHILD = """
import os, sys, time
from taskstash import task
from taskstash.cache_policies import INPUTS

mode = sys.argv[1]  # plain, serial, or serial-hang
policy = INPUTS.configure(isolation_level="SERIALIZABLE") if mode != "plain" else INPUTS

@task(name="crashy", cache_policy=policy, cache_result_in_memory=False)
def produce(size: int) -> bytes:
    print("computing", flush=True)
    if mode == "serial-hang":
        time.sleep(600)  # holds the key's lock until killed
    return b"x" * size

value = produce(int(sys.argv[2]))
print("returned", len(value), value[:1].decode(), flush=True)
"""


def spawn(mode: str, size: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(mode: str, size: int) -> str:
    child = spawn(mode, size)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return out


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def temp_files(storage: Path) -> list[Path]:
    return [p for p in storage.rglob("*") if p.is_file() and p.name.endswith(".tstmp")]


def rows(index: Path) -> int:
    with sqlite3.connect(index) as conn:
        count: int = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    return count


def kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)


SIZE = 400 << 20  # 400 MiB: writing it takes long enough to be caught in the middle


def test_killed_while_writing_a_large_result(taskstash_home: Path) -> None:
    current = settings.current()
    child = spawn("plain", SIZE)
    wait_for(lambda: any(p.stat().st_size > 0 for p in temp_files(current.local_storage_path)))
    kill(child)
    # What was being written is a temporary file: never a record, never served.
    assert temp_files(current.local_storage_path)
    assert not current.index_path.exists() or rows(current.index_path) == 0
    assert run_to_end("plain", SIZE).split() == ["computing", "returned", str(SIZE), "x"]
    assert rows(current.index_path) == 1
    # The result written by the second process is served to the third.
    assert run_to_end("plain", SIZE).split() == ["returned", str(SIZE), "x"]


def test_killed_between_the_file_and_the_index_row(taskstash_home: Path) -> None:
    current = settings.current()
    run_to_end("plain", 10)  # creates the index
    blocker = sqlite3.connect(current.index_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the child's index write waits here, its file written
    try:
        child = spawn("plain", 20)
        wait_for(lambda: len(list(current.local_storage_path.rglob("*/*"))) == 2)
        time.sleep(0.2)  # the file is written aside; its rename and row wait for the lock
        kill(child)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert rows(current.index_path) == 1  # the killed call's row never committed
    # Its file was still under a temporary name (renamed into place only with its row): never
    # a record, never adopted. The next call computes and records it.
    assert temp_files(current.local_storage_path)
    assert run_to_end("plain", 20).split() == ["computing", "returned", "20", "x"]
    assert rows(current.index_path) == 2
    assert run_to_end("plain", 20).split() == ["returned", "20", "x"]


@pytest.mark.timeout(60)
def test_killed_while_holding_a_serializable_lock(taskstash_home: Path) -> None:
    holder = spawn("serial-hang", 5)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "computing"  # it holds the key's lock now
    waiter = spawn("serial", 5)
    time.sleep(1)
    assert waiter.poll() is None  # waiting for the lock
    kill(holder)
    started = time.monotonic()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    # The waiter noticed the dead holder at once, took the lock and computed.
    assert out.split() == ["computing", "returned", "5", "x"]
    assert time.monotonic() - started < 5
