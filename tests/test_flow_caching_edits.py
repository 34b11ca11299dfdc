"""A cached flow's key follows its code, across processes: editing a task or a helper it calls
is a miss of the flow and of that task alone; `taskstash ls`, `stats`, `explain` and `prune`
show and handle flows' records.

Each test writes a small project (helpers, tasks, a flow) and runs it in fresh processes,
editing a file between runs as a user would. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("index_backend")

HELPERS = """
def scale(x):
    return x * 2
"""

STEPS = """
from helpers import scale
from taskstash import task
from taskstash.cache_policies import INPUTS, TASK_SOURCE


def note(name):
    print(name, flush=True)


@task(cache_policy=INPUTS + TASK_SOURCE)
def load(n):
    note("load")
    return list(range(n))


@task(cache_policy=INPUTS + TASK_SOURCE)
def transform(rows):
    note("transform")
    return [scale(r) for r in rows]


@task(cache_policy=INPUTS + TASK_SOURCE)
def total(rows):
    note("total")
    return sum(rows)
"""

PIPELINE = """
import sys
from steps import load, note, total, transform
from taskstash import flow
from taskstash.cache_policies import INPUTS, TASK_SOURCE


@flow(cache_policy=INPUTS + TASK_SOURCE)
def pipeline(n):
    note("pipeline")
    return total(transform(load(n)))


if __name__ == "__main__":
    print(pipeline(int(sys.argv[1])))
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The project: helpers.py, steps.py (three tasks), pipeline.py (the flow)."""
    root = tmp_path / "project"
    root.mkdir()
    for name, text in (("helpers", HELPERS), ("steps", STEPS), ("pipeline", PIPELINE)):
        (root / f"{name}.py").write_text(textwrap.dedent(text))
    return root


def run(root: Path, *arguments: str, home: str = "home", **env: str) -> str:
    """Python in a fresh process in the project (with this test's cache): its standard output."""
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=root,
        env={**os.environ, "TASKSTASH_HOME": str(root / home), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_edits_of_a_task_or_helper_miss_the_flow_and_that_task_alone(root: Path) -> None:
    assert run(root, "pipeline.py", "4") == "pipeline\nload\ntransform\ntotal\n12\n"
    assert run(root, "pipeline.py", "4") == "12\n"  # another process: nothing runs
    assert run(root, "pipeline.py", "5") == "pipeline\nload\ntransform\ntotal\n20\n"
    edit(root / "steps.py", "return sum(rows)", "return sum(rows) + 1")  # a task in the flow
    assert run(root, "pipeline.py", "4") == "pipeline\ntotal\n13\n"
    edit(root / "helpers.py", "return x * 2", "return x * 3")  # a helper of a task in it
    assert run(root, "pipeline.py", "4") == "pipeline\ntransform\ntotal\n19\n"
    assert run(root, "pipeline.py", "4") == "19\n"
    edit(root / "steps.py", "    print(", "    # says which body runs\n    print(")
    assert run(root, "pipeline.py", "4") == "19\n"  # comments never count


def test_a_machine_sharing_the_storage_adopts_the_flows_record(root: Path) -> None:
    shared = {"TASKSTASH_LOCAL_STORAGE_PATH": str(root / "shared")}
    assert run(root, "pipeline.py", "4", home="a", **shared).splitlines()[0] == "pipeline"
    assert run(root, "pipeline.py", "4", home="b", **shared) == "12\n"  # its own index, if SQLite
    listed = run(root, "-m", "taskstash", "ls", "--kind", "flow", "--json", home="b", **shared)
    assert [r["task_name"] for r in json.loads(listed)] == ["pipeline"]


def test_the_command_lists_counts_explains_and_prunes_flows(root: Path) -> None:
    run(root, "pipeline.py", "4")
    run(root, "pipeline.py", "4")  # a hit of the flow
    records = json.loads(run(root, "-m", "taskstash", "ls", "--json"))
    assert sorted((r["kind"], r["task_name"]) for r in records) == [
        ("flow", "pipeline"),
        ("task", "load"),
        ("task", "total"),
        ("task", "transform"),
    ]
    header, *rows = run(root, "-m", "taskstash", "ls").splitlines()
    assert header.split()[:3] == ["KEY", "TASK", "KIND"]
    assert sorted(row.split()[1:3] for row in rows)[0] == ["load", "task"]
    assert [row.split()[1:3] for row in rows if "flow" in row.split()] == [["pipeline", "flow"]]
    flows = json.loads(run(root, "-m", "taskstash", "ls", "--kind", "flow", "--json"))
    assert [r["task_name"] for r in flows] == ["pipeline"]

    stats = json.loads(run(root, "-m", "taskstash", "stats", "--json"))
    by_kind = {(s["task_name"], s["kind"]): s for s in stats["tasks"]}
    assert by_kind["pipeline", "flow"]["records"] == 1
    assert by_kind["pipeline", "flow"]["hits"] == 1
    assert by_kind["load", "task"]["hits"] == 0
    table = run(root, "-m", "taskstash", "stats").splitlines()
    assert table[0].split()[:3] == ["TASK", "KIND", "RECORDS"]

    explained = run(root, "-m", "taskstash", "explain", "pipeline.py:pipeline", "--arg", "n=4")
    assert explained.startswith("pipeline: hit (key ")
    edit(root / "steps.py", "return sum(rows)", "return sum(rows) + 1")
    explained = run(root, "-m", "taskstash", "explain", "pipeline:pipeline", "--arg", "n=4")
    assert explained.startswith("pipeline: miss (key ")
    assert explained.endswith("differs in: task_source (steps.total changed)\n")

    pruned = json.loads(
        run(root, "-m", "taskstash", "prune", "--kind", "flow", "--older-than", "0s", "--json")
    )
    assert pruned["records"] == 1
    left = json.loads(run(root, "-m", "taskstash", "ls", "--json"))
    assert sorted(r["kind"] for r in left) == ["task", "task", "task"]
