"""Cost of a cache hit and of importing taskstash, beside the alternatives, in one run.

Run the measurements with:

    pytest benches/test_bench_cache.py --benchmark-enable --benchmark-group-by=group \
        --benchmark-columns=median,iqr,ops

Groups:

- `hit-small`: a hit on a trivial persisted function returning a small result:
  taskstash with the memory layer off (index row + result file each time) and on,
  `diskcache.Cache.memoize`, and `functools.lru_cache` (the floor).
- `miss-small`: compute + store of a small result (a new argument each round).
- `import`: `python -c "import taskstash"` as a whole process, beside `python -c "pass"`.

Targets: hit with the memory layer off <= diskcache's memoize hit; with it on <= 3 us; import
<= 80 ms as a whole process.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import diskcache
import pytest
from bench_support import Benchmark

from taskstash import task
from taskstash.cache_policies import INPUTS

P = ParamSpec("P")
R = TypeVar("R")


@pytest.fixture
def disk_cache(tmp_path: Path) -> Iterator[diskcache.Cache]:
    cache = diskcache.Cache(str(tmp_path / "diskcache"))
    yield cache
    cache.close()


HIT = pytest.mark.benchmark(group="hit-small")
MISS = pytest.mark.benchmark(group="miss-small")


def add_one(x: int) -> int:
    return x + 1


@HIT
@pytest.mark.parametrize("in_memory", [False, True], ids=["memory-off", "memory-on"])
def test_hit_taskstash(benchmark: Benchmark, in_memory: bool) -> None:
    cached = task(cache_policy=INPUTS, cache_result_in_memory=in_memory)(add_one)
    assert cached(1) == 2
    assert cached(1, return_state=True).is_cached()
    assert benchmark(cached, 1) == 2


@HIT
def test_hit_diskcache_memoize(benchmark: Benchmark, disk_cache: diskcache.Cache) -> None:
    cached = disk_cache.memoize()(add_one)
    assert cached(1) == 2
    assert benchmark(cached, 1) == 2
    assert disk_cache.stats()  # the cache is live


@HIT
def test_hit_lru_cache(benchmark: Benchmark) -> None:
    cached = functools.lru_cache(maxsize=None)(add_one)
    cached(1)
    assert benchmark(cached, 1) == 2


def fresh_arguments() -> Callable[[], tuple[tuple[int], dict[str, Any]]]:
    counter = itertools.count()
    return lambda: ((next(counter),), {})


@MISS
def test_miss_taskstash(benchmark: Benchmark) -> None:
    cached = task(cache_policy=INPUTS, cache_result_in_memory=False)(add_one)
    arguments = fresh_arguments()
    benchmark.pedantic(cached, setup=arguments, rounds=2000)  # type: ignore[call-arg]
    assert cached(0, return_state=True).is_cached()


@MISS
def test_miss_diskcache_memoize(benchmark: Benchmark, disk_cache: diskcache.Cache) -> None:
    cached = disk_cache.memoize()(add_one)
    arguments = fresh_arguments()
    benchmark.pedantic(cached, setup=arguments, rounds=2000)  # type: ignore[call-arg]
    assert len(disk_cache) > 0


IMPORT = pytest.mark.benchmark(group="import")


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


@IMPORT
def test_import_taskstash(benchmark: Benchmark) -> None:
    benchmark.pedantic(run_python, args=("import taskstash",), rounds=15, warmup_rounds=2)


@IMPORT
def test_import_nothing(benchmark: Benchmark) -> None:
    benchmark.pedantic(run_python, args=("pass",), rounds=15, warmup_rounds=2)
