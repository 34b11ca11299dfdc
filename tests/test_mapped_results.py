"""Hits on large arrays and tables map their file: zero-copy, read-only, and still checked."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskstash.store import (
    LocalStorage,
    ResultStorage,
    Store,
    default_location,
    load_value,
    resolve_serializer,
    resolve_storage,
)
from taskstash.store.mapped import SETTLED_SECONDS
from taskstash.store.serializers import DEFAULT_SERIALIZER

KEY = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
NOW = 1_700_000_000.0
SIGNING_KEY = b"k" * 32


def open_store(tmp_path: Path, signing_key: bytes | None = None) -> Store:
    store = Store(tmp_path / "index.db", signing_key=signing_key)
    store.large_result_bytes = 1024  # small files count as large here
    return store


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def save(store: Store, storage: ResultStorage, value: object, key: str = KEY) -> Path | None:
    store.save_value(
        key,
        value,
        DEFAULT_SERIALIZER,
        storage,
        default_location(key),
        task_name="big",
        task_qualname="tests.big",
        created_at=NOW,
    )
    if isinstance(storage, LocalStorage):
        return Path(storage.root) / default_location(key)
    return None


def hit(store: Store, storage: ResultStorage, key: str = KEY) -> object:
    fetched = store.fetch(key, NOW, storage)
    assert fetched is not None, "a miss"
    payload, name, _ = fetched
    return load_value(resolve_serializer(name), payload)


def mapped(value: object) -> bool:
    """Whether an array's memory (or a data frame's first column's) is in a mapped result file."""
    if isinstance(value, pd.DataFrame):
        value = value.iloc[:, 0].to_numpy()
    assert isinstance(value, np.ndarray)
    address = value.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, _, _, _, _, *path = line.split()
            start, end = (int(bound, 16) for bound in span.split("-"))
            if start <= address < end:
                return bool(path) and "/storage/" in path[0]
    return False


def age(path: Path) -> None:
    """Waits until the file's change time is old enough for its check to be remembered."""
    settled = os.stat(path).st_ctime + SETTLED_SECONDS + 0.05
    time.sleep(max(0.0, settled - time.time()))


def flip_last_byte(path: Path) -> None:
    with open(path, "r+b") as file:  # in place: the same inode
        file.seek(-1, os.SEEK_END)
        last = file.read(1)
        file.seek(-1, os.SEEK_END)
        file.write(bytes([last[0] ^ 1]))


def test_a_large_array_hit_is_mapped_read_only(store: Store, storage: LocalStorage) -> None:
    array = np.arange(10_000, dtype=np.float64)
    save(store, storage, array)
    loaded = hit(store, storage)
    assert isinstance(loaded, np.ndarray)
    assert mapped(loaded)
    assert np.array_equal(loaded, array)
    assert loaded.ctypes.data % 64 == 0  # aligned: the payload starts on a multiple of 64
    with pytest.raises(ValueError, match="read-only"):
        loaded[0] = 1
    assert hit(store, storage)[0] == 0  # type: ignore[index]


def test_a_large_frame_hit_is_mapped(store: Store, storage: LocalStorage) -> None:
    frame = pd.DataFrame({"a": np.arange(5_000.0), "b": np.arange(5_000)})
    save(store, storage, frame)
    loaded = hit(store, storage)
    assert isinstance(loaded, pd.DataFrame)
    assert mapped(loaded)
    pd.testing.assert_frame_equal(loaded, frame)
    with pytest.raises(ValueError, match="read-only"):
        loaded.iloc[0, 0] = 5.0
    mine = loaded.copy()
    mine.iloc[0, 0] = 5.0  # a copy is the caller's to change


def test_a_file_others_may_write_is_read_not_mapped(store: Store, storage: LocalStorage) -> None:
    path = save(store, storage, np.arange(10_000))
    assert path is not None
    path.chmod(0o664)
    loaded = hit(store, storage)
    assert not mapped(loaded)
    assert np.array_equal(loaded, np.arange(10_000))  # type: ignore[arg-type]
    assert not loaded.flags.writeable  # type: ignore[attr-defined]


def test_a_remote_file_is_read_not_mapped(store: Store, tmp_path: Path) -> None:
    storage = resolve_storage(f"memory://taskstash-mapped/{tmp_path.name}", tmp_path)
    try:
        save(store, storage, np.arange(10_000))
        loaded = hit(store, storage)
        assert not mapped(loaded)
        assert np.array_equal(loaded, np.arange(10_000))  # type: ignore[arg-type]
    finally:
        storage.delete(default_location(KEY))


