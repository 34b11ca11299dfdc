"""Every example runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.splitlines()


def keys_by_label(lines: list[str]) -> dict[str, str]:
    return {line.rsplit(maxsplit=1)[0].strip(): line.split()[-1] for line in lines if "  " in line}


def test_hashing_demo() -> None:
    lines = run_example("hashing_demo.py")
    keys = keys_by_label(lines[:-1])
    assert len({keys["1"], keys["1.0"], keys["True"]}) == 3
    assert keys["(1, 2)"] != keys["[1, 2]"]
    assert keys["{'a': 1, 'b': 2}"] == keys["{'b': 2, 'a': 1}"]
    assert keys["{'x', 'y', 'z'}"] == keys["{'z', 'y', 'x'}"]
    assert keys["Job('etl', ['a.csv'])"] != keys["Job('etl', ['b.csv'])"]
    assert lines[-1].startswith("  HashingError: config['lock']: _thread.lock cannot be hashed")
