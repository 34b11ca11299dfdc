"""Records say whether they are a task's result or a flow's: the `kind` column (schema 5).

Its value is in the result file's header too, so rebuilding the index keeps it; records made
before it existed are tasks'.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pg_support import PostgresServer

from taskstash.store import (
    Index,
    LocalStorage,
    Store,
    default_location,
    rebuild_index,
    resolve_serializer,
)
from taskstash.store.pg_schema import BASELINE, MIGRATIONS, create_baseline
from taskstash.store.schema import MIGRATIONS as SQLITE_MIGRATIONS
from taskstash.store.schema import SCHEMA_VERSION

KEY = "a" * 32
ROW = (
    "INSERT INTO records (key, task_name, task_qualname, created_at, size_bytes, serializer, "
    "storage, location, checksum) VALUES ('" + KEY + "', 't', 'm.t', 1.0, 10, 'pickle', '/s', "
    "'aa/" + KEY + "', 'c')"
)


def save(store: Store, storage: LocalStorage, key: str, kind: str) -> None:
    store.save_value(
        key,
        {"value": 1},
        resolve_serializer("pickle"),
        storage,
        default_location(key),
        task_name="pipeline",
        task_qualname="jobs.pipeline",
        created_at=1.0,
        kind=kind,
    )


def test_an_index_of_schema_4_keeps_its_records_as_tasks(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in SQLITE_MIGRATIONS[:4]:
        step(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(ROW)
    conn.close()
    index = Index(path)
    record = index.get(KEY)
    assert record is not None
    assert record.kind == "task"
    connection = index.connection()
    assert connection.execute("SELECT kind FROM records_readable").fetchall() == [("task",)]
    assert connection.execute("SELECT task_name, kind, records FROM task_stats").fetchall() == [
        ("t", "task", 1)
    ]
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_postgresql_index_of_schema_4_is_migrated(postgres_server: PostgresServer) -> None:
    import psycopg

    url = postgres_server.create_index_url()
    assert BASELINE + len(MIGRATIONS) == SCHEMA_VERSION
    with psycopg.connect(url) as conn:  # as taskstash 4 left it; committed on leaving
        conn.execute("CREATE TABLE taskstash_schema (version integer NOT NULL)")
        create_baseline(conn)
        conn.execute("INSERT INTO taskstash_schema VALUES (4)")
        conn.execute(ROW)
    index = Index(url)
    try:
        record = index.get(KEY)
        assert record is not None
        assert record.kind == "task"
        connection = index.connection()
        readable = connection.execute("SELECT kind FROM records_readable").fetchall()
        assert [tuple(row) for row in readable] == [("task",)]
        stats = connection.execute("SELECT task_name, kind, records FROM task_stats").fetchall()
        assert [tuple(row) for row in stats] == [("t", "task", 1)]
        version = connection.execute("SELECT version FROM taskstash_schema").fetchone()
        assert tuple(version) == (SCHEMA_VERSION,)
    finally:
        index.close()


def test_the_kind_is_in_the_file_header_and_survives_a_rebuild(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    store = Store(tmp_path / "index.db")
    save(store, storage, "f" * 32, "flow")
    save(store, storage, "7" * 32, "task")
    header = (tmp_path / "storage" / default_location("f" * 32)).read_bytes()
    assert b'"kind":"flow"' in header
    store.close()
    (tmp_path / "index.db").unlink()
    assert rebuild_index(tmp_path / "index.db", storage) == 2
    kinds = {r.key: r.kind for r in Index(tmp_path / "index.db").select()}
    assert kinds == {"f" * 32: "flow", "7" * 32: "task"}


def test_a_file_written_before_kinds_existed_is_a_tasks(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    store = Store(tmp_path / "index.db")
    save(store, storage, KEY, "task")
    store.close()
    # The same file as an earlier taskstash wrote it: no kind in its header.
    path = tmp_path / "storage" / default_location(KEY)
    data = path.read_bytes()
    size = int.from_bytes(data[8:12], "little")
    fields = json.loads(data[12 : 12 + size])
    del fields["kind"]
    header = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(data[:8] + len(header).to_bytes(4, "little") + header + data[12 + size :])
    (tmp_path / "index.db").unlink()
    assert rebuild_index(tmp_path / "index.db", storage) == 1
    (record,) = Index(tmp_path / "index.db").select()
    assert record.kind == "task"
