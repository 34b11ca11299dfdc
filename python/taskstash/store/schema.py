"""The index schema, version by version: `MIGRATIONS[n]` upgrades version n to n + 1.

docs/schema.md documents the result as a public contract. Append steps; never edit one that was
released (a database at version n has run exactly the first n steps as they were then).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 5


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


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """Version 3: computations per record, running totals, and the views that show them."""
    # How often the key was computed (stored): with hit_count, the hit rate of a record.
    conn.execute("ALTER TABLE records ADD COLUMN computations INTEGER NOT NULL DEFAULT 1")
    # Record count and bytes of the whole index, kept by triggers: a size limit is checked on
    # every write, and must not scan the table to do it.
    conn.execute(
        """
        CREATE TABLE totals (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            records INTEGER NOT NULL,
            bytes   INTEGER NOT NULL
        )
        """
    )
    conn.execute("INSERT INTO totals SELECT 1, count(*), coalesce(sum(size_bytes), 0) FROM records")
    conn.execute(
        """
        CREATE TRIGGER records_counted_in AFTER INSERT ON records BEGIN
            UPDATE totals SET records = records + 1, bytes = bytes + new.size_bytes WHERE id = 1;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER records_counted_out AFTER DELETE ON records BEGIN
            UPDATE totals SET records = records - 1, bytes = bytes - old.size_bytes WHERE id = 1;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER records_resized AFTER UPDATE OF size_bytes ON records BEGIN
            UPDATE totals SET bytes = bytes - old.size_bytes + new.size_bytes WHERE id = 1;
        END
        """
    )
    conn.execute("DROP VIEW records_readable")
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
            components,
            computations
        FROM records
        """
    )
    conn.execute("DROP VIEW task_stats")
    conn.execute(
        """
        CREATE VIEW task_stats AS
        SELECT
            task_name,
            count(*) AS records,
            sum(size_bytes) AS total_bytes,
            sum(hit_count) AS hits,
            sum(computations) AS computations,
            round(sum(hit_count) * 1.0 / (sum(hit_count) + sum(computations)), 4) AS hit_rate,
            sum(compute_seconds) AS compute_seconds,
            sum(hit_count * compute_seconds) AS compute_seconds_saved,
            strftime('%Y-%m-%dT%H:%M:%fZ', min(created_at), 'unixepoch') AS first_created,
            strftime('%Y-%m-%dT%H:%M:%fZ', max(coalesce(last_hit_at, created_at)), 'unixepoch')
                AS last_used
        FROM records
        GROUP BY task_name
        """
    )


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    """Version 4: a short text of each record's call arguments, in the table and the view."""
    # NULL for records made before, or with TASKSTASH_RECORD_PARAMETERS=false.
    conn.execute("ALTER TABLE records ADD COLUMN parameters TEXT")
    conn.execute("DROP VIEW records_readable")
    conn.execute(
        """
        CREATE VIEW records_readable AS
        SELECT
            key,
            task_name,
            task_qualname,
            parameters,
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
            components,
            computations
        FROM records
        """
    )


def _migrate_to_5(conn: sqlite3.Connection) -> None:
    """Version 5: a record's kind, and a mapped file's check.

    `kind`: what each record is the result of (a task's call or a flow's), in the views too.
    `verified`: the identity of a mapped result file once checked, so no process reads it again
    (NULL until a process maps the file, and again when the record is replaced).
    """
    # Every record made before was a task's.
    conn.execute("ALTER TABLE records ADD COLUMN kind TEXT NOT NULL DEFAULT 'task'")
    conn.execute("ALTER TABLE records ADD COLUMN verified TEXT")
    conn.execute("DROP VIEW records_readable")
    conn.execute(
        """
        CREATE VIEW records_readable AS
        SELECT
            key,
            kind,
            task_name,
            task_qualname,
            parameters,
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
            components,
            computations
        FROM records
        """
    )
    # A flow and a task may share a name: each is a row of its own.
    conn.execute("DROP VIEW task_stats")
    conn.execute(
        """
        CREATE VIEW task_stats AS
        SELECT
            task_name,
            kind,
            count(*) AS records,
            sum(size_bytes) AS total_bytes,
            sum(hit_count) AS hits,
            sum(computations) AS computations,
            round(sum(hit_count) * 1.0 / (sum(hit_count) + sum(computations)), 4) AS hit_rate,
            sum(compute_seconds) AS compute_seconds,
            sum(hit_count * compute_seconds) AS compute_seconds_saved,
            strftime('%Y-%m-%dT%H:%M:%fZ', min(created_at), 'unixepoch') AS first_created,
            strftime('%Y-%m-%dT%H:%M:%fZ', max(coalesce(last_hit_at, created_at)), 'unixepoch')
                AS last_used
        FROM records
        GROUP BY task_name, kind
        """
    )


MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
    _migrate_to_4,
    _migrate_to_5,
)
"""`MIGRATIONS[n]` upgrades a database from schema version n to n + 1. Append only."""
assert len(MIGRATIONS) == SCHEMA_VERSION
