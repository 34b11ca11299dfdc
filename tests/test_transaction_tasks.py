"""Task calls in transactions: committed together, rolled back together, seen atomically.

Prefect's behaviour (its docs' transactions page, tests/test_tasks.py's TestTransactions and
TestNestedTasks), and what other processes see of a transaction's records; each test runs with
the index on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from index_support import index_sql
from transaction_support import fail_inside

from taskstash import Cache, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.destinations import index_lock_manager
from taskstash.states import State
from taskstash.store import open_store
from taskstash.store.base import is_temp
from taskstash.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    get_transaction,
    transaction,
)

pytestmark = pytest.mark.usefixtures("index_backend")


def rows() -> int:
    return int(index_sql("SELECT count(*) FROM records")[0][0])


def files(home: Path) -> list[str]:
    """Every file in the storage, temporary ones included."""
    storage = home / "storage"
    return sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())


def test_records_are_committed_when_the_block_ends_and_not_before() -> None:
    @task(cache_policy=INPUTS)
    def load(x: int) -> int:
        return x + 1

    @task(cache_policy=INPUTS)
    def transform(x: int) -> int:
        return x * 2

    with transaction():
        a = load(1)
        b = transform(a)
        assert rows() == 0
    assert b == 4
    assert rows() == 2
    assert type(load(1, return_state=True)).__name__ == "Cached"
    assert type(transform(2, return_state=True)).__name__ == "Cached"


def test_a_block_that_raises_leaves_no_rows_and_no_files(taskstash_home: Path) -> None:
    @task(cache_policy=INPUTS)
    def load(x: int) -> int:
        return x + 1

    def body(txn: Transaction) -> None:
        load(1)
        load(2)

    fail_inside(transaction(), body)
    assert rows() == 0
    assert files(taskstash_home) == []
    assert type(load(1, return_state=True)).__name__ == "Completed"


def test_rollback_hooks_undo_side_effects_as_in_prefects_guide(tmp_path: Path) -> None:
    side_effect = tmp_path / "side-effect.txt"
    seen: list[tuple[Transaction, Transaction | None, str]] = []

    @task
    def write_file(contents: str) -> None:
        side_effect.write_text(contents)

    @write_file.on_rollback
    def del_file(txn: Transaction) -> None:
        seen.append((txn, txn.get_parent(), txn.get("filename")))
        side_effect.unlink()

    @task
    def quality_test() -> None:
        if len(side_effect.read_text().splitlines()) < 2:
            raise ValueError("Not enough data!")

    def pipeline(outer: Transaction) -> None:
        outer.set("filename", str(side_effect))
        write_file("hello world")
        quality_test()

    outer = fail_inside(transaction(), pipeline, ValueError("Not enough data!"))
    assert not side_effect.exists()
    # Once, with the task's own transaction, nested in the block's.
    assert len(seen) == 1
    task_txn, parent, filename = seen[0]
    assert task_txn is not outer
    assert parent is outer
    assert filename == str(side_effect)
    assert outer.is_rolled_back()


def test_a_failed_task_rolls_its_transaction_back_even_if_caught() -> None:
    @task(cache_policy=INPUTS)
    def good(x: int) -> int:
        return x

    @task
    def bad() -> None:
        raise ValueError("no")

    with transaction() as txn:
        good(1)
        assert type(bad(return_state=True)).__name__ == "Failed"
    assert txn.is_rolled_back()
    assert rows() == 0


def test_commit_hook_is_called_on_commit() -> None:
    data: dict[str, Transaction] = {}

    @task
    def my_task() -> None:
        pass

    @my_task.on_commit
    def commit(txn: Transaction) -> None:
        data["txn"] = txn

    state = my_task(return_state=True)
    assert type(state).__name__ == "Completed"
    assert isinstance(data["txn"], Transaction)


def test_hooks_run_once_per_call_and_not_on_a_hit() -> None:
    committed: list[Transaction] = []

    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    f.on_commit(committed.append)
    with transaction() as outer:
        f(1)
        f(2)
        assert committed == []
    assert len(committed) == 2
    assert all(t.get_parent() is outer for t in committed)
    assert len({id(t) for t in committed}) == 2
    f(1)  # a hit commits nothing
    assert len(committed) == 2


def test_a_task_run_inside_a_task_commits_with_it() -> None:
    @task(cache_policy=INPUTS)
    def inner(x: int) -> int:
        return x * 2

    @task(cache_policy=INPUTS)
    def outer(x: int) -> int:
        value = inner(x)
        assert rows() == 0  # the inner record waits for the outer call's commit
        return value

    assert outer(2) == 4
    assert rows() == 2


def test_a_failing_outer_task_leaves_no_record_of_its_inner_calls() -> None:
    @task(cache_policy=INPUTS)
    def inner(x: int) -> int:
        return x * 2

    @task(cache_policy=INPUTS)
    def outer(x: int) -> int:
        inner(x)
        raise ValueError("outer failed")

    with pytest.raises(ValueError, match="outer failed"):
        outer(2)
    assert rows() == 0


def test_nested_cache_key_fn_inner_task_cached_default() -> None:
    """LAZY: a second call of a key inside the transaction does not see the staged record."""

    def key_fn(context: object, parameters: dict[str, object]) -> str:
        return f"inner-{parameters['x']}"

    @task(cache_key_fn=key_fn)
    def inner_task(x: int) -> int:
        return x * 2

    @task
    def outer_task(x: int) -> tuple[State[int], State[int]]:
        state1 = inner_task(x, return_state=True)
        state2 = inner_task(x, return_state=True)
        return state1, state2

    inner_state1, inner_state2 = outer_task(2)
    assert type(inner_state1).__name__ == "Completed"
    assert type(inner_state2).__name__ == "Completed"
    assert inner_state2.result() == 4
    assert rows() == 1  # the key's two staged records were committed as one


def test_nested_cache_key_fn_inner_task_cached_eager() -> None:
    """EAGER, inherited by the calls inside: each call commits as it ends."""

    def key_fn(context: object, parameters: dict[str, object]) -> str:
        return f"inner-{parameters['x']}"

    @task(cache_key_fn=key_fn, persist_result=True)
    def inner_task(x: int) -> int:
        return x * 2

    @task
    def outer_task(x: int) -> tuple[State[int], State[int]]:
        with transaction(commit_mode=CommitMode.EAGER):
            state1 = inner_task(x, return_state=True)
            state2 = inner_task(x, return_state=True)
            return state1, state2

    inner_state1, inner_state2 = outer_task(4)
    assert type(inner_state1).__name__ == "Completed"
    assert type(inner_state2).__name__ == "Cached"  # EAGER: committed as each call ends
    assert inner_state2.result() == 8


def test_run_task_in_serializable_transaction() -> None:
    @task
    def my_task() -> Transaction | None:
        return get_transaction()

    with transaction(isolation_level=IsolationLevel.SERIALIZABLE):
        task_txn = my_task()
    assert task_txn is not None
    assert task_txn.isolation_level == IsolationLevel.SERIALIZABLE


def test_serializable_transactions_hold_the_keys_of_their_calls_until_commit() -> None:
    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    locks = index_lock_manager(open_store(settings.current().index))
    with transaction(isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        f(1)
        f(1)  # the transaction holds the key already: no wait for itself
        first, second = txn.children
        key = first.key
        assert key is not None
        assert second.key == key
        assert locks.is_locked(key)
    assert not locks.is_locked(key)
    assert rows() == 1


def test_a_transaction_of_many_records_is_seen_whole_or_not_at_all_by_another_process() -> None:
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, settings.current().index, "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert poller.stdout is not None
    assert poller.stdout.readline() == "polling\n"

    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        return x

    with transaction():
        for i in range(50):
            f(i)
    out, err = poller.communicate(timeout=120)
    assert poller.returncode == 0, err
    assert set(out.split()) == {"0", "50"}


# Polls the number of rows until it reaches the count given, printing every count it saw.
POLLER = """
import sys, time
from taskstash.store import Index
index, wanted = Index(sys.argv[1]), int(sys.argv[2])
seen = set()
print("polling", flush=True)
deadline = time.monotonic() + 100
while time.monotonic() < deadline:
    (count,) = index.connection().execute("SELECT count(*) FROM records").fetchone()
    seen.add(count)
    if count >= wanted:
        break
print(*sorted(seen))
"""

# Stages records in a transaction, then waits to be killed before the block ends.
STAGER = """
import time
from taskstash import task
from taskstash.cache_policies import INPUTS
from taskstash.transactions import transaction

@task(cache_policy=INPUTS)
def f(x):
    return x

with transaction():
    for i in range(5):
        f(i)
    print("staged", flush=True)
    time.sleep(600)
"""


def test_a_process_killed_mid_transaction_leaves_only_temporary_files(
    taskstash_home: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STAGER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "staged\n"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()

    assert rows() == 0
    left = files(taskstash_home)
    assert len(left) == 5
    assert all(is_temp(os.path.basename(name)) for name in left)
    # verify --fix removes temporary files once they are too old to belong to a live write.
    long_ago = time.time() - 3600
    for name in left:
        os.utime(taskstash_home / "storage" / name, (long_ago, long_ago))
    report = Cache().verify(fix=True)
    assert len(report.temporary) == 5
    assert files(taskstash_home) == []
