"""Helpers of the tests of the `taskstash` command: run it, in this process or another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from taskstash.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`taskstash *argv` in this process: exit code, standard output, standard error."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """`taskstash *argv --json`, which must succeed: its output, parsed."""
    code, out, err = run(capsys, *argv, "--json")
    notes = [line for line in err.splitlines() if line.startswith("taskstash: note: ")]
    assert (code, err.splitlines()) == (0, notes)  # notes only (explain says what it loads)
    return json.loads(out)


def run_process(
    *argv: str, env: dict[str, str] | None = None, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m taskstash *argv` as a real process, with this environment (plus `env`)."""
    environment = {**os.environ, **(env or {})}  # the installed taskstash, as a user runs it
    return subprocess.run(
        [sys.executable, "-m", "taskstash", *argv],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        user=user,
    )


def one_error_line(err: str) -> str:
    """The one line the command printed on failure, checked to be just that."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("taskstash: note: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("taskstash: error: "), err
    return lines[0]
