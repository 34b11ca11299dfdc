"""The one command: `python -m benches.harness [--smoke] [--out DIR] [--only NAME]`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import (
    cases,
    hashing,
    imports,
    large,
    machine,
    peers,
    postgres,
    report,
    runners,
    s3,
    scale,
    stampede,
)
from .chart import available as chart_available
from .chart import write_chart
from .plan import FULL, SMOKE, Plan
from .results import Results

T = TypeVar("T")

BENCHES = Path(__file__).resolve().parent.parent
DEFAULT_OUT = BENCHES / "results"
COMMAND = "python -m benches.harness"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="every benchmark once on tiny sizes (for the tests)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where the report goes (default: {DEFAULT_OUT}; a temporary directory with --smoke)",
    )
    parser.add_argument(
        "--only",
        choices=["s3", "runners", "postgres", "large"],
        help="run one benchmark and print its table: s3 (a cache on a loopback S3 server, "
        "from two machines), runners (mapped calls on a Dask LocalCluster and a thread pool), "
        "postgres (the index on a loopback PostgreSQL beside SQLite), large (hits on a 1 GiB "
        "array and DataFrame, each in a fresh process)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite report.md and chart.png from OUT/results.json",
    )
    return parser.parse_args(argv)


def _step(name: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    print(f"{name} ...", file=sys.stderr, flush=True)
    value = work()
    print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return value


def _isolate_peers(root: Path) -> None:
    """Keeps peers that write to a home directory out of the user's (Prefect, cachier)."""
    os.environ["PREFECT_HOME"] = str(root / "prefect-home")
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no telemetry from a benchmark
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg-cache")  # cachier's default directory


def measure(plan: Plan, root: Path) -> Results:
    """Runs every benchmark of `plan`, with scratch files under `root`."""
    started = time.perf_counter()
    results = Results(
        smoke=plan.smoke,
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        duration=0.0,
        machine=machine.describe(BENCHES.parent),
        versions={name: peers.version(name) for name in peers.DISTRIBUTIONS},
        plan=dataclasses.asdict(plan),
    )
    results.timings += _step("import time", lambda: imports.run_imports(plan))
    for case in cases.cases(plan):
        run = functools.partial(cases.run_case, case, peers.LATENCY_CONTENDERS, plan, root)
        results.timings += _step(case.key, run)
    results.timings += _step(
        "hit time by size",
        lambda: cases.run_sizes(plan, peers.LATENCY_CONTENDERS, root),
    )
    results.large = _step("large results", lambda: large.run_large(plan, root))
    results.timings += _step("hashing, large", lambda: hashing.run_large(plan))
    results.timings += _step("hashing, small", lambda: hashing.run_small(plan))
    results.stampedes = _step("stampede", lambda: stampede.run_stampedes(plan, root))
    results.scale = _step("index size", lambda: scale.run_scale(plan, root))
    results.runners = _step("task runners", lambda: runners.run_runners(plan, root))
    results.duration = time.perf_counter() - started
    return results


def write(results: Results, out: Path) -> None:
    """Writes results.json, report.md and (if matplotlib is installed) chart.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results.write(out / "results.json")
    command = COMMAND + (" --smoke" if results.smoke else "")
    (out / "report.md").write_text(report.render(results, command))
    if chart_available():
        write_chart(results, out / "chart.png")
    elif not results.smoke:
        raise SystemExit("matplotlib is missing: pip install -e '.[bench]'")


def _only(benchmark: str, plan: Plan) -> str:
    """Runs one benchmark that the full run leaves out or that is wanted alone; its table."""
    scratch = Path(tempfile.mkdtemp(prefix=f"taskstash-bench-{benchmark}-"))
    try:
        if benchmark == "s3":
            return s3.render(_step("s3", lambda: s3.run_s3(plan, scratch)))
        if benchmark == "postgres":
            return postgres.render(_step("postgres", lambda: postgres.run_postgres(plan, scratch)))
        if benchmark == "large":
            hits = _step("large results", lambda: large.run_large(plan, scratch))
            return "\n".join(report.large_tables(hits, plan.large_reps)) + "\n"
        timings = _step("task runners", lambda: runners.run_runners(plan, scratch))
        return f"{plan.runner_tasks:,} mapped calls; {runners.SETUP}\n\n{runners.render(timings)}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str]) -> None:
    """Measures and writes the report (see the module's documentation)."""
    arguments = _arguments(argv)
    plan = SMOKE if arguments.smoke else FULL
    out: Path = arguments.out or (
        Path(tempfile.mkdtemp(prefix="taskstash-bench-")) if plan.smoke else DEFAULT_OUT
    )
    if arguments.report_only:
        write(Results.read(out / "results.json"), out)
        return
    if arguments.only is not None:
        print(_only(arguments.only, plan), end="")
        return
    missing = [module for module in peers.BENCH_EXTRA if not peers.installed(module)]
    if not plan.smoke and (missing or not chart_available()):
        raise SystemExit(
            f"missing {', '.join(missing) or 'matplotlib'}: pip install -e '.[bench]' "
            "(or run --smoke, which skips what is not installed)"
        )
    root = Path(tempfile.mkdtemp(prefix="taskstash-bench-scratch-"))
    environment = os.environ.copy()
    try:
        _isolate_peers(root)
        results = measure(plan, root)
    finally:
        # Back to the user's variables before anything else runs (matplotlib would otherwise
        # put its font cache into the scratch directory after it is gone).
        os.environ.clear()
        os.environ.update(environment)
        shutil.rmtree(root, ignore_errors=True)
    write(results, out)
    print(f"report: {out / 'report.md'} ({results.duration:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
