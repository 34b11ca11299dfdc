"""The harness's own worker processes: how they are started and how they answer.

A worker is a module of this package run as `python -m <package>.<module> ...`; it prints its
answer as one line, `RESULT {json}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULT = "RESULT "
"""What starts a worker's answer line."""


def module(name: str) -> str:
    """The `python -m` name of this package's module `name`."""
    return f"{__package__}.{name}"


def _package_root() -> Path:
    """The directory `python -m` must search to find this package."""
    root = Path(__file__).resolve().parent
    for _ in (__package__ or "").split("."):
        root = root.parent
    return root


def environment(**variables: str) -> dict[str, str]:
    """This process's environment, plus `variables`, with this package importable."""
    env = {**os.environ, **variables}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_package_root()) + (os.pathsep + path if path else "")
    return env


def answer(result: dict[str, Any]) -> None:
    """Prints a worker's answer."""
    print(RESULT + json.dumps(result), flush=True)


def parse(output: str) -> dict[str, Any] | None:
    """The answer in a worker's output, None if it gave none."""
    for line in output.splitlines():
        if line.startswith(RESULT):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT))
            return result
    return None
