"""Large results: streamed into their file and loaded from it, never held twice in memory."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taskstash.exceptions import SerializationError
from taskstash.store import (
    LocalStorage,
    ResultStorage,
    Store,
    decode_result,
    default_location,
    load_value,
    resolve_serializer,
    resolve_storage,
)
from taskstash.store.base import Chunks, as_views

GIB = 1 << 30
KEY = "0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0

# One process stores a 1 GiB array through a task, another loads it; each reports its peak
# resident memory. Two copies of the array would be 2 GiB on top of the interpreter.
CHILD = """
import json, resource, sys
import numpy as np
from taskstash import task
from taskstash.cache_policies import INPUTS

ran = []

@task(cache_policy=INPUTS, cache_result_in_memory=False, result_serializer=sys.argv[2])
def big(size: int) -> np.ndarray:
    ran.append(size)
    array = np.full(size, 7, dtype=np.uint8)
    array[::4096] = 3
    return array

value = big(int(sys.argv[1]))
print(json.dumps({
    "ran": bool(ran),
    "shape": list(value.shape),
    "sum": int(value.sum(dtype=np.uint64)),
    "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def run_child(size: int, serializer: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), serializer],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.mark.timeout(120)
@pytest.mark.parametrize("serializer", ["cloudpickle", "compressed/cloudpickle"])
def test_a_1_gib_array_is_stored_and_loaded_in_about_one_copy_of_memory(
    taskstash_home: Path, serializer: str
) -> None:
    expected_sum = 7 * GIB - 4 * (GIB // 4096)
    try:
        written = run_child(GIB, serializer)
        loaded = run_child(GIB, serializer)
    finally:  # a 1 GiB file should not outlive the test in pytest's kept temporary folders
        shutil.rmtree(taskstash_home / "storage", ignore_errors=True)
    assert written["ran"] is True
    assert loaded["ran"] is False  # a hit
    assert loaded["shape"] == written["shape"] == [GIB]
    assert loaded["sum"] == written["sum"] == expected_sum
    for report in (written, loaded):
        peak = report["peak"]
        assert isinstance(peak, int)
        assert peak < 1.6 * GIB, f"peak resident memory {peak / GIB:.2f} GiB"


# --- the streaming paths, on small files (with the large-file threshold lowered) ----------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "index.db")
    s.large_result_bytes = 0  # every result goes through the large-file path
    yield s
    s.close()


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStorage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage")
        return
    result = resolve_storage(f"memory://taskstash-large/{tmp_path.name}", tmp_path)
    yield result
    for location in list(result.locations()):
        result.delete(location)


def save(store: Store, storage: ResultStorage, value: object, serializer: str = "pickle") -> None:
    store.save_value(
        KEY,
        value,
        resolve_serializer(serializer),
        storage,
        default_location(KEY),
        task_name="big",
        task_qualname="tests.big",
        created_at=NOW,
    )


def fetch(store: Store, storage: ResultStorage, serializer: str = "pickle") -> object:
    fetched = store.fetch(KEY, NOW, storage)
    assert fetched is not None
    payload, name, _ = fetched
    assert not isinstance(payload, memoryview)  # a file, as for a large result
    return load_value(resolve_serializer(name), payload)


@pytest.mark.parametrize(
    "serializer", ["pickle", "cloudpickle", "json", "compressed/pickle", "compressed/json"]
)
def test_streamed_results_round_trip_as_files(
    serializer: str, store: Store, storage: ResultStorage
) -> None:
    value = {"numbers": list(range(1000)), "text": "é" * 100}
    save(store, storage, value, serializer)
    assert fetch(store, storage, serializer) == value


def test_a_streamed_file_has_the_documented_layout(store: Store, storage: ResultStorage) -> None:
    array = np.arange(100_000, dtype=np.float64)
    save(store, storage, array)
    data = storage.read(default_location(KEY))
    assert data is not None
    header, payload = decode_result(data)  # checks the framing and the checksum
    assert header.key == KEY
    assert header.payload_size == payload.nbytes
    record = store.lookup(KEY, NOW)
    assert record is not None
    assert record.size_bytes == len(data)
    assert record.checksum == header.checksum
    assert np.array_equal(resolve_serializer("pickle").loads(payload), array)  # type: ignore[arg-type]


def test_a_numpy_array_is_loaded_without_a_second_copy(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    save(store, storage, np.ones(1 << 20, dtype=np.uint8))
    loaded = fetch(store, storage)
    assert isinstance(loaded, np.ndarray)
    # The array wraps the buffer pickle read its data into: no copy was made afterwards.
    assert not loaded.flags.owndata
    assert int(loaded.sum()) == 1 << 20


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], "truncated"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "does not match its checksum"),
        (lambda data: data + b"x", "longer than its header says"),
        (lambda data: b"garbage" * 10, "damaged"),
    ],
    ids=["truncated", "flipped", "trailing", "garbage"],
)
def test_a_damaged_large_file_is_a_miss_warned_once(
    damage: object,
    message: str,
    store: Store,
    storage: ResultStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    save(store, storage, list(range(100)))
    data = storage.read(default_location(KEY))
    assert data is not None
    storage.write(default_location(KEY), damage(bytes(data)))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.fetch(KEY, NOW, storage) is None
        assert store.fetch(KEY, NOW, storage) is None
    (warning,) = (r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert message in warning
    save(store, storage, list(range(100)))  # saved again: a hit
    assert fetch(store, storage) == list(range(100))


def test_a_large_file_replaced_by_another_keys_result_is_a_miss(
    store: Store, storage: ResultStorage, tmp_path: Path
) -> None:
    other = Store(tmp_path / "other.db")
    other.save_value(
        "f" * 32,
        "another",
        resolve_serializer("pickle"),
        storage,
        "elsewhere",
        task_name="t",
        task_qualname="t",
        created_at=NOW,
    )
    other.close()
    save(store, storage, "mine")
    replacement = storage.read("elsewhere")
    assert replacement is not None
    storage.write(default_location(KEY), replacement)
    assert store.fetch(KEY, NOW, storage) is None


def test_a_large_file_opened_for_loading_is_closed_when_loading_fails(
    store: Store, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    save(store, storage, [1, 2, 3], "json")
    fetched = store.fetch(KEY, NOW, storage)
    assert fetched is not None
    payload = fetched[0]
    assert not isinstance(payload, memoryview)
    with pytest.raises(SerializationError):
        load_value(resolve_serializer("pickle"), payload)  # JSON is not a pickle
    assert payload.closed


class DictStorage(ResultStorage):
    """A storage implementing only the abstract methods, as a third party might."""

    def __init__(self) -> None:
        self.url = "dict://test"
        self.files: dict[str, bytes] = {}

    def write(self, location: str, data: Chunks) -> None:
        self.files[location] = b"".join(as_views(data))

    def read(self, location: str) -> bytes | None:
        return self.files.get(location)

    def delete(self, location: str) -> None:
        self.files.pop(location, None)

    def locations(self) -> Iterator[str]:
        yield from sorted(self.files)


def test_a_storage_with_only_the_abstract_methods_streams_too(store: Store) -> None:
    storage = DictStorage()
    save(store, storage, np.arange(1000))
    assert list(storage.files) == [default_location(KEY)]
    loaded = fetch(store, storage)
    assert isinstance(loaded, np.ndarray)
    assert np.array_equal(loaded, np.arange(1000))


def test_a_value_that_cannot_be_serialized_leaves_nothing(
    store: Store, storage: ResultStorage
) -> None:
    with pytest.raises(SerializationError):
        save(store, storage, lambda: 1)  # pickle refuses lambdas, midway through the file
    assert list(storage.locations()) == []
    assert store.lookup(KEY, NOW) is None
    if isinstance(storage, LocalStorage):
        assert not [p for p in Path(storage.root).rglob("*") if p.is_file()]
