"""Hits on a large result (1 GiB in a full run): a float64 array and a DataFrame.

For each kind, one process stores the result with every contender (taskstash, diskcache, joblib
and a plain pickle file, the baseline); the files are synced to disk, then read once, so that
every hit finds them in the page cache (warm, as in the other cases). Then each contender's hit
runs in a fresh process (`large_worker hit`), `plan.large_reps` times, round after round: its
first call is timed and its peak RSS growth taken, then all of the result is read and the RSS
growth taken again. joblib is measured loading copies (its default) and with `mmap_mode='r'`,
from the same stored files. A kind's files are deleted before the next kind is made.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taskstash.store.mapped import SETTLED_SECONDS

from . import workers
from .large_worker import PICKLE, STORED_WITH
from .peers import LARGE_CONTENDERS, NOT_INSTALLED, TASKSTASH, installed
from .plan import Plan
from .results import LargeHit

KINDS = (("array", "array"), ("frame", "DataFrame"))
"""Each kind of large result and how the report names it."""

DESCRIPTION = (
    "The array holds random float64 numbers; the DataFrame three columns of random float64 "
    "numbers and an int64 column (0, 1, 2...), with a default index."
)

PICKLE_LABEL = f"pickle.load (protocol {pickle.HIGHEST_PROTOCOL}, the baseline)"

_WORKER = workers.module("large_worker")
_TIMEOUT = 600.0
_CHUNK = 16 << 20


def _run(arguments: list[str]) -> dict[str, Any]:
    """Runs a worker; its answer."""
    done = subprocess.run(
        [sys.executable, "-m", _WORKER, *arguments],
        env=workers.environment(),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    result = workers.parse(done.stdout)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"large_worker {' '.join(arguments)} failed:\n{done.stderr}")
    return result


def _read_all(directory: Path) -> None:
    """Reads every file under `directory` once: afterwards they are in the page cache."""
    buffer = bytearray(_CHUNK)
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb", buffering=0) as file:
                while file.readinto(buffer):
                    pass


def _rows(kind: str, nbytes: int) -> list[tuple[LargeHit, str]]:
    """The rows of a kind and the contender key of each row that can be measured."""
    rows = [(LargeHit(kind, nbytes, PICKLE_LABEL), PICKLE)]
    for contender in LARGE_CONTENDERS:
        row = LargeHit(kind, nbytes, contender.label)
        if not contender.installed:
            row.note = NOT_INSTALLED
        elif contender is TASKSTASH and kind == "frame" and not installed("pyarrow"):
            row.note = "pickled: pyarrow is not installed"
        rows.append((row, contender.key))
    return rows


def _measure_kind(kind: str, plan: Plan, directory: Path) -> list[LargeHit]:
    nbytes = plan.large_bytes
    rows = _rows(kind, nbytes)
    measured = [(row, key) for row, key in rows if row.note != NOT_INSTALLED]
    stores = [key for _, key in measured if key not in STORED_WITH]
    stored = _run(["store", kind, str(nbytes), str(directory), *stores])
    stored_at = time.time()
    os.sync()  # no writeback of the stored files during the hits
    _read_all(directory)
    # A file mapped in its first seconds is checked again on every hit: wait, so that the second
    # hit shows a settled file, as a cache's files usually are.
    time.sleep(max(0.0, stored_at + SETTLED_SECONDS - time.time()))
    for _ in range(plan.large_reps):
        for row, key in measured:
            again = ["--again"] if key == TASKSTASH.key else []
            result = _run(["hit", kind, str(nbytes), str(directory), key, *again])
            if not math.isclose(result["sum"], stored["sum"], rel_tol=1e-9):
                raise RuntimeError(f"{row.contender} hit a wrong {kind}: sum {result['sum']}")
            row.seconds.append(result["seconds"])
            row.touch_seconds.append(result["touch_seconds"])
            if result["again_seconds"] is not None:
                row.again_seconds.append(result["again_seconds"])
            if result["peak_growth"] is not None:
                row.peak_growth.append(result["peak_growth"])
                row.touched_growth.append(result["touched_growth"])
    return [row for row, _ in rows]


def run_large(plan: Plan, root: Path) -> list[LargeHit]:
    """Every kind, every contender; each kind's files under `root` are gone afterwards."""
    hits: list[LargeHit] = []
    for kind, _ in KINDS:
        directory = Path(tempfile.mkdtemp(prefix=f"large-{kind}-", dir=root))
        try:
            hits += _measure_kind(kind, plan, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return hits
