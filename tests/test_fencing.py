"""Fencing: a SERIALIZABLE holder whose lease ran out does not store over the result of the
holder that took the key after it (on both index databases' lock managers)."""

from __future__ import annotations

import logging
import threading

import pytest

from taskstash import settings, task
from taskstash.cache import Cache
from taskstash.cache_policies import INPUTS
from taskstash.locking import LockManager, SQLiteLockManager


def _lock_manager(index: str, hold_timeout: float) -> LockManager:
    if index.startswith("postgresql://"):
        from taskstash.postgres_locks import PostgresLockManager

        return PostgresLockManager(index, hold_timeout=hold_timeout)
    return SQLiteLockManager(index, hold_timeout=hold_timeout)


def test_a_holder_past_its_lease_does_not_store_over_the_next_holder(
    index_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _lock_manager(settings.current().index, hold_timeout=0.2)
    computed: list[str] = []
    a_running = threading.Event()
    b_stored = threading.Event()

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=manager))
    def compute(x: int) -> str:
        who = threading.current_thread().name
        computed.append(who)
        if who == "A":
            a_running.set()
            # A stalls past its lease: B takes the key meanwhile and stores its result.
            assert b_stored.wait(timeout=60)
        return who

    results: dict[str, str] = {}

    def call() -> None:
        results[threading.current_thread().name] = compute(1)

    a = threading.Thread(target=call, name="A")
    a.start()
    assert a_running.wait(timeout=60)
    b = threading.Thread(target=call, name="B")
    b.start()
    b.join(timeout=60)
    b_stored.set()
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        a.join(timeout=60)

    assert computed == ["A", "B"]
    assert results == {"A": "A", "B": "B"}  # A's caller still gets its own value
    assert compute(1) == "B"  # B's record stays
    assert len(Cache().records()) == 1
    fenced = [r for r in caplog.records if "lease" in r.getMessage()]
    assert len(fenced) == 1, caplog.text
