"""Throughput of `taskstash.hash_bytes` / `hash_objects` against its peers, and cost per key.

Run the measurements with:

    pytest benches --benchmark-enable --benchmark-group-by=group --benchmark-columns=median,iqr,ops

Each group's table compares the contenders on the same input in the same run:

- `hash-256MiB-bytes`: a 256 MiB `bytes` through `taskstash.hash_bytes`, `taskstash.hash_objects`,
  `xxhash.xxh3_128_hexdigest`, `hashlib.md5`, `hashlib.sha256` and `joblib.hash`.
- `hash-256MiB-numpy`: a 256 MiB float64 array through `taskstash.hash_objects`,
  `taskstash.hash_bytes`, `xxhash.xxh3_128_hexdigest`, `joblib.hash` and `prefect_style_hash`.
- `key-dict5`, `key-list1000`, `key-dataframe1000x3`: one key of a dict of 5 scalars, a list of
  1000 ints and a 1000x3 float64 DataFrame by `taskstash.hash_objects`, `joblib.hash` and
  `prefect_style_hash`.

Targets:

- 256 MiB (bytes and numpy): taskstash at least 0.8x the throughput of python-xxhash's
  `xxh3_128_hexdigest` measured in the same run.
- dict of 5 scalars <= 2 us, list of 1000 ints <= 15 us, 1000x3 DataFrame <= 60 us per key.

Without `--benchmark-enable` (the default, `addopts = "--benchmark-disable"`) each body runs once
untimed on 1 MiB inputs as a smoke test; the assertions still check every result.
"""

import copy
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import cloudpickle
import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import xxhash
from bench_support import Benchmark

import taskstash

P = ParamSpec("P")
R = TypeVar("R")

MIB = 1 << 20
ROUNDS = 7


def prefect_style_hash(value: object) -> str:
    """Models Prefect's JSON-then-cloudpickle-then-md5 input hashing.

    Prefect 3 keys task inputs by serializing them to JSON (sorted keys) and, when a value is not
    JSON-serializable, by cloudpickling it instead; the key is the MD5 hex digest of those bytes.
    """
    try:
        payload = json.dumps(value, sort_keys=True).encode()
    except (TypeError, ValueError):
        payload = cloudpickle.dumps(value)
    return hashlib.md5(payload).hexdigest()


