"""Task identity: different tasks never share records; one file is one task however it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from taskstash import Cache, task
from taskstash.cache_policies import INPUTS
from taskstash.identity import module_name_of_file
from taskstash.tasks import Task


def make_multiplier(factor: int) -> Task[[int], int]:
    @task(cache_policy=INPUTS)
    def multiply(x: int) -> int:
        return x * factor

    return multiply


def test_tasks_from_one_factory_with_different_closures_do_not_share() -> None:
    assert make_multiplier(2)(5) == 10
    assert make_multiplier(3)(5) == 15
    assert make_multiplier(2)(5) == 10
    assert len(Cache().records()) == 2


def test_the_same_function_under_another_name_is_another_task() -> None:
    def body(x: int) -> list[int]:
        return [x]

    first = task(cache_policy=INPUTS, name="first")(body)
    second = task(cache_policy=INPUTS, name="second")(body)
    first(1)
    second(1)
    assert {r.task_name for r in Cache().records()} == {"first", "second"}
    # Options other than the name keep the identity: the record is shared.
    assert first.with_options(refresh_cache=False).identity == first.identity
    assert first.with_options(name="third").identity != first.identity


def _run(arguments: list[str], cwd: Path, home: Path) -> str:
    """The standard output of `python ARGUMENTS` run in `cwd` with the cache home `home`."""
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env={**os.environ, "TASKSTASH_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_SCRIPT = """
from taskstash import task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS)
def square(x):
    print("computed", flush=True)
    return x * x + {offset}

if __name__ == "__main__":
    print(square(3))
"""


def _write(path: Path, offset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(_SCRIPT.format(offset=offset)))


def test_two_scripts_with_same_named_tasks_do_not_share(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write(tmp_path / "one.py", 0)
    _write(tmp_path / "two.py", 100)
    assert _run(["one.py"], tmp_path, home) == "computed\n9\n"
    assert _run(["two.py"], tmp_path, home) == "computed\n109\n"
    assert _run(["one.py"], tmp_path, home) == "9\n"
    assert _run(["two.py"], tmp_path, home) == "109\n"


def test_a_script_and_an_import_of_it_share_records(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write(tmp_path / "pipeline.py", 0)
    assert _run(["pipeline.py"], tmp_path, home) == "computed\n9\n"
    assert _run(["-c", "import pipeline; print(pipeline.square(3))"], tmp_path, home) == "9\n"
    assert _run(["-m", "pipeline"], tmp_path, home) == "9\n"
    listed = _run(
        ["-c", "from taskstash import Cache; print([r.task_qualname for r in Cache().records()])"],
        tmp_path,
        home,
    )
    assert listed == "['pipeline.square']\n"


def test_a_script_inside_a_package_is_named_with_its_package(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    _write(tmp_path / "pkg" / "sub" / "steps.py", 1)
    assert module_name_of_file(tmp_path / "pkg" / "sub" / "steps.py") == "pkg.sub.steps"
    assert _run(["pkg/sub/steps.py"], tmp_path, home) == "computed\n10\n"
    assert (
        _run(["-c", "from pkg.sub import steps; print(steps.square(3))"], tmp_path, home) == "10\n"
    )


def test_identity_does_not_depend_on_where_the_task_object_was_made() -> None:
    def body(x: int) -> int:
        return x

    made: list[Callable[[int], int]] = [task(cache_policy=INPUTS)(body) for _ in range(2)]
    assert made[0](1) == made[1](1) == 1
    assert len(Cache().records()) == 1
