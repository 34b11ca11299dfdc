"""The native XXH3-128 against the reference implementation (PyPI `xxhash`)."""

from __future__ import annotations

import array
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from taskstash import hash_bytes
from taskstash.hashing import Hasher


def test_known_vectors() -> None:
    assert hash_bytes(b"hello world") == "df8d09e93f874900a99b8775cc15b6c7"
    assert hash_bytes(b"") == xxhash.xxh3_128_hexdigest(b"")


@given(st.binary(max_size=5000))
def test_bytes_match_the_oracle(data: bytes) -> None:
    assert hash_bytes(data) == xxhash.xxh3_128_hexdigest(data)


@given(st.binary(max_size=3000))
def test_buffers_are_hashed_by_their_bytes(data: bytes) -> None:
    expected = xxhash.xxh3_128_hexdigest(data)
    assert hash_bytes(bytearray(data)) == expected
    assert hash_bytes(memoryview(data)) == expected


def test_sizes_around_every_internal_boundary_match_the_oracle() -> None:
    # XXH3 switches algorithms at 16, 128 and 240 bytes and streams in 1 KiB blocks; the native
    # side gathers writes below 4 KiB and streams past 64 KiB. Past 1 MiB it releases the GIL.
    rng = np.random.default_rng(7)
    for size in [0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 4095, 4096, 65536, 65537]:
        data = rng.bytes(size)
        assert hash_bytes(data) == xxhash.xxh3_128_hexdigest(data), size
    large = rng.bytes((1 << 20) + 5)
    assert hash_bytes(large) == xxhash.xxh3_128_hexdigest(large)


def test_numpy_arrays_are_hashed_in_place_by_their_bytes() -> None:
    values = np.arange(100_000, dtype=np.float64)
    assert hash_bytes(values) == xxhash.xxh3_128_hexdigest(values.tobytes())
    grid = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    assert hash_bytes(grid) == xxhash.xxh3_128_hexdigest(grid.tobytes())
    numbers = array.array("d", [1.5, 2.5])
    assert hash_bytes(numbers) == xxhash.xxh3_128_hexdigest(numbers.tobytes())


def test_non_contiguous_buffers_are_refused_with_a_remedy() -> None:
    strided = np.arange(20, dtype=np.int64)[::2]
    with pytest.raises(BufferError, match="ascontiguousarray"):
        hash_bytes(strided)


def test_objects_without_the_buffer_protocol_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        hash_bytes("text")


@given(st.lists(st.binary(max_size=9000), max_size=8))
def test_incremental_hasher_equals_the_oracle_streaming(chunks: list[bytes]) -> None:
    ours = Hasher()
    oracle = xxhash.xxh3_128()
    for chunk in chunks:
        ours.update(chunk)
        oracle.update(chunk)
        assert ours.hexdigest() == oracle.hexdigest()
    assert ours.digest() == oracle.digest()
    assert Hasher(b"".join(chunks)).hexdigest() == oracle.hexdigest()


def test_threads_hashing_at_once_agree_with_the_oracle() -> None:
    rng = np.random.default_rng(3)
    blobs = [rng.bytes(int(size)) for size in rng.integers(0, 3 << 20, size=32)]
    expected = [xxhash.xxh3_128_hexdigest(blob) for blob in blobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(hash_bytes, blobs)) == expected
