"""A cache hit as the index grows: taskstash, memory layer off, at each of `plan.scale_records`.

One fresh TASKSTASH_HOME; each size has its own index file (`INPUTS.configure(key_storage=...)`)
and result storage. One task call creates an index and the record that is hit,
`indexgen.populate_index` adds the rest; then the hits are timed like the latency cases, rounds
alternating between the sizes so that the machine's drift does not favour one.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskstash import task
from taskstash.cache_policies import INPUTS

from . import workloads
from .indexgen import populate_index
from .peers import TASKSTASH_DISK, taskstash_home
from .plan import Plan
from .results import Scale, Timing
from .timing import calibrate, timed_repeat

ARGUMENT = 1


def _index_bytes(index: Path) -> int:
    files = (index, Path(f"{index}-wal"))
    return sum(os.path.getsize(path) for path in files if os.path.exists(path))


def _batch(cached: Callable[..., Any], calls: int) -> float:
    before = workloads.COMPUTED["add_one"]
    elapsed, result = timed_repeat(cached, ARGUMENT, calls)
    assert result == ARGUMENT + 1, result
    assert workloads.COMPUTED["add_one"] == before, "a hit ran the function"
    return elapsed


def run_scale(plan: Plan, root: Path) -> list[Scale]:
    """Hit latency at each index size."""
    scales: list[tuple[Scale, Callable[..., Any]]] = []
    directory = Path(tempfile.mkdtemp(prefix="scale-", dir=root))
    with taskstash_home(directory / "taskstash-home") as home:
        for records in plan.scale_records:
            index = home / f"index-{records}.db"
            cached: Callable[..., Any] = task(
                cache_policy=INPUTS.configure(key_storage=str(index)),
                result_storage=str(home / f"storage-{records}"),
                cache_result_in_memory=False,
            )(workloads.add_one)
            assert cached(ARGUMENT) == ARGUMENT + 1  # creates the index and the record
            generated = populate_index(index, records - 1)
            assert generated.total == records, generated
            timing = Timing("scale", f"hit-{records}", TASKSTASH_DISK.label)
            timing.calls = calibrate(functools.partial(_batch, cached), plan.batch_seconds)
            scale = Scale(records, generated.seconds, _index_bytes(index), timing)
            scales.append((scale, cached))
        for _ in range(plan.reps):
            for scale, cached in scales:
                scale.hit.samples.append(_batch(cached, scale.hit.calls) / scale.hit.calls)
    return [scale for scale, _ in scales]
