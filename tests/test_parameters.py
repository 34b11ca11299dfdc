"""Each record keeps a short, safe text of its call's arguments, to tell records apart."""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from taskstash import Cache, settings, task
from taskstash.cache_policies import INPUTS
from taskstash.rendering import MAX_LENGTH, render_parameters
from taskstash.store import Index


@task(cache_policy=INPUTS)
def load_csv(path: str, sep: str = ",", limit: int | None = None) -> int:
    return len(path)


def test_records_of_one_task_show_their_arguments() -> None:
    load_csv("data/a.csv")
    load_csv("data/b.csv", sep=";")
    shown = sorted(r.parameters or "" for r in Cache().records(task="load_csv"))
    assert shown == [
        "path='data/a.csv', sep=',', limit=None",
        "path='data/b.csv', sep=';', limit=None",
    ]


class Secretive:
    def __repr__(self) -> str:
        raise AssertionError("repr must not be called")


class Color(enum.Enum):
    RED = 1


def test_objects_are_shown_by_type_never_by_their_own_repr() -> None:
    text = render_parameters(
        {
            "array": np.zeros((1000, 3)),
            "obj": Secretive(),
            "path": Path("/data/x.csv"),
            "color": Color.RED,
            "nested": {"a": [1, 2, 3, 4, 5, 6]},
        }
    )
    assert text == (
        "array=<ndarray (1000, 3) float64>, obj=<Secretive>, path='/data/x.csv', "
        "color=Color.RED, nested={'a': [1, 2, 3, 4, ...]}"
    )


def test_long_arguments_are_cut_short() -> None:
    text = render_parameters({"text": "x" * 10_000, **{f"p{i}": i for i in range(100)}})
    assert len(text) <= MAX_LENGTH
    assert text.startswith("text='xxxx")
    assert text.endswith("...")


def test_the_setting_keeps_arguments_out_of_the_index_and_files(
    monkeypatch: pytest.MonkeyPatch, taskstash_home: Path
) -> None:
    monkeypatch.setenv("TASKSTASH_RECORD_PARAMETERS", "false")
    settings.reload()
    load_csv("secret-token.csv")
    (record,) = Cache().records()
    assert record.parameters is None
    for path in (taskstash_home / "storage").rglob("*"):
        if path.is_file():
            assert b"secret-token" not in path.read_bytes()


def test_reindex_restores_the_arguments_from_the_result_files() -> None:
    load_csv("data/a.csv")
    cache = Cache()
    assert cache.reindex() == 1
    (record,) = cache.records()
    assert record.parameters == "path='data/a.csv', sep=',', limit=None"


def test_an_index_of_schema_3_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    conn = sqlite3.connect(path)
    from taskstash.store.schema import MIGRATIONS

    for step in MIGRATIONS[:3]:
        step(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    columns = [row[1] for row in Index(path).connection().execute("PRAGMA table_info(records)")]
    assert "parameters" in columns
    readable = Index(path).connection().execute("SELECT parameters FROM records_readable")
    assert readable.fetchall() == []


def test_large_dicts_and_sets_are_not_sorted_to_show_a_few_members() -> None:
    # Sorting a million keys to show four would cost far more than the call's other work:
    # large containers show their first members in their own order, small ones sorted.
    large = {f"k{i:07d}": i for i in reversed(range(100_000))}
    assert render_parameters({"d": large}) == (
        "d={'k0099999': 99999, 'k0099998': 99998, 'k0099997': 99997, 'k0099996': 99996, ...}"
    )
    assert render_parameters({"d": {"b": 2, "a": 1}, "s": {3, 1, 2}}) == (
        "d={'a': 1, 'b': 2}, s={1, 2, 3}"
    )
    assert render_parameters({"s": frozenset(), "t": set()}) == "s=frozenset(), t=set()"
