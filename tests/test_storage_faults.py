"""An object store that stops, refuses connections or answers too slowly: calls still return
their values, uncached, with one warning per task, and nothing hangs.

The store is the local S3 server behind a `Proxy`, which can stop (connections refused) or hold
every byte back (a server too slow to answer). `TASKSTASH_STORAGE_TIMEOUT` is 1 s here; the
tests check that calls complete (within pytest's timeout) and what they warn, never how long
they took.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_support import MotoServer, Proxy

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store import resolve_storage
from taskstash.store.fsspec_storage import FsspecStorage

TIMEOUT = 1.0


@pytest.fixture
def proxy(s3: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    """A proxy in front of the S3 server, which every S3 client of this process goes through."""
    proxy = Proxy(s3.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("TASKSTASH_STORAGE_TIMEOUT", str(TIMEOUT))
    settings.reload()
    yield proxy
    proxy.delay = 0.0
    proxy.stop()


class Counted:
    """Two tasks storing in one bucket, and the inputs each computed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.computed: list[tuple[str, int]] = []

        @task(cache_policy=INPUTS, result_storage=url, cache_result_in_memory=False)
        def double(x: int) -> int:
            self.computed.append(("double", x))
            return 2 * x

        @task(cache_policy=INPUTS, result_storage=url, cache_result_in_memory=False)
        def square(x: int) -> int:
            self.computed.append(("square", x))
            return x * x

        self.double = double
        self.square = square

    def storage(self) -> FsspecStorage:
        storage = resolve_storage(self.url, "", timeout=TIMEOUT)
        assert isinstance(storage, FsspecStorage)
        return storage


def unreachable_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "taskstash" and r.levelno == logging.WARNING
    ]


def test_a_store_stopped_mid_run_costs_recomputations_and_one_warning_per_task(
    proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = Counted(f"s3://taskstash-test/{tmp_path.name}")
    assert tasks.double(1) == 2
    assert tasks.double(1) == 2  # a hit, read from the store
    assert tasks.computed == [("double", 1)]
    proxy.stop()
    with caplog.at_level(logging.WARNING, "taskstash"):
        assert [tasks.double(1), tasks.double(2), tasks.square(3), tasks.double(1)] == [2, 4, 9, 2]
        assert tasks.square(3) == 9
    before, after = tasks.computed[:1], tasks.computed[1:]
    assert before == [("double", 1)]
    assert after == [("double", 1), ("double", 2), ("square", 3), ("double", 1), ("square", 3)]
    warned = unreachable_warnings(caplog)
    assert len(warned) == 2, warned  # one per task, whatever each call tried
    assert all("cannot be reached" in message for message in warned)
    assert {message.split("'")[1] for message in warned} == {"double", "square"}
    # Once the store answers again (and its pause is over), its records are hits again.
    proxy.start()
    tasks.storage().retry_after = 0.0
    assert tasks.double(1) == 2
    assert tasks.computed.count(("double", 1)) == 3


def test_a_store_refusing_connections_from_the_start(
    proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.stop()
    tasks = Counted(f"s3://taskstash-test/{tmp_path.name}")
    with caplog.at_level(logging.WARNING, "taskstash"):
        assert [tasks.double(1), tasks.double(1), tasks.double(2)] == [2, 2, 4]
    assert tasks.computed == [("double", 1), ("double", 1), ("double", 2)]
    (warned,) = unreachable_warnings(caplog)
    assert "cannot be reached" in warned
    assert f"s3://taskstash-test/{tmp_path.name}" in warned


def test_a_store_slower_than_the_timeout(
    proxy: Proxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = Counted(f"s3://taskstash-test/{tmp_path.name}")
    assert tasks.double(1) == 2
    proxy.delay = 60 * TIMEOUT  # every byte held back far beyond the timeout
    with caplog.at_level(logging.WARNING, "taskstash"):
        assert [tasks.double(1), tasks.double(2), tasks.double(1)] == [2, 4, 2]
    assert tasks.computed == [("double", 1), ("double", 1), ("double", 2), ("double", 1)]
    (warned,) = unreachable_warnings(caplog)
    assert "cannot be reached" in warned
    assert "Timeout" in warned


def test_a_named_storage_sets_its_own_timeout(
    proxy: Proxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    taskstash_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("TASKSTASH_STORAGE_TIMEOUT")  # 10 s for every other storage
    taskstash_home.mkdir()
    (taskstash_home / "config.toml").write_text(
        f'[storages.slow-bucket]\nurl = "s3://taskstash-test/{tmp_path.name}"\n'
        f"storage_timeout = {TIMEOUT}\n"
    )
    settings.reload()
    computed = []

    @task(cache_policy=INPUTS, result_storage="slow-bucket")
    def double(x: int) -> int:
        computed.append(x)
        return 2 * x

    proxy.delay = 60 * TIMEOUT
    with caplog.at_level(logging.WARNING, "taskstash"):
        assert double(1) == 2
    assert computed == [1]
    (warned,) = unreachable_warnings(caplog)
    assert "Timeout" in warned
    storage = resolve_storage("slow-bucket", "", settings.current().storages, timeout=10.0)
    assert isinstance(storage, FsspecStorage)
    assert storage.fs.config_kwargs["read_timeout"] == TIMEOUT
