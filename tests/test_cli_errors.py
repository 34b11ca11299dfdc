"""The `taskstash` command when things are wrong: one line saying what and what to do, and the
documented exit code (see `taskstash --help`), never a traceback. Real index files throughout;
the read-only index and the settings are checked in real processes too.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import one_error_line, run, run_json, run_process
from mounts import tmpfs

from taskstash import Cache, __version__, task
from taskstash.cache_policies import INPUTS
from taskstash.cli import main
from taskstash.store import SCHEMA_VERSION


@pytest.fixture
def three(taskstash_home: Path) -> list[str]:
    """Three records of square(1..3): their keys."""

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def square(x: int) -> int:
        return x * x

    for x in (1, 2, 3):
        square(x)
    cache = Cache()
    # As if the command ran in another process: this one's connections are dropped, so the
    # next use opens (and checks) the file again.
    cache.store.index.reset()
    return sorted(r.key for r in cache.records())


def damage(index: Path) -> None:
    Cache().store.index.reset()
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is no database, it was overwritten" * 200)


# the index ----------------------------------------------------------------------------------


def test_reindex_repairs_a_damaged_index(
    capsys: pytest.CaptureFixture[str], three: list[str], taskstash_home: Path
) -> None:
    index = taskstash_home / "index.db"
    damage(index)
    code, out, err = run(capsys, "reindex")
    assert code == 0, err
    assert out == f"rebuilt {index}: 3 records\n"
    assert sorted(r["key"] for r in run_json(capsys, "ls")) == three
    (aside,) = taskstash_home.glob("index.db.damaged-*")
    assert aside.read_bytes().startswith(b"this is no database")


def test_a_damaged_index_is_one_line_naming_reindex(
    capsys: pytest.CaptureFixture[str], three: list[str], taskstash_home: Path
) -> None:
    damage(taskstash_home / "index.db")
    for command in (["ls"], ["show", three[0]], ["stats"], ["rm", three[0]], ["verify"]):
        code, out, err = run(capsys, *command)
        assert (code, out) == (3, ""), command
        line = one_error_line(err)
        assert f"the index {taskstash_home / 'index.db'} is damaged" in line
        assert "`taskstash reindex`" in line


def test_an_index_of_a_newer_taskstash_is_refused_naming_both_versions(
    capsys: pytest.CaptureFixture[str], three: list[str], taskstash_home: Path
) -> None:
    newer = SCHEMA_VERSION + 1
    with sqlite3.connect(taskstash_home / "index.db") as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    Cache().store.index.reset()
    code, out, err = run(capsys, "ls")
    assert (code, out) == (3, "")
    line = one_error_line(err)
    assert f"schema version {newer}" in line
    assert f"this one knows up to {SCHEMA_VERSION}" in line
    assert "upgrade taskstash" in line


def test_an_index_path_that_is_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "index.db").mkdir()
    code, out, err = run(capsys, "--index", str(tmp_path / "index.db"), "stats")
    assert (code, out) == (3, "")
    line = one_error_line(err)
    assert f"{tmp_path / 'index.db'} is a directory, not a file" in line


def test_a_home_that_cannot_be_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TASKSTASH_HOME", str(tmp_path / "a-file" / "home"))
    code, out, err = run(capsys, "ls")
    assert (code, out) == (3, "")
    line = one_error_line(err)
    assert str(tmp_path / "a-file") in line
    assert "TASKSTASH_HOME" in line


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, mounted for the test (as root ignores file modes, a real read-only
    filesystem is what makes an index read-only for everyone)."""
    with tmpfs(tmp_path / "mnt", "4m") as mount_point:
        yield mount_point


def test_a_read_only_index_in_a_real_process(read_only_mount: Path) -> None:
    env = {"TASKSTASH_HOME": str(read_only_mount / "home")}
    assert run_process("stats", env=env).returncode == 0  # creates the index
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    for command in (["ls"], ["clear", "--yes"]):
        done = run_process(*command, env=env)
        assert (done.returncode, done.stdout) == (3, ""), (command, done.stderr)
        line = one_error_line(done.stderr)
        assert "the index cannot be used" in line
        assert "--index or TASKSTASH_INDEX_PATH" in line


# explain --------------------------------------------------------------------------------------

PIPELINE = """\
from taskstash import task
from taskstash.cache_policies import INPUTS

print("top-level code ran")


@task(cache_policy=INPUTS)
def scale(x: int, factor: float = 2.0, label: str = "") -> float:
    return x * factor
"""


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "project" / "scaling.py"
    path.parent.mkdir()
    path.write_text(PIPELINE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "scaling", raising=False)
    return path


