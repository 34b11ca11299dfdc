"""Transactions as Prefect defines them (its tests/test_transactions.py, sync parts).

Prefect's `MagicMock` spies are replaced by functions recording their calls; its `ResultStore`
by `taskstash.Cache`.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from transaction_support import fail_inside

from taskstash import Cache
from taskstash.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    get_transaction,
    transaction,
)


def assert_current(txn: Transaction) -> None:
    assert get_transaction() is txn


def assert_active(txn: Transaction) -> None:
    assert txn.is_active()


class Spy:
    """Records the arguments of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


def test_basic_init() -> None:
    txn = Transaction()
    assert txn.store is None
    assert txn.state == TransactionState.PENDING
    assert txn.is_pending()
    assert txn.commit_mode is None


class TestGetTxn:
    def test_get_transaction(self) -> None:
        assert get_transaction() is None
        with Transaction() as txn:
            assert get_transaction() is txn
        assert get_transaction() is None

    def test_nested_get_transaction(self) -> None:
        assert get_transaction() is None
        with Transaction(key="outer") as outer:
            assert get_transaction() is outer
            with Transaction(key="inner") as inner:
                assert get_transaction() is inner
            assert get_transaction() is outer
        assert get_transaction() is None

    def test_txn_resets_even_with_error(self) -> None:
        assert get_transaction() is None
        txn = fail_inside(Transaction(), assert_current)
        assert txn.is_rolled_back()
        assert get_transaction() is None


class TestGetParent:
    def test_get_parent(self) -> None:
        with Transaction() as txn:
            assert txn.get_parent() is None

    def test_get_parent_with_parent(self) -> None:
        with Transaction(key="outer") as outer:
            assert outer.get_parent() is None
            with Transaction(key="inner") as inner:
                assert inner.get_parent() is outer
            assert outer.get_parent() is None

    def test_get_parent_works_in_rollback_hook_after_success(self) -> None:
        spy = Spy()

        def hook(txn: Transaction) -> None:
            spy(txn.get_parent())

        outer = None
        try:
            with Transaction() as outer:
                with Transaction(key="inner_with_rollback") as inner_with_rollback:
                    inner_with_rollback.stage("foo", on_rollback_hooks=[hook])
                with Transaction(key="inner_trouble_maker"):
                    raise ValueError("I'm acting out because I'm misunderstood.")
        except ValueError:
            pass
        assert outer is not None
        assert spy.calls == [(outer,)]


class TestCommitMode:
    def test_txns_dont_auto_commit(self) -> None:
        with Transaction(key="outer") as outer:
            assert not outer.is_committed()
            with Transaction(key="inner") as inner:
                pass
            assert not inner.is_committed()
        assert outer.is_committed()
        assert inner.is_committed()

    def test_txns_auto_commit_in_eager(self) -> None:
        with Transaction(commit_mode=CommitMode.EAGER) as txn:
            assert txn.is_active()
            assert not txn.is_committed()
        assert txn.is_committed()

        with Transaction(key="outer", commit_mode=CommitMode.EAGER) as outer:
            assert not outer.is_committed()
            with Transaction(key="inner") as inner:
                pass
            assert inner.is_committed()
        assert outer.is_committed()

    def test_txns_dont_commit_on_exception(self) -> None:
        txn = fail_inside(Transaction())
        assert not txn.is_committed()
        assert txn.is_rolled_back()

    def test_txns_dont_commit_on_rollback(self) -> None:
        with Transaction() as txn:
            txn.rollback()
        assert not txn.is_committed()
        assert txn.is_rolled_back()

    def test_txns_commit_with_lazy_parent_if_eager(self) -> None:
        with Transaction(key="outer", commit_mode=CommitMode.LAZY) as outer:
            assert not outer.is_committed()
            with Transaction(key="inner", commit_mode=CommitMode.EAGER) as inner:
                pass
            assert inner.is_committed()
        assert outer.is_committed()

    def test_txns_commit_off_rolls_back_on_exit(self) -> None:
        with Transaction(commit_mode=CommitMode.OFF) as txn:
            assert not txn.is_committed()
        assert not txn.is_committed()
        assert txn.is_rolled_back()

    def test_txns_commit_off_doesnt_roll_back_if_committed(self) -> None:
        with Transaction(commit_mode=CommitMode.OFF) as txn:
            txn.commit()
        assert txn.is_committed()
        assert not txn.is_rolled_back()

    def test_error_in_commit_triggers_rollback(self) -> None:
        class BadTxn(Transaction):
            def commit(self, **kwargs: Any) -> bool:
                raise ValueError("foo")

        with Transaction() as txn:
            txn.add_child(BadTxn())
        assert not txn.is_committed()
        assert txn.is_rolled_back()


