"""Settings that follow the environment and never break the import; the `taskstash` logger as a
library's logger; a failing task's traceback without taskstash's frames.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from taskstash import Cache, flow, settings, task
from taskstash.cache_policies import INPUTS

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}  # the installed taskstash, as a user runs it
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


FLOW = """
from taskstash import flow, task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS)
def add_one(x: int) -> int:
    return x + 1

@flow
def my_flow() -> None:
    add_one(1)
    add_one(1)

my_flow()
"""

SEED_LINE = r"\d\d:\d\d:\d\d\.\d{3} \| INFO \| "


# settings -------------------------------------------------------------------------------------


def test_a_bad_logging_level_never_breaks_the_import(tmp_path: Path) -> None:
    done = python(FLOW, TASKSTASH_LOGGING_LEVEL="quiet", TASKSTASH_HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "| WARNING |" in line]
    assert warnings == [
        warnings[0].split(" | ")[0] + " | WARNING | TASKSTASH_LOGGING_LEVEL='quiet' is not a "
        "logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL; unset means INFO): ignored, the "
        "default is used"
    ]
    assert re.search(SEED_LINE + r"Task run 'add_one-\w+' - Finished in state Cached", done.stderr)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TASKSTASH_MAX_SIZE", "heaps"), ("TASKSTASH_TASKS_REFRESH_CACHE", "perhaps")],
)
def test_a_bad_setting_warns_once_and_calls_use_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str
) -> None:
    runs: list[int] = []

    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert [double(1), double(1), double(2)] == [2, 2, 4]
        settings.reload()
        assert double(2) == 4
    assert runs == [1, 2]  # the defaults: no refresh, no size limit
    (message,) = [r.getMessage() for r in caplog.records]  # said once
    assert message.startswith(f"{variable}={value!r} is not a ")
    assert message.endswith("): ignored, the default is used")
    assert settings.current().problems


def test_settings_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, taskstash_home: Path
) -> None:
    first = settings.current()
    assert settings.current() is first  # unchanged environment: the same object, no re-read

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def triple(x: int) -> int:
        return 3 * x

    triple(1)
    monkeypatch.setenv("TASKSTASH_HOME", str(tmp_path / "elsewhere"))
    assert settings.current().home == tmp_path / "elsewhere"
    triple(1)
    assert (tmp_path / "elsewhere" / "index.db").exists()
    assert len(Cache().records()) == 1
    assert len(Cache(taskstash_home / "index.db").records()) == 1

    monkeypatch.setenv("TASKSTASH_LOGGING_LEVEL", "error")
    settings.current()
    assert logging.getLogger("taskstash").level == logging.ERROR
    monkeypatch.delenv("TASKSTASH_LOGGING_LEVEL")
    settings.current()
    assert logging.getLogger("taskstash").level == logging.INFO


# logging --------------------------------------------------------------------------------------


def test_the_seed_format_by_default_in_a_real_process(tmp_path: Path) -> None:
    done = python(FLOW, TASKSTASH_HOME=str(tmp_path))
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 4
    assert all(re.match(SEED_LINE, line) for line in lines), lines
    assert re.fullmatch(
        SEED_LINE + r"Task run 'add_one-\w+' - Finished in state Completed\(\)", lines[1]
    )
    assert re.fullmatch(
        SEED_LINE + r"Task run 'add_one-\w+' - Finished in state Cached\(type=COMPLETED\)", lines[2]
    )


def test_an_application_configuring_logging_gets_each_line_once(tmp_path: Path) -> None:
    configured = "import logging\nlogging.basicConfig(format='APP %(name)s: %(message)s')\n"
    done = python(configured + FLOW, TASKSTASH_HOME=str(tmp_path))
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("APP taskstash: ") for line in lines), lines


def test_caplog_sees_taskstash_lines_once(caplog: pytest.LogCaptureFixture) -> None:
    @task(cache_policy=INPUTS)
    def add_two(x: int) -> int:
        return x + 2

    @flow
    def twice() -> None:
        add_two(1)
        add_two(1)

    with caplog.at_level(logging.INFO):
        twice()
    messages = [r.getMessage() for r in caplog.records if r.name == "taskstash"]
    assert len(messages) == 4
    assert len(set(messages)) == 4
    assert "Finished in state Cached(type=COMPLETED)" in messages[2]


def test_a_handler_on_the_taskstash_logger_replaces_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a program that configured nothing
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("taskstash")
    try:
        logger.warning("printed in the seed format")
        logger.addHandler(handler)
        logger.warning("given to the application's handler only")
    finally:
        logger.removeHandler(handler)
        root.handlers[:] = saved
    err = capsys.readouterr().err
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} \| WARNING \| printed in the seed format\n", err)
    assert seen == ["given to the application's handler only"]


# tracebacks -----------------------------------------------------------------------------------


@task(cache_policy=INPUTS)
def explode(x: int) -> int:
    raise ValueError(f"no {x}")


def call_site() -> int:
    return explode(3)


def test_a_failing_task_traceback_leads_from_the_call_into_the_body() -> None:
    with pytest.raises(ValueError, match="no 3") as raised:
        call_site()
    frames = traceback.extract_tb(raised.value.__traceback__)
    names = [frame.name for frame in frames]
    assert names[-2:] == ["call_site", "explode"]
    assert not [f for f in frames if f"taskstash{os.sep}" in f.filename], names
    text = "".join(traceback.format_exception(raised.value))
    assert "task_runs.py" not in text
    assert 'raise ValueError(f"no {x}")' in text


@task(cache_policy=INPUTS)
async def explode_later(x: int) -> int:
    raise ValueError(f"no {x} later")


async def awaiting_site() -> int:
    return await explode_later(3)


def test_a_failing_async_task_traceback_leads_from_the_await_into_the_body() -> None:
    with pytest.raises(ValueError, match="no 3 later") as raised:
        asyncio.run(awaiting_site())
    frames = traceback.extract_tb(raised.value.__traceback__)
    names = [frame.name for frame in frames]
    assert names[-2:] == ["awaiting_site", "explode_later"]
    assert not [f for f in frames if f"taskstash{os.sep}" in f.filename], names


def test_a_failed_state_keeps_the_exception() -> None:
    state = explode(4, return_state=True)
    with pytest.raises(ValueError, match="no 4"):
        state.result()
