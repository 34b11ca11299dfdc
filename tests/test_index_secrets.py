"""A password in the index URL is used to connect and shown nowhere: not in paths, reprs, log
lines, command output or error messages."""

from __future__ import annotations

import logging
import pickle
import socket

import pytest
from cli_support import run

from taskstash import Cache, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.exceptions import IndexUnreachableError
from taskstash.postgres_locks import PostgresLockManager
from taskstash.store import Index, open_store

SECRET = "s3cret-Pw-42"


def _with_password(url: str) -> str:
    return url.replace("postgresql://taskstash@", f"postgresql://taskstash:{SECRET}@", 1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_password_of_the_index_url_is_shown_nowhere(
    postgres_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _with_password(postgres_index)
    assert SECRET in url
    monkeypatch.setenv("TASKSTASH_INDEX_URL", url)
    settings.reload()
    shown: list[str] = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def double(x: int) -> int:
        return 2 * x

    with caplog.at_level(logging.DEBUG, logger="taskstash"):
        assert double(1) == 2
        assert double(1) == 2
    shown.append(caplog.text)

    index, store, cache = Index(url), open_store(url), Cache(url)
    shown += [index.path, store.path, repr(store), cache.path, repr(cache)]
    manager = pickle.loads(pickle.dumps(PostgresLockManager(url)))
    assert manager.acquire_lock("k", "me", acquire_timeout=5)  # the copy still connects
    shown.append(manager.index.path)

    for argv in (
        ["ls"],
        ["stats"],
        ["verify"],
        ["show", "0000"],
        ["ls", "--json"],
        ["stats", "--json"],
        ["verify", "--json"],
    ):
        code, out, err = run(capsys, "--index", url, *argv)
        shown += [out, err]
        assert out or err

    unreachable = f"postgresql://taskstash:{SECRET}@127.0.0.1:{_closed_port()}/postgres"
    with pytest.raises(IndexUnreachableError) as raised:
        Index(unreachable)
    shown += [str(raised.value), repr(raised.value), raised.value.path]
    code, out, err = run(capsys, "--index", unreachable, "ls")
    assert code != 0
    shown += [out, err]

    leaked = [text for text in shown if SECRET in text]
    assert leaked == []
    assert "taskstash@127.0.0.1" in index.path  # still names the server and user
