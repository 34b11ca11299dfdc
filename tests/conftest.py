"""Shared test configuration.

Hypothesis profiles: `fast` (default, for local runs) and `ci` (more examples); choose with
`HYPOTHESIS_PROFILE=ci`. Every test runs with its own TASKSTASH_HOME.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from pg_support import PostgresServer, binaries
from s3_support import MotoServer, aws_environment, environment

from taskstash import settings
from taskstash.store.hits import _LIVE

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
        "TASKSTASH_INDEX_URL",
        "TASKSTASH_TASKS_REFRESH_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings.reload()
    yield home
    settings.reload()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server on loopback, started once for the tests that ask for it.

    The AWS variables send every client (in this process and its subprocesses) to it.
    """
    home = tmp_path_factory.mktemp("moto")
    server = MotoServer(home / "moto.log")
    try:
        with environment(aws_environment(server.endpoint, home)):
            yield server
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The S3 server, emptied, with the buckets of `BUCKETS`; s3fs forgets what it cached."""
    import s3fs

    moto_server.reset()
    s3fs.S3FileSystem.clear_instance_cache()
    yield moto_server
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on loopback, started once for the tests that ask for it.

    Without the server's binaries the tests that need it are skipped, except in CI, where
    `.ci/run` installs them and their absence is a failure.
    """
    bin_dir = binaries()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        yield server
    finally:
        for store in list(_LIVE):  # hits still pending go to the server while it runs
            store._flush_quietly()
        server.remove()


@pytest.fixture
def postgres_index(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty PostgreSQL index (a schema of its own)."""
    return postgres_server.create_index_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once on each index database: `TASKSTASH_INDEX_URL` set to a new index.

    Returns the database's name.
    """
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_index")
        monkeypatch.setenv("TASKSTASH_INDEX_URL", url)
        settings.reload()
    return str(request.param)
