"""The index on PostgreSQL beside SQLite: a hit, a miss, and 8 processes at once.

A PostgreSQL cluster is started here on 127.0.0.1 (with `tests/pg_support.py`, the test suite's;
like the tests' cluster it runs without fsync, so a miss's commit costs no disk flush). For each
database, one process calls a task on new arguments (misses), then on the same ones again
(hits), with the memory layer off so that every hit asks the index and reads the result file.
Beside them, what the issue's target is measured against: a bare `SELECT` of the hit path's
columns by primary key, on a plain driver connection, and the read of the result file. Then 8
processes call the task at once, each alternating hits on shared keys and misses on its own
new arguments, and the calls per second of all of them together are counted.

Target (issue 12): a hit on PostgreSQL costs at most one round trip more than the bare `SELECT`
plus the read of the result; on loopback, one round trip is taken as the bare `SELECT` itself.
It is judged on the store's hit path (`Store.fetch`); a task call's hit adds the work of the
call itself (its key, its run record, deserializing) and a share of the batched hit writes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .peers import taskstash_home
from .plan import Plan
from .results import Timing

_TESTS = Path(__file__).resolve().parent.parent.parent / "tests"
_WORKER = Path(__file__).resolve().parent / "postgres_worker.py"

SECTION = "postgres"
PROCESSES = 8
_SELECT = (
    "SELECT storage, location, checksum, serializer, expires_at, size_bytes FROM records "
    "WHERE key = {}"
)


@dataclass
class Measured:
    """One database's numbers.

    Attributes:
        database: "SQLite" or "PostgreSQL".
        timings: Seconds per call, by operation (`hit`, `miss`, `fetch`: the store's hit path
            alone, `select`, `read`).
        throughput: Calls per second of `PROCESSES` processes at once, half hits, half misses.
    """

    database: str
    timings: dict[str, Timing] = field(default_factory=dict)
    throughput: float = 0.0

    def median_ms(self, operation: str) -> float:
        """The median of an operation, milliseconds."""
        return (self.timings[operation].median or 0.0) * 1000


def _calls(plan: Plan) -> int:
    return 3 if plan.smoke else 300


@contextmanager
def _server() -> Iterator[Any]:
    """The loopback PostgreSQL cluster, removed afterwards."""
    sys.path.insert(0, str(_TESTS))
    try:
        from pg_support import PostgresServer, binaries  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(_TESTS))
    bin_dir = binaries()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's server is not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        yield server
    finally:
        server.remove()


@contextmanager
def _index(url: str | None) -> Iterator[None]:
    """`TASKSTASH_INDEX_URL` set to `url` (or left unset) for the block."""
    from taskstash import settings

    if url is not None:
        os.environ["TASKSTASH_INDEX_URL"] = url
    settings.reload()
    try:
        yield
    finally:
        os.environ.pop("TASKSTASH_INDEX_URL", None)
        settings.reload()


def _timed(operation: str, database: str, call: Callable[[Any], object], args: list[Any]) -> Timing:
    samples = []
    for argument in args:
        started = time.perf_counter()
        call(argument)
        samples.append(time.perf_counter() - started)
    return Timing(SECTION, operation, database, samples, 1)


def _bare_select(url: str | None, index_file: Path) -> Callable[[str], object]:
    """A plain driver connection's `SELECT` of the hit path's columns by key."""
    if url is None:
        conn = sqlite3.connect(index_file)
        sql = _SELECT.format("?")
        return lambda key: conn.execute(sql, (key,)).fetchone()
    import psycopg

    pg = psycopg.connect(url, autocommit=True)
    sql = _SELECT.format("%s")
    return lambda key: pg.execute(sql, (key,), prepare=True).fetchone()


def _measure_one(database: str, url: str | None, home: Path, calls: int) -> Measured:
    from taskstash import settings, task
    from taskstash.cache_policies import INPUTS
    from taskstash.store import open_store, resolve_storage

    measured = Measured(database)
    with taskstash_home(home), _index(url):
        cached = task(name="bench", cache_policy=INPUTS, cache_result_in_memory=False)(_body)
        args = list(range(calls))
        measured.timings["miss"] = _timed("miss", database, cached, args)
        measured.timings["hit"] = _timed("hit", database, cached, args)
        current = settings.current()
        store = open_store(current.index)
        rows = store.index.connection().execute("SELECT key, location FROM records").fetchall()
        keys = [str(key) for key, _ in rows]
        files = [Path(current.local_storage_path, location) for _, location in rows]
        select = _bare_select(url, Path(current.index_path))
        measured.timings["select"] = _timed("select", database, select, keys)
        measured.timings["read"] = _timed("read", database, Path.read_bytes, files)
        storage = resolve_storage(None, current.local_storage_path)
        fetch = lambda key: store.fetch(key, time.time(), storage)  # noqa: E731
        measured.timings["fetch"] = _timed("fetch", database, fetch, keys)
        measured.throughput = _throughput(home, url, calls)
    return measured


def _body(x: int) -> list[int]:
    return [x] * 100  # a small result, about 300 bytes pickled


def _throughput(home: Path, url: str | None, calls: int) -> float:
    """Calls per second of `PROCESSES` processes, each `calls` calls, started together."""
    env = {**os.environ, "TASKSTASH_HOME": str(home)}
    if url is not None:
        env["TASKSTASH_INDEX_URL"] = url
    workers = [
        subprocess.Popen(
            [sys.executable, str(_WORKER), str(calls), str(n)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    for worker in workers:  # each has imported taskstash and made its first call
        assert worker.stdout is not None
        if worker.stdout.readline() != "ready\n":
            raise RuntimeError("a benchmark worker failed to start")
    started = time.perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        worker.communicate(timeout=600)
        if worker.returncode:
            raise RuntimeError(f"a benchmark worker failed ({worker.returncode})")
    return PROCESSES * calls / (time.perf_counter() - started)


def run_postgres(plan: Plan, root: Path) -> list[Measured]:
    """Measures SQLite, then PostgreSQL on a loopback cluster of its own."""
    calls = _calls(plan)
    measured = [_measure_one("SQLite", None, root / "sqlite", calls)]
    with _server() as server:
        url = server.create_index_url()
        measured.append(_measure_one("PostgreSQL", url, root / "postgres", calls))
    return measured


def render(measured: list[Measured]) -> str:
    """A Markdown table of both databases, and whether the hit target is met."""
    names = [each.database for each in measured]
    lines = [f"| median per call | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for operation, label in (
        ("hit", "hit (index lookup, result file read, decode)"),
        ("miss", "miss (compute, store the file, commit the row)"),
        ("fetch", "the store's hit path alone (`Store.fetch`: lookup, read, checksum)"),
        ("select", "bare `SELECT` by primary key"),
        ("read", "read of the result file"),
    ):
        cells = " | ".join(f"{each.median_ms(operation):.3f} ms" for each in measured)
        lines.append(f"| {label} | {cells} |")
    cells = " | ".join(f"{each.throughput:,.0f} calls/s" for each in measured)
    lines.append(f"| {PROCESSES} processes at once, half hits, half misses | {cells} |")
    postgres = measured[-1]
    bare = postgres.median_ms("select") + postgres.median_ms("read")
    over = postgres.median_ms("fetch") - bare
    round_trip = postgres.median_ms("select")
    verdict = "met" if over <= round_trip else "not met"
    lines.append("")
    lines.append(
        f"PostgreSQL hit target ({verdict}): the store's hit path costs {over:.3f} ms more than "
        f"the bare `SELECT` plus the result read, against one round trip (the bare `SELECT`) "
        f"of {round_trip:.3f} ms. A task call's hit (the first row) adds the call's own work: "
        "its key, its run record, deserializing, and a share of the batched hit writes."
    )
    return "\n".join(lines) + "\n"
