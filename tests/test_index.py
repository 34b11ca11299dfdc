"""The index (SQLite and PostgreSQL alike unless marked): schema, records, hits, docs/schema.md."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from index_support import SQLITE_ONLY

from taskstash import settings
from taskstash.exceptions import CacheCorruptedError, TaskstashError
from taskstash.store import (
    SCHEMA_VERSION,
    Index,
    LocalStorage,
    Record,
    ResultHeader,
    Store,
    default_location,
    make_header,
    open_store,
)
from taskstash.store.database import Connection
from taskstash.store.index import COLUMNS, MIGRATIONS, read_file_record
from taskstash.store.store import HIT_FLUSH_SECONDS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
NOW = 1_700_000_000.0


def header(
    key: str,
    payload: bytes = b"payload",
    *,
    task_name: str = "add_one",
    created_at: float = NOW,
    expires_at: float | None = None,
    compute_seconds: float = 0.5,
    kind: str = "task",
) -> ResultHeader:
    return make_header(
        key,
        payload,
        task_name=task_name,
        task_qualname=f"tests.{task_name}",
        serializer="pickle",
        created_at=created_at,
        expires_at=expires_at,
        compute_seconds=compute_seconds,
        run_id="0b7e4c1e-0000-4000-8000-000000000000",
        components={"inputs": "1" * 32, "task_source": "2" * 32},
        kind=kind,
    )


def key_of(n: int, prefix: str = "") -> str:
    return f"{prefix}{n:x}".rjust(32, "0")


@pytest.fixture
def store(index_backend: str, tmp_path: Path) -> Iterator[Store]:
    """A store on a new index: a file, or a schema of the test server."""
    location = settings.current().index if index_backend == "postgresql" else None
    s = Store(location or tmp_path / "cache" / "index.db")
    yield s
    s.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def save(
    store: Store, storage: LocalStorage, key: str, payload: bytes = b"payload", **kw: object
) -> Record:
    h = header(key, payload, **kw)  # type: ignore[arg-type]
    return store.save(h, payload, storage, default_location(key))


def raw(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@contextmanager
def reading(location: str) -> Iterator[Connection]:
    """A connection of its own to an index (a file or a URL), as another process would have."""
    index = Index(location)
    try:
        yield index.connection()
    finally:
        index.close()


# --- schema and migrations ---------------------------------------------------------------


@SQLITE_ONLY
def test_schema_is_created_with_its_version(store: Store) -> None:
    with reading(store.url) as conn:
        objects = set(conn.execute("SELECT type, name FROM sqlite_master").fetchall())
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(records)")]
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    assert journal == "wal"
    # Columns are added at the end by migrations; computations and verified are kept by SQL and
    # the hit path, not by Record.
    assert sorted(columns) == sorted([*COLUMNS, "computations", "verified"])
    assert len(columns) == len(COLUMNS) + 2
    assert {
        ("table", "records"),
        ("table", "locks"),
        ("table", "totals"),
        ("view", "records_readable"),
        ("view", "task_stats"),
        ("index", "records_task_name"),
        ("index", "records_created_at"),
        ("index", "records_expires_at"),
        ("index", "records_last_used"),
    } <= objects


@SQLITE_ONLY
def test_connection_pragmas(store: Store) -> None:
    conn = store.index.connection()
    assert isinstance(conn, sqlite3.Connection)
    assert conn.isolation_level is None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


@SQLITE_ONLY
def test_expires_index_is_partial(store: Store) -> None:
    sql = store.index.connection().execute(
        "SELECT sql FROM sqlite_master WHERE name = 'records_expires_at'"
    )
    assert "WHERE expires_at IS NOT NULL" in sql.fetchone()[0]


def test_index_file_is_owner_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "dir" / "index.db")
    try:
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(tmp_path / "new" / "dir").st_mode) == 0o700
    finally:
        store.close()


def test_reopening_keeps_records(tmp_path: Path, storage: LocalStorage) -> None:
    first = Store(tmp_path / "index.db")
    save(first, storage, key_of(1))
    first.close()
    second = Store(tmp_path / "index.db")
    try:
        assert second.lookup(key_of(1), NOW) is not None
    finally:
        second.close()


def test_a_saved_row_describes_its_file_as_reading_the_file_would(
    store: Store, storage: LocalStorage
) -> None:
    # A save records the file it put in place without reading it back (it knows the inode):
    # the row must be exactly what `reindex` would make of the file.
    save(store, storage, key_of(1), b"some payload", expires_at=NOW + 60)
    row = store.index.get(key_of(1), NOW)
    assert row is not None
    assert row == read_file_record(storage, default_location(key_of(1)))


def test_reopening_does_not_rerun_migrations(tmp_path: Path) -> None:
    # A file already at the current version is not touched: had the migrations run again, they
    # would have created the table here (or failed on the one below).
    path = tmp_path / "index.db"
    with raw(path) as conn:
        conn.execute("CREATE TABLE marker (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    Index(path).close()
    with raw(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"marker"}


def test_old_version_is_migrated_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    with raw(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    Index(path).close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 0


def test_newer_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(TaskstashError, match=re.escape(str(path))) as info:
        Store(path)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
    assert "upgrade taskstash" in str(info.value)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheCorruptedError, match=re.escape(str(path))):
        Store(path)


# --- records -----------------------------------------------------------------------------


def test_save_then_lookup(store: Store, storage: LocalStorage) -> None:
    saved = save(store, storage, key_of(1), b"hello", expires_at=NOW + 60)
    found = store.lookup(key_of(1), NOW)
    assert found == saved
    assert found.task_name == "add_one"
    assert found.task_qualname == "tests.add_one"
    assert found.created_at == NOW
    assert found.expires_at == NOW + 60
    assert (found.last_hit_at, found.hit_count) == (None, 0)
    assert found.storage == storage.url
    assert found.location == default_location(key_of(1))
    assert found.size_bytes == os.path.getsize(storage.path(found.location))
    assert found.components == {"inputs": "1" * 32, "task_source": "2" * 32}
    assert found.run_id == "0b7e4c1e-0000-4000-8000-000000000000"
    assert bytes(store.load(found, storage) or b"") == b"hello"
    assert store.lookup(key_of(2), NOW) is None


def test_components_of_records_are_independent(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1))
    first = store.lookup(key_of(1), NOW)
    assert first is not None
    first.components["inputs"] = "changed"
    second = store.lookup(key_of(1), NOW)
    assert second is not None
    assert second.components["inputs"] == "1" * 32


def test_expired_records_are_not_returned(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1), expires_at=NOW + 10)
    assert store.lookup(key_of(1), NOW + 9.999) is not None
    assert store.lookup(key_of(1), NOW + 10) is None
    assert store.lookup(key_of(1), NOW + 11) is None
    assert store.index.get(key_of(1)) is not None  # still there, for prune and explain


def test_upsert_replaces_the_record(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1), b"old", compute_seconds=1.0)
    store.note_hit(key_of(1), NOW + 1)
    store.flush_hits()
    save(store, storage, key_of(1), b"new", created_at=NOW + 5, compute_seconds=2.0)
    with reading(store.url) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 1
    record = store.lookup(key_of(1), NOW + 5)
    assert record is not None
    assert (record.created_at, record.compute_seconds) == (NOW + 5, 2.0)
    assert (record.hit_count, record.last_hit_at) == (0, None)
    assert bytes(store.load(record, storage) or b"") == b"new"


def test_delete_removes_row_then_file(store: Store, storage: LocalStorage) -> None:
    record = save(store, storage, key_of(1))
    assert os.path.exists(storage.path(record.location))
    assert store.delete(key_of(1)) is True
    assert store.lookup(key_of(1), NOW) is None
    assert not os.path.exists(storage.path(record.location))
    assert store.delete(key_of(1)) is False


# --- batched hits ------------------------------------------------------------------------


def hits_in_file(location: str, key: str) -> tuple[int, float | None]:
    with reading(location) as conn:
        row = conn.execute(
            "SELECT hit_count, last_hit_at FROM records WHERE key = ?", (key,)
        ).fetchone()
    return row[0], row[1]


def test_hits_are_written_only_on_flush(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1))
    save(store, storage, key_of(2))
    store.note_hit(key_of(1), NOW + 1)
    store.note_hit(key_of(1), NOW + 3)
    store.note_hit(key_of(1), NOW + 2)
    store.note_hit(key_of(2), NOW + 1)
    assert hits_in_file(store.url, key_of(1)) == (0, None)
    store.flush_hits()
    assert hits_in_file(store.url, key_of(1)) == (3, NOW + 3)
    assert hits_in_file(store.url, key_of(2)) == (1, NOW + 1)
    store.note_hit(key_of(1), NOW + 4)
    store.close()  # flushes
    assert hits_in_file(store.url, key_of(1)) == (4, NOW + 4)


def test_hits_are_written_a_moment_after_they_come(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1))
    now = time.time()
    store.note_hit(key_of(1), now)
    store.note_hit(key_of(1), now + 1)
    deadline = time.monotonic() + HIT_FLUSH_SECONDS + 10
    while hits_in_file(store.url, key_of(1))[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # no flush, no close: the background thread writes them
    assert hits_in_file(store.url, key_of(1)) == (2, now + 1)


def test_hits_of_a_replaced_record_are_dropped(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1))
    store.note_hit(key_of(1), NOW + 1)
    save(store, storage, key_of(1), b"again")
    store.flush_hits()
    assert hits_in_file(store.url, key_of(1)) == (0, None)


def test_hits_are_flushed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    script = f"""
import time
from taskstash.store import LocalStorage, default_location, make_header, open_store
store = open_store({str(path)!r})
storage = LocalStorage({str(tmp_path / "storage")!r})
key = "ab" * 16
h = make_header(key, b"x", task_name="t", task_qualname="m.t", serializer="pickle",
                created_at=time.time())
