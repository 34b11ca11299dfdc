"""TASK_SOURCE follows the code a task reaches: helpers, classes, constants, in the user's files.

Each test writes a small project (a task module and its helpers) and runs it in fresh
processes, editing a file between runs as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from taskstash import Cache, explain, task
from taskstash.cache_policies import INPUTS, TASK_SOURCE, TaskSource
from taskstash.hashing.closure import code_closure, distribution_versions

HELPERS = '''
THRESHOLD = 10
SCALE = {"a": 1}


def normalize(x):
    """Documentation does not count."""
    return clamp(x) * 2


def clamp(x):
    return min(x, THRESHOLD)


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return x * self.factor + SCALE["a"]
'''

PIPELINE = """
import sys
import helpers
from helpers import Scaler
from taskstash import task
from taskstash.cache_policies import INPUTS, TASK_SOURCE

@task(cache_policy=INPUTS + TASK_SOURCE)
def run(x):
    print("computed", flush=True)
    return Scaler(3).apply(helpers.normalize(x))

if __name__ == "__main__":
    print(run(int(sys.argv[1])))
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    return root


def run(root: Path, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=root,
        env={**os.environ, "TASKSTASH_HOME": str(root / "home")},
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


def test_editing_a_helper_a_class_or_a_constant_invalidates(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert run(root, "pipeline.py", "4") == "computed\n25\n"
    assert run(root, "pipeline.py", "4") == "25\n"
    edit(root / "helpers.py", "return clamp(x) * 2", "return clamp(x) * 3")  # a helper
    assert run(root, "pipeline.py", "4") == "computed\n37\n"
    edit(root / "helpers.py", "min(x, THRESHOLD)", "max(x, THRESHOLD)")  # a helper's helper
    assert run(root, "pipeline.py", "4") == "computed\n91\n"
    edit(root / "helpers.py", "THRESHOLD = 10", "THRESHOLD = 2")  # a constant it reads
    assert run(root, "pipeline.py", "4") == "computed\n37\n"
    edit(root / "helpers.py", "x * self.factor", "x * self.factor * 1")  # a method
    assert run(root, "pipeline.py", "4") == "computed\n37\n"
    assert run(root, "pipeline.py", "4") == "37\n"


def test_comments_docstrings_and_formatting_never_count_anywhere(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert run(root, "pipeline.py", "4") == "computed\n25\n"
    edit(root / "helpers.py", '"""Documentation does not count."""', '"""Other words."""')
    edit(root / "helpers.py", "return min(x, THRESHOLD)", "# why\n    return min(x,  THRESHOLD)")
    edit(root / "helpers.py", "def apply(self, x):", 'def apply(self, x):\n        """Doc."""')
    assert run(root, "pipeline.py", "4") == "25\n"


def test_the_same_key_run_as_a_script_imported_or_under_another_hash_seed(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert run(root, "pipeline.py", "4") == "computed\n25\n"
    assert run(root, "-c", "import pipeline; print(pipeline.run(4))") == "25\n"
    seeded = subprocess.run(
        [sys.executable, "pipeline.py", "4"],
        cwd=root,
        env={**os.environ, "TASKSTASH_HOME": str(root / "home"), "PYTHONHASHSEED": "4242"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert seeded.stdout == "25\n"


def test_explain_names_the_piece_that_changed(tmp_path: Path) -> None:
    root = project(tmp_path)
    run(root, "pipeline.py", "4")
    edit(root / "helpers.py", "THRESHOLD = 10", "THRESHOLD = 2")
    edit(root / "helpers.py", "return clamp(x) * 2", "return clamp(x) * 3")
    out = run(
        root,
        "-c",
        "import pipeline; from taskstash import explain; print(explain(pipeline.run, 4))",
    )
    assert "differs in: task_source (helpers.THRESHOLD changed, helpers.normalize changed)" in out


def even(n: int) -> bool:
    return True if n == 0 else odd(n - 1)


def odd(n: int) -> bool:
    return False if n == 0 else even(n - 1)


def test_mutual_recursion_ends_and_installed_code_is_not_followed() -> None:
    pieces = code_closure(even)
    assert set(pieces) == {f"{__name__}.even", f"{__name__}.odd"}

    import numpy as np

    def uses_numpy(x: float) -> float:
        return float(np.sqrt(x))

    assert set(code_closure(uses_numpy)) == {
        f"{__name__}.test_mutual_recursion_ends_and_installed_code_is_not_followed"
        ".<locals>.uses_numpy"
    }
    assert "numpy" in distribution_versions(uses_numpy)


def test_the_narrower_policy_keys_the_function_only(tmp_path: Path) -> None:
    calls: list[int] = []
    offset = [1]

    def helper(x: int) -> int:
        return x + offset[0]

    def body(x: int) -> int:
        calls.append(x)
        return helper(x)

    follows = task(cache_policy=INPUTS + TASK_SOURCE, name="follows")(body)
    narrow = task(cache_policy=INPUTS + TaskSource(follow=False), name="narrow")(body)
    assert follows(1) == narrow(1) == 2
    (follows_record,) = Cache().records(task="follows")
    (narrow_record,) = Cache().records(task="narrow")
    assert any(name.endswith(".helper") for name in follows_record.components)
    assert not any(name.startswith("task_source:") for name in narrow_record.components)
    assert "hit" in str(explain(follows, 1))


CONSTANTS = """
LIMIT = 5
"""

UNRELATED = """
def unused():
    return "not called by the task"
"""

STEPS = """
import sys
import unrelated
from constants import LIMIT
from taskstash import task
from taskstash.cache_policies import INPUTS, TASK_SOURCE

@task(cache_policy=INPUTS + TASK_SOURCE)
def capped(x):
    print("computed", flush=True)
    return min(x, LIMIT)

if __name__ == "__main__":
    print(capped(int(sys.argv[1])))
"""


def test_a_constants_module_counts_and_an_unrelated_module_does_not(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "constants.py").write_text(textwrap.dedent(CONSTANTS))
    (root / "unrelated.py").write_text(textwrap.dedent(UNRELATED))
    (root / "steps.py").write_text(textwrap.dedent(STEPS))
    assert run(root, "steps.py", "9") == "computed\n5\n"
    edit(root / "unrelated.py", "not called by the task", "edited, still not called")
    assert run(root, "steps.py", "9") == "5\n"  # imported but never reached: a hit
    edit(root / "constants.py", "LIMIT = 5", "LIMIT = 7")
    assert run(root, "steps.py", "9") == "computed\n7\n"  # a constant it reads: a miss
