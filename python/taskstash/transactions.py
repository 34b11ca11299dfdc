"""Transactions: the records of several task calls committed together, or not at all.

    from taskstash.transactions import transaction

    with transaction():
        data = load()          # both records are written when the block ends,
        result = transform(data)   # neither if it raises

Every task call that runs its function runs inside a transaction of its own, nested in the one
open around it (a `with transaction()` block or the call of an enclosing task). A nested
transaction hands what it staged to its parent, and everything is written when the outermost
one commits: the result files are renamed into place and their rows written in one write
transaction of the index, so another process sees all of them or none. Rolling back removes the
staged files; nothing was visible. Tasks' `on_commit` and `on_rollback` hooks run with the
transaction, as do hooks passed to `Transaction.stage`.

The states, commit modes, isolation levels, nesting rules and hooks are Prefect's
(`prefect.transactions`), so that code written for it keeps its meaning.
"""

from __future__ import annotations

import builtins
import copy
import enum
import inspect
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from taskstash.locking import LockManager
from taskstash.store import Record, Staged, Store, default_location, load_value, resolve_serializer
from taskstash.store.fences import Fence

if TYPE_CHECKING:
    from taskstash.cache import Cache

__all__ = [
    "CommitMode",
    "IsolationLevel",
    "ResultRecord",
    "Transaction",
    "TransactionState",
    "get_transaction",
    "transaction",
]

_log = logging.getLogger("taskstash")


class IsolationLevel(enum.StrEnum):
    """What a transaction with a key (and the task calls inside it) lock while they run.

    Equal to the strings a cache policy's `isolation_level` takes.
    """

    READ_COMMITTED = "READ_COMMITTED"
    """No lock: concurrent transactions of one key may all run; the last commit stays."""
    SERIALIZABLE = "SERIALIZABLE"
    """Each key is locked from the start of its transaction until it commits or rolls back."""


class CommitMode(enum.StrEnum):
    """When a transaction commits."""

    EAGER = "EAGER"
    """When its block ends, even inside another transaction."""
    LAZY = "LAZY"
    """With its outermost transaction (the default)."""
    OFF = "OFF"
    """Never on its own: rolled back at the end unless committed explicitly."""


class TransactionState(enum.StrEnum):
    """Where a transaction is in its life."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class Hook(Protocol):
    """An `on_commit` or `on_rollback` hook: called with the transaction (may be `async def`)."""

    def __call__(self, txn: Transaction, /) -> object: ...


class _NotSet:
    def __repr__(self) -> str:
        return "NOT_SET"


_NOT_SET: Final = _NotSet()


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A committed result read back by `Transaction.read`.

    Attributes:
        result: The value.
        metadata: Its index row.
    """

    result: Any
    metadata: Record


_active: ContextVar[Transaction | None] = ContextVar("taskstash_transaction", default=None)
# The commit in progress that writes the records of the transactions it commits.
_writing: ContextVar[_Batch | None] = ContextVar("taskstash_commit", default=None)


def get_transaction() -> Transaction | None:
    """The innermost transaction open in this context, or None."""
    return _active.get()