store.save(h, b"x", storage, default_location(key))
store.note_hit(key, time.time())
store.note_hit(key, time.time())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert hits_in_file(str(path), "ab" * 16)[0] == 2


POOL_TASK = """
from taskstash import task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS)
def square(x: int) -> int:
    return x * x

def call_square(x: int) -> int:
    return square(x)
"""

# Every call in the pool's workers is a hit: the parent computed each value first.
POOL_MAIN = """
import multiprocessing, sqlite3, sys, time
from pool_task import call_square, square

def hits(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT coalesce(sum(hit_count), 0) FROM records").fetchone()[0]

if __name__ == "__main__":
    method, ending, index, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    for x in range(n):
        square(x)
    context = multiprocessing.get_context(method)
    if ending == "join":
        pool = context.Pool(2)
        assert pool.map(call_square, range(n), chunksize=1) == [x * x for x in range(n)]
        pool.close()
        pool.join()
    else:  # the block's end may kill the workers: their hits must be written while they live
        with context.Pool(2) as pool:
            assert pool.map(call_square, range(n), chunksize=1) == [x * x for x in range(n)]
            deadline = time.monotonic() + 5
            while hits(index) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            sys.exit(f"{hits(index)} of {n} hits recorded" if hits(index) < n else 0)
"""


