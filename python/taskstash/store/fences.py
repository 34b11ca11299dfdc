"""Fences: what lets a lock holder's result be recorded only while its taking still stands.

A SERIALIZABLE holder whose lease ran out (or whose connection to the lock's database was
lost) may still be computing when another holder takes the key, computes and stores. When the
first one finishes, its result must not replace the newer one. The lock manager hands out a
`Fence` with each taking; `Store.commit` asks it, inside the write transaction that would
record the result, whether the taking is still the key's latest, and discards the result if
not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from taskstash.store.database import Connection
    from taskstash.store.index import Index

__all__ = ["Fence"]


class Fence(Protocol):
    """One taking of a key's lock, as the holder's result is recorded."""

    @property
    def key(self) -> str:
        """The locked key."""

    def holds(self, index: Index, conn: Connection) -> bool:
        """Whether nobody has taken the key since, asked inside `index`'s write transaction.

        A lock kept in the same database is judged on `conn`, so that no taker can slip in
        between the answer and the commit (takers lock the key as writers do).
        """
