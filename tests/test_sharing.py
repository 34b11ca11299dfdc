"""One cache for many machines: a record written by one is a hit on every other.

Machines are processes with their own TASKSTASH_HOME (so their own index) sharing a result
storage: a directory, or a bucket on the local S3 server.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest
from s3_support import MotoServer, Proxy, environment
from test_s3_storage import machine

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store import LocalStorage, Store, default_location
from taskstash.store.serializers import DEFAULT_SERIALIZER


def run(home: Path, *argv: str, endpoint: str | None = None) -> str:
    child = machine(home, *argv, endpoint=endpoint)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return out


def rows(home: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(home / "index.db")) as conn:
        return conn.execute("SELECT storage, location FROM records").fetchall()


def test_a_second_machine_hits_what_the_first_stored_in_a_shared_directory(
    tmp_path: Path,
) -> None:
    shared = str(tmp_path / "shared")
    first = run(tmp_path / "a", shared, "1")
    second = run(tmp_path / "b", shared, "1")
    assert first.splitlines()[0] == "computed"
    assert second.splitlines() == first.splitlines()[1:]  # the same result, not computed
    assert rows(tmp_path / "b") == rows(tmp_path / "a")  # adopted into b's own index


def test_a_second_machine_hits_what_the_first_stored_in_a_bucket(
    s3: MotoServer, tmp_path: Path
) -> None:
    url = "s3://taskstash-test/shared"
    first = run(tmp_path / "a", url, "1")
    proxy = Proxy(s3.port)
    try:
        second = run(tmp_path / "b", url, "1", endpoint=proxy.endpoint)
        adopting = list(proxy.requests)
        proxy.requests.clear()
        third = run(tmp_path / "b", url, "1", endpoint=proxy.endpoint)
    finally:
        proxy.stop()
    assert first.splitlines()[0] == "computed"
    assert second.splitlines() == third.splitlines() == first.splitlines()[1:]
    assert rows(tmp_path / "b") == rows(tmp_path / "a")
    ((_, location),) = rows(tmp_path / "b")
    # One GET adopts the record; later hits find it in the index and read it with one GET.
    assert adopting == proxy.requests == [f"GET /taskstash-test/shared/{location}"]


def test_a_miss_asks_the_storage_once_however_often_it_is_repeated(
    s3: MotoServer, tmp_path: Path
) -> None:
    proxy = Proxy(s3.port)
    calls = []

    @task(cache_policy=INPUTS, result_storage=f"s3://taskstash-test/{tmp_path.name}")
    def failing(x: int) -> int:
        calls.append(x)
        raise RuntimeError("no result to store")

    try:
        with environment({"AWS_ENDPOINT_URL": proxy.endpoint}):
            for _ in range(3):
                with pytest.raises(RuntimeError):
                    failing(1)
    finally:
        proxy.stop()
    assert len(calls) == 3
    assert len(proxy.requests) == 1
    assert proxy.requests[0].startswith(f"GET /taskstash-test/{tmp_path.name}/")


LOADS: list[int] = []


def _loaded(x: int) -> Tracked:
    LOADS.append(x)
    return Tracked(x)


class Tracked:
    """A value that notes each time it is deserialized."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return _loaded, (self.x,)


def switch_machine(monkeypatch: pytest.MonkeyPatch, home: Path, signing_key: str = "") -> None:
    monkeypatch.setenv("TASKSTASH_HOME", str(home))
    monkeypatch.setenv("TASKSTASH_SIGNING_KEY", signing_key)
    settings.reload()


@pytest.mark.parametrize("fault", ["tampered", "another key", "another signing key"])
def test_a_record_another_machine_cannot_vouch_for_is_never_deserialized(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    computed: list[int] = []

    @task(cache_policy=INPUTS, result_storage=shared, cache_result_in_memory=False)
    def tracked(x: int) -> Tracked:
        computed.append(x)
        return Tracked(x)

    switch_machine(monkeypatch, tmp_path / "a", "key a")
    tracked(1)
    tracked(2)
    with contextlib.closing(sqlite3.connect(tmp_path / "a" / "index.db")) as conn:
        query = "SELECT location FROM records ORDER BY parameters"  # x=1, then x=2
        files = [shared / location for (location,) in conn.execute(query)]
    if fault == "tampered":
        data = bytearray(files[0].read_bytes())
        data[-1] ^= 1
        files[0].write_bytes(bytes(data))
    elif fault == "another key":
        files[0].write_bytes(files[1].read_bytes())  # 2's record where 1's should be
    switch_machine(
        monkeypatch, tmp_path / "b", "key b" if fault == "another signing key" else "key a"
    )
    LOADS.clear()
    with caplog.at_level(logging.WARNING, "taskstash"):
        assert tracked(1).x == 1
    assert computed == [1, 2, 1]
    assert LOADS == []
    expected = {
        "tampered": "is damaged",
        "another key": "holds the result of another key",
        "another signing key": "is not signed with this store's signing key",
    }[fault]
    assert [r.getMessage() for r in caplog.records if expected in r.getMessage()]


def test_a_record_adopted_by_another_thread_meanwhile_is_a_hit(tmp_path: Path) -> None:
    # Two calls of one key on a machine whose index lacks it: both miss the index, one adopts
    # the record from the shared storage first; the other's adoption finds the row and hits.
    storage = LocalStorage(tmp_path / "shared")
    key = "0123456789abcdef0123456789abcdef"
    first_machine = Store(tmp_path / "first.db")
    first_machine.save_value(
        key,
        42,
        DEFAULT_SERIALIZER,
        storage,
        default_location(key),
        task_name="answer",
        task_qualname="tests.answer",
        created_at=1_700_000_000.0,
    )
    now = 1_700_000_001.0
    one_thread, other_thread = Store(tmp_path / "second.db"), Store(tmp_path / "second.db")
    assert one_thread.fetch(key, now, storage) is None
    assert other_thread.fetch(key, now, storage) is None
    assert other_thread.adopt(key, now, storage, default_location(key), remember=False)
    adopted = one_thread.adopt(key, now, storage, default_location(key), remember=False)
    assert adopted is not None
    assert adopted[1] == "cloudpickle"
    for store in (first_machine, one_thread, other_thread):
        store.close()