@pytest.mark.parametrize("ending", ["join", "terminate"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_hits_in_pool_workers_are_recorded(
    method: str, ending: str, tmp_path: Path, taskstash_home: Path
) -> None:
    (tmp_path / "pool_task.py").write_text(POOL_TASK)
    (tmp_path / "pool_main.py").write_text(POOL_MAIN)
    index, n = str(taskstash_home / "index.db"), 20
    subprocess.run(
        [sys.executable, str(tmp_path / "pool_main.py"), method, ending, index, str(n)],
        check=True,
        timeout=120,
    )
    with raw(index) as conn:
        records, hits = conn.execute("SELECT count(*), sum(hit_count) FROM records").fetchone()
    assert (records, hits) == (n, n)


# --- sharing and concurrency -------------------------------------------------------------


def test_open_store_shares_one_store_per_file(tmp_path: Path) -> None:
    a = open_store(tmp_path / "index.db")
    assert open_store(str(tmp_path / "index.db")) is a
    assert open_store(tmp_path / "." / "index.db") is a
    assert open_store(tmp_path / "other.db") is not a


def test_threads_share_a_store(store: Store, storage: LocalStorage) -> None:
    def work(thread: int) -> None:
        for i in range(50):
            key = key_of(i, prefix=f"{thread:x}f")
            payload = f"{thread}-{i}".encode()
            save(store, storage, key, payload)
            record = store.lookup(key, NOW)
            assert record is not None
            assert bytes(store.load(record, storage) or b"") == payload
            store.note_hit(key, NOW + 1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    store.flush_hits()
    with reading(store.url) as conn:
        count, hits = conn.execute("SELECT count(*), sum(hit_count) FROM records").fetchone()
    assert (count, hits) == (400, 400)
    assert len(list(storage.locations())) == 400


WRITER = """
import sys, time
from taskstash.store import LocalStorage, default_location, make_header, open_store
store = open_store(sys.argv[1])
storage = LocalStorage(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    key = f"c{i:x}".rjust(32, "0")
    payload = f"child-{i}".encode()
    h = make_header(key, payload, task_name="child", task_qualname="m.child",
                    serializer="pickle", created_at=time.time())
    store.save(h, payload, storage, default_location(key))
    assert store.lookup(key, time.time()) is not None
    store.note_hit(key, time.time())
"""


def test_two_processes_write_one_index(store: Store, storage: LocalStorage) -> None:
    n = 200
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, store.url, storage.root, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    child.stdin.write("go\n")
    child.stdin.flush()
    for i in range(n):  # concurrently with the child
        key = key_of(i, prefix="p")
        save(store, storage, key, f"parent-{i}".encode(), task_name="parent")
        assert store.lookup(key, NOW) is not None
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert "locked" not in stderr
    with reading(store.url) as conn:
        counts = dict(conn.execute("SELECT task_name, count(*) FROM records GROUP BY task_name"))
        child_hits = conn.execute(
            "SELECT sum(hit_count) FROM records WHERE task_name = 'child'"
        ).fetchone()[0]
    assert counts == {"parent": n, "child": n}
    assert child_hits == n  # flushed by the child at exit
    assert len(list(storage.locations())) == 2 * n


# A writer whose second thread holds a connection to the index (as a SERIALIZABLE task's lock
# manager does): opening more connections must never drop the process's locks on the file.
HELD_WRITER = """
import sys, threading, time
from taskstash.store import LocalStorage, Store, default_location, make_header
store = Store(sys.argv[1])
storage = LocalStorage(sys.argv[2])
tag, n = sys.argv[3], int(sys.argv[4])
opened, done = threading.Event(), threading.Event()
def hold():
    store.index.connection().execute("SELECT count(*) FROM records").fetchone()
    opened.set()
    done.wait()
holder = threading.Thread(target=hold)
holder.start()
opened.wait()
for i in range(n):
    key = f"{tag}{i:x}".rjust(32, "0")
    payload = f"{tag}-{i}".encode()
    h = make_header(key, payload, task_name=tag, task_qualname="m." + tag,
                    serializer="pickle", created_at=time.time())
    store.save(h, payload, storage, default_location(key))
done.set()
holder.join()
"""

# A plain sqlite3 reader: each close of its last connection checkpoints and deletes the WAL if
# it can lock the database file exclusively, that is if no other process holds a lock on it.
POLLING_READER = """
import os, sqlite3, sys
while not os.path.exists(sys.argv[2]):
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("SELECT count(*) FROM records").fetchone()
    conn.close()
"""


def test_no_record_is_lost_beside_a_thread_holding_a_connection(
    storage: LocalStorage, tmp_path: Path
) -> None:
    n = 100
    path, stop = str(tmp_path / "index.db"), tmp_path / "stop"
    Store(path).close()  # no connection of this process may hold the file locked
    reader = subprocess.Popen([sys.executable, "-c", POLLING_READER, path, str(stop)])
    try:
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", HELD_WRITER, path, storage.root, tag, str(n)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in ("a", "b")
        ]
        for writer in writers:
            _, stderr = writer.communicate(timeout=120)
            assert writer.returncode == 0, stderr
    finally:
        stop.touch()
        reader.wait(timeout=60)
    with raw(path) as conn:
        counts = dict(conn.execute("SELECT task_name, count(*) FROM records GROUP BY task_name"))
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    assert counts == {"a": n, "b": n}
    assert integrity == [("ok",)]


def test_a_forked_child_uses_its_own_connection(store: Store, storage: LocalStorage) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    save(store, storage, key_of(1))
    store.note_hit(key_of(1), NOW + 1)  # pending in the parent: the child must not flush it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the child)
        status = 1
        try:
            save(store, storage, key_of(2))
            store.close()
            status = 0 if store.lookup(key_of(1), NOW) is not None else 2
        finally:
            os.write(write, bytes([status]))
            os._exit(status)
    os.close(write)
    assert os.read(read, 1) == b"\x00"
    os.close(read)
    os.waitpid(pid, 0)
    assert store.lookup(key_of(2), NOW) is not None
    store.flush_hits()
    assert hits_in_file(store.url, key_of(1)) == (1, NOW + 1)


@SQLITE_ONLY
def test_readers_do_not_block_on_a_writer(store: Store, storage: LocalStorage) -> None:
    save(store, storage, key_of(1))
    writer = raw(store.path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE records SET hit_count = 99")
    try:
        result: list[Record | None] = []
        thread = threading.Thread(target=lambda: result.append(store.lookup(key_of(1), NOW)))
        thread.start()
        thread.join(timeout=5)
        assert result
        assert result[0] is not None
        assert result[0].hit_count == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# --- docs/schema.md ----------------------------------------------------------------------


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_docs_document_every_column(tmp_path: Path) -> None:
    text = DOCS.read_text()
    table = text.split("## Table `records`")[1].split("###")[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    conn = Index(tmp_path / "index.db").connection()
    assert documented == [row[1] for row in conn.execute("PRAGMA table_info(records)")]


def test_docs_queries_run(index_backend: str, store: Store, storage: LocalStorage) -> None:
    other = "(PostgreSQL" if index_backend == "sqlite" else "(SQLite"
    queries = [q for q in doc_queries() if other not in q.splitlines()[0]]
    assert len(queries) == 7
    now = time.time()
    save(store, storage, key_of(1), b"a", created_at=now - 30)
    save(store, storage, key_of(2), b"bb", created_at=now - 20, expires_at=now - 10)
    save(store, storage, key_of(3), b"ccc", created_at=now - 10, task_name="other")
    save(store, storage, key_of(4), b"dddd", created_at=now - 5)
    save(store, storage, key_of(5), b"e", created_at=now - 1, task_name="report", kind="flow")
    store.note_hit(key_of(1), now)
    store.flush_hits()
    results = {}
    with reading(store.url) as conn:
        for query in queries:
            title = query.splitlines()[0]
            assert title.startswith("-- "), query
            # As psql runs it: the text as is, no placeholders (the `?` of a comment is text).
            results[title] = getattr(conn, "raw", conn).execute(query).fetchall()
    by_task = next(rows for title, rows in results.items() if "Records of a task" in title)
    assert [row[0] for row in by_task] == [key_of(4), key_of(2), key_of(1)]
    assert by_task[2][3] == 1  # hit_count
    expired = next(rows for title, rows in results.items() if "Expired" in title)
    assert [row[0] for row in expired] == [key_of(2)]
    saved = next(rows for title, rows in results.items() if "time saved" in title)
    assert saved[0][:2] == ("add_one", 1)
    kinds = next(rows for title, rows in results.items() if "cached flows'" in title)
    assert [tuple(row)[:3] for row in kinds] == [("flow", 1, 0), ("task", 4, 1)]


def test_totals_and_computations_follow_every_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "index.db")
    storage = LocalStorage(tmp_path / "results")

    def save(key: str, payload: bytes) -> None:
        header = make_header(
            key, payload, task_name="t", task_qualname="m.t", serializer="pickle", created_at=1.0
        )
        store.save(header, payload, storage, default_location(key))

    def totals() -> tuple[int, int]:
        with reading(store.url) as conn:
            counted: tuple[int, int] = conn.execute("SELECT records, bytes FROM totals").fetchone()
            summed = conn.execute("SELECT count(*), coalesce(sum(size_bytes), 0) FROM records")
            assert counted == summed.fetchone()
        return counted

    save("a" * 32, b"x" * 100)
    save("b" * 32, b"y" * 50)
    assert totals()[0] == 2
    save("a" * 32, b"z" * 10)  # computed again, smaller
    assert totals()[0] == 2
    store.delete("b" * 32)
    assert totals()[0] == 1
    with reading(store.url) as conn:
        assert conn.execute("SELECT computations FROM records").fetchall() == [(2,)]
        stats = conn.execute("SELECT hits, computations, hit_rate FROM task_stats").fetchone()
    assert stats == (0, 2, 0.0)


def test_an_index_of_the_previous_version_is_migrated_with_its_records(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    with raw(path) as conn:  # an index as version 2 left it, with two records
        for migrate in MIGRATIONS[:2]:
            migrate(conn)
        conn.execute("PRAGMA user_version = 2")
        for key, size in (("a" * 32, 100), ("b" * 32, 23)):
            conn.execute(
                "INSERT INTO records (key, task_name, task_qualname, created_at, size_bytes, "
                "serializer, storage, location, checksum) "
                "VALUES (?, 't', 'm.t', 1.0, ?, 'pickle', '/s', ?, 'c')",
                (key, size, key),
            )
    store = Store(path)
    assert store.lookup("a" * 32, now=2.0) is not None
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT records, bytes FROM totals").fetchone() == (2, 123)
        assert conn.execute("SELECT sum(computations) FROM records").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM records_readable").fetchone() == (2,)
