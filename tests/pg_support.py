"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests.

Made with the server's own `initdb` and `pg_ctl` (Debian's `postgresql` package; `.ci/run`
installs it where missing). PostgreSQL refuses to run as root: as root, the cluster runs as the
`postgres` user (created if missing), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_USER = "postgres"


def binaries() -> Path | None:
    """The directory of the newest installed server's binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _major(path: str) -> int:
    return int(Path(path).parts[4]) if Path(path).parts[4].isdigit() else 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """A cluster of its own, started on a free loopback port; `stop()` removes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="taskstash-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            _ensure_user()
            entry = pwd.getpwnam(_USER)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "taskstash",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.start()
        self._names = itertools.count()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._as,
        )

    def _options(self) -> str:
        return " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                # A test cluster: durability buys nothing, and syncs cost seconds.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast`: connections are ended)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """The URL of a database of the cluster."""
        return f"postgresql://taskstash@127.0.0.1:{self.port}/{database}"

    def create_index_url(self) -> str:
        """The URL of a new, empty schema of one database: an index of its own, made in a ms.

        libpq's `options` put the schema first on the search path, where the index's tables go.
        """
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE SCHEMA {name}")
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def sql(self, statement: str, params: Sequence[Any] = (), database: str = "postgres") -> Any:
        """Runs one statement as the superuser; its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else None

    def remove(self) -> None:
        """Stops the server if it runs and deletes the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _ensure_user() -> None:
    try:
        pwd.getpwnam(_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _USER], check=True)
