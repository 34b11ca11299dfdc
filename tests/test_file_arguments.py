"""A `Path` argument is keyed by what it names: a regenerated input file is a miss."""

from __future__ import annotations

import os
import threading
from pathlib import Path, PurePosixPath

import pytest

from taskstash import explain, task
from taskstash.cache_policies import INPUTS


class Counter:
    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
def ran() -> Counter:
    return Counter()


def test_a_file_regenerated_at_the_same_path_is_a_miss(tmp_path: Path, ran: Counter) -> None:
    @task(cache_policy=INPUTS)
    def count_lines(path: Path) -> int:
        ran.calls += 1
        return len(path.read_text().splitlines())

    data = tmp_path / "input.csv"
    data.write_text("a\nb\n")
    assert count_lines(data) == 2
    assert count_lines(data) == 2
    assert ran.calls == 1
    data.write_text("a\nb\nc\n")  # regenerated in place
    assert count_lines(data) == 3
    assert ran.calls == 2
    assert "inputs (path changed)" in str(explain(count_lines, tmp_path / "other.csv"))


def test_the_same_relative_path_in_two_projects_does_not_share(
    tmp_path: Path, ran: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    @task(cache_policy=INPUTS)
    def first_line(path: Path) -> str:
        ran.calls += 1
        return path.read_text().splitlines()[0]

    for project, text in (("one", "from one"), ("two", "from two")):
        (tmp_path / project).mkdir()
        (tmp_path / project / "data.txt").write_text(text)
    monkeypatch.chdir(tmp_path / "one")
    assert first_line(Path("data.txt")) == "from one"
    monkeypatch.chdir(tmp_path / "two")
    assert first_line(Path("data.txt")) == "from two"
    assert ran.calls == 2


def test_a_directory_is_keyed_by_its_files_and_a_missing_path_by_its_absence(
    tmp_path: Path, ran: Counter
) -> None:
    @task(cache_policy=INPUTS)
    def names(path: Path) -> list[str]:
        ran.calls += 1
        return sorted(p.name for p in path.iterdir()) if path.exists() else []

    folder = tmp_path / "folder"
    assert names(folder) == []  # missing
    folder.mkdir()
    assert names(folder) == []  # now an (empty) directory: another key
    (folder / "x.txt").write_text("x")
    assert names(folder) == ["x.txt"]
    assert names(folder) == ["x.txt"]
    (folder / "x.txt").write_text("changed")
    assert names(folder) == ["x.txt"]  # a file's content inside it changed
    assert ran.calls == 4


def test_a_string_or_a_pure_path_keys_by_the_name_only(tmp_path: Path, ran: Counter) -> None:
    @task(cache_policy=INPUTS)
    def read(path: str | PurePosixPath) -> str:
        ran.calls += 1
        return Path(path).read_text()

    data = tmp_path / "input.txt"
    data.write_text("old")
    assert read(str(data)) == "old"
    data.write_text("new")
    assert read(str(data)) == "old"  # documented: a str is a name, not a file
    assert read(PurePosixPath(data)) == "new"
    assert ran.calls == 2


def test_a_fifo_argument_is_never_opened(tmp_path: Path, ran: Counter) -> None:
    @task(cache_policy=INPUTS)
    def kind(path: Path) -> str:
        ran.calls += 1
        return "fifo"

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(kind(fifo)), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "keying a FIFO argument hangs"
    assert results == ["fifo"]
    assert kind(fifo) == "fifo"
    assert ran.calls == 1
