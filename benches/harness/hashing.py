"""Cache-key hashing: taskstash beside python-xxhash, hashlib, joblib.hash and Prefect's way.

- `hash-bytes` / `hash-array`: throughput on one large `bytes` / float64 array ("256 MiB");
- `key-dict5`, `key-list1000`, `key-dataframe1000x3`: one key of a small value.

For small values, xxhash and hashlib need bytes: they are given the value's pickle, the usual
do-it-yourself key (cachier's default is pickle + SHA-256). Such keys depend on dict insertion
order, so for them "the same value" is an equal copy in the same order; taskstash, joblib and
Prefect's keys are checked to ignore it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import taskstash

from .peers import NOT_INSTALLED, installed
from .plan import Plan
from .results import Timing
from .timing import calibrate, timed_repeat

Hasher = Callable[[Any], str]


def prefect_style_hash(value: object) -> str:
    """Models Prefect 3's input hashing: JSON (sorted keys), else cloudpickle; then MD5."""
    import cloudpickle

    try:
        payload = json.dumps(value, sort_keys=True).encode()
    except (TypeError, ValueError):
        payload = cloudpickle.dumps(value)
    return hashlib.md5(payload).hexdigest()


def _xxh3(data: Any) -> str:
    import xxhash

    digest: str = xxhash.xxh3_128_hexdigest(data)
    return digest


def _joblib(value: object) -> str:
    import joblib

    digest: str = joblib.hash(value)
    return digest


def _md5(data: Any) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _repeat_seconds(fn: Hasher, value: object, calls: int) -> float:
    return timed_repeat(fn, value, calls)[0]


def _pickled(digest: Hasher) -> Hasher:
    return lambda value: digest(pickle.dumps(value, protocol=5))


@dataclass(frozen=True)
class _Contender:
    label: str
    fn: Hasher
    module: str = ""
    canonical: bool = True  # equal values in another order get the same key


def _assert_hex(digest: object, length: int = 32) -> None:
    assert isinstance(digest, str), digest
    assert re.fullmatch(f"[0-9a-f]{{{length}}}", digest), digest


def _large_contenders(kind: str) -> list[_Contender]:
    contenders = [
        _Contender("taskstash.hash_objects", taskstash.hash_objects),
        _Contender("taskstash.hash_bytes", taskstash.hash_bytes),
        _Contender("xxhash xxh3_128", _xxh3, "xxhash"),
        _Contender("hashlib.md5", _md5),
        _Contender("hashlib.sha256", _sha256),
        _Contender("joblib.hash", _joblib, "joblib"),
    ]
    if kind == "array":
        contenders.append(_Contender("Prefect-style", prefect_style_hash, "cloudpickle"))
    return contenders


def _check_large(label: str, digest: str, value: Any) -> None:
    _assert_hex(digest, 64 if label == "hashlib.sha256" else 32)
    if label == "taskstash.hash_bytes" and installed("xxhash"):
        assert digest == _xxh3(value), "hash_bytes must equal xxhash's XXH3-128"
    if label == "taskstash.hash_objects":
        # Type-tagged and by value: not the raw digest, the same for a copy.
        assert digest != taskstash.hash_bytes(value)
        assert digest == taskstash.hash_objects(value.copy() if hasattr(value, "copy") else value)


def run_large(plan: Plan) -> list[Timing]:
    """Throughput on one large `bytes` and one large float64 array."""
    timings: list[Timing] = []
    rng = np.random.default_rng(1)
    inputs: dict[str, Any] = {
        "hash-bytes": rng.integers(0, 256, plan.hash_bytes, dtype=np.uint8).tobytes(),
        "hash-array": rng.random(plan.hash_bytes // 8),
    }
    for case, value in inputs.items():
        present: list[tuple[Timing, _Contender]] = []
        for contender in _large_contenders(case.removeprefix("hash-")):
            timing = Timing("hash", case, contender.label, calls=1)
            timings.append(timing)
            if contender.module and not installed(contender.module):
                timing.note = NOT_INSTALLED
                continue
            _check_large(contender.label, contender.fn(value), value)  # also the warm-up
            present.append((timing, contender))
        for _ in range(plan.hash_reps):
            for timing, contender in present:
                elapsed, digest = timed_repeat(contender.fn, value, 1)
                timing.samples.append(elapsed)
                _assert_hex(digest, 64 if contender.label == "hashlib.sha256" else 32)
    return timings


def _small_values() -> dict[str, tuple[object, object, object]]:
    """Case -> (value, the same value another way, a changed value)."""
    dict5: dict[str, object] = {"a": 1, "b": 2.5, "c": "text", "d": True, "e": None}
    values: dict[str, tuple[object, object, object]] = {
        "key-dict5": (dict5, dict(reversed(dict5.items())), {**dict5, "a": 2}),
        "key-list1000": (list(range(1000)), list(range(1000)), [*range(999), 1000]),
    }
    if installed("pandas"):
        import pandas as pd

        data = np.random.default_rng(0).random((1000, 3))
        changed = data.copy()
        changed[0, 0] += 1.0
        values["key-dataframe1000x3"] = (
            pd.DataFrame(data, columns=list("abc")),
            pd.DataFrame(data.copy(), columns=list("abc")),
            pd.DataFrame(changed, columns=list("abc")),
        )
    return values


SMALL_CONTENDERS = (
    _Contender("taskstash.hash_objects", taskstash.hash_objects),
    _Contender("xxhash xxh3_128 of pickle", _pickled(_xxh3), "xxhash", canonical=False),
    _Contender("hashlib.sha256 of pickle", _pickled(_sha256), canonical=False),
    _Contender("joblib.hash", _joblib, "joblib"),
    _Contender("Prefect-style", prefect_style_hash, "cloudpickle"),
)


def run_small(plan: Plan) -> list[Timing]:
    """Time of one key of each small value."""
    timings: list[Timing] = []
    for case, (value, same, changed) in _small_values().items():
        present: list[tuple[Timing, _Contender]] = []
        for contender in SMALL_CONTENDERS:
            timing = Timing("hash", case, contender.label)
            timings.append(timing)
            if contender.module and not installed(contender.module):
                timing.note = NOT_INSTALLED
                continue
            key = contender.fn(value)
            _assert_hex(key, 64 if "sha256" in contender.label else 32)
            if contender.canonical or not isinstance(value, dict):
                assert contender.fn(same) == key, f"{contender.label}: equal values, other keys"
            else:
                timing.note = "depends on dict order"
            assert contender.fn(changed) != key, f"{contender.label}: a change kept the key"
            timing.calls = calibrate(
                functools.partial(_repeat_seconds, contender.fn, value), plan.batch_seconds
            )
            present.append((timing, contender))
        for _ in range(plan.reps):
            for timing, contender in present:
                elapsed, key = timed_repeat(contender.fn, value, timing.calls)
                _assert_hex(key, 64 if "sha256" in contender.label else 32)
                timing.samples.append(elapsed / timing.calls)
    return timings
