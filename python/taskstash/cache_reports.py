"""What `Cache` reports (statistics per task, records pruned); how it selects records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Pruned", "TaskStats", "where_clause"]


@dataclass(frozen=True)
class TaskStats:
    """What the cache holds for one task (or flow), and what it has saved.

    Attributes:
        task_name: The task, or the flow.
        records: Records of the task.
        total_bytes: Bytes of their result files.
        hits: Hits written to the index (they lag running programs by about a second).
        computations: Times its records were computed (stored).
        hit_rate: `hits / (hits + computations)`.
        compute_seconds_saved: The sum over records of hits times computing time.
        kind: `"task"`, or `"flow"` for a cached flow's records (a flow and a task of the same
            name are counted apart).
    """

    task_name: str
    records: int
    total_bytes: int
    hits: int
    computations: int
    hit_rate: float
    compute_seconds_saved: float
    kind: str = "task"


@dataclass(frozen=True)
class Pruned:
    """Records removed (or that would be, on a dry run).

    Attributes:
        records: Records removed from the index.
        bytes: The bytes of their files.
        keys: Their keys.
        kept_objects: How many of them were in a shared storage, where their objects stay
            (removed without `delete_objects`).
    """

    records: int
    bytes: int
    keys: list[str] = field(default_factory=list)
    kept_objects: int = 0


def where_clause(
    *,
    task: str | None = None,
    kind: str | None = None,
    expired: bool | None = None,
    older_than: float | None = None,
    key_prefix: str | None = None,
    storage: str | None = None,
    unindexed: str = "",
) -> tuple[str, tuple[object, ...]]:
    """A ` WHERE ...` clause (or "") and its parameters; every condition but `kind` uses an index.

    `kind` has none: it matches most rows (tasks') or few (flows'), and `Cache.records` looks
    among the newest rows first.

    With `unindexed` (the database's hint, `IndexDatabase.unindexed`), the task and expiry
    conditions are written so that the planner does not use their indexes (`+task_name`).
    """
    clauses: list[str] = []
    params: list[object] = []
    now = time.time()
    plus = unindexed
    if task is not None:
        clauses.append(f"{plus}task_name = ?")
        params.append(task)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    if expired is True:
        clauses.append(f"{plus}expires_at IS NOT NULL AND {plus}expires_at <= ?")
        params.append(now)
    elif expired is False:
        clauses.append(f"({plus}expires_at IS NULL OR {plus}expires_at > ?)")
        params.append(now)
    if older_than is not None:
        clauses.append("created_at < ?")
        params.append(now - older_than)
    if storage is not None:
        clauses.append("storage = ?")
        params.append(storage)
    if key_prefix is not None:
        # A range on the primary key instead of LIKE, which SQLite would not index here.
        clauses.append("key >= ? AND key < ?")
        params += [key_prefix, key_prefix + "\uffff"]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