def test_explain_a_missing_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "explain", f"{tmp_path / 'nowhere.py'}:scale")
    assert (code, out) == (1, "")
    assert f"there is no file {tmp_path / 'nowhere.py'}" in one_error_line(err)
    code, out, err = run(capsys, "explain", "no_such_module_here:scale")
    assert (code, out) == (1, "")
    assert "there is no module 'no_such_module_here'" in one_error_line(err)
    code, out, err = run(capsys, "explain", "just-a-name")
    assert (code, out) == (2, "")
    assert "write it as module:task or path/to/file.py:task" in one_error_line(err)


def test_explain_says_that_it_runs_the_files_top_level_code(
    capsys: pytest.CaptureFixture[str], pipeline: Path
) -> None:
    code, out, err = run(capsys, "explain", f"{pipeline}:scale", "--arg", "x=3")
    assert code == 0
    assert out.startswith("top-level code ran\nscale: miss (key ")
    assert err == f"taskstash: note: loading {pipeline} runs its top-level code (not the task)\n"
    help_text = run_help(capsys, "explain")
    assert "runs that file's top-level code" in " ".join(help_text.split())


def run_help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as raised:
        main([*command, "--help"])
    assert raised.value.code == 0
    return capsys.readouterr().out


def test_explain_arguments_literals_or_strings_and_missing_ones(
    capsys: pytest.CaptureFixture[str], pipeline: Path
) -> None:
    target = f"{pipeline}:scale"

    def key(*args: str) -> str:
        code, out, _ = run(capsys, "explain", target, *args, "--json")
        assert code == 0
        explained: dict[str, str] = json.loads(out.removeprefix("top-level code ran\n"))
        return explained["key"]

    # 'a b' and a b are the same string; 3 and '3' are not the same value.
    assert key("--arg", "x=3", "--arg", "label='a b'") == key("--arg", "x=3", "--arg", "label=a b")
    assert key("--arg", "x=3") != key("--arg", "x='3'")

    code, out, err = run(capsys, "explain", target, "--arg", "factor=3")
    assert (code, out) == (2, "top-level code ran\n")
    line = one_error_line(err)
    assert "missing a required argument: 'x'" in line
    assert "scale(x: int, factor: float = 2.0, label: str = '') -> float" in line
    code, out, err = run(capsys, "explain", target, "--arg", "x=1", "--arg", "y=2")
    assert (code, out) == (2, "top-level code ran\n")
    line = one_error_line(err)
    assert "unexpected keyword argument 'y'" in line
    assert "scale(x: int" in line


def test_explain_a_module_that_raises_on_import(
    capsys: pytest.CaptureFixture[str], pipeline: Path
) -> None:
    pipeline.write_text(PIPELINE + "\n1 / 0\n")
    code, out, err = run(capsys, "explain", f"{pipeline}:scale", "--arg", "x=1")
    assert (code, out) == (1, "top-level code ran\n")
    line = one_error_line(err)
    assert f"importing {pipeline} failed (ZeroDivisionError: division by zero)" in line


# usage, settings, version ---------------------------------------------------------------------


def test_usage_errors_are_one_line_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ls", "--limit", "-5"], ["prune", "--keep-newest", "-1"], ["frobnicate"]):
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 2, argv
        line = one_error_line(capsys.readouterr().err)
        assert line.endswith("; see `taskstash --help`") or "see `taskstash " in line
    with pytest.raises(SystemExit):
        main(["ls", "--limit", "-5"])
    assert "'-5' is not a count; give 0 or more" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("TASKSTASH_LOGGING_LEVEL", "quiet", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("TASKSTASH_TASKS_REFRESH_CACHE", "maybe", "true or false"),
        ("TASKSTASH_MAX_SIZE", "lots", "10000, 500MB or 2GiB"),
    ],
)
def test_a_bad_setting_is_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    allowed: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, "ls")
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert f"{variable}={value!r} is not a" in line
    assert allowed in line
    assert line.endswith("; set it to an allowed value, or unset it")


def test_a_bad_setting_in_a_real_process() -> None:
    done = run_process("ls", env={"TASKSTASH_LOGGING_LEVEL": "quiet"})
    assert (done.returncode, done.stdout) == (2, "")
    assert "TASKSTASH_LOGGING_LEVEL='quiet' is not a logging level" in one_error_line(done.stderr)


def test_version_and_the_exit_codes_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    done = run_process("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"taskstash {__version__}\n", "")
    help_text = run_help(capsys)
    for line in ("0    done", "1    nothing found", "2    usage error", "3    the index or"):
        assert f"\n  {line}" in help_text
    assert "exit codes:" in run_help(capsys, "rm")
