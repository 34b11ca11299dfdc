"""The functions the benchmarks cache.

Each body counts its runs in `COMPUTED`, so a case can prove that a timed hit really was a hit
(the count did not move) and a timed miss really ran the function (it moved once per call): a
peer set up wrongly fails loudly instead of reporting fast nonsense.
"""

from __future__ import annotations

import collections
import functools
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

Array = npt.NDArray[np.float64]

COMPUTED: collections.Counter[str] = collections.Counter()
"""How many times each workload's body ran in this process."""

STAMPEDE_LOG = "HARNESS_STAMPEDE_LOG"
"""Environment variable: the file `slow_square` appends one line per computation to."""

_template: Array | None = None


def set_array_bytes(nbytes: int) -> None:
    """Sizes the arrays `array_result` returns (random data: nothing compresses it away)."""
    global _template
    _template = np.random.default_rng(3).random(nbytes // 8)


def template() -> Array:
    """The array `array_result` copies."""
    if _template is None:
        raise RuntimeError("call set_array_bytes() first")
    return _template


def add_one(x: int) -> int:
    """A small result."""
    COMPUTED["add_one"] += 1
    return x + 1


def array_result(x: int) -> Array:
    """A large result: a fresh copy of the template with `x` in front."""
    COMPUTED["array_result"] += 1
    result = template().copy()
    result[0] = x
    return result


def first_element(array: Array) -> float:
    """A small result of a large argument."""
    COMPUTED["first_element"] += 1
    return float(array[0])


def large_array(nbytes: int) -> Array:
    """A large result: a float64 array of `nbytes` bytes (random data)."""
    COMPUTED["large_array"] += 1
    return _made_array(nbytes)


def large_frame(nbytes: int) -> pd.DataFrame:
    """A large result: a DataFrame of `nbytes` bytes, three float64 columns and one int64."""
    COMPUTED["large_frame"] += 1
    return _made_frame(nbytes)


# Made once per process and size: every contender storing a large result in one process (a miss
# each) gets the same object instead of waiting for a new gigabyte of random numbers.
@functools.cache
def _made_array(nbytes: int) -> Array:
    return np.random.default_rng(5).random(nbytes // 8)


@functools.cache
def _made_frame(nbytes: int) -> pd.DataFrame:
    import pandas as pd

    rows = nbytes // 32
    rng = np.random.default_rng(6)
    columns = {name: rng.random(rows) for name in ("x", "y", "z")}
    return pd.DataFrame({**columns, "n": np.arange(rows, dtype=np.int64)})


def slow_square(x: int, seconds: float) -> int:
    """The stampede's slow function: logs each computation to the file in $HARNESS_STAMPEDE_LOG.

    One `write` of a short line to a file opened with O_APPEND is atomic, so callers in threads
    and processes never interleave their lines.
    """
    log = os.open(os.environ[STAMPEDE_LOG], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(log, f"{x}\n".encode())
    finally:
        os.close(log)
    time.sleep(seconds)
    return x * x