def md5_hexdigest(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_hex(digest: object, length: int = 32) -> None:
    assert isinstance(digest, str)
    assert re.fullmatch(f"[0-9a-f]{{{length}}}", digest), digest


def assert_size(benchmark: Benchmark, nbytes: int) -> None:
    """Large inputs are 256 MiB when measured, 1 MiB in the smoke run."""
    assert nbytes == (MIB if benchmark.disabled else 256 * MIB)


def run_large(benchmark: Benchmark, fn: Callable[..., R], value: object) -> R:
    return benchmark.pedantic(fn, args=(value,), rounds=ROUNDS, iterations=1, warmup_rounds=1)


# --- 256 MiB of bytes ---------------------------------------------------------------------------

BYTES = pytest.mark.benchmark(group="hash-256MiB-bytes")


@BYTES
def test_bytes_taskstash_hash_bytes(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    digest = run_large(benchmark, taskstash.hash_bytes, big_bytes)
    assert digest == xxhash.xxh3_128_hexdigest(big_bytes)


@BYTES
def test_bytes_taskstash_hash_objects(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    key = run_large(benchmark, taskstash.hash_objects, big_bytes)
    assert_hex(key)
    # Keys are type-tagged, so the key of bytes is not their raw digest, but it is stable.
    assert key != taskstash.hash_bytes(big_bytes)
    assert key == taskstash.hash_objects(big_bytes)


@BYTES
def test_bytes_xxhash_xxh3_128(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    assert_hex(run_large(benchmark, xxhash.xxh3_128_hexdigest, big_bytes))


@BYTES
def test_bytes_hashlib_md5(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    assert_hex(run_large(benchmark, md5_hexdigest, big_bytes))


@BYTES
def test_bytes_hashlib_sha256(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    assert_hex(run_large(benchmark, sha256_hexdigest, big_bytes), length=64)


@BYTES
def test_bytes_joblib_hash(benchmark: Benchmark, big_bytes: bytes) -> None:
    assert_size(benchmark, len(big_bytes))
    assert_hex(run_large(benchmark, joblib.hash, big_bytes))


# --- 256 MiB numpy float64 array ----------------------------------------------------------------

NUMPY = pytest.mark.benchmark(group="hash-256MiB-numpy")
Array = npt.NDArray[np.float64]


@NUMPY
def test_numpy_taskstash_hash_objects(benchmark: Benchmark, big_array: Array) -> None:
    assert_size(benchmark, big_array.nbytes)
    key = run_large(benchmark, taskstash.hash_objects, big_array)
    assert_hex(key)
    # Hashed by value (dtype, shape and data), not by identity or raw bytes alone.
    assert key != taskstash.hash_bytes(big_array.data)
    assert key == taskstash.hash_objects(big_array.copy())
    assert key != taskstash.hash_objects(big_array.reshape(2, -1))


@NUMPY
def test_numpy_taskstash_hash_bytes(benchmark: Benchmark, big_array: Array) -> None:
    assert_size(benchmark, big_array.nbytes)
    digest = run_large(benchmark, taskstash.hash_bytes, big_array)
    assert digest == xxhash.xxh3_128_hexdigest(big_array.data)


@NUMPY
def test_numpy_xxhash_xxh3_128(benchmark: Benchmark, big_array: Array) -> None:
    assert_size(benchmark, big_array.nbytes)
    assert_hex(run_large(benchmark, xxhash.xxh3_128_hexdigest, big_array))


@NUMPY
def test_numpy_joblib_hash(benchmark: Benchmark, big_array: Array) -> None:
    assert_size(benchmark, big_array.nbytes)
    assert_hex(run_large(benchmark, joblib.hash, big_array))


@NUMPY
def test_numpy_prefect_style_hash(benchmark: Benchmark, big_array: Array) -> None:
    assert_size(benchmark, big_array.nbytes)
    assert_hex(run_large(benchmark, prefect_style_hash, big_array))


# --- Small keys ---------------------------------------------------------------------------------

KEY_HASHERS: dict[str, Callable[[Any], str]] = {
    "taskstash": taskstash.hash_objects,
    "joblib": joblib.hash,
    "prefect": prefect_style_hash,
}
by_hasher = pytest.mark.parametrize("hasher", KEY_HASHERS.values(), ids=KEY_HASHERS.keys())


def check_key(key: str, hasher: Callable[[Any], str], same: object, different: object) -> None:
    """`key` is 32 hex digits, equal for an equal value and different for a changed one."""
    assert_hex(key)
    assert hasher(same) == key
    assert hasher(different) != key


@by_hasher
@pytest.mark.benchmark(group="key-dict5")
def test_key_dict5(benchmark: Benchmark, hasher: Callable[[Any], str]) -> None:
    value: dict[str, object] = {"a": 1, "b": 2.5, "c": "text", "d": True, "e": None}
    key = benchmark(hasher, value)
    # Same items in reverse insertion order: every contender ignores dict order.
    check_key(key, hasher, dict(reversed(value.items())), {**value, "a": 2})


@by_hasher
@pytest.mark.benchmark(group="key-list1000")
def test_key_list1000(benchmark: Benchmark, hasher: Callable[[Any], str]) -> None:
    value = list(range(1000))
    key = benchmark(hasher, value)
    check_key(key, hasher, list(value), [*value[:-1], 1000])


@by_hasher
@pytest.mark.benchmark(group="key-dataframe1000x3")
def test_key_dataframe1000x3(benchmark: Benchmark, hasher: Callable[[Any], str]) -> None:
    data = np.random.default_rng(0).random((1000, 3))
    value = pd.DataFrame(data, columns=list("abc"))
    key = benchmark(hasher, value)
    changed = data.copy()
    changed[0, 0] += 1.0
    check_key(key, hasher, copy.deepcopy(value), pd.DataFrame(changed, columns=list("abc")))
