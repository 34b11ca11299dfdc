"""Direct access to the current index (`TASKSTASH_INDEX_URL` or the SQLite file), for tests that
change rows behind taskstash's back: the same statements on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from taskstash import settings
from taskstash.store import Index
from taskstash.store.database import is_url

SQLITE_ONLY = pytest.mark.parametrize("index_backend", ["sqlite"], indirect=True)
"""For a test of the index file itself (its path, its -wal file, its permissions)."""


def index_sql(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Runs one statement (`?` placeholders) on the current index in a transaction; its rows."""
    index = Index(settings.current().index)
    try:
        with index.transaction() as conn:
            cursor = conn.execute(sql, params)
            rows = cursor.fetchall() if getattr(cursor, "description", None) else []
        return [tuple(row) for row in rows]
    finally:
        index.close()


def lose_index(home: Path) -> None:
    """Loses every row of the current index: its file deleted, or its rows on a server."""
    if is_url(settings.current().index):
        index_sql("DELETE FROM records")
        return
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (home / name).unlink(missing_ok=True)


def index_sql_many(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Runs one statement for each row of parameters, in one transaction."""
    index = Index(settings.current().index)
    try:
        with index.transaction() as conn:
            conn.executemany(sql, rows)
    finally:
        index.close()
