"""A real S3-compatible server on loopback for the tests: moto's server, and a proxy in front of
it that can be slowed down, stopped and started again.

Nothing here talks to anything but 127.0.0.1: the AWS variables point every client at the local
server, with dummy credentials, and turn off the instance metadata lookups a client would
otherwise make to find credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_REQUEST_LINE = re.compile(rb"((?:GET|PUT|HEAD|POST|DELETE) /[^ ?]*)[^ ]* HTTP/1\.1\r\n")

BUCKETS = ("my-bucket", "taskstash-test")
"""Created empty before each test that asks for the server: the seed's, and the tests' own."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def aws_environment(endpoint: str, home: Path) -> dict[str, str]:
    """Variables that send every AWS client to `endpoint` with dummy credentials, and only there."""
    missing = str(home / "no-such-aws-file")
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
        "NO_PROXY": "127.0.0.1",
    }


class MotoServer:
    """moto's S3 server in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115 (closed by stop)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self._process.returncode}")
            try:
                self.reset()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's server did not answer within 60 s") from None
                time.sleep(0.1)

    def reset(self) -> None:
        """Empties the server (every bucket and object), then creates `BUCKETS`."""
        self._request("POST", "/moto-api/reset")
        for bucket in BUCKETS:
            self._request("PUT", f"/{bucket}")

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of `bucket`, read with a plain S3 client."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                found[item["Key"]] = body.read()
        return found

    def uploads_in_progress(self, bucket: str) -> int:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        listed: dict[str, Any] = client.list_multipart_uploads(Bucket=bucket)
        return len(listed.get("Uploads", []))

    def _request(self, method: str, path: str) -> None:
        request = urllib.request.Request(self.endpoint + path, method=method, data=b"")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server, for faults a real network has.

    `delay` holds each chunk passed on for that many seconds (a slow server); `stop()` closes
    the listening socket and every connection (a server that went away: new connections are
    refused), and `start()` listens again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.delay = 0.0
        self.requests: list[str] = []
        """The request line of each HTTP request passed on (`"GET /bucket/key"`)."""
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # Shut down first: closing alone leaves a thread blocked in accept() on the
            # socket, which goes on accepting connections.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(256 * 1024):
                if self.delay:
                    time.sleep(self.delay)
                if upstream:
                    self.requests.extend(m.decode() for m in _REQUEST_LINE.findall(chunk))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Sets `values` in os.environ for the block, then puts back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
