"""Tasks defined in notebook cells key on their code closure too, run by a real Jupyter kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

HELPER = "def normalize(x):\n    return x * 2\n"
TASK = (
    "from taskstash import task\n"
    "from taskstash.cache_policies import INPUTS, TASK_SOURCE\n\n"
    "@task(cache_policy=INPUTS + TASK_SOURCE)\n"
    "def run(x):\n"
    "    print('computed')\n"
    "    return normalize(x)\n"
)
CALL = "print(run(3))\n"


def execute(home: Path, *cells: str) -> str:
    """Runs the cells in a new kernel (a fresh start of the notebook); their printed output."""
    setup = f"import os\nos.environ['TASKSTASH_HOME'] = {str(home)!r}\n"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in (setup, *cells)]
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_a_notebook_task_hits_after_a_rerun_and_a_restart_and_misses_after_a_helper_edit(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    # Defined, called, its cell run again unchanged, called again: one computation.
    assert execute(home, HELPER, TASK, CALL, TASK, CALL) == "computed\n6\n6\n"
    # A restarted kernel: the same cells hit.
    assert execute(home, HELPER, TASK, CALL) == "6\n"
    # The helper cell edited: the task's code closure changed, so it computes again.
    assert execute(home, HELPER.replace("x * 2", "x * 3"), TASK, CALL) == "computed\n9\n"
    # Only a comment added to the helper: still a hit.
    edited = HELPER.replace("x * 2", "x * 3").replace("def", "# why\ndef")
    assert execute(home, edited, TASK, CALL) == "9\n"
