"""Shared test configuration.

Hypothesis profiles: `fast` (default, for local runs) and `ci` (more examples); choose with
`HYPOTHESIS_PROFILE=ci`. Every test runs with its own TASKSTASH_HOME.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from taskstash import settings

hypothesis.settings.register_profile("fast", max_examples=100, deadline=None)
hypothesis.settings.register_profile(
    "ci",
    max_examples=400,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(autouse=True)
def taskstash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own cache home (index and storage), so its own store and memory layer."""
    home = tmp_path / "taskstash-home"
    monkeypatch.setenv("TASKSTASH_HOME", str(home))
    for name in (
        "TASKSTASH_LOCAL_STORAGE_PATH",
        "TASKSTASH_INDEX_PATH",
        "TASKSTASH_TASKS_REFRESH_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings.reload()
    yield home
    settings.reload()
