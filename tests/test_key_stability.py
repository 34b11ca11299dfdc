"""Keys never change by accident: not between releases, processes, or hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from golden_values import GOLDEN_FILE, golden_keys

from taskstash.hashing import KEY_FORMAT_VERSION

TESTS_DIR = Path(__file__).parent


def committed() -> dict[str, object]:
    document: dict[str, object] = json.loads(GOLDEN_FILE.read_text())
    return document


def test_golden_file_is_for_the_current_key_format() -> None:
    assert committed()["key_format_version"] == KEY_FORMAT_VERSION, (
        "KEY_FORMAT_VERSION changed: regenerate tests/data/golden_keys.json with "
        "`python tests/golden_values.py --write`"
    )


def test_keys_equal_the_committed_golden_keys() -> None:
    expected = committed()["keys"]
    actual = golden_keys()
    assert actual.keys() == expected.keys()  # type: ignore[attr-defined]
    changed = sorted(name for name, key in actual.items() if expected[name] != key)  # type: ignore[index]
    assert not changed, (
        f"keys changed for {changed}: if that is deliberate, bump KEY_FORMAT_VERSION in "
        "rust/encode.rs and run `python tests/golden_values.py --write`"
    )


@pytest.mark.parametrize("seed", ["0", "1", "4242", "random"])
def test_fresh_interpreters_with_any_hash_seed_compute_the_same_keys(seed: str) -> None:
    # Sets of strings iterate in a different order under each seed; dict, numpy and pandas
    # values cross a process boundary; class instances are looked up by name again.
    result = subprocess.run(
        [sys.executable, str(TESTS_DIR / "golden_values.py")],
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == committed()["keys"]


def test_set_iteration_order_really_differs_between_seeds() -> None:
    # Guards the test above: it proves something only if the seeds reorder sets.
    script = "print(list({f'word-{i}' for i in range(40)}))"
    orders = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(orders) > 1
