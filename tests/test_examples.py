"""Every example runs and prints what it promises (each in a fresh TASKSTASH_HOME)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from s3_support import MotoServer

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **environment},
    )


def keys_by_label(lines: list[str]) -> dict[str, str]:
    return {line.rsplit(maxsplit=1)[0].strip(): line.split()[-1] for line in lines if "  " in line}


def test_hashing_demo() -> None:
    lines = run_example("hashing_demo.py").stdout.splitlines()
    keys = keys_by_label(lines[:-1])
    assert len({keys["1"], keys["1.0"], keys["True"]}) == 3
    assert keys["(1, 2)"] != keys["[1, 2]"]
    assert keys["{'a': 1, 'b': 2}"] == keys["{'b': 2, 'a': 1}"]
    assert keys["{'x', 'y', 'z'}"] == keys["{'z', 'y', 'x'}"]
    assert keys["Job('etl', ['a.csv'])"] != keys["Job('etl', ['b.csv'])"]
    assert lines[-1].startswith("  HashingError: config['lock']: _thread.lock cannot be hashed")


def test_flow_quickstart_logs_like_the_seed() -> None:
    log = run_example("flow_quickstart.py").stderr
    body = [line.split(" | ", 2)[2] for line in log.splitlines()]
    assert re.fullmatch(
        r"Flow run '(\w+-\w+)' - Beginning flow run '\1' for flow 'my-flow'", body[0]
    )
    assert [re.sub(r"add_one-[0-9a-f]{3}", "add_one-x", line) for line in body[1:4]] == [
        "Task run 'add_one-x' - Finished in state Completed()",
        "Task run 'add_one-x' - Finished in state Cached(type=COMPLETED)",
        "Task run 'add_one-x' - Finished in state Completed()",
    ]
    assert body[4].endswith("- Finished in state Completed()")


def test_a_cached_flow_runs_its_tasks_once_across_processes() -> None:
    first = run_example("flow_caching.py")
    assert first.stdout == "load\nclean\nsummarize\nreport: 6.25\nreport: 6.25\n"
    second = run_example("flow_caching.py")
    assert second.stdout == "report: 6.25\nreport: 6.25\n"
    body = [line.split(" | ", 2)[2] for line in second.stderr.splitlines()]
    assert [re.sub(r"run '[a-z]+-[a-z]+'", "run 'x'", line) for line in body] == [
        "Flow run 'x' - Beginning flow run 'x' for flow 'daily-report'",
        "Flow run 'x' - Finished in state Cached(type=COMPLETED)",
    ] * 2


def test_the_logging_level_setting_silences_the_flow_log() -> None:
    assert run_example("flow_quickstart.py", TASKSTASH_LOGGING_LEVEL="WARNING").stderr == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cache_on_inputs.py", "sleeping\nx=1 -> 2\nx=1 -> 2\nsleeping\nx=2 -> 3\n"),
        (
            "cache_on_subset_of_inputs.py",
            "sleeping\nx=1 -> 2\nx=1, debug=True -> 2\nx=1, debug=False -> 2\n",
        ),
        ("cache_expiration.py", "sleeping\nx=1 -> 2\nx=1 -> 2\nsleeping\nx=1 -> 2\n"),
        ("refresh_cache.py", "two calls, two values: True\n"),
        (
            "refresh_cache_setting.py",
            "refresh_cache=False reads its record: True\nrefresh_cache unset is refreshed: True\n",
        ),
        (
            "multiple_criteria.py",
            "my_task(1) -> 2 (ran)\nmy_task(1) -> 2 (cached)\nmy_task(2) -> 3 (ran)\n",
        ),
        ("shared_storage.py", "computing in process parent\nresult: 43\nresult: 43\n"),
    ],
)
def test_seed_examples_print_what_ran_and_what_was_cached(name: str, expected: str) -> None:
    result = run_example(name)
    assert result.stdout == expected
    assert result.stderr == ""


def test_the_seeds_s3_sample_shares_one_bucket_between_two_machines(
    s3: MotoServer, tmp_path: Path
) -> None:
    home = tmp_path / "first"
    result = run_example("s3_bucket.py", TASKSTASH_HOME=str(home), TASKSTASH_LOGGING_LEVEL="DEBUG")
    assert result.stdout == "computing on the first machine\nresult: 43\nresult: 43\n"
    config = home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert 'url = "s3://my-bucket"' in config.read_text()
    objects = s3.objects("my-bucket")
    assert len(objects) == 1
    # The secret is in the settings file only: not in the index, the object, or any output.
    written = [(home / "index.db").read_bytes(), *objects.values()]
    for text in [*written, result.stdout.encode(), result.stderr.encode()]:
        assert b"my-secret-access-key" not in text
