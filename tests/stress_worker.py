"""One process of the stress test: threads calling tasks over a few shared keys.

Run by tests/test_stress.py as `python stress_worker.py MODE THREADS CALLS KEYS LOG`, with
TASKSTASH_HOME set to the shared cache. MODE is `serializable` (only calls: each key must be
computed once over all processes) or `mixed` (READ_COMMITTED calls, refreshes and evictions).
Every computation appends a line to LOG; every wrong value or exception is printed and makes the
process exit non-zero.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.destinations import index_path
from taskstash.store import open_store, resolve_storage


def expected(x: int) -> list[int]:
    return [x, x * x, len(str(x))] * 50


def main(mode: str, threads: int, calls: int, keys: int, log_path: str) -> int:
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def compute(x: int) -> list[int]:
        os.write(log, f"{os.getpid()} {x}\n".encode())  # one write: atomic with O_APPEND
        time.sleep(0.01 if mode == "mixed" else 0.2)
        return expected(x)

    policy = INPUTS.configure(isolation_level="SERIALIZABLE") if mode == "serializable" else INPUTS
    cached = task(name="stressed", cache_policy=policy, cache_result_in_memory=False)(compute)
    refreshing = cached.with_options(refresh_cache=True)
    store = open_store(index_path(cached))
    # The evicting threads delete rows that other processes wrote, as `Cache` does: configure
    # the storage those rows name first (a row naming any other storage is left alone).
    resolve_storage(cached.result_storage, settings.current().local_storage_path)
    failures: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(calls):
            x = rng.randrange(keys)
            try:
                roll = rng.random()
                if mode == "mixed" and roll < 0.1:
                    value = refreshing(x)
                elif mode == "mixed" and roll < 0.2:
                    row = (
                        store.index.connection()
                        .execute("SELECT key FROM records ORDER BY random() LIMIT 1")
                        .fetchone()
                    )
                    if row is not None:
                        store.delete(row[0])
                    continue
                else:
                    value = cached(x)
                if value != expected(x):
                    failures.append(f"wrong value for {x}: {value!r:.60}")
            except Exception:
                failures.append(traceback.format_exc())

    pool = [threading.Thread(target=worker, args=(os.getpid() * 100 + i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    store.flush_hits()
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    mode, threads, calls, keys, log_path = sys.argv[1:]
    raise SystemExit(main(mode, int(threads), int(calls), int(keys), log_path))
