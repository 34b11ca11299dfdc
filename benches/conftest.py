"""Inputs shared by the benchmarks, built once per session.

The size of the large inputs depends on the mode: 256 MiB when the benchmarks are measured
(`--benchmark-enable`, or `--benchmark-disable` absent), 1 MiB in the default smoke run, where
each benchmark body runs once untimed and only has to prove the hashers still work.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from taskstash import settings

MIB = 1 << 20
MEASURED_SIZE = 256 * MIB
SMOKE_SIZE = 1 * MIB


def benchmarks_measured(config: pytest.Config) -> bool:
    """Whether pytest-benchmark will time the benchmarks (mirrors its own rule)."""
    disabled = bool(config.getoption("benchmark_disable")) and not config.getoption(
        "benchmark_enable"
    )
    return not disabled


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrises `size` (bytes of the large inputs) by mode, once for the whole session."""
    if "size" in metafunc.fixturenames:
        size = MEASURED_SIZE if benchmarks_measured(metafunc.config) else SMOKE_SIZE
        metafunc.parametrize("size", [size], ids=[f"{size // MIB}MiB"], scope="session")


@pytest.fixture(scope="session")
def big_bytes(size: int) -> bytes:
    """`size` pseudo-random bytes (random so that no hasher gets a compressible easy case)."""
    return np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.fixture(scope="session")
def big_array(size: int) -> npt.NDArray[np.float64]:
    """A C-contiguous float64 array of `size` bytes."""
    return np.random.default_rng(2).random(size // 8)


@pytest.fixture(autouse=True)
def taskstash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each benchmark gets its own cache home, so none measures another's records."""
    home = tmp_path / "taskstash-home"
    monkeypatch.setenv("TASKSTASH_HOME", str(home))
    for name in ("TASKSTASH_LOCAL_STORAGE_PATH", "TASKSTASH_INDEX_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings.reload()
    yield home
    settings.reload()