class Transaction:
    """The state of one transaction; open it with `transaction()` (or `with Transaction():`).

    Args:
        key: Names the transaction's own record: with a key, `stage(value)` writes `value` as
            the record of that key on commit, and a transaction whose key already has a
            record starts out committed (unless `overwrite`).
        store: The cache holding that record (`taskstash.Cache`); `Cache()` if a key is given.
        commit_mode: When to commit (see `CommitMode`); None inherits the parent's, or LAZY.
        isolation_level: None inherits the parent's, or READ_COMMITTED. With SERIALIZABLE the
            key is locked until commit or rollback, and task calls inside lock their keys too.
        overwrite: Write the record even if the key already has one.
        write_on_commit: Write the staged value on commit (with a key and store).
        logger: Where hooks and failed commits are reported (the `taskstash` logger).
        state: The starting state.

    Attributes:
        children: The nested transactions handed over to this one, in order.
        on_commit_hooks: Called with this transaction when it commits.
        on_rollback_hooks: Called with this transaction when it rolls back (last first).
    """

    __slots__ = (
        "_fence",
        "_lock",
        "_locked_keys",
        "_parent",
        "_record",
        "_settled",
        "_staged_value",
        "_stored_values",
        "_token",
        "children",
        "commit_mode",
        "isolation_level",
        "key",
        "logger",
        "on_commit_hooks",
        "on_rollback_hooks",
        "on_write_error",
        "overwrite",
        "state",
        "store",
        "write_on_commit",
    )

    def __init__(
        self,
        key: str | None = None,
        store: Cache | None = None,
        commit_mode: CommitMode | None = None,
        isolation_level: IsolationLevel | None = None,
        overwrite: bool = False,
        write_on_commit: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        state: TransactionState = TransactionState.PENDING,
    ) -> None:
        self.key = key
        self.store = store
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger or _log
        self.state = state
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Hook] = []
        self.on_rollback_hooks: list[Hook] = []
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._token: Token[Transaction | None] | None = None
        self._parent: Transaction | None = None
        self._record: tuple[Store, Staged] | None = None
        self._lock: tuple[LockManager, str, str] | None = None
        self._fence: Fence | None = None
        self._locked_keys: builtins.set[str] = builtins.set()  # `set` is a method here
        self._settled = False
        self.on_write_error: Callable[[Exception], None] | None = None
        """Reports a record that could not be written (else a warning names the key)."""

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"

    # the life of a transaction -----------------------------------------------------------------

    def __enter__(self) -> Transaction:
        self._prepare()
        self._begin()
        self._token = _active.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._exit(failed=exc_type is not None)

    def _prepare(self) -> None:
        if self._token is not None:
            raise RuntimeError("this transaction is already open; a transaction opens once")
        parent = self._parent = _active.get()
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = (
                parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
            )
        else:
            self.isolation_level = IsolationLevel(self.isolation_level)
        self.state = TransactionState.ACTIVE

    def _begin(self) -> None:
        if self.key is None or self.store is None:
            return
        if self.isolation_level is IsolationLevel.SERIALIZABLE:
            from taskstash.destinations import index_lock_manager

            manager = index_lock_manager(self.store.store)
            holder = f"transaction:{os.urandom(16).hex()}"
            manager.acquire_lock(self.key, holder)
            self.hold_lock(manager, self.key, holder)
        if not self.overwrite and self.store.store.lookup(self.key, time.time()) is not None:
            self.state = TransactionState.COMMITTED

    def _exit(self, *, failed: bool) -> None:
        if self._token is None:
            raise RuntimeError("a transaction was closed that was not open")
        if not self._settled:
            self._settle(failed=failed)
        self._reset()

    def _settle(self, *, failed: bool) -> None:
        """Commits or rolls back as leaving the block does, but stays the current transaction.

        An async task's call settles its transaction in a worker thread (where the context's
        changes do not reach the caller), then leaves the block on the event loop.
        """
        self._settled = True
        if failed:
            self.rollback()
            return
        if self.commit_mode is CommitMode.EAGER:
            self.commit()
        if self._parent is not None:
            return  # the parent commits or rolls back what this one staged
        if self.commit_mode is CommitMode.OFF:
            self.rollback()  # nobody committed it; does nothing if it was committed
        elif self.commit_mode is CommitMode.LAZY:
            self.commit()

    def _written_on_exit(self) -> list[tuple[Store, Staged]]:
        """The records staged (`stage_record`) that leaving the block without an error writes."""
        if self.commit_mode is not CommitMode.EAGER and (
            self._parent is not None or self.commit_mode is not CommitMode.LAZY
        ):
            return []
        return self._staged_records()

    def _staged_records(self) -> list[tuple[Store, Staged]]:
        found = [] if self._record is None else [self._record]
        for child in self.children:
            found += child._staged_records()
        return found

    def _reset(self) -> None:
        parent = self._parent
        if parent is not None:
            parent.add_child(self)
        if self._token is not None:
            _active.reset(self._token)
            self._token = None
        # After the reset, so that a parent's rollback hooks see the parent as current.
        if parent is not None and self.state is TransactionState.ROLLED_BACK:
            parent.rollback()

    def add_child(self, transaction: Transaction) -> None:
        """Takes over a nested transaction: it commits or rolls back with this one."""
        self.children.append(transaction)

    def get_parent(self) -> Transaction | None:
        """The transaction this one was opened in, or None.

        Before it is opened, the current transaction (the one it would be opened in).
        """
        if self._parent is not None or self._token is not None:
            return self._parent
        return _active.get()

    # staging -----------------------------------------------------------------------------------

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Hook] | None = None,
        on_commit_hooks: list[Hook] | None = None,
    ) -> None:
        """Sets the value to write as this transaction's record on commit, and adds hooks.

        Does nothing if the transaction is already committed (its key had a record).
        """
        if self.state is not TransactionState.COMMITTED:
            self._staged_value = value
            self.on_rollback_hooks += on_rollback_hooks or []
            self.on_commit_hooks += on_commit_hooks or []
            self.state = TransactionState.STAGED

    def stage_record(self, store: Store, staged: Staged) -> None:
        """Adds a record written aside (`Store.stage_value`) to write on commit.

        The transaction owns it from now on: it is committed with the transaction, or its file
        removed when the transaction rolls back.
        """
        if self._record is not None:
            self._record[0].discard([self._record[1]])
        self._record = (store, staged)

    def hold_lock(self, manager: LockManager, key: str, holder: str) -> None:
        """Keeps a SERIALIZABLE lock, just taken, until this transaction commits or rolls back.

        Its fence goes with the records committed under it (see `taskstash.store.fences`).
        """
        self._lock = (manager, key, holder)
        self._fence = manager.fence(key, holder)
        self._root()._locked_keys.add(key)

    def locks(self, key: str) -> bool:
        """Whether a transaction of this one's outermost transaction holds `key`'s lock."""
        return key in self._root()._locked_keys

    def _root(self) -> Transaction:
        root = self
        while root._parent is not None:
            root = root._parent
        return root

    # values shared in the transaction ---------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Stores a value for the code (and hooks) of this transaction and its children."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A value set in this transaction, else in its parents; a copy, so set it to change it.

        Raises:
            ValueError: No transaction up the chain set `name`, and no default was given.
        """
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        parent = self.get_parent()
        if parent is not None:
            return parent.get(name, default)
        if default is not _NOT_SET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    # states ------------------------------------------------------------------------------------

    def is_pending(self) -> bool:  # noqa: D102
        return self.state is TransactionState.PENDING

    def is_active(self) -> bool:  # noqa: D102
        return self.state is TransactionState.ACTIVE

    def is_staged(self) -> bool:  # noqa: D102
        return self.state is TransactionState.STAGED

    def is_committed(self) -> bool:  # noqa: D102
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:  # noqa: D102
        return self.state is TransactionState.ROLLED_BACK

    # commit and rollback -----------------------------------------------------------------------

    def commit(self) -> bool:
        """Commits this transaction and the ones handed to it; whether it did.

        Children commit first, then this transaction's on_commit hooks run; the records of all
        of them are written at the end, together (one write transaction per index). A hook
        that raises, or a record that cannot be written, rolls the transaction back instead;
        the error is logged, not raised.
        """
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            self._release()
            return False
        batch = _writing.get()
        if batch is None and not self.children and not self.on_commit_hooks:
            return self._commit_alone()  # a plain task call's: nothing to order, one record
        owner = batch is None
        if batch is None:
            batch = _Batch()
            token = _writing.set(batch)
        try:
            try:
                for child in self.children:
                    child.commit()
                for hook in self.on_commit_hooks:
                    self._run_hook(hook, "commit")
                self._stage_own_record()
            except Exception as exc:
                self.logger.warning(
                    "transaction %r rolled back: committing it failed (%s: %s)",
                    self.key,
                    type(exc).__name__,
                    exc,
                )
                self.rollback()
                return False
            self.state = TransactionState.COMMITTED
            batch.members.append(self)
            if owner:
                return batch.write()
            return True
        finally:
            if owner:
                _writing.reset(token)

    def _commit_alone(self) -> bool:
        """`commit` of a transaction with no children and no hooks, outside any commit."""
        try:
            self._stage_own_record()
        except Exception as exc:
            self.logger.warning(
                "transaction %r rolled back: committing it failed (%s: %s)",
                self.key,
                type(exc).__name__,
                exc,
            )
            self.rollback()
            return False
        self.state = TransactionState.COMMITTED
        if self._record is None:
            self._release()
            return True
        store, staged = self._record
        try:
            store.commit((staged,), _fences([self]))
        except Exception as exc:
            if self.on_write_error is not None:
                self.on_write_error(exc)
            _Batch.undo([self], exc)
            return False
        self._record = None
        self._release()
        return True

    def _stage_own_record(self) -> None:
        """Writes the value staged under this transaction's key aside, for the batch to commit."""
        if self.key is None or self.store is None or not self.write_on_commit:
            return
        store = self.store.store
        serializer = resolve_serializer("cloudpickle")
        staged = store.stage_value(
            self.key,
            self._staged_value,
            serializer,
            self.store.storage,
            default_location(self.key),
            task_name="transaction",
            task_qualname=f"{__name__}.transaction",
            created_at=time.time(),
        )
        self.stage_record(store, staged)

    def rollback(self) -> bool:
        """Rolls this transaction and the ones handed to it back; whether it did.

        The on_rollback hooks run last first, then the children roll back (last first), and
        staged files are removed. A committed transaction is not rolled back.
        """
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self._run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                child.rollback()
            return True
        except Exception as exc:
            self.logger.warning(
                "rolling back transaction %r failed (%s: %s)", self.key, type(exc).__name__, exc
            )
            return False
        finally:
            self._drop_record()
            self._release()

    def _drop_record(self) -> None:
        if self._record is not None:
            store, staged = self._record
            self._record = None
            store.discard([staged])

    def _release(self) -> None:
        lock = self._lock
        if lock is None:
            return
        self._lock = None
        self._fence = None
        manager, key, holder = lock
        self._root()._locked_keys.discard(key)
        try:
            manager.release_lock(key, holder)
        except ValueError as exc:  # its lease ran out: someone may hold the key now
            self.logger.debug("the lock on %s was no longer held (%s)", key, exc)
        except Exception as exc:  # the lock's lease frees it; waiters are delayed, not blocked
            self.logger.warning("could not release the lock on %s (%s)", key, exc)

    def _run_hook(self, hook: Hook, kind: str) -> None:
        name = getattr(hook, "__name__", repr(hook))
        self.logger.debug("Running %s hook %r", kind, name)
        try:
            outcome = hook(self)
            if inspect.iscoroutine(outcome):
                _run_coroutine(outcome)
        except Exception:
            self.logger.error("An error was encountered while running %s hook %r", kind, name)
            raise

    def read(self) -> ResultRecord | None:
        """The record committed under this transaction's key, or None.

        Raises:
            CacheCorruptedError: The record's file is damaged or cannot be deserialized.
        """
        if self.key is None or self.store is None:
            return None
        store = self.store.store
        fetched = store.fetch(self.key, time.time(), self.store.storage)
        record = store.lookup(self.key, time.time())
        if fetched is None or record is None:
            return None
        payload, serializer, _ = fetched
        return ResultRecord(load_value(resolve_serializer(serializer), payload), record)


