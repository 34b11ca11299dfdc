"""The installed package: its public names and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import taskstash


def test_public_names_are_exported() -> None:
    assert set(taskstash.__all__) <= set(dir(taskstash))
    assert taskstash.__version__.count(".") == 2


def test_importing_taskstash_loads_no_optional_library() -> None:
    # numpy, pandas and pydantic values are hashed only once the user has imported them.
    script = (
        "import sys, taskstash; "
        "print(sorted(m for m in ('numpy', 'pandas', 'pydantic', 'cloudpickle', 'distributed', "
        "'concurrent.futures') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
