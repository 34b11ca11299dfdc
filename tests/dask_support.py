"""Real Dask clusters on loopback for the tests: a LocalCluster, or `dask scheduler` and
`dask worker` processes, each worker with environment variables of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import distributed

TESTS = str(Path(__file__).resolve().parent)


def worker_environment(values: Mapping[str, str]) -> dict[str, str]:
    """This process's environment, with `values` and the path to import the tests' modules.

    taskstash itself is the installed one, as on a user's workers.
    """
    path = os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **values, "PYTHONPATH": path, "TASKSTASH_LOGGING_LEVEL": "WARNING"}


def local_cluster(n_workers: int = 2) -> distributed.LocalCluster:
    """Worker processes (spawned: they take this process's environment and sys.path)."""
    return distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=n_workers,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # its HTTP server on a free port, never a fixed one
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def cli_cluster(workers: Sequence[Mapping[str, str]], log_dir: Path) -> Iterator[str]:
    """`dask scheduler` and one `dask worker` per entry (its extra environment), on 127.0.0.1.

    Yields the scheduler's address once every worker has joined; stops them all at the end.
    """
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask", "scheduler"]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        log = open(log_dir / "scheduler.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                env=worker_environment({}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for index, extra in enumerate(workers):
            log = open(log_dir / f"worker-{index}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            command = [sys.executable, "-m", "dask", "worker", address]
            options = ["--host", "127.0.0.1", "--nthreads", "2", "--no-dashboard"]
            processes.append(
                subprocess.Popen(
                    [*command, *options, "--name", f"worker-{index}"],
                    env=worker_environment(extra),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        with distributed.Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(len(workers), timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def addresses(client: Any) -> list[str]:
    """The scheduler's address and its workers'."""
    info = client.scheduler_info()
    return [info["address"], *info["workers"]]


def wait_for_workers(client: Any, count: int, timeout: float = 120) -> None:
    """Waits until `count` workers are up (after one was lost and its nanny restarts it)."""
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} workers after {timeout} s")
        time.sleep(0.1)