class _Batch:
    """The transactions one commit commits, and their records, written together at its end."""

    def __init__(self) -> None:
        self.members: list[Transaction] = []

    def write(self) -> bool:
        """Writes every member's record; on failure rolls all members back. Whether it wrote."""
        by_store: dict[int, tuple[Store, dict[str, tuple[Transaction, Staged]]]] = {}
        for member in self.members:
            if member._record is None:
                continue
            store, staged = member._record
            records = by_store.setdefault(id(store), (store, {}))[1]
            earlier = records.pop(staged.record.key, None)
            if earlier is not None:  # the key staged twice: the later result replaces it
                store.discard([earlier[1]])
                earlier[0]._record = None
            records[staged.record.key] = (member, staged)
        failed: Exception | None = None
        for store, records in by_store.values():
            try:
                store.commit([staged for _, staged in records.values()], _fences(self.members))
            except Exception as exc:
                failed = exc
                break
            for member, _ in records.values():
                member._record = None
        if failed is None:
            for member in self.members:
                member._release()
            return True
        for member in self.members:
            if member._record is not None and member.on_write_error is not None:
                member.on_write_error(failed)
        self.undo(self.members, failed)
        return False

    @staticmethod
    def undo(members: list[Transaction], error: Exception) -> None:
        """Rolls back the members whose records were not written, and releases every lock."""
        for member in reversed(members):
            if member._record is None:
                member._release()
                continue
            if member.on_write_error is None:
                member.logger.warning(
                    "transaction %r rolled back: its record could not be written (%s: %s)",
                    member.key,
                    type(error).__name__,
                    error,
                )
            member.state = TransactionState.ACTIVE  # committed in vain: roll it back
            member.rollback()


def _fences(members: list[Transaction]) -> dict[str, Fence]:
    """The fences of the locks the members hold, by key, for the commit of their records."""
    return {m._fence.key: m._fence for m in members if m._fence is not None}


def _run_coroutine(coroutine: Coroutine[Any, Any, object]) -> None:
    """Runs an async hook to its end from sync code (in a thread if a loop runs here)."""
    import asyncio
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskstash-hook") as pool:
        pool.submit(context.run, asyncio.run, coroutine).result()


@contextmanager
def transaction(
    key: str | None = None,
    store: Cache | None = None,
    commit_mode: CommitMode | None = None,
    isolation_level: IsolationLevel | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> Iterator[Transaction]:
    """Opens a transaction for the block: see `Transaction` for the arguments.

    The records of the task calls in the block are committed when it ends (with the
    outermost transaction, if this one is nested and LAZY), or rolled back if it raises.

    Yields:
        The transaction.
    """
    if key is not None and store is None:
        from taskstash.cache import Cache

        store = Cache()
    with Transaction(
        key=key,
        store=store,
        commit_mode=commit_mode,
        isolation_level=isolation_level,
        overwrite=overwrite,
        write_on_commit=write_on_commit,
        logger=logger,
    ) as txn:
        yield txn
