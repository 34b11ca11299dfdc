"""Event-loop stalls of async tasks with large results: `python -m benches.async_storage`.

Gathers `--calls` calls of an `async def` task returning `--mib` MiB each, once cold (every call
runs and saves) and once warm (every call hits), with the memory layer off and on, each pair in
a fresh TASKSTASH_HOME. The results are built before the clock starts, so the task's body costs
nothing and what the loop waits for is taskstash's storage work. A ticker coroutine beside the
calls asks to wake every `--tick-ms` and records how late it woke: the longest delay is the
longest time the event loop could run nothing else. Printed per run: the wall time of the
gathered calls and the longest stall, medians of `--repeat` runs. With `--workers`, the loop's
default executor (where the storage work runs) has that many threads instead of asyncio's
default.

To compare with other code, run it with that code first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store.hits import flush_all_hits

MIB = 1 << 20


@dataclass(frozen=True)
class Run:
    """One gathered batch: its wall time and the loop's longest stall, both in seconds."""

    seconds: float
    stall: float


async def _ticker(interval: float, stop: asyncio.Event, delays: list[float]) -> None:
    """Records, tick after tick, how much later than asked the loop woke it."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(interval)
        delays.append(time.perf_counter() - asked - interval)


async def _batch(results: list[bytes], interval: float, memory: bool) -> Run:
    @task(cache_policy=INPUTS, cache_result_in_memory=memory)
    async def produce(i: int) -> bytes:
        await asyncio.sleep(0)
        return results[i]

    stop = asyncio.Event()
    delays: list[float] = []
    ticking = asyncio.create_task(_ticker(interval, stop, delays))
    await asyncio.sleep(interval * 2)  # the ticker is running before the first call starts
    started = time.perf_counter()
    values = await asyncio.gather(*(produce(i) for i in range(len(results))))
    seconds = time.perf_counter() - started
    stop.set()
    await ticking
    assert values == results
    return Run(seconds, max(delays, default=0.0))


async def _cold_then_warm(
    results: list[bytes], interval: float, memory: bool, workers: int | None
) -> list[Run]:
    if workers is not None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers))
    return [await _batch(results, interval, memory) for _ in ("cold", "warm")]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the batches and prints a table; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benches.async_storage")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--mib", type=float, default=4)
    parser.add_argument("--tick-ms", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5, help="report the median of this many")
    parser.add_argument("--workers", type=int, help="threads of the loop's default executor")
    args = parser.parse_args(argv)
    size = int(args.mib * MIB)
    results = [i.to_bytes(8, "little") * (size // 8) for i in range(args.calls)]
    workers = "asyncio's default" if args.workers is None else str(args.workers)
    print(
        f"{args.calls} gathered async calls, {args.mib:g} MiB results, median of "
        f"{args.repeat}, executor threads: {workers}"
    )
    print(f"{'memory layer':<14}{'run':<6}{'total s':>9}{'longest stall ms':>18}")
    for memory in (False, True):
        runs: list[list[Run]] = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as home:
                os.environ["TASKSTASH_HOME"] = home
                settings.reload()
                batches = _cold_then_warm(results, args.tick_ms / 1e3, memory, args.workers)
                runs.append(asyncio.run(batches))
                flush_all_hits()  # now, not after the directory is gone
        for phase, name in enumerate(("cold", "warm")):
            seconds = statistics.median(r[phase].seconds for r in runs)
            stall = statistics.median(r[phase].stall for r in runs)
            label = "on" if memory else "off"
            print(f"{label:<14}{name:<6}{seconds:>9.3f}{stall * 1e3:>18.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
