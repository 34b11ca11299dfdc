"""The short path of memory hits: the same keys and answers as the general path, or none."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taskstash import Cache, flow, task
from taskstash._native import CallKeyer
from taskstash.cache_policies import INPUTS, TASK_SOURCE
from taskstash.hashing import hash_named, hash_objects
from taskstash.hashing._dispatch import reduce


@dataclasses.dataclass
class Point:
    x: float
    y: float


VALUES: list[Any] = [
    0,
    -(2**70),
    1.5,
    float("nan"),
    True,
    None,
    "text",
    "\ud800",
    b"bytes",
    (1, "a"),
    [1, [2, 3]],
    {"b": 2, "a": [1]},
    {1, 2},
    frozenset({3}),
    np.arange(6).reshape(2, 3),
    Point(1.0, 2.0),
    datetime.date(2026, 1, 2),
    decimal.Decimal("1.10"),
    uuid.UUID(int=7),
    Path("a/b"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_a_call_is_keyed_as_the_general_path_keys_it(value: Any) -> None:
    before = [("cache_key_fn", "f" * 32)]
    after = [("task_source", "0" * 32), ("task_source_2", "1" * 32)]
    names, values = ("x", "y"), (value, 3)
    inputs = hash_named(dict(zip(names, values, strict=True)))
    general = hash_objects("task", "identity", [*before, ("inputs", inputs), *after])
    assert CallKeyer("identity", before, after).key(names, values, reduce) == general
    assert CallKeyer("identity", [], []).key(names, values, reduce) == hash_objects(
        "task", "identity", [("inputs", inputs)]
    )


def test_plain_calls_hit_from_memory_by_position_keyword_or_default() -> None:
    ran: list[tuple[int, int]] = []

    @task(cache_policy=INPUTS + TASK_SOURCE)
    def add(x: int, y: int = 1) -> int:
        ran.append((x, y))
        return x + y

    assert add(1) == 2
    assert add.hit_plan is not None
    assert (add(1), add(1, 1), add(x=1), add(1, y=1), add(y=1, x=1)) == (2, 2, 2, 2, 2)
    assert add(2, 2) == 4
    assert add(2, y=2) == 4
    assert ran == [(1, 1), (2, 2)]
    state = add(1, return_state=True)
    assert state.is_completed()
    assert state.result() == 2
    assert repr(state).startswith("Cached")


def test_excluded_arguments_are_left_out_of_the_key() -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS - "verbose")
    def square(x: int, verbose: bool = False) -> int:
        ran.append(x)
        return x * x

    assert (square(3), square(3, True), square(3, verbose=False)) == (9, 9, 9)
    assert ran == [3]


def test_a_setting_changed_after_a_hit_is_obeyed_at_once(
    taskstash_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    double(1)
    double(1)
    monkeypatch.setenv("TASKSTASH_TASKS_DISABLE_CACHING", "true")
    double(1)
    monkeypatch.delenv("TASKSTASH_TASKS_DISABLE_CACHING")
    double(1)
    monkeypatch.setenv("TASKSTASH_HOME", str(taskstash_home / "elsewhere"))
    double(1)  # another index: nothing there yet
    assert ran == [1, 1, 1]


def test_refresh_and_removal_reach_plain_calls(taskstash_home: Path) -> None:
    ran: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    double(1)
    double(1)
    double.refresh_cache = True
    double(1)
    double.refresh_cache = None
    double(1)
    Cache().clear()
    double(1)
    assert ran == [1, 1, 1]


def test_a_hit_inside_a_flow_is_reported_as_the_flows(caplog: pytest.LogCaptureFixture) -> None:
    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        return 2 * x

    @flow
    def pipeline() -> int:
        return double(5)

    double(5)
    double(5)
    with caplog.at_level(logging.INFO, logger="taskstash"):
        assert pipeline() == 10
    assert any("Cached(type=COMPLETED)" in r.getMessage() for r in caplog.records)


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scaler) and other.factor == self.factor

    def __hash__(self) -> int:
        return self.factor

    @task(cache_policy=INPUTS)
    def scale(self: Any, x: int = 1) -> int:
        return x * (self.factor if isinstance(self, Scaler) else 1)


def test_a_method_call_is_never_answered_for_other_arguments() -> None:
    # Read from the class, the task takes `self` as its first argument like any other.
    assert Scaler.scale(5) == 1  # self=5, x=1
    assert Scaler.scale(5) == 1
    assert Scaler(10).scale(5) == 50  # self=Scaler(10), x=5: not the record of self=5, x=1
    assert Scaler(10).scale(5) == 50