class TestRollBacks:
    def test_rollback_flag_is_set(self) -> None:
        with Transaction() as txn:
            assert not txn.is_rolled_back()
            txn.rollback()
            assert txn.is_rolled_back()

    def test_txns_rollback_on_exception(self) -> None:
        txn = fail_inside(Transaction())
        assert txn.is_rolled_back()

    def test_rollback_flag_propagates_up(self) -> None:
        with Transaction(key="outer") as outer:
            assert not outer.is_rolled_back()
            with Transaction(key="inner") as inner:
                assert not inner.is_rolled_back()
                with Transaction(key="nested") as nested:
                    assert not nested.is_rolled_back()
                    nested.rollback()
                    assert nested.is_rolled_back()
                assert inner.is_rolled_back()
        assert outer.is_rolled_back()


class TestTransactionState:
    @pytest.mark.parametrize("state", list(TransactionState))
    def test_state_and_methods_are_consistent(self, state: TransactionState) -> None:
        txn = Transaction(state=state)
        assert txn.is_active() == (txn.state.name == "ACTIVE")
        assert txn.is_pending() == (txn.state.name == "PENDING")
        assert txn.is_committed() == (txn.state.name == "COMMITTED")
        assert txn.is_staged() == (txn.state.name == "STAGED")
        assert txn.is_rolled_back() == (txn.state.name == "ROLLED_BACK")

    def test_happy_state_lifecycle(self) -> None:
        txn = Transaction()
        assert txn.is_pending()
        with txn:
            assert txn.is_active()
        assert txn.is_committed()

    def test_unhappy_state_lifecycle(self) -> None:
        txn = Transaction()
        assert txn.is_pending()
        fail_inside(txn, assert_active)
        assert txn.is_rolled_back()


def test_overwrite_ignores_existing_record() -> None:
    with transaction(key="test_overwrite_ignores_existing_record") as txn:
        txn.stage("done")
    with transaction(key="test_overwrite_ignores_existing_record") as txn:
        assert txn.is_committed()
    with transaction(key="test_overwrite_ignores_existing_record", overwrite=True) as txn:
        assert not txn.is_committed()


class TestWithResultStore:
    def test_basic_transaction(self) -> None:
        with transaction(key="test_basic_transaction", store=Cache()) as txn:
            assert isinstance(txn.store, Cache)
            txn.stage({"foo": "bar"})
        record_1 = txn.read()
        assert record_1 is not None
        assert record_1.result == {"foo": "bar"}
        assert Cache().record("test_basic_transaction").key == "test_basic_transaction"

    def test_nothing_is_written_on_rollback(self) -> None:
        txn = fail_inside(transaction(key="rolled-back"), lambda txn: txn.stage({"foo": "bar"}))
        assert txn.read() is None
        assert Cache().records() == []

    def test_competing_read_transaction(self) -> None:
        write_transaction_open = threading.Event()
        may_commit = threading.Event()

        def writing_transaction() -> None:
            # isolation level is SERIALIZABLE, so a lock will be taken
            with transaction(
                key="test_competing_read_transaction",
                isolation_level=IsolationLevel.SERIALIZABLE,
            ) as txn:
                write_transaction_open.set()
                may_commit.wait()
                txn.stage({"foo": "bar"})

        thread = threading.Thread(target=writing_transaction)
        thread.start()
        write_transaction_open.wait()
        with transaction(key="test_competing_read_transaction") as txn:
            assert txn.read() is None  # READ_COMMITTED: nothing is committed yet
        may_commit.set()
        thread.join()
        with transaction(key="test_competing_read_transaction") as txn:
            read_result = txn.read()
        assert read_result is not None
        assert read_result.result == {"foo": "bar"}

    def test_competing_write_transaction(self) -> None:
        transaction_1_open = threading.Event()

        def winning_transaction() -> None:
            with transaction(
                key="test_competing_write_transaction",
                isolation_level=IsolationLevel.SERIALIZABLE,
            ) as txn:
                transaction_1_open.set()
                txn.stage({"foo": "bar"})

        thread = threading.Thread(target=winning_transaction)
        thread.start()
        transaction_1_open.wait()
        with transaction(
            key="test_competing_write_transaction",
            isolation_level=IsolationLevel.SERIALIZABLE,
        ) as txn:
            txn.stage({"fizz": "buzz"})
        thread.join()
        record = txn.read()
        assert record is not None
        # the first transaction should have written its result
        # and the second transaction should not have written on exit
        assert record.result == {"foo": "bar"}


