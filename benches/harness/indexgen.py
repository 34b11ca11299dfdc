"""Fill a taskstash index with generated records, fast: for benchmarks of big caches.

    from benches.harness.indexgen import populate_index

    populate_index(index_path, 1_000_000)  # about ten seconds

The index must exist with its schema (let taskstash create it: call a cached task once) and hold
at least one record, the template: generated rows copy its storage, serializer, sizes, task and
components, and get their own key, location, checksum and creation time (docs/schema.md). Their
result files do not exist: a hit on one of them would be a miss. Rows go straight into the
`records` table with `executemany`, in key order (so every B-tree is appended to, not split at
random), in one `BEGIN IMMEDIATE` transaction, so nobody ever sees half of them.

Run it while no taskstash program writes to the index (docs/schema.md says why).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskstash.store.index import COLUMNS

__all__ = ["Generated", "populate_index"]

_KEYSPACE = 1 << 128
_DAY = 86_400.0

# The rows written here are `Record` rows: the index's own column list, so the two cannot drift.
_COLUMNS = COLUMNS

Row = tuple[object, ...]


@dataclass(frozen=True)
class Generated:
    """What `populate_index` did.

    Attributes:
        records: Rows inserted.
        total: Rows in the index afterwards.
        seconds: Time taken, commit and checkpoint included.
    """

    records: int
    total: int
    seconds: float


def _template(conn: sqlite3.Connection) -> sqlite3.Row:
    try:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM records ORDER BY created_at LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError as exc:
        raise ValueError(f"not a taskstash index ({exc}): call a cached task once first") from exc
    if row is None:
        raise ValueError("the index holds no record to copy: call a cached task once first")
    return row


def _rows(
    template: sqlite3.Row,
    count: int,
    task_names: Sequence[str],
    now: float,
    created_span: float,
    expiring_fraction: float,
    seed: int,
) -> Iterator[Row]:
    """`count` rows with keys spread evenly over the key space, in increasing key order.

    Key i is drawn at random from the i-th of `count` equal slices of the 128-bit key space:
    unique and sorted by construction, with no sort of a million strings.
    """
    rng = random.Random(seed)
    width = _KEYSPACE // count
    existing = template["key"]
    oldest = now - created_span
    for i in range(count):
        key = f"{i * width + rng.randrange(width):032x}"
        if key == existing:  # 1 in 2**100 or so; never collide with the record that is hit
            key = f"{i * width + (int(existing, 16) + 1 - i * width) % width:032x}"
        created_at = oldest + created_span * (i / count)
        expires_at = created_at + _DAY if rng.random() < expiring_fraction else None
        name = task_names[i % len(task_names)] if task_names else template["task_name"]
        # The template's values for every column not set here, so new columns need no change.
        row = {column: template[column] for column in _COLUMNS}
        row.update(
            key=key,
            task_name=name,
            task_qualname=template["task_qualname"] if not task_names else f"generated.{name}",
            created_at=created_at,
            expires_at=expires_at,
            last_hit_at=None,
            hit_count=0,
            location=f"{key[:2]}/{key}",
            checksum=f"{rng.getrandbits(128):032x}",
            run_id=None,
        )
        yield tuple(row[column] for column in _COLUMNS)


def populate_index(
    index_path: str | Path,
    count: int,
    *,
    task_names: Sequence[str] = (),
    created_span: float = 30 * _DAY,
    expiring_fraction: float = 0.0,
    seed: int = 0,
) -> Generated:
    """Inserts `count` generated records into an existing taskstash index.

    Args:
        index_path: The index file (`$TASKSTASH_HOME/index.db`).
        count: Records to insert.
        task_names: Task names, given to the rows in turn (empty: the template's task).
        created_span: Creation times are spread evenly over this many seconds up to now.
        expiring_fraction: Share of rows that expire a day after creation (most of them long
            expired), for benchmarks of pruning; the rest never expire.
        seed: Seed of the keys and checksums.

    Returns:
        How many rows were inserted and how long it took.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    started = time.perf_counter()
    conn = sqlite3.connect(index_path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        # Generated data needs no durability: a crash means generating it again.
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the indexes stay in memory
        template = _template(conn)
        if count:
            rows = _rows(
                template, count, task_names, time.time(), created_span, expiring_fraction, seed
            )
            placeholders = ", ".join("?" * len(_COLUMNS))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({placeholders})", rows
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            # Fold the write-ahead log into the database, as a long-lived index would be.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total: int = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        conn.close()
    return Generated(count, total, time.perf_counter() - started)
