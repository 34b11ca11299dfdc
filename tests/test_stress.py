"""Many processes and threads on one cache (index on SQLite and on PostgreSQL): no errors, no
wrong values, a consistent store."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

from taskstash import settings
from taskstash.store import open_store, resolve_storage
from taskstash.store.results import split_result

WORKER = Path(__file__).parent / "stress_worker.py"


def run_workers(mode: str, processes: int, threads: int, calls: int, keys: int, log: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(threads), str(calls), str(keys), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [child.communicate(timeout=240)[0] for child in children]
    failed = [out for child, out in zip(children, outputs, strict=True) if child.returncode]
    assert not failed, "\n".join(failed)
    assert not any("database is locked" in out for out in outputs)
    # Concurrent evictions and saves of one key must never leave a row without its file, which
    # a reader would report as a damaged result.
    assert not any("WARNING" in out for out in outputs), "\n".join(outputs)


def assert_store_consistent() -> int:
    """Every index row has its result file, intact and for its key; every file has its row."""
    current = settings.reload()
    store = open_store(current.index)
    storage = resolve_storage(None, current.local_storage_path)
    rows = (
        store.index.connection().execute("SELECT key, location, checksum FROM records").fetchall()
    )
    for key, location, checksum in rows:
        data = storage.read(location)
        assert data is not None, f"row {key} has no file"
        header, _ = split_result(data)
        assert header["key"] == key
        assert header["checksum"] == checksum, f"row {key} does not describe its file"
    assert sorted(storage.locations()) == sorted(location for _, location, _ in rows)
    return len(rows)


def test_serializable_computes_each_key_once_across_processes_and_threads(
    index_backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "computations.log"
    run_workers("serializable", processes=6, threads=8, calls=25, keys=10, log=log)
    computed = collections.Counter(line.split()[1] for line in log.read_text().splitlines())
    assert computed == {str(x): 1 for x in range(10)}
    assert assert_store_consistent() == 10


def test_mixed_hits_misses_refreshes_and_evictions_stay_correct(
    index_backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "computations.log"
    run_workers("mixed", processes=6, threads=8, calls=150, keys=12, log=log)
    assert len(log.read_text().splitlines()) >= 12  # every key was computed at least once
    assert_store_consistent()
