"""The installed package: its public names and what importing it costs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_importing_taskstash_loads_only_what_decorating_needs(tmp_path: Path) -> None:
    # The index, storages, serializers' codecs and the call path are loaded by the first call.
    heavy = (
        "sqlite3",
        "tomllib",
        "secrets",
        "uuid",
        "decimal",
        "zlib",
        "lzma",
        "bz2",
        "taskstash.task_runs",
        "taskstash.transactions",
        "taskstash.store.index",
        "taskstash.store.store",
        "taskstash.cache",
    )
    script = (
        "import sys, taskstash\n"
        "from taskstash import task\n"
        "from taskstash.cache_policies import INPUTS\n"
        "@task(cache_policy=INPUTS)\n"
        "def double(x: int) -> int:\n"
        "    return 2 * x\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
        "assert double(2) == 4 and double(2) == 4\n"
        "from taskstash import Cache\n"
        "print(len(Cache().records()))\n"
    )
    environment = {**os.environ, "TASKSTASH_HOME": str(tmp_path)}
    for name in ("TASKSTASH_INDEX_PATH", "TASKSTASH_INDEX_URL", "TASKSTASH_LOCAL_STORAGE_PATH"):
        environment.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment
    )
    assert result.stdout.split() == ["[]", "1"]