class TestGetAndSetData:
    def test_get_and_set_data(self) -> None:
        with transaction(key="test") as txn:
            txn.set("x", 42)
            assert txn.get("x") == 42

    def test_get_and_set_data_in_nested_context(self) -> None:
        with transaction(key="test") as top:
            top.set("key", 42)
            with transaction(key="nested") as inner:
                assert inner.get("key") == 42  # children inherit from their parents first
                inner.set("key", "string")  # and can override
                assert inner.get("key") == "string"
                assert top.get("key") == 42
            assert top.get("key") == 42

    def test_get_and_set_data_doesnt_mutate_parent(self) -> None:
        with transaction(key="test") as top:
            top.set("key", {"x": [42]})
            with transaction(key="nested") as inner:
                inner_value = inner.get("key")
                inner_value["x"].append(43)
                inner.set("key", inner_value)
                assert inner.get("key") == {"x": [42, 43]}
                assert top.get("key") == {"x": [42]}
            assert top.get("key") == {"x": [42]}

    def test_get_raises_on_unknown_but_allows_default(self) -> None:
        with transaction(key="test") as txn:
            with pytest.raises(ValueError, match="foobar"):
                txn.get("foobar")
            assert txn.get("foobar", None) is None
            assert txn.get("foobar", "string") == "string"

    def test_parent_values_set_after_child_open_are_available(self) -> None:
        parent_transaction = Transaction()
        child_transaction = Transaction()

        parent_transaction.__enter__()
        child_transaction.__enter__()
        try:
            parent_transaction.set("key", "value")
            # child can access parent's values
            assert child_transaction.get("key") == "value"

            parent_transaction.set("list", [1, 2, 3])
            assert child_transaction.get("list") == [1, 2, 3]

            # Mutating the value doesn't update the stored value
            child_transaction.get("list").append(4)
            assert child_transaction.get("list") == [1, 2, 3]
            child_transaction.set("list", [1, 2, 3, 4])
            assert child_transaction.get("list") == [1, 2, 3, 4]

            # parent transaction isn't affected by child's modifications
            assert parent_transaction.get("list") == [1, 2, 3]
        finally:
            child_transaction.__exit__(None, None, None)
            parent_transaction.__exit__(None, None, None)


class TestIsolationLevel:
    def test_default_isolation_level(self) -> None:
        with transaction(key="test") as txn:
            assert txn.isolation_level == IsolationLevel.READ_COMMITTED

    def test_inherited_isolation_level(self) -> None:
        with (
            transaction(key="test", isolation_level=IsolationLevel.SERIALIZABLE) as top,
            transaction(key="nested") as inner,
        ):
            assert inner.isolation_level == top.isolation_level == IsolationLevel.SERIALIZABLE

    def test_levels_equal_the_strings_of_cache_policies(self) -> None:
        assert IsolationLevel.SERIALIZABLE == "SERIALIZABLE"
        assert IsolationLevel.READ_COMMITTED == "READ_COMMITTED"


class TestHooks:
    def test_sync_on_commit_hook(self) -> None:
        spy = Spy()
        with transaction(key="test_sync_on_commit_hook") as txn:
            txn.stage("foo", on_commit_hooks=[spy])
        assert spy.calls == [(txn,)]

    def test_sync_on_rollback_hook(self) -> None:
        spy = Spy()
        txn = fail_inside(
            transaction(key="test_sync_on_rollback_hook"),
            lambda txn: txn.stage("foo", on_rollback_hooks=[spy]),
            RuntimeError("I left the stove on!"),
        )
        assert spy.calls == [(txn,)]

    def test_async_on_commit_hook(self) -> None:
        spy = Spy()

        async def async_on_commit_hook(txn: Transaction) -> None:
            spy(txn)

        with transaction(key="test_async_on_commit_hook") as txn:
            txn.stage("foo", on_commit_hooks=[async_on_commit_hook])
        assert spy.calls == [(txn,)]

    def test_async_on_rollback_hook(self) -> None:
        spy = Spy()

        async def async_on_rollback_hook(txn: Transaction) -> None:
            spy(txn)

        txn = fail_inside(
            transaction(key="test_async_on_rollback_hook"),
            lambda txn: txn.stage("foo", on_rollback_hooks=[async_on_rollback_hook]),
            RuntimeError("I forgot my keys at home!"),
        )
        assert spy.calls == [(txn,)]

    def test_a_failing_commit_hook_rolls_back_and_nothing_is_written(self) -> None:
        def fail(txn: Transaction) -> None:
            raise RuntimeError("no")

        with transaction(key="hooked") as txn:
            txn.stage("foo", on_commit_hooks=[fail])
        assert txn.is_rolled_back()
        assert txn.read() is None
