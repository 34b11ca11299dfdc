"""Tasks: what is cached, for how long, where, and what happens when something goes wrong."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, assert_type

import pytest

from taskstash import Cached, Completed, Failed, State, flow, settings, task
from taskstash.cache_policies import DEFAULT, INPUTS, NO_CACHE, TASK_SOURCE
from taskstash.context import TaskRunContext
from taskstash.tasks import TaskstashWarning


class Counter:
    """Counts how often a task body really ran."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def __call__(self, value: object) -> object:
        self.calls.append(value)
        return value


@pytest.fixture
def log() -> Iterator[list[logging.LogRecord]]:
    """Records of the `taskstash` logger at every level."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("taskstash")
    handler, level = Collect(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def warnings_in(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


def result_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "storage").rglob("*") if p.is_file())


# caching on and off -----------------------------------------------------------------------------


def test_a_bare_task_does_not_cache() -> None:
    ran = Counter()

    @task
    def double(x: int) -> int:
        ran(x)
        return 2 * x

    assert double(2) == double(2) == 4
    assert ran.calls == [2, 2]


def test_inputs_policy_returns_the_stored_result_for_seen_inputs() -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    def add_one(x: int) -> int:
        ran(x)
        return x + 1

    assert [add_one(1), add_one(1), add_one(2), add_one(x=1)] == [2, 2, 3, 2]
    assert ran.calls == [1, 2]


def test_results_survive_the_process_memory(taskstash_home: Path) -> None:
    ran = Counter()

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def square(x: int) -> list[int]:
        ran(x)
        return [x * x]

    assert square(3) == [9]
    assert square(3) == [9]
    assert ran.calls == [3]
    assert len(result_files(taskstash_home)) == 1


def test_persist_result_caches_with_default_inside_a_flow_only() -> None:
    ran = Counter()

    @task(persist_result=True)
    def add_one(x: int) -> int:
        ran(x)
        return x + 1

    assert add_one.cache_policy == DEFAULT

    @flow
    def my_flow() -> list[int]:
        return [add_one(1), add_one(1), add_one(2)]

    assert my_flow() == [2, 2, 3]
    assert ran.calls == [1, 2]
    assert my_flow() == [2, 2, 3]  # a new flow run: RUN_ID differs
    assert ran.calls == [1, 2, 1, 2]
    add_one(5)
    add_one(5)  # outside a flow, RUN_ID is unique per call
    assert ran.calls[-2:] == [5, 5]


def test_persist_result_false_turns_a_policy_off_with_a_warning() -> None:
    ran = Counter()
    with pytest.warns(TaskstashWarning, match="persist_result=False"):

        @task(cache_policy=INPUTS, persist_result=False)
        def f(x: int) -> int:
            ran(x)
            return x

    f(1)
    f(1)
    assert ran.calls == [1, 1]


def test_a_key_function_gives_the_key_and_none_means_do_not_cache() -> None:
    ran = Counter()

    def by_parity(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        x = parameters["x"]
        return None if x < 0 else f"parity-{x % 2}"

    @task(cache_key_fn=by_parity)
    def f(x: int) -> int:
        ran(x)
        return x

    assert [f(1), f(3), f(2), f(-1), f(-1)] == [1, 1, 2, -1, -1]
    assert ran.calls == [1, 2, -1, -1]


def test_a_key_function_wins_over_a_policy_and_a_warning_says_so() -> None:
    with pytest.warns(TaskstashWarning, match="cache_key_fn gives the key"):

        @task(cache_policy=INPUTS, cache_key_fn=lambda context, parameters: "constant")
        def f(x: int) -> int:
            return x

    assert f(1) == 1
    assert f(2) == 1  # one key for every call


def test_no_cache_runs_every_time() -> None:
    ran = Counter()

    @task(cache_policy=NO_CACHE)
    def f(x: int) -> int:
        ran(x)
        return x

    f(1)
    f(1)
    assert ran.calls == [1, 1]


def test_tasks_with_the_same_inputs_do_not_share_records() -> None:
    @task(cache_policy=INPUTS)
    def plus(x: int) -> int:
        return x + 1

    @task(cache_policy=INPUTS)
    def minus(x: int) -> int:
        return x - 1

    assert (plus(1), minus(1)) == (2, 0)


# states, failures, async ------------------------------------------------------------------------


def test_return_state_tells_computed_from_cached() -> None:
    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    first, second = f(1, return_state=True), f(1, return_state=True)
    assert isinstance(first, Completed)
    assert isinstance(second, Cached)
    assert (first.result(), second.result()) == (1, 1)
    assert (repr(first), repr(second)) == ("Completed()", "Cached(type=COMPLETED)")


def test_failures_are_not_cached_and_return_state_holds_the_exception() -> None:
    attempts = Counter()

    @task(cache_policy=INPUTS)
    def flaky(x: int) -> int:
        attempts(x)
        if len(attempts.calls) == 1:
            raise RuntimeError("first attempt fails")
        return x

    with pytest.raises(RuntimeError, match="first attempt"):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert len(attempts.calls) == 2

    @task(cache_policy=INPUTS)
    def broken(x: int) -> int:
        raise ValueError("nope")

    state = broken(1, return_state=True)
    assert isinstance(state, Failed)
    assert repr(state) == "Failed(message='ValueError: nope')"
    with pytest.raises(ValueError, match="nope"):
        state.result()


def test_async_tasks_cache_too() -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    async def fetch(x: int) -> int:
        ran(x)
        await asyncio.sleep(0)
        return x * 10

    async def main() -> list[object]:
        return [await fetch(1), await fetch(1), await fetch(2, return_state=True)]

    first, second, third = asyncio.run(main())
    assert (first, second) == (10, 10)
    assert isinstance(third, Completed)
    assert ran.calls == [1, 2]


def test_tasks_keep_the_function_signature_and_offer_fn_and_with_options() -> None:
    @task(cache_policy=INPUTS)
    def scale(x: int, factor: float = 2.0) -> float:
        """Scales x."""
        return x * factor

    assert inspect.signature(scale) == inspect.signature(scale.fn)
    assert scale.__name__ == "scale"
    assert scale.__doc__ == "Scales x."
    assert scale.fn(2) == 4.0
    refreshed = scale.with_options(refresh_cache=True)
    assert refreshed.refresh_cache is True
    assert scale.refresh_cache is None
    with pytest.raises(TypeError, match="unknown task option"):
        scale.with_options(colour="blue")


def test_bad_options_and_bad_calls_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="timedelta"):
        task(cache_expiration=10)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="CachePolicy"):
        task(cache_policy="INPUTS")(lambda: 1)  # type: ignore[call-overload]

    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"f\(\): missing a required argument"):
        f()  # type: ignore[call-overload]


# expiration, refresh, memory ----------------------------------------------------------------------


@pytest.mark.parametrize("in_memory", [True, False])
def test_records_expire(in_memory: bool) -> None:
    ran = Counter()

    @task(
        cache_policy=INPUTS,
        cache_expiration=datetime.timedelta(seconds=0.3),
        cache_result_in_memory=in_memory,
    )
    def f(x: int) -> int:
        ran(x)
        return x

    f(1)
    f(1)
    assert ran.calls == [1]
    time.sleep(0.35)
    f(1)
    assert ran.calls == [1, 1]
    f(1)
    assert ran.calls == [1, 1]  # the recomputed result was stored again


def test_refresh_cache_always_runs_and_overwrites() -> None:
    values = iter(range(100))

    @task(cache_policy=TASK_SOURCE)
    def sample() -> int:
        return next(values)

    refreshing = sample.with_options(refresh_cache=True)
    assert sample() == 0
    assert sample() == 0
    assert refreshing() == 1
    assert refreshing() == 2
    assert sample() == 2  # reads what the refresh wrote


def test_refresh_setting_applies_to_tasks_without_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = iter(range(100))

    @task(cache_policy=TASK_SOURCE)
    def unset() -> int:
        return next(values)

    @task(cache_policy=TASK_SOURCE, refresh_cache=False)
    def pinned() -> int:
        return next(values)

    monkeypatch.setenv("TASKSTASH_TASKS_REFRESH_CACHE", "true")
    settings.reload()
    assert unset() != unset()
    assert pinned() == pinned()


def test_the_memory_layer_answers_without_reading_files(taskstash_home: Path) -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    def remembered(x: int) -> int:
        ran(x)
        return x

    remembered(1)
    for path in result_files(taskstash_home):
        path.unlink()
    assert remembered(1) == 1
    assert ran.calls == [1]


# bad input and damaged storage --------------------------------------------------------------------


def test_an_unhashable_argument_runs_uncached_with_one_warning(
    log: list[logging.LogRecord],
) -> None:
    ran = Counter()

    @task(cache_policy=INPUTS)
    def use(config: dict[str, Any], x: int) -> int:
        ran(x)
        return x

    lock = threading.Lock()
    assert use({"lock": lock}, 1) == 1
    assert use({"lock": lock}, 1) == 1
    assert ran.calls == [1, 1]
    (warning,) = warnings_in(log)
    assert "argument 'config'" in warning
    assert "config['lock']: _thread.lock" in warning
    assert "INPUTS - 'config'" in warning
    assert "cache_key_fn" in warning
    assert "NO_CACHE" in warning


def test_a_result_that_cannot_be_serialized_is_returned_with_a_warning(
    log: list[logging.LogRecord], taskstash_home: Path
) -> None:
    @task(cache_policy=INPUTS, result_serializer="json")
    def tags(x: int) -> set[int]:
        return {x}

    assert tags(1) == {1}
    assert tags(1) == {1}
    (warning,) = warnings_in(log)
    assert "cannot be serialized with 'json'" in warning
    assert result_files(taskstash_home) == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.unlink(),
        lambda path: path.write_bytes(path.read_bytes()[:-3]),
        lambda path: path.write_bytes(b"garbage"),
    ],
    ids=["missing", "truncated", "garbage"],
)
def test_a_damaged_result_file_is_a_miss_then_rewritten(
    damage: Any, log: list[logging.LogRecord], taskstash_home: Path
) -> None:
    ran = Counter()

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def f(x: int) -> int:
        ran(x)
        return x + 1

    f(1)
    (path,) = result_files(taskstash_home)
    damage(path)
    assert f(1) == 2
    assert ran.calls == [1, 1]
    assert len(warnings_in(log)) == 1
    assert f(1) == 2
    assert ran.calls == [1, 1]  # rewritten, hit again


# storage and serializers --------------------------------------------------------------------------


def test_result_storage_key_templates_name_the_file(tmp_path: Path) -> None:
    storage = tmp_path / "results"

    @task(cache_policy=INPUTS, result_storage=storage, result_storage_key="{parameters[x]}-bar")
    def f(x: int) -> int:
        return x

    f(42)
    assert (storage / "42-bar").is_file()


@pytest.mark.parametrize("template", ["../{parameters[x]}", "/etc/{parameters[x]}", "a/../../b"])
def test_result_storage_keys_outside_the_root_are_refused(template: str) -> None:
    ran = Counter()

    @task(cache_policy=INPUTS, result_storage_key=template)
    def f(x: int) -> int:
        ran(x)
        return x

    with pytest.raises(ValueError, match="refused"):
        f(1)
    assert ran.calls == []


def test_result_storage_key_with_an_unknown_field_is_a_clear_error() -> None:
    @task(cache_policy=INPUTS, result_storage_key="{parameters[nope]}")
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="cannot be rendered"):
        f(1)


@pytest.mark.parametrize("kind", ["path", "file-url", "memory-url", "filesystem"])
def test_result_storage_accepts_paths_urls_and_filesystems(kind: str, tmp_path: Path) -> None:
    import fsspec

    spec: Any = {
        "path": tmp_path / "a",
        "file-url": f"file://{tmp_path / 'b'}",
        "memory-url": f"memory://taskstash-test-{tmp_path.name}",
        "filesystem": fsspec.filesystem("memory"),
    }[kind]
    ran = Counter()

    @task(cache_policy=INPUTS, result_storage=spec, cache_result_in_memory=False)
    def f(x: int) -> dict[str, int]:
        ran(x)
        return {"x": x}

    assert f(1) == {"x": 1}
    assert f(1) == {"x": 1}
    assert ran.calls == [1]


class Upper:
    """A custom serializer: JSON with a marker, to prove it was used."""

    name = "upper-json"

    def dumps(self, value: object) -> bytes:
        return b"UP" + json.dumps(value).encode()

    def loads(self, data: bytes | memoryview) -> object:
        raw = bytes(data)
        assert raw.startswith(b"UP")
        return json.loads(raw[2:])


@pytest.mark.parametrize("serializer", ["cloudpickle", "pickle", "json", Upper()])
def test_serializers_round_trip_results(serializer: Any, taskstash_home: Path) -> None:
    @task(cache_policy=INPUTS, result_serializer=serializer, cache_result_in_memory=False)
    def f(x: int) -> dict[str, list[int]]:
        return {"x": [x, x]}

    assert f(1) == {"x": [1, 1]}
    assert f(1) == {"x": [1, 1]}
    if isinstance(serializer, Upper):
        (path,) = result_files(taskstash_home)
        assert b'UP{"x": [1, 1]}' in path.read_bytes()


def test_type_checkers_see_the_functions_types() -> None:
    # mypy checks these lines (the tests are type-checked); at run time they are plain calls.
    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    @task(cache_policy=INPUTS)
    async def g(x: int) -> str:
        return str(x)

    assert_type(f(1), int)
    assert_type(f(1, return_state=True), State[int])
    assert_type(list(map(f, [1, 2])), list[int])
    assert_type(asyncio.run(g(1)), str)
    assert_type(asyncio.run(g(1, return_state=True)), State[str])
