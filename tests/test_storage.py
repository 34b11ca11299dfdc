"""Result files and storages: the file format, atomic writes, locations, and `Store.load`/`save`."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from taskstash.exceptions import CorruptResultError, TaskstashError
from taskstash.hashing import hash_bytes
from taskstash.store import (
    RESULT_FORMAT_VERSION,
    FsspecStorage,
    LocalStorage,
    Record,
    ResultHeader,
    ResultStorage,
    Store,
    check_location,
    decode_result,
    default_location,
    encode_result,
    make_header,
    resolve_storage,
    storage_for_url,
)
from taskstash.store.results import MAGIC, payload_if_checksum, split_result

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
NOW = 1_700_000_000.0


def header(key: str = KEY, payload: bytes = b"payload", **kw: object) -> ResultHeader:
    args: dict[str, object] = {
        "task_name": "add_one",
        "task_qualname": "tests.add_one",
        "serializer": "pickle",
        "created_at": NOW,
        "expires_at": NOW + 60,
        "compute_seconds": 0.25,
        "run_id": None,
        "components": {"inputs": "1" * 32},
    }
    args.update(kw)
    return make_header(key, payload, **args)  # type: ignore[arg-type]


def encoded(key: str = KEY, payload: bytes = b"payload") -> bytes:
    return b"".join(encode_result(header(key, payload), payload))


# --- the file format ---------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    payload = bytes(range(256)) * 10
    h = header(payload=payload, run_id="run", components={"a": "1", "b": "2"})
    data = b"".join(encode_result(h, payload))
    decoded, view = decode_result(data)
    assert decoded == h
    assert isinstance(view, memoryview)
    assert view.obj is data  # zero-copy
    assert view == payload


def test_file_layout() -> None:
    payload = b"xyz"
    data = encoded(payload=payload)
    assert data[:7] == MAGIC == b"TSKSTSH"
    assert data[7] == RESULT_FORMAT_VERSION == 1
    size = int.from_bytes(data[8:12], "little")
    assert data[12:13] == b"{"
    assert data[11 + size : 12 + size] == b"}"
    assert data[12 + size :] == payload
    assert data[12:25] == b'{"checksum":"'  # sorted keys, no whitespace


def test_header_checksum_and_size_are_computed() -> None:
    h = header(payload=b"abc")
    assert h.checksum == hash_bytes(b"abc")
    assert h.payload_size == 3


def test_empty_payload_round_trips() -> None:
    decoded, view = decode_result(encoded(payload=b""))
    assert decoded.payload_size == 0
    assert view.nbytes == 0


def test_encode_refuses_a_header_of_another_payload() -> None:
    with pytest.raises(ValueError, match="payload_size"):
        encode_result(header(payload=b"abc"), b"abcd")


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


GOOD = encoded(payload=b"some payload bytes")
BAD_FILES = {
    "empty": b"",
    "truncated in prefix": GOOD[:6],
    "truncated in header": GOOD[:40],
    "truncated payload": GOOD[:-1],
    "trailing byte": GOOD + b"\0",
    "flipped payload byte": flip(GOOD, len(GOOD) - 3),
    "flipped checksum byte": flip(GOOD, 20),
    "flipped header length": flip(GOOD, 8),
    "wrong magic": b"NOTSTSH" + GOOD[7:],
    "wrong version": GOOD[:7] + b"\x02" + GOOD[8:],
    "garbage": os.urandom(300),
    "header not json": GOOD[:12] + b"x" * (len(GOOD) - 12),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_damaged_files_are_refused(name: str) -> None:
    data = BAD_FILES[name]
    with pytest.raises(CorruptResultError):
        decode_result(data)
    with pytest.raises(CorruptResultError):
        split_result(data)
    assert payload_if_checksum(data, hash_bytes(b"some payload bytes")) is None


def test_corrupt_result_error_is_a_taskstash_error() -> None:
    assert issubclass(CorruptResultError, TaskstashError)


def test_header_with_wrong_field_types_is_refused() -> None:
    h = header()
    bad = b"".join(encode_result(header(task_name=3), b"payload"))  # not a str
    with pytest.raises(CorruptResultError, match="task_name"):
        decode_result(bad)
    assert decode_result(b"".join(encode_result(h, b"payload")))[0] == h


def test_fast_check_needs_the_recorded_checksum() -> None:
    payload = b"some payload bytes"
    assert bytes(payload_if_checksum(GOOD, hash_bytes(payload)) or b"") == payload
    assert payload_if_checksum(GOOD, hash_bytes(b"other")) is None


# --- locations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", "   ", "../x", "/abs", "a/../../b", "a/..", "..", "\\abs", "C:\\x", "a\0b", "./"]
)
def test_check_location_refuses_escapes(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid result location"):
        check_location(bad)


def test_check_location_refuses_temporary_names() -> None:
    with pytest.raises(ValueError, match="temporary"):
        check_location("a/.x.0123.tstmp")


@pytest.mark.parametrize(
    ("location", "normalized"),
    [
        ("reports/2024/x", "reports/2024/x"),
        ("42-bar", "42-bar"),
        ("a//b", "a/b"),
        ("./a/./b", "a/b"),
        ("a\\b", "a/b"),
        ("a b/c..d.pkl", "a b/c..d.pkl"),
        (".hidden", ".hidden"),
        ("ünï/cödé", "ünï/cödé"),
    ],
)
def test_check_location_accepts_relative_paths(location: str, normalized: str) -> None:
    assert check_location(location) == normalized


def test_default_location_is_sharded() -> None:
    assert default_location(KEY) == f"01/{KEY}"
    assert check_location(default_location(KEY)) == default_location(KEY)


# --- storages ----------------------------------------------------------------------------


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStorage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage")
    else:
        root = f"memory://taskstash-tests/{uuid.uuid4().hex}"
        result = resolve_storage(root, tmp_path)
        yield result
        assert isinstance(result, FsspecStorage)
        if result.fs.exists(result.root):
            result.fs.rm(result.root, recursive=True)


def test_storage_write_read_delete(storage: ResultStorage) -> None:
    assert storage.read("a/b") is None
    storage.write("a/b", b"one")
    assert bytes(storage.read("a/b") or b"") == b"one"
    storage.write("a/b", [b"tw", memoryview(b"o!")])
    assert bytes(storage.read("a/b") or b"") == b"two!"
    storage.delete("a/b")
    assert storage.read("a/b") is None
    storage.delete("a/b")  # missing is fine


def test_storage_lists_locations_without_temporary_files(storage: ResultStorage) -> None:
    for location in ("x", "ab/" + KEY, "reports/2024/y"):
        storage.write(location, b"data")
    # A writer's leftover (a crash between creating and renaming its temporary file).
    if isinstance(storage, LocalStorage):
        Path(storage.root, "ab", ".leftover.0123456789abcdef.tstmp").write_bytes(b"partial")
    else:
        assert isinstance(storage, FsspecStorage)
        storage.fs.pipe_file(f"{storage.root}/ab/.leftover.0123456789abcdef.tstmp", b"partial")
    assert sorted(storage.locations()) == ["ab/" + KEY, "reports/2024/y", "x"]


def test_storage_refuses_escaping_locations(storage: ResultStorage) -> None:
    for method in (storage.read, storage.delete):
        with pytest.raises(ValueError, match="invalid result location"):
            method("../outside")
    with pytest.raises(ValueError, match="invalid result location"):
        storage.write("../outside", b"x")


def test_large_write_is_atomic_and_leaves_no_temporary_file(storage: ResultStorage) -> None:
    chunk = os.urandom(1 << 20)
    storage.write("big/file", [chunk] * 24)  # 24 MiB
    data = storage.read("big/file")
    assert data is not None
    assert len(data) == 24 << 20
    assert list(storage.locations()) == ["big/file"]
    if isinstance(storage, LocalStorage):
        assert os.listdir(Path(storage.root, "big")) == ["file"]


def test_failed_write_leaves_nothing(storage: ResultStorage) -> None:
    with pytest.raises(TypeError):
        storage.write("x/y", [b"start", object()])  # type: ignore[list-item]
    assert storage.read("x/y") is None
    assert list(storage.locations()) == []
    if isinstance(storage, LocalStorage):
        assert not any(Path(storage.root).rglob("*.tstmp"))


def test_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    files = [encoded(payload=bytes([i]) * (4 << 20)) for i in range(3)]
    storage.write("f", files[0])
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            data = storage.read("f")
            try:
                assert data is not None
                seen.append(decode_result(data)[1][0])
            except BaseException as exc:
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(30):
            storage.write("f", files[i % 3])
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert seen
    assert os.listdir(tmp_path) == ["f"]


def test_local_storage_is_owner_only(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    storage.write("c/d", b"x")
    for directory in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.stat(tmp_path / directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a/b/c/d").st_mode) == 0o600


def test_local_storage_reads_a_file_larger_than_one_read(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, fsync=True)
    data = os.urandom(200_000)
    storage.write("big", data)
    assert storage.read("big") == data


def test_local_storage_url_is_its_absolute_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage("results")
    assert storage.url == str(tmp_path.resolve() / "results")


# --- resolving storages ------------------------------------------------------------------


def test_resolve_storage(tmp_path: Path) -> None:
    default = resolve_storage(None, tmp_path / "default")
    assert isinstance(default, LocalStorage)
    assert default.url == str(tmp_path.resolve() / "default")
    assert resolve_storage(None, tmp_path / "default") is default  # cached
    local = resolve_storage(str(tmp_path / "x"), tmp_path)
    assert isinstance(local, LocalStorage)
    assert resolve_storage(tmp_path / "x", tmp_path).url == local.url
    assert resolve_storage(f"file://{tmp_path}/x", tmp_path).url == local.url
    memory = resolve_storage("memory://bucket/prefix", tmp_path)
    assert isinstance(memory, FsspecStorage)
    assert memory.url == "memory:///bucket/prefix"
    assert resolve_storage("memory://bucket/prefix", tmp_path) is memory
    assert resolve_storage(local, tmp_path) is local
    with pytest.raises(TypeError, match="result_storage"):
        resolve_storage(42, tmp_path)


def test_resolve_storage_of_a_filesystem_object(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    whole = resolve_storage(fs, tmp_path)
    assert isinstance(whole, FsspecStorage)
    assert whole.root == ""
    assert resolve_storage(fs, tmp_path) is whole
    prefix = f"/taskstash-tests/{uuid.uuid4().hex}"
    dirfs = fsspec.filesystem("dir", path=prefix, fs=fs)
    rooted = resolve_storage(dirfs, tmp_path)
    assert rooted.url == f"memory://{prefix}"
    rooted.write("a/b", b"x")
    assert fs.cat_file(f"{prefix}/a/b") == b"x"
    assert list(rooted.locations()) == ["a/b"]
    fs.rm(prefix, recursive=True)


def test_storage_for_url_knows_only_the_storages_this_process_configured(
    tmp_path: Path,
) -> None:
    local = resolve_storage(tmp_path / "configured", tmp_path)
    assert storage_for_url(local.url) is local
    assert storage_for_url(LocalStorage(tmp_path / "made").url) is None
    assert storage_for_url(str(tmp_path / "elsewhere")) is None
    assert storage_for_url("memory:///some/where") is None
    assert storage_for_url("nosuchprotocol-xyz://a/b") is None
    assert storage_for_url("relative/path") is None


# --- Store.load and Store.save -----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "index.db")
    yield s
    s.close()


def save(
    store: Store, storage: ResultStorage, payload: bytes, location: str, key: str = KEY
) -> None:
    store.save(header(key, payload), payload, storage, location)


def load(store: Store, record: Record, storage: ResultStorage) -> bytes | None:
    payload = store.load(record, storage)
    return None if payload is None else bytes(payload)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def damage_missing(storage: ResultStorage, location: str) -> None:
    storage.delete(location)


def damage_truncate(storage: ResultStorage, location: str) -> None:
    data = storage.read(location)
    assert data is not None
    storage.write(location, bytes(data)[:-5])


def damage_garbage(storage: ResultStorage, location: str) -> None:
    storage.write(location, b"garbage" * 10)


def damage_other_key(storage: ResultStorage, location: str) -> None:
    storage.write(location, encoded(OTHER_KEY, b"another result"))


DAMAGES = {
    "missing": (damage_missing, "is missing"),
    "truncated": (damage_truncate, "damaged"),
    "garbage": (damage_garbage, "damaged"),
    "other key": (damage_other_key, "another key"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_load_of_a_bad_file_is_a_miss_warned_once(
    damage: str, store: Store, storage: ResultStorage, caplog: pytest.LogCaptureFixture
) -> None:
    save(store, storage, b"the result", default_location(KEY))
    record = store.lookup(KEY, NOW)
    assert record is not None
    assert load(store, record, storage) == b"the result"
    spoil, message = DAMAGES[damage]
    spoil(storage, record.location)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.load(record, storage) is None
        assert store.load(record, storage) is None
    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert message in warnings[0]
    assert KEY in warnings[0]
    assert "add_one" in warnings[0]
    # The caller recomputes and saves over it; a later problem is warned about again.
    save(store, storage, b"the result", default_location(KEY))
    assert load(store, record, storage) == b"the result"
    storage.delete(record.location)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert store.load(record, storage) is None
    assert len(warnings_of(caplog)) == 2


def test_load_accepts_an_intact_file_of_the_same_key(store: Store, storage: ResultStorage) -> None:
    # A concurrent writer replaced the file after this row was committed.
    save(store, storage, b"first", default_location(KEY))
    record = store.lookup(KEY, NOW)
    assert record is not None
    storage.write(record.location, encoded(KEY, b"second"))
    assert load(store, record, storage) == b"second"


def test_saving_elsewhere_deletes_the_old_file(store: Store, storage: ResultStorage) -> None:
    save(store, storage, b"one", "old/place")
    save(store, storage, b"two", "new/place")
    assert storage.read("old/place") is None
    record = store.lookup(KEY, NOW)
    assert record is not None
    assert record.location == "new/place"
    assert load(store, record, storage) == b"two"
    save(store, storage, b"three", "new/place")  # same place: rewritten, not deleted
    assert load(store, record, storage) == b"three"
    assert list(storage.locations()) == ["new/place"]


def test_saving_to_another_storage_deletes_the_old_file(store: Store, tmp_path: Path) -> None:
    first = LocalStorage(tmp_path / "first")
    second = LocalStorage(tmp_path / "second")
    save(store, first, b"one", "x")
    record = store.lookup(KEY, NOW)
    assert record is not None
    assert record.storage == first.url
    assert load(store, record, second) == b"one"  # read where the record says
    save(store, second, b"two", "x")
    assert first.read("x") is None
    assert second.read("x") is not None


def test_save_checks_header_against_payload(store: Store, storage: ResultStorage) -> None:
    with pytest.raises(ValueError, match="checksum"):
        store.save(header(KEY, b"abc"), b"abd", storage, "x")
    with pytest.raises(ValueError, match="invalid result location"):
        store.save(header(KEY, b"abc"), b"abc", storage, "../x")
    assert list(storage.locations()) == []


def refuse_writes(index_path: str) -> None:
    # A real failure of the index write: a trigger that aborts inserts and updates.
    with sqlite3.connect(index_path, isolation_level=None) as conn:
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON records "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )


def test_failed_index_write_deletes_the_new_file(store: Store, storage: ResultStorage) -> None:
    refuse_writes(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="refused by test"):
        save(store, storage, b"one", "x")
    assert list(storage.locations()) == []
    assert store.lookup(KEY, NOW) is None


def test_failed_index_write_keeps_the_file_its_row_points_to(
    store: Store, storage: ResultStorage
) -> None:
    save(store, storage, b"one", "x")
    refuse_writes(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        save(store, storage, b"two", "x")
    with pytest.raises(sqlite3.IntegrityError):
        save(store, storage, b"three", "y")
    assert list(storage.locations()) == ["x"]
    record = store.lookup(KEY, NOW)
    assert record is not None
    # The file under the row was overwritten by an equally valid result for the same key.
    assert load(store, record, storage) == b"two"


def test_record_describes_the_file(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    payload = b"p" * 1000
    record = store.save(header(KEY, payload), payload, storage, "a/b")
    assert record.storage == storage.url
    assert record.location == "a/b"
    assert record.size_bytes == os.path.getsize(tmp_path / "files" / "a" / "b")
    assert record.checksum == hash_bytes(payload)
    decoded, _ = decode_result(storage.read("a/b") or b"")
    assert decoded.key == record.key
    assert decoded.components == record.components


def test_index_files_are_owner_only(store: Store, tmp_path: Path) -> None:
    save(store, LocalStorage(tmp_path / "files"), b"x", "x")
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(store.path + suffix).st_mode) == 0o600, suffix
