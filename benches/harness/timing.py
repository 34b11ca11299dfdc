"""Timing primitives: one batch of calls, and how many calls make a batch worth timing."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

Batch = Callable[[int], float]
"""Runs n calls and returns the seconds they took."""


def timed(fn: Callable[..., Any], arguments: Sequence[object]) -> tuple[float, list[Any]]:
    """Calls `fn` once per argument; returns the seconds taken and the results.

    The collector is paused while timing (as `timeit` does), so that a collection triggered by
    one contender's garbage is not billed to the next one.
    """
    results: list[Any] = []
    append = results.append
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for argument in arguments:
            append(fn(argument))
        elapsed = time.perf_counter() - started
    finally:
        if enabled:
            gc.enable()
    return elapsed, results


def timed_repeat(fn: Callable[..., Any], argument: object, calls: int) -> tuple[float, Any]:
    """Calls `fn(argument)` `calls` times; returns the seconds taken and the last result.

    Each result but the last is dropped at once, as `timeit` does: a caller that keeps the
    previous result while it gets the next one changes how the allocator reuses memory, which
    can hide (or add) the cost of fresh pages for large results.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(calls - 1):
            fn(argument)
        result = fn(argument)
        elapsed = time.perf_counter() - started
    finally:
        if enabled:
            gc.enable()
    return elapsed, result


def calibrate(batch: Batch, target_seconds: float, most: int = 1 << 20) -> int:
    """How many calls make one batch last about `target_seconds` (at least 1, at most `most`).

    Grows a trial batch until it lasts a fifth of the target, then scales up, so that a slow
    contender (milliseconds a call) is not called thousands of times just to be calibrated.
    """
    if target_seconds <= 0:
        return 1
    calls = 1
    while True:
        elapsed = batch(calls)
        if elapsed >= target_seconds / 5 or calls >= most:
            return max(1, min(most, round(calls * target_seconds / max(elapsed, 1e-9))))
        grow = target_seconds / 5 / max(elapsed, 1e-9)
        calls = min(most, max(calls * 2, int(calls * min(grow, 10.0))))
