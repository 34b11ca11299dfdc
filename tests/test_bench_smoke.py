"""The benchmark harness (benches/harness) still runs: every benchmark once, on tiny sizes.

It runs as the README says, `python -m benches.harness --smoke`, in a subprocess: the harness
sets environment variables and leaves threads behind on purpose (hung stampede callers), which
must not leak into this test process. Peers that are not installed here (the bench extra is not
part of the test extra) must be reported as such, and everything installed must be measured.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Report label of each peer -> the module it needs.
PEERS = {
    "cachebox.cached": "cachebox",
    "diskcache Cache.memoize": "diskcache",
    "joblib.Memory": "joblib",
    "cachier": "cachier",
    "Prefect task (INPUTS)": "prefect",
}
TASKSTASH_ROWS = ("taskstash (memory layer on, default)", "taskstash (memory layer off)")
LATENCY_CASES = (
    "hit-small",
    "hit-array-result",
    "hit-array-argument",
    "miss-small",
    "miss-array-result",
)


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "benches.harness", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results, out


def timings(results: dict[str, Any], case: str) -> dict[str, dict[str, Any]]:
    return {t["contender"]: t for t in results["timings"] if t["case"] == case}


def test_every_latency_case_measures_taskstash_and_the_installed_peers(
    smoke_run: tuple[dict[str, Any], Path],
) -> None:
    results, _ = smoke_run
    assert results["smoke"] is True
    for case in LATENCY_CASES:
        rows = timings(results, case)
        for label in (*TASKSTASH_ROWS, "functools.lru_cache", *PEERS):
            assert label in rows, (case, label)
        for label in TASKSTASH_ROWS:
            assert rows[label]["median"] > 0, (case, label)
        for label, module in PEERS.items():
            row = rows[label]
            if not importable(module):
                assert row["note"] == "not installed", (case, row)
                assert not row["samples"], (case, row)
            elif case == "hit-array-argument" and module == "cachebox":
                assert row["note"].startswith("n/a"), row  # arrays are not hashable
            else:
                assert row["median"] > 0, (case, row)


def test_imports_hashing_stampede_and_index_size_ran(
    smoke_run: tuple[dict[str, Any], Path],
) -> None:
    results, _ = smoke_run
    assert timings(results, "import")["taskstash"]["median"] > 0
    for case in ("hash-bytes", "hash-array", "key-dict5", "key-list1000"):
        assert timings(results, case)["taskstash.hash_objects"]["median"] > 0, case
    stampedes = {(s["contender"], s["mode"]): s for s in results["stampedes"]}
    for mode in ("threads", "processes"):
        serializable = stampedes["taskstash SERIALIZABLE", mode]
        assert serializable["runs"], mode
        # Tiny sizes, but the behaviour is real: one computation, nobody left waiting.
        assert [run["computations"] for run in serializable["runs"]] == [1], mode
        assert [run["hung"] for run in serializable["runs"]] == [0], mode
        assert stampedes["taskstash READ_COMMITTED", mode]["runs"], mode
    for (contender, _), stampede in stampedes.items():
        module = PEERS.get(contender)
        if module is not None and not importable(module):
            assert stampede["note"] == "not installed"
            assert not stampede["runs"]
    sizes = [scale["records"] for scale in results["scale"]]
    assert sizes == [10, 100]
    assert all(scale["hit"]["median"] > 0 for scale in results["scale"])


def test_hit_time_by_size_measures_every_contender_at_each_size(
    smoke_run: tuple[dict[str, Any], Path],
) -> None:
    results, out = smoke_run
    sizes = results["plan"]["sweep_bytes"]
    assert sizes == [1024, 64 * 1024]
    for nbytes in sizes:
        rows = {t["contender"]: t for t in results["timings"] if t["case"] == f"hit-array-{nbytes}"}
        assert {row["section"] for row in rows.values()} == {"size"}
        for label in (*TASKSTASH_ROWS, "functools.lru_cache"):
            assert rows[label]["median"] > 0, (nbytes, label)
        for label, module in PEERS.items():
            if importable(module):
                assert rows[label]["median"] > 0, (nbytes, label)
            else:
                assert rows[label]["note"] == "not installed", (nbytes, label)
    report = (out / "report.md").read_text()
    assert "## Hit time by result size" in report
    assert "| contender | 1 KiB | 64 KiB |" in report


LARGE_ROWS = {
    "pickle.load (protocol 5, the baseline)": "pickle",
    "taskstash (memory layer on, default)": "taskstash",
    "diskcache Cache.memoize": "diskcache",
    "joblib.Memory": "joblib",
    "joblib.Memory(mmap_mode='r')": "joblib",
}


def test_large_results_are_hit_each_in_a_fresh_process_with_time_and_memory(
    smoke_run: tuple[dict[str, Any], Path],
) -> None:
    results, out = smoke_run
    nbytes = results["plan"]["large_bytes"]
    assert nbytes > 1 << 20  # large enough for taskstash to map the file
    hits = {(hit["kind"], hit["contender"]): hit for hit in results["large"]}
    assert set(hits) == {(kind, label) for kind in ("array", "frame") for label in LARGE_ROWS}
    for hit in hits.values():
        label = hit["contender"]
        assert hit["nbytes"] == nbytes
        if not importable(LARGE_ROWS[label]):
            assert hit["note"] == "not installed", hit
            assert not hit["seconds"], hit
            continue
        assert len(hit["seconds"]) == 1, hit  # one process in a smoke run
        assert hit["seconds"][0] > 0, hit
        assert hit["touch_seconds"][0] > 0, hit
        # Reading all of the result brings all of it into memory, whatever the contender.
        assert hit["touched_growth"][0] >= 0.9 * nbytes, hit
        assert 0 <= hit["peak_growth"][0] <= hit["touched_growth"][0], hit
        # Only taskstash times a second call in the same process: its file is checked once.
        assert len(hit["again_seconds"]) == (label == "taskstash (memory layer on, default)")
    report = (out / "report.md").read_text()
    assert "## Large results" in report
    assert "4 MiB array (one process):" in report
    assert "4 MiB DataFrame (one process):" in report
    targets = [line for line in report.splitlines() if line.startswith("| hit, 4 MiB ")]
    assert len(targets) == 4, targets  # time and memory, array and DataFrame


def test_the_task_runners_ran_bare_cold_and_warm(smoke_run: tuple[dict[str, Any], Path]) -> None:
    results, out = smoke_run
    rows = {(t["case"], t["contender"]): t for t in results["runners"]}
    assert set(rows) == {
        ("mapped-dask", "dask client.map"),
        ("mapped-dask", "taskstash DaskTaskRunner, cold"),
        ("mapped-dask", "taskstash DaskTaskRunner, warm"),
        ("mapped-threads", "concurrent.futures thread pool"),
        ("mapped-threads", "taskstash ThreadPoolTaskRunner, cold"),
        ("mapped-threads", "taskstash ThreadPoolTaskRunner, warm"),
    }
    for row in rows.values():
        assert row["calls"] == 20
        assert row["median"] > 0, row
    report = (out / "report.md").read_text()
    assert "## Task runners" in report
    assert "| taskstash DaskTaskRunner, warm |" in report


def test_report_is_written_with_or_without_matplotlib(
    smoke_run: tuple[dict[str, Any], Path],
) -> None:
    _, out = smoke_run
    report = (out / "report.md").read_text()
    headings = (
        "## Targets",
        "## Cache hits and misses",
        "## Hit time by result size",
        "## Large results",
        "## Stampede",
        "## Task runners",
    )
    for heading in (*headings, "## Machine"):
        assert heading in report
    assert "Smoke run" in report
    assert (out / "chart.png").exists() == importable("matplotlib")


def run_alone(benchmark: str, timeout: float = 120) -> str:
    """The table `python -m benches.harness --only BENCHMARK --smoke` prints; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "benches.harness", "--only", benchmark, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_s3_benchmark_counts_the_requests_of_each_operation() -> None:
    output = run_alone("s3")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[2].rstrip(" |")
        for line in output.splitlines()[2:]
    }
    assert rows == {
        "miss (compute, then store in the bucket)": "4 (2 GET, 1 HEAD, 1 PUT)",
        "first hit from a second machine (adopt)": "1 (1 GET)",
        "later hit from the second machine": "1 (1 GET)",
        "hit on local storage": "0",
    }


def test_the_task_runners_benchmark_runs_alone() -> None:
    output = run_alone("runners")
    runs = [line.split(" | ")[0].lstrip("| ") for line in output.splitlines()[4:]]
    assert runs == [
        "dask client.map",
        "taskstash DaskTaskRunner, cold",
        "taskstash DaskTaskRunner, warm",
        "concurrent.futures thread pool",
        "taskstash ThreadPoolTaskRunner, cold",
        "taskstash ThreadPoolTaskRunner, warm",
    ]


def test_the_postgres_benchmark_measures_both_databases_and_judges_the_hit_target(
    postgres_server: object,
) -> None:
    output = run_alone("postgres", timeout=300)
    table, verdict = output.split("\n\n")
    header, _, *rows = table.splitlines()
    assert header == "| median per call | SQLite | PostgreSQL |"
    assert len(rows) == 6
    assert all(row.count(" ms |") == 2 or row.count("calls/s") == 2 for row in rows)
    assert verdict.startswith(("PostgreSQL hit target (met)", "PostgreSQL hit target (not met)"))
