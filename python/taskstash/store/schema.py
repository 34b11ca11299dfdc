"""The index schema, version by version: `MIGRATIONS[n]` upgrades version n to n + 1.

docs/schema.md documents the result as a public contract. Append steps; never edit one that was
released (a database at version n has run exactly the first n steps as they were then).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 2


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    """Version 1: the records table, its indexes and the readable views."""
    conn.execute(
        """
        CREATE TABLE records (
            key             TEXT PRIMARY KEY NOT NULL,
            task_name       TEXT NOT NULL,
            task_qualname   TEXT NOT NULL,
            created_at      REAL NOT NULL,
            expires_at      REAL,
            last_hit_at     REAL,
            hit_count       INTEGER NOT NULL DEFAULT 0,
            size_bytes      INTEGER NOT NULL,
            serializer      TEXT NOT NULL,
            storage         TEXT NOT NULL,
            location        TEXT NOT NULL,
            checksum        TEXT NOT NULL,
            compute_seconds REAL NOT NULL DEFAULT 0,
            run_id          TEXT,
            components      TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    conn.execute("CREATE INDEX records_task_name ON records (task_name)")
    conn.execute("CREATE INDEX records_created_at ON records (created_at)")
    # Most records never expire: index only those that do.
    conn.execute(
        "CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL"
    )
    # Least recently used first: ORDER BY coalesce(last_hit_at, created_at).
    conn.execute("CREATE INDEX records_last_used ON records (coalesce(last_hit_at, created_at))")
    conn.execute(
        """
        CREATE VIEW records_readable AS
        SELECT
            key,
            task_name,
            task_qualname,
            strftime('%Y-%m-%dT%H:%M:%fZ', created_at, 'unixepoch') AS created,
            strftime('%Y-%m-%dT%H:%M:%fZ', expires_at, 'unixepoch') AS expires,
            strftime('%Y-%m-%dT%H:%M:%fZ', last_hit_at, 'unixepoch') AS last_hit,
            expires_at IS NOT NULL
                AND expires_at <= (julianday('now') - 2440587.5) * 86400.0 AS expired,
            hit_count,
            size_bytes,
            CASE
                WHEN size_bytes < 1024 THEN size_bytes || ' B'
                WHEN size_bytes < 1048576 THEN printf('%.1f KiB', size_bytes / 1024.0)
                WHEN size_bytes < 1073741824 THEN printf('%.1f MiB', size_bytes / 1048576.0)
                ELSE printf('%.1f GiB', size_bytes / 1073741824.0)
            END AS size,
            round(compute_seconds, 6) AS compute_seconds,
            serializer,
            storage,
            location,
            checksum,
            run_id,
            components
        FROM records
        """
    )
    conn.execute(
        """
        CREATE VIEW task_stats AS
        SELECT
            task_name,
            count(*) AS records,
            sum(size_bytes) AS total_bytes,
            sum(hit_count) AS hits,
            sum(compute_seconds) AS compute_seconds,
            sum(hit_count * compute_seconds) AS compute_seconds_saved,
            strftime('%Y-%m-%dT%H:%M:%fZ', min(created_at), 'unixepoch') AS first_created,
            strftime('%Y-%m-%dT%H:%M:%fZ', max(coalesce(last_hit_at, created_at)), 'unixepoch')
                AS last_used
        FROM records
        GROUP BY task_name
        """
    )


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Version 2: the locks table of `taskstash.locking.SQLiteLockManager`."""
    conn.execute(
        """
        CREATE TABLE locks (
            key         TEXT PRIMARY KEY NOT NULL,
            holder      TEXT NOT NULL,
            host        TEXT NOT NULL,
            pid         INTEGER NOT NULL,
            pid_started TEXT,
            acquired_at REAL NOT NULL,
            expires_at  REAL
        )
        """
    )


MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _migrate_to_1,
    _migrate_to_2,
)
"""`MIGRATIONS[n]` upgrades a database from schema version n to n + 1. Append only."""
assert len(MIGRATIONS) == SCHEMA_VERSION
