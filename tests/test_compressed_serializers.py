"""Compressed serializers: Prefect's names and class, any codec read back, large values streamed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.exceptions import SerializationError
from taskstash.store import resolve_serializer
from taskstash.store.compression import open_decompressed
from taskstash.store.serializers import (
    CloudpickleSerializer,
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
)

TEST_UUID = uuid.UUID("a53e3495-d681-4a53-84b8-9d9542f7237c")


class MyModel(BaseModel):
    x: int
    y: uuid.UUID


@dataclass
class MyDataclass:
    x: int
    y: str


@dataclass
class MyDataclassBytes:
    x: int
    y: bytes


SERIALIZER_TEST_CASES: list[object] = [
    1,
    "test",
    {"foo": "bar"},
    ["x", "y"],
    TEST_UUID,
    MyModel(x=1, y=TEST_UUID),
    MyDataclass(x=1, y="test"),
    b"test string",
    MyDataclassBytes(x=1, y=b"test"),
]
CODECS = ["zstandard", "zlib", "lzma", "bz2"]
MAGIC = {"zstandard": b"\x28\xb5\x2f\xfd", "zlib": b"\x78", "lzma": b"\xfd7zXZ\x00", "bz2": b"BZh"}


# Prefect's tests of CompressedSerializer -----------------------------------------------------


@pytest.mark.parametrize("data", SERIALIZER_TEST_CASES, ids=repr)
def test_simple_roundtrip(data: object) -> None:
    serializer = CompressedSerializer(serializer="pickle")
    serialized = serializer.dumps(data)
    assert serializer.loads(serialized) == data


@pytest.mark.parametrize("lib", ["bz2", "lzma", "zlib"])
def test_allows_stdlib_compression_libraries(lib: str) -> None:
    serializer = CompressedSerializer(compressionlib=lib, serializer="pickle")
    serialized = serializer.dumps("test")
    assert serializer.loads(serialized) == "test"


@pytest.mark.parametrize("lib", CODECS)
def test_uses_the_given_compression_library_and_serializer(lib: str) -> None:
    serializer = CompressedSerializer(compressionlib=lib, serializer="json")
    serialized = serializer.dumps({"test": [1, 2]})
    assert serialized.startswith(MAGIC[lib])
    assert json.loads(open_decompressed(io.BytesIO(serialized)).read()) == {"test": [1, 2]}


@pytest.mark.parametrize(
    ("name", "inner"),
    [
        ("compressed/pickle", PickleSerializer),
        ("compressed/json", JSONSerializer),
        ("compressed/cloudpickle", CloudpickleSerializer),
    ],
)
def test_shorthands(name: str, inner: type) -> None:
    serializer = resolve_serializer(name)
    assert isinstance(serializer, CompressedSerializer)
    assert isinstance(serializer.serializer, inner)
    assert serializer.name == name
    assert resolve_serializer(serializer.name) is serializer  # the stored name round-trips


# taskstash's own -----------------------------------------------------------------------------


@pytest.mark.parametrize("writer", CODECS)
def test_a_payload_is_read_whatever_codec_wrote_it(writer: str) -> None:
    value: dict[str, Any] = {"numbers": list(range(500)), "array": np.arange(1000)}
    written = CompressedSerializer("pickle", compressionlib=writer, level=3).dumps(value)
    for reader in (resolve_serializer("compressed/pickle"), CompressedSerializer("pickle", "bz2")):
        loaded = reader.loads(memoryview(written))
        assert isinstance(loaded, dict)
        assert loaded["numbers"] == value["numbers"]
        assert np.array_equal(loaded["array"], value["array"])
        streamed = io.BytesIO(b"header" + written)
        streamed.seek(6)
        assert reader.load(streamed)["numbers"] == value["numbers"]  # type: ignore[attr-defined]


def test_compressed_payloads_are_smaller() -> None:
    value = {"rows": [{"name": "alice", "score": i % 7} for i in range(2000)]}
    for inner in ("pickle", "json", "cloudpickle"):
        plain = len(resolve_serializer(inner).dumps(value))
        assert len(resolve_serializer(f"compressed/{inner}").dumps(value)) < plain / 5


def test_an_object_wraps_any_serializer_and_is_named_after_it() -> None:
    class Upper:
        name = "upper"

        def dumps(self, value: object) -> bytes:
            return str(value).upper().encode()

        def loads(self, data: bytes) -> object:
            return data.decode()

    serializer = CompressedSerializer(Upper(), compressionlib="zlib", level=9)
    assert serializer.name == "compressed/upper"
    assert serializer.loads(serializer.dumps("abc")) == "ABC"
    assert repr(serializer) == (
        "CompressedSerializer(serializer='upper', compressionlib='zlib', level=9)"
    )


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown compressionlib 'snappy'; use one of 'zstandard'"):
        CompressedSerializer("pickle", compressionlib="snappy")
    with pytest.raises(ValueError, match="'compressed/json'"):
        resolve_serializer("compressed/yaml")


@pytest.mark.parametrize("payload", [b"garbage!", b"\x78\x9cnot zlib at all"])
def test_damaged_payloads_raise_serialization_errors(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        resolve_serializer("compressed/pickle").loads(payload)


class _Counting:
    def __init__(self) -> None:
        self.size = 0
        self.largest = 0

    def write(self, data: bytes | memoryview) -> int:
        n = memoryview(data).nbytes
        self.size += n
        self.largest = max(self.largest, n)
        return n


def test_a_large_value_is_compressed_and_decompressed_as_a_stream() -> None:
    array = np.arange(8 << 20, dtype=np.int64) % 1000  # 64 MiB
    serializer = resolve_serializer("compressed/pickle")
    sink = _Counting()
    tracemalloc.start()
    try:
        serializer.dump(array, sink)  # type: ignore[attr-defined]
        _, peak = tracemalloc.get_traced_memory()
        assert peak < 16 << 20  # chunks, never the whole serialized payload
        payload = serializer.dumps(array)
        tracemalloc.reset_peak()
        loaded = serializer.loads(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(loaded, array)  # type: ignore[arg-type]
    assert peak < array.nbytes + (16 << 20)  # the array itself, and chunks
    assert sink.size == len(payload)


def test_a_task_stores_and_hits_a_compressed_result() -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS, result_serializer="compressed/json")
    def rows(n: int) -> list[dict[str, int]]:
        calls.append(n)
        return [{"i": i, "square": i * i} for i in range(n)]

    assert rows(300) == rows(300)
    assert calls == [300]
    (record,) = Cache().records()
    assert record.serializer == "compressed/json"
    assert record.size_bytes < len(json.dumps(rows(300)))


NO_ZSTANDARD = """
import sys
sys.modules["zstandard"] = None  # as if not installed
from taskstash.exceptions import SerializationError
from taskstash.store import resolve_serializer
from taskstash.store.compression import open_decompressed
from taskstash.store.serializers import CompressedSerializer
serializer = resolve_serializer("compressed/pickle")
print(serializer.codec.name)
try:
    serializer.loads(bytes.fromhex(sys.argv[1]))
except SerializationError as exc:
    print(exc)
try:
    CompressedSerializer(compressionlib="zstandard")
except ModuleNotFoundError as exc:
    print(exc)
"""


def test_without_zstandard_zlib_is_the_default_and_zstandard_payloads_say_what_to_install() -> None:
    written = CompressedSerializer("pickle", compressionlib="zstandard").dumps([1, 2])
    child = subprocess.run(
        [sys.executable, "-c", NO_ZSTANDARD, written.hex()],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = child.stdout.splitlines()
    assert lines[0] == "zlib"
    assert "pip install 'taskstash[zstd]'" in lines[1]
    assert "pip install 'taskstash[zstd]'" in lines[2]
