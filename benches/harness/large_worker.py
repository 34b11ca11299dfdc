"""One side of the large-result benchmark, run in a process of its own by `large`.

    python -m <package>.large_worker store KIND NBYTES DIRECTORY CONTENDER...
    python -m <package>.large_worker hit KIND NBYTES DIRECTORY CONTENDER [--again]

KIND is "array" or "frame" (`workloads.large_array`, `workloads.large_frame`); every contender
keeps its files under DIRECTORY; CONTENDER is a key of `peers.BY_KEY`, or `pickle` for a plain
pickle file (the baseline).

`store` makes the result once and stores it with each CONTENDER (one miss each); it answers the
sum of all the result's numbers. `hit` calls CONTENDER's cached function once (or loads the
pickle file), then reads all of the result by summing it; it answers the call's seconds, the
peak RSS growth during the call, the RSS growth after the sum, the sum and its seconds, and with
`--again` the seconds of a second call. Everything the call needs is imported before it.

RSS is the resident set in /proc/self/status (Linux): VmRSS, and VmHWM for the peak, which is
reset just before the call by writing 5 to /proc/self/clear_refs. Elsewhere the memory fields
are null.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import pickle
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from . import workloads
from .peers import BY_KEY, taskstash_home
from .workers import answer

PICKLE = "pickle"
"""The baseline's contender key: `pickle.dump` to a file, `pickle.load` from it."""

STORED_WITH = {"joblib-mmap": "joblib"}
"""Contenders that hit another's store: joblib maps the arrays of what it stored either way."""

WORKLOADS: dict[str, Callable[[int], Any]] = {
    "array": workloads.large_array,
    "frame": workloads.large_frame,
}

_STATUS = Path("/proc/self/status")


def pickle_path(directory: Path) -> Path:
    """Where the baseline's pickle file is."""
    return directory / PICKLE / "result.pkl"


def _memory() -> dict[str, int] | None:
    """Resident set now and its peak, in bytes (None off Linux)."""
    try:
        lines = _STATUS.read_text().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024  # in kB
    return fields


def _reset_peak() -> None:
    """Makes VmHWM the current RSS, so that the peak is the call's and not the imports'."""
    with contextlib.suppress(OSError):  # off Linux, where _memory() is None too
        Path("/proc/self/clear_refs").write_text("5")


def _total(value: Any) -> float:
    """The sum of all the numbers of a large result: reads every byte of its data."""
    if isinstance(value, np.ndarray):
        return float(value.sum())
    return sum(float(value[name].to_numpy().sum()) for name in value.columns)


def _loader(
    key: str, kind: str, nbytes: int, directory: Path, stack: ExitStack
) -> Callable[[], Any]:
    """What loads the result for contender `key`: its cached function's call, or pickle.load."""
    if key == PICKLE:
        path = pickle_path(directory)

        def load() -> Any:
            with path.open("rb") as file:
                return pickle.load(file)

        return load
    contender = BY_KEY[key]
    stack.enter_context(taskstash_home(directory / "taskstash-home"))
    fn = contender.memoize(WORKLOADS[kind], directory / STORED_WITH.get(key, key), stack)
    return lambda: fn(nbytes)


def store(kind: str, nbytes: int, directory: Path, keys: list[str]) -> None:
    """Stores the result with each contender of `keys`; answers its sum."""
    workload = WORKLOADS[kind]
    value = workload(nbytes)
    with ExitStack() as stack:
        for key in keys:
            if key == PICKLE:
                path = pickle_path(directory)
                path.parent.mkdir()
                with path.open("wb") as file:
                    pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
                continue
            before = workloads.COMPUTED[workload.__name__]
            _loader(key, kind, nbytes, directory, stack)()
            assert workloads.COMPUTED[workload.__name__] == before + 1, f"{key} did not miss"
    answer({"sum": _total(value)})


def hit(kind: str, nbytes: int, directory: Path, key: str, again: bool) -> None:
    """Measures the first call (and with `again` a second one) in this process; answers."""
    if kind == "frame":
        import pandas  # noqa: F401  (rebuilding a frame needs it: not the call's cost)

        if importlib.util.find_spec("pyarrow") is not None:
            import pyarrow  # noqa: F401  (taskstash rebuilds a frame with it)
    with ExitStack() as stack:
        load = _loader(key, kind, nbytes, directory, stack)
        gc.collect()
        gc.disable()  # no collection of the imports' garbage inside the timed call
        _reset_peak()
        before = _memory()
        started = time.perf_counter()
        value = load()
        seconds = time.perf_counter() - started
        called = _memory()
        started = time.perf_counter()
        total = _total(value)
        touch_seconds = time.perf_counter() - started
        touched = _memory()
        assert workloads.COMPUTED[WORKLOADS[kind].__name__] == 0, f"{key} did not hit"
        again_seconds = None
        if again:
            del value  # as a caller replacing its result would
            started = time.perf_counter()
            load()
            again_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "seconds": seconds,
        "sum": total,
        "touch_seconds": touch_seconds,
        "again_seconds": again_seconds,
        "peak_growth": None,
        "touched_growth": None,
    }
    if before is not None and called is not None and touched is not None:
        result["peak_growth"] = called["VmHWM"] - before["VmRSS"]
        result["touched_growth"] = touched["VmRSS"] - before["VmRSS"]
    answer(result)


def main(argv: list[str]) -> None:
    """Runs `store` or `hit` (see the module's documentation)."""
    action, kind, nbytes, directory, *rest = argv
    if action == "store":
        store(kind, int(nbytes), Path(directory), rest)
    else:
        hit(kind, int(nbytes), Path(directory), rest[0], again="--again" in rest[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
