"""One of the processes of the `--only postgres` throughput measure.

`python postgres_worker.py CALLS N`, with the cache (and index) of the environment: stores (or
finds) the results of the shared arguments, prints `ready`, waits for a line on stdin, then
makes CALLS calls, alternating a hit (a shared argument) and a miss (an argument of its own,
new).
"""

from __future__ import annotations

import sys

from taskstash import task
from taskstash.cache_policies import INPUTS

SHARED = 100


def _body(x: int) -> list[int]:
    return [x] * 100


def main(calls: int, n: int) -> None:
    cached = task(name="bench", cache_policy=INPUTS, cache_result_in_memory=False)(_body)
    for x in range(SHARED):  # not measured: the hits to come, connections opened
        cached(x)
    print("ready", flush=True)
    sys.stdin.readline()
    fresh = 1_000_000 * (n + 1)
    for i in range(calls):
        cached(i % SHARED if i % 2 == 0 else fresh + i)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
