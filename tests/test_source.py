"""TASK_SOURCE keys: formatting and comments do not count, code and closure values do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from taskstash.hashing.source import function_source_key, normalise_source


def defined(source: str, name: str = "f") -> Callable[..., Any]:
    """A function defined by `exec` (no source file), as in a REPL."""
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(source), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


BASE = """
@decorator(option=1)
def f(x, y=2):
    \"\"\"Adds.\"\"\"
    total = x + y
    return total
"""


@pytest.mark.parametrize(
    "variant",
    [
        BASE.replace("total = x + y", "total = x + y  # a comment"),
        BASE.replace("total = x + y", "total   =   x+y"),
        BASE.replace("    total = x + y\n", "\n    # why\n\n    total = (\n        x + y\n    )\n"),
        BASE.replace("@decorator(option=1)", "@other"),
        BASE.replace("def f(x, y=2):", "def f(\n    x,\n    y=2,\n):"),
        BASE.replace("Adds.", "Subtracts."),
    ],
    ids=[
        "comment",
        "spacing",
        "blank-lines-and-brackets",
        "decorator",
        "wrapped-signature",
        "docstring",
    ],
)
def test_formatting_comments_and_decorators_do_not_change_the_key(variant: str) -> None:
    assert normalise_source(variant) == normalise_source(BASE)


@pytest.mark.parametrize(
    "variant",
    [
        BASE.replace("x + y", "x - y"),
        BASE.replace("y=2", "y=3"),
        BASE.replace("    return total", "    if total:\n        return total"),
        BASE.replace("def f", "async def f"),
    ],
    ids=["operator", "default", "indentation", "async"],
)
def test_any_code_change_changes_the_key(variant: str) -> None:
    assert normalise_source(variant) != normalise_source(BASE)


def make_scaler(factor: float) -> Callable[[float], float]:
    def scale(value: float) -> float:
        return value * factor

    return scale


def test_closure_values_are_part_of_the_key() -> None:
    assert function_source_key(make_scaler(2)) == function_source_key(make_scaler(2))
    assert function_source_key(make_scaler(2)) != function_source_key(make_scaler(3))


def test_functions_without_source_get_a_deterministic_key_from_their_code() -> None:
    first = defined("def f(x):\n    return x + 1\n")
    again = defined("def f(x):\n    return x + 1\n")
    other = defined("def f(x):\n    return x + 2\n")
    assert function_source_key(first) == function_source_key(again)
    assert function_source_key(first) != function_source_key(other)


def test_code_keys_are_the_same_in_another_process() -> None:
    script = (
        "from taskstash.hashing.source import function_source_key\n"
        "ns = {}\n"
        'exec(\'def f(x):\\n    return {x, "a", "b"}\\n\', ns)\n'
        "print(function_source_key(ns['f']))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1")
    }
    assert len(keys) == 1
