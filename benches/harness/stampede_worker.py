"""One side of a stampede, run in its own process by `stampede`.

    python -m <package>.stampede_worker threads CONTENDER DIRECTORY CALLERS SECONDS HANG_SECONDS
    python -m <package>.stampede_worker warm CONTENDER DIRECTORY
    python -m <package>.stampede_worker process CONTENDER DIRECTORY SECONDS

`threads`: calls `slow_square(0, 0.0)` once, then starts CALLERS threads that call
`slow_square(7, SECONDS)` at once (a barrier), waits up to HANG_SECONDS for each, prints
`RESULT {json}` and leaves at once, abandoning hung threads (that is why it runs in a process of
its own). `warm`: calls `slow_square(0, 0.0)` once. `process`: one caller; sets up, prints
`READY`, waits for a line on stdin, calls, prints `RESULT {json}`.

The first call of `slow_square(0, 0.0)`, alone, makes the cache exist (an index, a directory)
before the stampede, which then measures only the race for one new key. (Done by every process
at once, it would be a stampede of its own: cachier's processes hang on it.) The caches live
under DIRECTORY, shared by all callers; computations are logged to $HARNESS_STAMPEDE_LOG.

A worker whose parent is gone (the harness was killed) leaves at once, even from a hung call.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .peers import BY_KEY, Contender, taskstash_home
from .workers import answer
from .workloads import slow_square

ARGUMENT = 7


def _setup(contender_key: str, directory: Path, stack: ExitStack) -> Callable[..., Any]:
    contender = BY_KEY[contender_key]
    stack.enter_context(taskstash_home(directory / "taskstash-home"))
    return contender.memoize(slow_square, directory / contender.key, stack)


def _warm(fn: Callable[..., Any]) -> None:
    assert fn(0, 0.0) == 0


def _exit_with_parent() -> None:
    """Leaves as soon as the parent process is gone, so that no worker outlives the harness."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _call(fn: Callable[..., Any], seconds: float) -> str | None:
    """Calls the stampede's function; returns what went wrong, if anything."""
    try:
        value = fn(ARGUMENT, seconds)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if value == ARGUMENT * ARGUMENT else f"returned {value!r}"


def threads(fn: Callable[..., Any], callers: int, seconds: float, hang_seconds: float) -> None:
    """Runs the threads stampede and reports it."""
    started = [0.0]
    durations: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def release() -> None:  # run once, by the last thread through the barrier, before any call
        started[0] = time.perf_counter()

    barrier = threading.Barrier(callers + 1, action=release)

    def caller() -> None:
        barrier.wait()
        error = _call(fn, seconds)
        with lock:
            durations.append(time.perf_counter() - started[0])
            if error is not None:
                errors.append(error)

    workers = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    for worker in workers:
        worker.start()
    barrier.wait()
    deadline = started[0] + hang_seconds
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    with lock:
        hung = sum(worker.is_alive() for worker in workers)
        answer({"durations": list(durations), "hung": hung, "errors": list(errors)})


def process(contender: Contender, fn: Callable[..., Any], seconds: float) -> None:
    """Waits for the go, calls once, reports."""
    if contender.connect is not None:
        contender.connect()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sys.stdin.readline()
    answer({"error": _call(fn, seconds)})


def main(argv: list[str]) -> None:
    """Runs one side of a stampede (see the module's documentation)."""
    _exit_with_parent()
    mode, contender_key, directory = argv[0], argv[1], Path(argv[2])
    with ExitStack() as stack:
        fn = _setup(contender_key, directory, stack)
        if mode == "threads":
            _warm(fn)
            threads(fn, int(argv[3]), float(argv[4]), float(argv[5]))
        elif mode == "warm":
            _warm(fn)
        else:
            process(BY_KEY[contender_key], fn, float(argv[3]))
        # Leave now: hung threads are abandoned, not waited for, and a peer's cleanup must not
        # hold up a caller that already has its value.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
