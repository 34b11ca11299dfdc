"""Results by key from code (Prefect's ResultStore): read, exists, write and delete on a Cache."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest

from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.cache_results import WRITTEN_TASK_NAME, WRITTEN_TASK_QUALNAME
from taskstash.exceptions import CorruptResultError, SerializationError
from taskstash.store import default_location

KEY = "0123456789abcdef0123456789abcdef"


# Prefect's tests of ResultStore.read, write and exists ----------------------------------------


def test_result_store_read_and_write(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "index.db", tmp_path / "results")
    key = "test"
    value = "test"
    cache.write(key, value)
    read_value = cache.read(key)
    assert read_value.result == value
    # the result is written to the result storage, under the key
    assert (tmp_path / "results" / default_location(key)).is_file()
    assert read_value.metadata.key == key


def test_result_store_exists(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "index.db", tmp_path / "results")
    cache.write("test", "test")
    assert cache.exists("test")
    assert not cache.exists("nonexistent")
    # Remove the result file: the result is not found
    (tmp_path / "results" / default_location("test")).unlink()
    assert not cache.exists("test")


def test_default_result_store_exists_resolves_default_storage() -> None:
    Cache().write("test", "test")
    reader = Cache()
    assert reader.exists("test")


def test_read_returns_result_with_no_expiration() -> None:
    Cache().write("test-no-expiration", "permanent_value")
    first_read = Cache().read("test-no-expiration")
    assert first_read.result == "permanent_value"
    assert first_read.metadata.expires_at is None
    assert Cache().read("test-no-expiration").result == "permanent_value"


def test_read_after_expiration_raises_and_a_new_write_is_read() -> None:
    cache = Cache()
    past = datetime.datetime.now() - datetime.timedelta(seconds=1)
    cache.write("test-expired", "old_value", expiration=past)
    assert not cache.exists("test-expired")
    with pytest.raises(KeyError, match="the record of key 'test-expired' expired at"):
        cache.read("test-expired")
    cache.write("test-expired", "new_value")
    assert cache.read("test-expired").result == "new_value"


# what a hit checks, a read checks -----------------------------------------------------------


def test_reading_an_absent_key_raises_key_error() -> None:
    with pytest.raises(KeyError, match="no record with key 'nope'"):
        Cache().read("nope")


def test_a_damaged_file_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache()
    cache.write(KEY, list(range(100)))
    path = Path(cache.storage.url.removeprefix("file://")) / default_location(KEY)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert not cache.exists(KEY)
    with caplog.at_level(logging.WARNING, "taskstash"), pytest.raises(CorruptResultError):
        cache.read(KEY)


def test_a_file_replaced_by_another_keys_result_is_refused() -> None:
    cache = Cache()
    cache.write(KEY, "mine")
    other = "f" * 32
    cache.write(other, "theirs")
    root = Path(cache.storage.url.removeprefix("file://"))
    (root / default_location(KEY)).write_bytes((root / default_location(other)).read_bytes())
    with pytest.raises(CorruptResultError):
        cache.read(KEY)


def test_a_timedelta_expiration_is_from_now() -> None:
    record = Cache().write(KEY, 1, expiration=datetime.timedelta(hours=1))
    assert record.expires_at is not None
    assert 3590 < record.expires_at - record.created_at <= 3600


def test_serializers_are_recorded_and_used_to_read() -> None:
    cache = Cache()
    record = cache.write(KEY, {"a": [1, 2]}, serializer="compressed/json")
    assert record.serializer == "compressed/json"
    assert cache.read(KEY).result == {"a": [1, 2]}
    with pytest.raises(SerializationError):
        cache.write("b" * 32, {1, 2}, serializer="json")
    assert not cache.exists("b" * 32)


def test_a_custom_serializer_is_given_to_read() -> None:
    class Reversed:
        name = "reversed"

        def dumps(self, value: object) -> bytes:
            return str(value)[::-1].encode()

        def loads(self, data: bytes) -> object:
            return data.decode()[::-1]

    cache = Cache()
    cache.write(KEY, "abc", serializer=Reversed())
    with pytest.raises(ValueError, match="unknown result serializer 'reversed'"):
        cache.read(KEY)
    assert cache.read(KEY, serializer=Reversed()).result == "abc"


def test_write_to_another_storage(tmp_path: Path) -> None:
    cache = Cache()
    record = cache.write(KEY, "elsewhere", storage=tmp_path / "other")
    assert (tmp_path / "other" / default_location(KEY)).is_file()
    assert record.storage == cache.read(KEY).metadata.storage
    assert cache.read(KEY).result == "elsewhere"


def test_delete() -> None:
    cache = Cache()
    cache.write(KEY, 1)
    assert cache.delete(KEY)
    assert not cache.exists(KEY)
    assert not cache.delete(KEY)


# records written by key and task calls -------------------------------------------------------


def test_a_task_call_with_the_written_key_hits_it_and_keeps_its_task() -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert double(21) == 42
    (record,) = Cache().records(task="double")
    assert Cache().read(record.key).result == 42
    written = Cache().write(record.key, 1000)
    assert (written.task_name, written.task_qualname) == (record.task_name, record.task_qualname)
    state = double(21, return_state=True)
    assert state.is_cached()
    assert state.result() == 1000
    assert calls == [21]


def test_a_new_key_is_listed_under_cache_write() -> None:
    record = Cache().write(KEY, 1)
    assert (record.task_name, record.task_qualname) == (WRITTEN_TASK_NAME, WRITTEN_TASK_QUALNAME)
    assert Cache().write(KEY, 2, task_name="mine").task_name == "mine"