def test_a_damaged_file_is_not_mapped(
    store: Store, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    path = save(store, storage, np.arange(10_000))
    assert path is not None
    flip_last_byte(path)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.fetch(KEY, NOW, storage) is None
    assert "does not match its checksum" in caplog.text


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_file_changed_in_place_after_a_mapped_hit_is_refused(
    tmp_path: Path, storage: LocalStorage, signed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path, SIGNING_KEY if signed else None)
    path = save(store, storage, np.arange(10_000))
    assert path is not None
    age(path)  # so that the first hit's check is remembered
    assert mapped(hit(store, storage))
    flip_last_byte(path)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.fetch(KEY, NOW, storage) is None
    assert "does not match its checksum" in caplog.text
    store.close()


def test_another_keys_signed_file_put_in_place_is_refused(
    tmp_path: Path, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path, SIGNING_KEY)
    path = save(store, storage, np.arange(10_000))
    other = save(store, storage, np.zeros(10_000), key=OTHER)
    assert path is not None
    assert other is not None
    age(path)
    assert mapped(hit(store, storage))
    os.replace(other, path)  # validly signed, for another key
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.fetch(KEY, NOW, storage) is None
    assert f"holds the result of another key ({OTHER})" in caplog.text
    store.close()


def test_an_unsigned_file_is_not_mapped_by_a_signing_store(
    tmp_path: Path, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    unsigned = open_store(tmp_path)
    save(unsigned, storage, np.arange(10_000))
    unsigned.close()
    signing = open_store(tmp_path, SIGNING_KEY)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert signing.fetch(KEY, NOW, storage) is None
    assert "is not signed with this store's signing key" in caplog.text
    signing.close()


def test_a_mapped_hit_is_not_kept_in_the_memory_layer(store: Store, storage: LocalStorage) -> None:
    save(store, storage, np.arange(10_000))
    assert mapped(hit(store, storage))
    store.fetch(KEY, NOW, storage, remember=True)
    assert len(store.memory) == 0


# A hit on a large array in a new process: peak resident memory before and after the hit, and
# after touching one element in every 64.
CHILD = """
import json, sys
import numpy as np
from taskstash import task
from taskstash.cache_policies import INPUTS

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

@task(cache_policy=INPUTS, cache_result_in_memory=False)
def big(size: int) -> np.ndarray:
    return np.ones(size, dtype=np.uint8)

if sys.argv[1] == "save":
    big(int(sys.argv[2]))
else:
    before = peak()
    value = big(int(sys.argv[2]))
    after = peak()
    total = int(value[::64].sum())
    print(json.dumps([before, after, total]))
"""


@pytest.mark.timeout(120)
def test_memory_grows_by_what_is_touched_not_by_the_result(taskstash_home: Path) -> None:
    size = 256 << 20

    def child(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout

    child("save", str(size))
    before, after, total = json.loads(child("hit", str(size)))
    assert total == size // 64
    assert after - before < size // 10, f"{(after - before) >> 20} MiB for a 256 MiB result"


READER = """
import json, sys
import numpy as np
from taskstash.store import Store, LocalStorage, load_value, resolve_serializer
index, root, key, signing = sys.argv[1:5]
store = Store(index, signing_key=signing.encode() or None)
store.large_result_bytes = 1024
def read_bytes():
    with open("/proc/self/io") as io:
        return int(dict(line.split(": ") for line in io.read().splitlines())["rchar"])
before = read_bytes()
fetched = store.fetch(key, 1_700_000_000.0, LocalStorage(root))
after = read_bytes()
value = None if fetched is None else load_value(resolve_serializer(fetched[1]), fetched[0])
print(json.dumps([after - before, None if value is None else float(np.asarray(value).sum())]))
"""


def read_in_another_process(
    store: Store, storage: LocalStorage, signing_key: bytes | None = None
) -> tuple[int, float | None]:
    """What another process reads (bytes, through read calls) to hit KEY, and the value's sum."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            READER,
            store.url,
            str(storage.root),
            KEY,
            (signing_key or b"").decode(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    read, total = json.loads(result.stdout)
    return read, total


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_file_checked_by_one_process_is_mapped_by_others_without_reading_it(
    tmp_path: Path, storage: LocalStorage, signed: bool
) -> None:
    signing_key = SIGNING_KEY if signed else None
    store = open_store(tmp_path, signing_key)
    array = np.arange(2_000_000, dtype=np.float64)  # 16 MiB
    path = save(store, storage, array)
    assert path is not None
    read_first, total = read_in_another_process(store, storage, signing_key)
    assert read_first > array.nbytes  # checked by reading it (not yet settled: not recorded)
    age(path)
    read_first, total = read_in_another_process(store, storage, signing_key)
    assert read_first > array.nbytes  # checked by reading it, and recorded
    assert total == float(array.sum())
    read_again, total = read_in_another_process(store, storage, signing_key)
    assert read_again < array.nbytes // 10
    assert total == float(array.sum())
    store.close()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_file_changed_after_its_check_was_recorded_is_checked_again(
    tmp_path: Path, storage: LocalStorage, signed: bool
) -> None:
    signing_key = SIGNING_KEY if signed else None
    store = open_store(tmp_path, signing_key)
    path = save(store, storage, np.arange(2_000_000, dtype=np.float64))
    assert path is not None
    age(path)
    read_in_another_process(store, storage, signing_key)  # records the check
    flip_last_byte(path)
    read, total = read_in_another_process(store, storage, signing_key)
    assert read > 2_000_000 * 8  # the changed file was read to check it...
    assert total is None  # ...and refused
    store.close()


def test_a_check_vouched_for_without_the_signing_key_is_not_trusted(
    tmp_path: Path, storage: LocalStorage
) -> None:
    store = open_store(tmp_path, SIGNING_KEY)
    path = save(store, storage, np.arange(2_000_000, dtype=np.float64))
    assert path is not None
    age(path)
    read_in_another_process(store, storage, SIGNING_KEY)
    with reading_index(store) as conn:
        (recorded,) = conn.execute("SELECT verified FROM records").fetchone()
    assert recorded.count(":") == 6
    flip_last_byte(path)
    age(path)
    status = os.stat(path)
    forged = ":".join(
        map(
            str,
            (
                status.st_dev,
                status.st_ino,
                status.st_size,
                status.st_mtime_ns,
                status.st_ctime_ns,
                recorded.split(":")[5],
            ),
        )
    )
    for vouched in (forged, f"{forged}:{recorded.split(':')[6]}"):  # no MAC, the old MAC
        with reading_index(store) as conn:
            conn.execute("UPDATE records SET verified = ?", (vouched,))
            conn.commit()
        read, total = read_in_another_process(store, storage, SIGNING_KEY)
        assert total is None
        assert read > 2_000_000 * 8
    store.close()


@contextlib.contextmanager
def reading_index(store: Store) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(store.url)
    try:
        yield conn
    finally:
        conn.close()
