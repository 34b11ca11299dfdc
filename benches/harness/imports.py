"""Import time as a user feels it: a whole `python -c "import X"` process, start to exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .peers import NOT_INSTALLED, installed
from .plan import Plan
from .results import Timing

IMPORTS = (
    ("python alone", ""),
    ("taskstash", "taskstash"),
    ("functools.lru_cache", "functools"),
    ("cachebox", "cachebox"),
    ("diskcache", "diskcache"),
    ("joblib", "joblib"),
    ("cachier", "cachier"),
    ("prefect", "prefect"),
)
"""Report label and module; the empty module is the interpreter's own start-up."""


def _environment() -> dict[str, str]:
    # As a user's: bytecode is cached (the warm-up run writes it), whatever this shell says.
    environment = os.environ.copy()
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def _run(module: str) -> float:
    code = f"import {module}" if module else "pass"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_environment())
    return time.perf_counter() - started


def run_imports(plan: Plan) -> list[Timing]:
    """Median process time per module; rounds go module after module so drift hits them all."""
    timings: list[Timing] = []
    present: list[tuple[Timing, str]] = []
    for label, module in IMPORTS:
        timing = Timing("import", "import", label, calls=1)
        timings.append(timing)
        if module and not installed(module):
            timing.note = NOT_INSTALLED
            continue
        present.append((timing, module))
        _run(module)  # warm the OS file cache and write the .pyc files before timing
    for _ in range(plan.import_reps):
        for timing, module in present:
            timing.samples.append(_run(module))
    return timings
