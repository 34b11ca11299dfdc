"""Result files on a real S3-compatible server (moto's, on loopback)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_support import MotoServer, Proxy

from taskstash.exceptions import SerializationError
from taskstash.store import Store, default_location, resolve_storage
from taskstash.store.fsspec_storage import FsspecStorage
from taskstash.store.results import decode_result
from taskstash.store.serializers import resolve_serializer


def test_a_result_file_round_trips_through_the_local_s3_server(
    s3: MotoServer, tmp_path: Path
) -> None:
    storage = resolve_storage("s3://taskstash-test/cache", tmp_path)
    storage.write("ab/abc", [b"hello ", b"world"])
    assert storage.read("ab/abc") == b"hello world"
    assert list(storage.locations()) == ["ab/abc"]
    assert s3.objects("taskstash-test") == {"cache/ab/abc": b"hello world"}


WORKER = Path(__file__).parent / "machine_worker.py"


def machine(home: Path, *argv: str, endpoint: str | None = None) -> subprocess.Popen[str]:
    """A process with its own TASKSTASH_HOME running `machine_worker.py *argv`."""
    environment = {**os.environ, "TASKSTASH_HOME": str(home)}
    if endpoint is not None:
        environment["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.Popen(
        [sys.executable, str(WORKER), *argv],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_every_object_is_whole(server: MotoServer) -> None:
    for name, data in server.objects("taskstash-test").items():
        header, payload = decode_result(data)  # raises for a truncated or damaged object
        assert header.payload_size == len(payload), name


def test_an_upload_interrupted_midway_publishes_no_partial_object(
    s3: MotoServer, tmp_path: Path
) -> None:
    proxy = Proxy(s3.port)
    proxy.delay = 0.05  # about 5 MiB/s: the first part is still on its way when interrupted
    try:
        child = machine(
            tmp_path / "a", "s3://taskstash-test/cache", "1", "12", "5", endpoint=proxy.endpoint
        )
        # Interrupted while the first part is being sent (its request line has gone through).
        while not any(line.startswith("PUT ") for line in proxy.requests):
            assert child.poll() is None, child.communicate()
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        proxy.delay = 0.0
        _, err = child.communicate(timeout=120)
    finally:
        proxy.stop()
    assert "KeyboardInterrupt" in err
    assert_every_object_is_whole(s3)


def test_a_serializer_failing_midway_publishes_nothing(s3: MotoServer, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(default_block_size=5 << 20, skip_instance_cache=True)
    storage = FsspecStorage(fs, "taskstash-test/cache")
    store = Store(tmp_path / "index.db")
    value = [random.randbytes(12 << 20), lambda: 1]  # pickle refuses the lambda, 12 MiB in
    with pytest.raises(SerializationError):
        store.save_value(
            "k" * 32,
            value,
            resolve_serializer("pickle"),
            storage,
            default_location("k" * 32),
            task_name="t",
            task_qualname="m.t",
            created_at=time.time(),
        )
    assert s3.objects("taskstash-test") == {}
    assert s3.uploads_in_progress("taskstash-test") == 0


def index_rows(home: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(home / "index.db")) as conn:
        return conn.execute("SELECT key, storage, location FROM records").fetchall()


def test_two_machines_saving_one_key_at_once_leave_one_record_both_point_at(
    s3: MotoServer, tmp_path: Path
) -> None:
    homes = [tmp_path / "a", tmp_path / "b"]
    children = [machine(home, "s3://taskstash-test/cache", "7", "1") for home in homes]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    assert len({out.splitlines()[-1] for out in outputs}) == 1  # the same result
    objects = s3.objects("taskstash-test")
    assert len(objects) == 1
    assert_every_object_is_whole(s3)
    (name,) = objects
    rows = [index_rows(home) for home in homes]
    assert rows[0] == rows[1]
    ((_, url, location),) = rows[0]
    assert (url, location) == ("s3://taskstash-test/cache", name.removeprefix("cache/"))
    for home in homes:  # and each machine's next call is a hit
        out, _ = machine(home, "s3://taskstash-test/cache", "7", "1").communicate(timeout=120)
        assert "computed" not in out
