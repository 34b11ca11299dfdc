"""The index and locks on PostgreSQL, shared by several machines (processes with homes of their
own, one index URL and one result storage)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pg_support import PostgresServer
from s3_support import MotoServer

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.postgres_locks import PostgresLockManager
from taskstash.store import Index

MACHINE = """
import os, sys, threading
from taskstash import task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
def slow_square(x):
    with open(os.environ["RAN_LOG"], "a") as log:
        log.write(f"{x}\\n")
    import time; time.sleep(0.05)
    return x * x

def work():
    for x in range(6):
        assert slow_square(x) == x * x

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_a_stampede_of_three_machines_computes_each_key_once(
    postgres_index: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    shared_storage = tmp_path / "bucket"
    machines = []
    for n in range(3):
        env = {
            **os.environ,
            "TASKSTASH_HOME": str(tmp_path / f"machine-{n}"),
            "TASKSTASH_INDEX_URL": postgres_index,
            "TASKSTASH_LOCAL_STORAGE_PATH": str(shared_storage),
            "RAN_LOG": str(ran),
        }
        machines.append(
            subprocess.Popen([sys.executable, "-c", MACHINE], env=env, stderr=subprocess.PIPE)
        )
    for machine in machines:
        _, err = machine.communicate(timeout=120)
        assert machine.returncode == 0, err.decode()
    assert sorted(ran.read_text().split()) == [str(x) for x in range(6)]


MACHINE_ON_S3 = """
import os, socket, sys, threading
from taskstash import task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"), result_storage=sys.argv[1],
      cache_result_in_memory=False)
def slow_square(x):
    with open(os.environ["RAN_LOG"], "a") as log:
        log.write(f"{x} {socket.gethostname()}\\n")
    import time; time.sleep(0.05)
    return x * x

def work():
    for x in range(6):
        assert slow_square(x) == x * x

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"""


def _on_host(name: str) -> list[str]:
    """The command prefix that runs a process under a host name of its own (a UTS namespace)."""
    probe = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "probe", "true"]
    try:
        if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            pytest.skip("cannot give processes host names of their own (unshare --uts)")
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]


def test_machines_sharing_the_index_and_one_bucket_compute_each_key_once(
    postgres_index: str, s3: MotoServer, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    bucket = f"s3://taskstash-test/{tmp_path.name}"
    machines = []
    for n in range(3):
        env = {
            **os.environ,
            "TASKSTASH_HOME": str(tmp_path / f"machine-{n}"),
            "TASKSTASH_INDEX_URL": postgres_index,
            "RAN_LOG": str(ran),
        }
        command = [*_on_host(f"machine-{n}"), sys.executable, "-c", MACHINE_ON_S3, bucket]
        machines.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE))
    for machine in machines:
        _, err = machine.communicate(timeout=180)
        assert machine.returncode == 0, err.decode()
    computed = [line.split() for line in ran.read_text().splitlines()]
    assert sorted(x for x, _ in computed) == [str(x) for x in range(6)]
    assert {host for _, host in computed} <= {"machine-0", "machine-1", "machine-2"}
    index = Index(postgres_index)
    rows = index.connection().execute("SELECT storage, location FROM records").fetchall()
    index.close()
    assert len(rows) == 6
    assert {storage for storage, _ in rows} == {bucket}
    stored = s3.objects("taskstash-test")
    assert sorted(stored) == sorted(f"{tmp_path.name}/{location}" for _, location in rows)


def test_a_killed_holder_frees_the_key(postgres_index: str) -> None:
    holder = PostgresLockManager(postgres_index)
    other = PostgresLockManager(postgres_index)
    assert holder.acquire_lock("k", "machine-a", hold_timeout=3600)
    assert not other.acquire_lock("k", "machine-b", acquire_timeout=0)
    killed = other.index.connection().execute(
        "SELECT pg_terminate_backend(backend_pid) FROM locks WHERE key = ?", ("k",)
    )
    assert killed.fetchone()[0] is True
    assert other.acquire_lock("k", "machine-b", acquire_timeout=5)
    assert other.is_lock_holder("k", "machine-b")


def test_a_taker_after_an_expired_lease_bears_a_newer_token(postgres_index: str) -> None:
    first = PostgresLockManager(postgres_index)
    second = PostgresLockManager(postgres_index)
    assert first.acquire_lock("k", "a", hold_timeout=0.05)
    token = first.token("k", "a")
    assert token is not None
    assert second.acquire_lock("k", "b", acquire_timeout=5)
    conn = second.index.connection()
    assert not second.holds_token(conn, "k", token)
    assert first.token("k", "a") is None
    newer = second.token("k", "b")
    assert newer is not None
    assert newer > token
    assert second.holds_token(conn, "k", newer)


def test_a_restarted_server_means_uncached_calls_then_recovery(
    postgres_server: PostgresServer,
    postgres_index: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TASKSTASH_INDEX_URL", postgres_index)
    settings.reload()
    ran: list[int] = []

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    assert double(1) == 2
    assert double(1) == 2
    assert ran == [1]
    postgres_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="taskstash"):
            assert double(1) == 2
            assert double(2) == 4
        assert ran == [1, 1, 2]  # uncached while the server is down
        warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        postgres_server.start()
    assert double(3) == 6
    assert double(3) == 6
    assert ran == [1, 1, 2, 3]  # cached again


def test_the_settings_file_names_the_index_url(
    postgres_index: str, taskstash_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taskstash_home.mkdir(parents=True, exist_ok=True)
    (taskstash_home / "config.toml").write_text(f'index_url = "{postgres_index}"\n')
    current = settings.reload()
    assert current.index == postgres_index

    @task(cache_policy=INPUTS)
    def triple(x: int) -> int:
        return 3 * x

    assert triple(2) == 6
    from taskstash import Cache

    assert Cache().path == postgres_index
    assert [r.task_name for r in Cache().records()] == ["triple"]
