"""Stampede: many callers ask for one uncached slow result at the same moment.

How many computations ran, how long the slowest caller waited, and how many callers hung (had
not returned after `plan.hang_factor` times the function's duration: they are abandoned or
killed and counted). Threads run in one worker process (`stampede_worker threads`, so hung
threads can be abandoned with it); processes are separate workers released together by a line
on their stdin. Every run starts from a fresh directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from . import workers
from .peers import NOT_INSTALLED, STAMPEDE_CONTENDERS, Contender
from .plan import Plan
from .results import Stampede, StampedeRun
from .stampede_worker import ARGUMENT
from .workloads import STAMPEDE_LOG

SETUP_SECONDS = 120.0
"""Longest a worker may take to import and set up before the stampede (Prefect is slow)."""

_WORKER = workers.module("stampede_worker")


def _computations(log: Path) -> int:
    if not log.exists():
        return 0
    return log.read_text().split().count(str(ARGUMENT))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kills a worker and whatever it started (Prefect starts a server), then reaps it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _run_worker(
    contender: Contender, arguments: list[str], env: dict[str, str], timeout: float
) -> str:
    """Runs a worker to its end; returns its output.

    Output goes to files, not pipes: a pipe would stay open, and its reader waiting, as long as
    anything the worker started (a server) lives on.
    """
    command = [sys.executable, "-m", _WORKER, *arguments]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(process)
        stdout.seek(0)
        stderr.seek(0)
        if code != 0:
            message = stderr.read().decode(errors="replace")
            raise RuntimeError(
                f"{contender.label} worker {arguments[0]} failed ({code}):\n{message}"
            )
        return stdout.read().decode(errors="replace")


def _threads_run(contender: Contender, plan: Plan, directory: Path) -> StampedeRun:
    log = directory / "computations.log"
    arguments = ["threads", contender.key, str(directory), str(plan.stampede_threads)]
    arguments += [str(plan.stampede_seconds), str(plan.hang_seconds)]
    env = workers.environment(**{STAMPEDE_LOG: str(log)})
    output = _run_worker(contender, arguments, env, SETUP_SECONDS + plan.hang_seconds)
    result = workers.parse(output)
    if result is None:
        raise RuntimeError(f"{contender.label} worker threads reported nothing:\n{output}")
    durations: list[float] = result["durations"]
    return StampedeRun(
        computations=_computations(log),
        slowest=max(durations) if durations else None,
        hung=result["hung"],
        errors=result["errors"],
    )


class _Child:
    """A worker process whose stdout lines are collected, with their arrival times, by a thread."""

    def __init__(self, command: list[str], env: dict[str, str], stderr: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group: `stop` ends all it started
        )
        self.lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put((time.perf_counter(), raw.decode(errors="replace")))
        self.lines.put((time.perf_counter(), None))  # end of output: the process is gone

    def expect(self, prefix: str, timeout: float) -> tuple[float, str] | None:
        """The next line starting with `prefix` and when it came; None on timeout.

        Raises:
            EOFError: The process ended without printing it.
        """
        deadline = time.perf_counter() + timeout
        while True:
            try:
                arrived, line = self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return None
            if line is None:
                raise EOFError(f"worker exited ({self.process.wait()}) without {prefix!r}")
            if line.startswith(prefix):
                return arrived, line.removeprefix(prefix)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        _kill_group(self.process)


def _processes_run(contender: Contender, plan: Plan, directory: Path) -> StampedeRun:
    log = directory / "computations.log"
    env = workers.environment(**{STAMPEDE_LOG: str(log)})
    _run_worker(contender, ["warm", contender.key, str(directory)], env, SETUP_SECONDS)
    command = [sys.executable, "-m", _WORKER, "process", contender.key, str(directory)]
    command.append(str(plan.stampede_seconds))
    with tempfile.TemporaryFile() as stderr:
        children = [_Child(command, env, stderr) for _ in range(plan.stampede_processes)]
        try:
            try:
                for child in children:
                    if child.expect("READY", SETUP_SECONDS) is None:
                        raise TimeoutError(f"not ready after {SETUP_SECONDS} s")
            except (EOFError, TimeoutError) as exc:
                stderr.seek(0)
                message = stderr.read().decode(errors="replace")
                raise RuntimeError(f"{contender.label} worker: {exc}\n{message}") from None
            started = time.perf_counter()
            for child in children:
                child.go()
            deadline = started + plan.hang_seconds
            durations: list[float] = []
            errors: list[str] = []
            hung = 0
            for child in children:
                try:
                    got = child.expect(workers.RESULT, max(0.0, deadline - time.perf_counter()))
                except EOFError as exc:
                    errors.append(str(exc))
                    continue
                if got is None:
                    hung += 1
                    continue
                durations.append(got[0] - started)
                error = json.loads(got[1])["error"]
                if error is not None:
                    errors.append(error)
        finally:
            for child in children:
                child.stop()  # hung ones are killed here
    return StampedeRun(
        computations=_computations(log),
        slowest=max(durations) if durations else None,
        hung=hung,
        errors=errors,
    )


def run_stampedes(plan: Plan, root: Path) -> list[Stampede]:
    """Every stampede contender, with threads and with processes."""
    stampedes: list[Stampede] = []
    for contender in STAMPEDE_CONTENDERS:
        for mode, callers in (
            ("threads", plan.stampede_threads),
            ("processes", plan.stampede_processes),
        ):
            stampede = Stampede(contender.label, mode, callers, plan.stampede_seconds)
            stampedes.append(stampede)
            if not contender.installed:
                stampede.note = NOT_INSTALLED
                continue
            if mode == "processes" and not contender.persistent:
                stampede.note = "n/a: caches in one process"
                continue
            for _ in range(plan.stampede_runs):
                directory = Path(tempfile.mkdtemp(prefix=f"stampede-{contender.key}-", dir=root))
                run = _threads_run if mode == "threads" else _processes_run
                stampede.runs.append(run(contender, plan, directory))
    return stampedes
