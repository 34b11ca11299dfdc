"""The index schema on PostgreSQL: the same tables, columns and views as on SQLite.

docs/schema.md documents both. A PostgreSQL index is created at schema version `BASELINE` in one
step, then brought to the current version by the steps of `MIGRATIONS`, in the same transaction;
later versions append a step here and one in `taskstash.store.schema`.
The version is kept in the one-row table `taskstash_schema`.

What differs from SQLite: column types (`double precision`, `bigint`), `expired` in the
readable view is a boolean, and the running totals are kept in 64 counter rows
(`totals_shards`, the `totals` view sums them) rather than one: a save updates the row of its
connection's shard, so many machines saving at once rarely wait on the same row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["BASELINE", "LOCK_CLASS", "MIGRATIONS", "create_baseline"]

BASELINE: Final = 4
"""The schema version a new PostgreSQL index is created at."""

LOCK_CLASS: Final = 0x7A5C
"""The first key of taskstash's advisory locks (the second is the hash of a key, or 0 for
migrations), so that they never meet another application's in the same database."""

SHARDS: Final = 64
"""Counter rows of the running totals."""

_STATEMENTS: Final = (
    """
    CREATE TABLE records (
        key             text PRIMARY KEY,
        task_name       text NOT NULL,
        task_qualname   text NOT NULL,
        created_at      double precision NOT NULL,
        expires_at      double precision,
        last_hit_at     double precision,
        hit_count       bigint NOT NULL DEFAULT 0,
        size_bytes      bigint NOT NULL,
        serializer      text NOT NULL,
        storage         text NOT NULL,
        location        text NOT NULL,
        checksum        text NOT NULL,
        compute_seconds double precision NOT NULL DEFAULT 0,
        run_id          text,
        components      text NOT NULL DEFAULT '{}',
        computations    bigint NOT NULL DEFAULT 1,
        parameters      text
    )
    """,
    "CREATE INDEX records_task_name ON records (task_name)",
    "CREATE INDEX records_created_at ON records (created_at)",
    "CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX records_last_used ON records ((coalesce(last_hit_at, created_at)))",
    # The locks of `taskstash.locking.PostgresLockManager`: leases in the server's clock, the
    # holder's backend (a killed connection frees its locks), and a fencing token per taking.
    """
    CREATE TABLE locks (
        key         text PRIMARY KEY,
        holder      text NOT NULL,
        host        text NOT NULL,
        pid         integer NOT NULL,
        backend_pid integer NOT NULL,
        token       bigint NOT NULL,
        acquired_at double precision NOT NULL,
        expires_at  double precision
    )
    """,
    "CREATE SEQUENCE lock_tokens",
    """
    CREATE TABLE totals_shards (
        shard   smallint PRIMARY KEY,
        records bigint NOT NULL,
        bytes   bigint NOT NULL
    )
    """,
    f"INSERT INTO totals_shards SELECT s, 0, 0 FROM generate_series(0, {SHARDS - 1}) AS s",
    # Any shard will do: only the sum means anything. The connection's own keeps concurrent
    # writers off each other's rows.
    f"""
    CREATE FUNCTION taskstash_count_records() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE totals_shards SET records = records + 1, bytes = bytes + NEW.size_bytes
            WHERE shard = pg_backend_pid() % {SHARDS};
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE totals_shards SET records = records - 1, bytes = bytes - OLD.size_bytes
            WHERE shard = pg_backend_pid() % {SHARDS};
        ELSIF NEW.size_bytes <> OLD.size_bytes THEN
            UPDATE totals_shards SET bytes = bytes - OLD.size_bytes + NEW.size_bytes
            WHERE shard = pg_backend_pid() % {SHARDS};
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER records_counted AFTER INSERT OR DELETE OR UPDATE OF size_bytes ON records
    FOR EACH ROW EXECUTE FUNCTION taskstash_count_records()
    """,
    """
    CREATE VIEW totals AS
    SELECT 1 AS id, sum(records)::bigint AS records, sum(bytes)::bigint AS bytes
    FROM totals_shards
    """,
    """
    CREATE VIEW records_readable AS
    SELECT
        key,
        task_name,
        task_qualname,
        parameters,
        to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
            AS created,
        to_char(to_timestamp(expires_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
            AS expires,
        to_char(to_timestamp(last_hit_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
            AS last_hit,
        expires_at IS NOT NULL AND expires_at <= extract(epoch FROM now()) AS expired,
        hit_count,
        size_bytes,
        CASE
            WHEN size_bytes < 1024 THEN size_bytes || ' B'
            WHEN size_bytes < 1048576 THEN round(size_bytes / 1024.0, 1) || ' KiB'
            WHEN size_bytes < 1073741824 THEN round(size_bytes / 1048576.0, 1) || ' MiB'
            ELSE round(size_bytes / 1073741824.0, 1) || ' GiB'
        END AS size,
        round(compute_seconds::numeric, 6) AS compute_seconds,
        serializer,
        storage,
        location,
        checksum,
        run_id,
        components,
        computations
    FROM records
    """,
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
        to_char(to_timestamp(min(created_at)) AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_created,
        to_char(to_timestamp(max(coalesce(last_hit_at, created_at))) AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_used
    FROM records
    GROUP BY task_name
    """,
)


def create_baseline(conn: Any) -> None:
    """Creates the schema at version `BASELINE` in an empty database (inside a transaction)."""
    for statement in _STATEMENTS:
        conn.execute(statement)


def _migrate_to_5(conn: Any) -> None:
    """Version 5: a record's kind (task or flow), and a mapped file's check (see SQLite's)."""
    conn.execute("ALTER TABLE records ADD COLUMN kind text NOT NULL DEFAULT 'task'")
    conn.execute("ALTER TABLE records ADD COLUMN verified text")
    # A view gains a column in the middle only by being made again.
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
            to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                AS created,
            to_char(to_timestamp(expires_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                AS expires,
            to_char(to_timestamp(last_hit_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                AS last_hit,
            expires_at IS NOT NULL AND expires_at <= extract(epoch FROM now()) AS expired,
            hit_count,
            size_bytes,
            CASE
                WHEN size_bytes < 1024 THEN size_bytes || ' B'
                WHEN size_bytes < 1048576 THEN round(size_bytes / 1024.0, 1) || ' KiB'
                WHEN size_bytes < 1073741824 THEN round(size_bytes / 1048576.0, 1) || ' MiB'
                ELSE round(size_bytes / 1073741824.0, 1) || ' GiB'
            END AS size,
            round(compute_seconds::numeric, 6) AS compute_seconds,
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
            kind,
            count(*) AS records,
            sum(size_bytes) AS total_bytes,
            sum(hit_count) AS hits,
            sum(computations) AS computations,
            round(sum(hit_count) * 1.0 / (sum(hit_count) + sum(computations)), 4) AS hit_rate,
            sum(compute_seconds) AS compute_seconds,
            sum(hit_count * compute_seconds) AS compute_seconds_saved,
            to_char(to_timestamp(min(created_at)) AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_created,
            to_char(to_timestamp(max(coalesce(last_hit_at, created_at))) AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_used
        FROM records
        GROUP BY task_name, kind
        """
    )


MIGRATIONS: Final[tuple[Callable[[Any], None], ...]] = (_migrate_to_5,)
"""`MIGRATIONS[n]` upgrades a PostgreSQL index from `BASELINE + n` to the next. Append only."""
