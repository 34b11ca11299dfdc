"""Helpers for the transaction tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from taskstash.transactions import Transaction


def fail_inside(
    opened: AbstractContextManager[Transaction],
    body: Callable[[Transaction], object] = lambda txn: None,
    error: Exception | None = None,
) -> Transaction:
    """Runs `body` in the transaction, then raises `error` (a ValueError) inside; returns it.

    The error must come out of the block: the transaction saw it and did not swallow it.
    """
    error = error if error is not None else ValueError("foo")
    seen: list[Transaction] = []

    def block() -> None:
        with opened as txn:
            seen.append(txn)
            body(txn)
            raise error

    with pytest.raises(type(error), match=str(error)):
        block()
    return seen[0]
