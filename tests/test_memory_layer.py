"""The memory layer: a hit from it returns what a hit from storage would, and forgets with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.store.memory import MISSING, MemoryLayer


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_a_caller_mutating_its_result_changes_no_later_hit() -> None:
    @task(cache_policy=INPUTS)
    def primes_below(n: int) -> list[int]:
        return [p for p in range(2, n) if all(p % d for d in range(2, p))]

    first = primes_below(10)
    first.append(999)
    second = primes_below(10)
    assert second == [2, 3, 5, 7]
    second.append(998)
    assert primes_below(10) == [2, 3, 5, 7]
    assert primes_below(10) is not primes_below(10)


def test_a_hit_from_memory_goes_through_the_serializer(taskstash_home: Path) -> None:
    @task(cache_policy=INPUTS, result_serializer="json")
    def pairs(n: int) -> dict[int, tuple[int, int]]:
        return {i: (i, i) for i in range(n)}

    computed: object = pairs(1)
    hit: object = pairs(1)
    assert computed == {0: (0, 0)}  # the computed value itself
    assert hit == {"0": [0, 0]}  # a hit: what JSON gives back, as in any other process
    off = pairs.with_options(cache_result_in_memory=False)
    from_storage: object = off(1)
    assert from_storage == hit


def test_invalidate_reaches_the_memory_layer() -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    def value(x: int) -> int:
        ran()
        return x

    value(1)
    value(1)
    assert ran.calls == 1
    cache = Cache()
    (record,) = cache.records()
    assert cache.invalidate(record.key)
    value(1)
    assert ran.calls == 2


def test_clear_and_prune_reach_the_memory_layer() -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    def value(x: int) -> int:
        ran()
        return x

    value(1)
    value(2)
    Cache().clear()
    value(1)
    value(2)
    assert ran.calls == 4
    Cache().prune(older_than=-1)
    value(1)
    assert ran.calls == 5


def test_invalidation_by_another_process_is_seen_by_a_new_process_only(
    taskstash_home: Path,
) -> None:
    # Another process's `taskstash clear` removes the record and the file; this process's
    # memory layer still answers (documented), a new process computes again.
    ran = Counter()

    @task(cache_policy=INPUTS)
    def value(x: int) -> int:
        ran()
        return x

    value(1)
    subprocess.run(
        [sys.executable, "-m", "taskstash", "clear", "--yes"],
        check=True,
        capture_output=True,
        env={"TASKSTASH_HOME": str(taskstash_home), "PATH": "/usr/bin:/bin"},
    )
    assert Cache().records() == []
    value(1)
    assert ran.calls == 1


def test_the_layer_is_bounded_by_bytes_and_entries() -> None:
    layer: MemoryLayer[str] = MemoryLayer(max_entries=3, max_bytes=100)
    layer.put("a", "A", None, 40)
    layer.put("b", "B", None, 40)
    layer.put("c", "C", None, 40)  # 120 bytes: "a" goes
    assert layer.get("a", 0) is MISSING
    assert layer.bytes == 80
    layer.put("big", "X", None, 101)  # larger than the whole layer: not kept, nothing evicted
    assert layer.get("big", 0) is MISSING
    assert (layer.get("b", 0), layer.get("c", 0)) == ("B", "C")
    layer.put("d", "D", None, 1)
    layer.put("e", "E", None, 1)  # four entries: "d", not used since it came, goes
    assert len(layer) == 3
    assert layer.get("d", 0) is MISSING
    layer.put("f", "F", None, 1)  # "b" and "c" were used: "e" goes before them
    assert layer.get("e", 0) is MISSING
    layer.put("g", "G", None, 1)  # their second chance spent, the oldest ("b") goes
    assert layer.get("b", 0) is MISSING
    assert (layer.get("c", 0), layer.get("f", 0), layer.get("g", 0)) == ("C", "F", "G")
    layer.put("d", "D", None, 1)  # all three used: each gets its second chance, "c" goes
    assert (layer.get("c", 0), layer.get("d", 0)) == (MISSING, "D")
    layer.put("d", "D2", 5.0, 1)  # replacing an entry does not count its size twice
    assert layer.bytes == 3
    assert layer.get("d", 4.0) == "D2"
    assert layer.get("d", 5.0) is MISSING  # expired
    with pytest.raises(ValueError, match="max_entries"):
        MemoryLayer(max_entries=0)


def test_a_result_too_large_for_the_layer_is_read_from_its_file(taskstash_home: Path) -> None:
    @task(cache_policy=INPUTS)
    def blob(n: int) -> bytes:
        return b"x" * n

    big = 2 << 20  # over LARGE_RESULT_BYTES: kept only in its file
    assert blob(big) == blob(big)
    for path in (taskstash_home / "storage").rglob("*"):
        if path.is_file():
            path.unlink()
    # Not in memory: the missing file makes the hit a miss, and the task runs again.
    assert blob(big) == b"x" * big
