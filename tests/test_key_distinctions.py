"""Every built-in hasher tells apart the values that behave differently, and only those.

`DISTINCTIONS` has one entry per kind of value a built-in hasher handles (the kinds listed by
`taskstash.hashing._dispatch.BUILT_IN_KINDS`): pairs that a function could tell apart, which must
get different keys, and pairs that are equal however they were built, which must share one. A
hasher added without an entry here fails `test_every_built_in_kind_has_an_entry`.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import types
import uuid
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import dateutil.tz
import numpy as np
import pandas as pd
import pydantic
import pytest

from taskstash import hash_objects
from taskstash.hashing._dispatch import BUILT_IN_KINDS, kind_for

Pair = tuple[Any, Any]


class Distinctions(NamedTuple):
    different: list[Pair]
    equal: list[Pair]


PATHS = Path(__file__).parent / "data" / "paths"  # two small files, the same in every process
NEW_YORK = ZoneInfo("America/New_York")
PANAMA = ZoneInfo("America/Panama")  # the same offset and abbreviation as New York in January
JANUARY = datetime.datetime(2024, 1, 15, 12)


class Tagged(np.ndarray):
    """An array subclass, which may override any operation."""


def masked(fill_value: float = 1e20, *, hard: bool = False, mask: bool = True) -> Any:
    return np.ma.array([1.0, 2.0], mask=[False, mask], fill_value=fill_value, hard_mask=hard)


def categorical(categories: list[str], *, ordered: bool = False) -> pd.Series:
    return pd.Series(["x", "y"], dtype=pd.CategoricalDtype(categories, ordered=ordered))


def frame(**changes: Any) -> pd.DataFrame:
    built = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, index=pd.Index(["r", "s"]))
    for name, value in changes.items():
        setattr(built, name, value)
    return built


def with_attrs(value: Any, **attrs: Any) -> Any:
    value.attrs.update(attrs)
    return value


def days(*, with_freq: bool = True) -> pd.DatetimeIndex:
    values = pd.date_range("2024-01-01", periods=3, freq="D")
    return values if with_freq else pd.DatetimeIndex(values.to_numpy())


class Site(pydantic.BaseModel):
    name: str


class Host(pydantic.BaseModel):
    name: str


class Mode(enum.Enum):
    FAST = 1
    SAFE = 2


class Speed(enum.Enum):
    FAST = 1
    SAFE = 2


@dataclasses.dataclass
class Meters:
    value: float


@dataclasses.dataclass
class Feet:
    value: float


Point = namedtuple("Point", ["x", "y"])
Size = namedtuple("Size", ["x", "y"])


class Tag(str):
    pass


class Label(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Signal(complex):
    pass


class Blob(bytes):
    pass


class Buffer(bytearray):
    pass


class Row(tuple[int, ...]):
    pass


class Stack(list[int]):
    pass


class Record(dict[str, int]):
    pass


class Members(set[int]):
    pass


class FrozenMembers(frozenset[int]):
    pass


def annotated(value: Any, **state: Any) -> Any:
    """`value` with instance attributes, which its methods may read."""
    for name, attribute in state.items():
        setattr(value, name, attribute)
    return value


def first() -> int:
    return 1


def second() -> int:
    return 2


class Plain:
    def __init__(self, options: set[str]) -> None:
        self.options = options


def subclass_case(cls: type, value: Any, base: type) -> Distinctions:
    return Distinctions(
        different=[(cls(value), base(value)), (cls(value), annotated(cls(value), unit="m"))],
        equal=[(cls(value), cls(value))],
    )


DISTINCTIONS: dict[str, Distinctions] = {
    # numpy ------------------------------------------------------------------------------------
    "numpy.ma.MaskedArray": Distinctions(
        different=[
            (masked(fill_value=1.0), masked(fill_value=2.0)),
            (masked(), masked(hard=True)),
            (masked(), masked(mask=False)),
        ],
        equal=[(masked(fill_value=1.0), masked(fill_value=1.0))],
    ),
    "numpy.ndarray": Distinctions(
        different=[
            (np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int64)),
            (np.arange(4), np.arange(4).reshape(2, 2)),
            (np.arange(3), np.arange(3).view(Tagged)),
            (np.array(["2024"], "M8[D]"), np.array(["2024"], "M8[s]")),
        ],
        equal=[(np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3)))],
    ),
    "numpy.generic": Distinctions(
        different=[
            (np.float32(1.5), np.float64(1.5)),
            (np.datetime64("2024-01-01"), np.datetime64("2024-01-01T00:00:00")),
        ],
        equal=[(np.int64(7), np.int64(7))],
    ),
    "numpy.dtype": Distinctions(
        different=[
            (np.dtype("M8[ns]"), np.dtype("M8[s]")),
            (np.dtypes.StringDType(), np.dtypes.StringDType(na_object=None)),
            (np.dtype([("x", "i4")]), np.dtype([("y", "i4")])),
        ],
        equal=[(np.dtype("f8"), np.dtype(np.float64))],
    ),
    # pandas -----------------------------------------------------------------------------------
    "pandas.DataFrame": Distinctions(
        different=[
            (frame(), frame().rename(columns={"a": "A"})),
            (frame(), frame().rename_axis(columns="field")),
            (frame(), frame().rename_axis(index="row")),
            (frame(), frame().astype({"a": "category"})),
            (
                frame().astype({"a": pd.CategoricalDtype([1.0, 2.0])}),
                frame().astype({"a": pd.CategoricalDtype([1.0, 2.0, 3.0])}),
            ),
            (frame(), with_attrs(frame(), unit="m")),
            (frame(), frame().set_flags(allows_duplicate_labels=False)),
        ],
        equal=[
            (frame(), pd.DataFrame([[1.0, 3.0], [2.0, 4.0]], columns=["a", "b"], index=["r", "s"]))
        ],
    ),
    "pandas.Series": Distinctions(
        different=[
            (categorical(["x", "y"]), categorical(["x", "y", "z"])),
            (categorical(["x", "y"]), categorical(["x", "y"], ordered=True)),
            (categorical(["x", "y"]), categorical(["y", "x"])),
            (
                pd.Series(pd.date_range("2024-01-15", periods=2, tz=NEW_YORK)),
                pd.Series(pd.date_range("2024-01-15", periods=2, tz=PANAMA)),
            ),
            (
                pd.Series(pd.period_range("2024-01", periods=2, freq="M")),
                pd.Series(pd.period_range("2024-01", periods=2, freq="2M")),
            ),
            (
                pd.Series(pd.interval_range(0, 2, closed="right")),
                pd.Series(pd.interval_range(0, 2, closed="left")),
            ),
            (
                pd.Series(["a", None], dtype=pd.StringDtype("python")),
                pd.Series(["a", None], dtype=pd.StringDtype("python", na_value=np.nan)),
            ),
            (
                pd.Series([2**53, None], dtype="Int64"),
                pd.Series([2**53 + 1, None], dtype="Int64"),
            ),
            (pd.Series([1, None], dtype="Int64"), pd.Series([1, 0], dtype="Int64")),
            (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")),
            (pd.Series([1, 2]), pd.Series([1, 2]).rename_axis("row")),
            (pd.Series([1, 2]), with_attrs(pd.Series([1, 2]), unit="m")),
        ],
        equal=[
            (categorical(["x", "y"]), categorical(["x", "y"])),
            (pd.Series([1, None], dtype="Int64"), pd.Series([1, pd.NA], dtype="Int64")),
        ],
    ),
    "pandas.MultiIndex": Distinctions(
        different=[
            (
                pd.MultiIndex.from_tuples([("a", 1)], names=["k", "n"]),
                pd.MultiIndex.from_tuples([("a", 1)], names=["k", "m"]),
            ),
        ],
        equal=[
            (
                pd.MultiIndex.from_tuples([("a", 1)], names=["k", "n"]),
                pd.MultiIndex.from_arrays([["a"], [1]], names=["k", "n"]),
            )
        ],
    ),
    "pandas.RangeIndex": Distinctions(
        different=[(pd.RangeIndex(3), pd.RangeIndex(3, name="row"))],
        equal=[(pd.RangeIndex(3), pd.RangeIndex(0, 3, 1))],
    ),
    "pandas.Index": Distinctions(
        different=[
            (pd.Index([1, 2]), pd.Index([1, 2], name="id")),
            (pd.Index([1, 2]), pd.Index([1.0, 2.0])),
            (days(), days(with_freq=False)),
            (
                pd.CategoricalIndex(["x"], categories=["x", "y"]),
                pd.CategoricalIndex(["x"], categories=["x", "z"]),
            ),
            (
                pd.date_range("2024-01-15", periods=2, tz=NEW_YORK),
                pd.date_range("2024-01-15", periods=2, tz=PANAMA),
            ),
        ],
        equal=[(days(), pd.date_range("2024-01-01", periods=3, freq="D"))],
    ),
    "pandas.Timestamp": Distinctions(
        different=[
            (pd.Timestamp(JANUARY, tz=NEW_YORK), pd.Timestamp(JANUARY, tz=PANAMA)),
            (pd.Timestamp("2024-01-01").as_unit("s"), pd.Timestamp("2024-01-01").as_unit("ns")),
            (pd.Timestamp(1, unit="ns"), pd.Timestamp(2, unit="ns")),
        ],
        equal=[(pd.Timestamp(JANUARY, tz=NEW_YORK), pd.Timestamp(JANUARY, tz=NEW_YORK))],
    ),
    "pandas.Timedelta": Distinctions(
        different=[
            (pd.Timedelta(1, "ns"), pd.Timedelta(2, "ns")),
            (pd.Timedelta(1, "s").as_unit("s"), pd.Timedelta(1, "s").as_unit("ns")),
        ],
        equal=[(pd.Timedelta(1, "D"), pd.Timedelta(24, "h"))],
    ),
    "pandas.NaT": Distinctions(
        different=[(pd.NaT, None), (pd.NaT, np.datetime64("NaT"))],
        equal=[(pd.NaT, pd.Timestamp("NaT"))],
    ),
    "pandas.api.extensions.ExtensionDtype": Distinctions(
        different=[
            (pd.CategoricalDtype(["x", "y"]), pd.CategoricalDtype(["x", "y", "z"])),
            (pd.CategoricalDtype(["x"]), pd.CategoricalDtype(["x"], ordered=True)),
            (pd.DatetimeTZDtype("ns", NEW_YORK), pd.DatetimeTZDtype("ns", PANAMA)),
            (pd.DatetimeTZDtype("ns", NEW_YORK), pd.DatetimeTZDtype("s", NEW_YORK)),
            (pd.PeriodDtype("D"), pd.PeriodDtype("2D")),
            (pd.IntervalDtype("int64", "left"), pd.IntervalDtype("int64", "right")),
            (pd.StringDtype("python"), pd.StringDtype("python", na_value=np.nan)),
            (pd.SparseDtype(float, 0.0), pd.SparseDtype(float, np.nan)),
        ],
        equal=[
            (pd.CategoricalDtype(["x", "y"]), pd.CategoricalDtype(pd.Index(["x", "y"]))),
            # How pandas stores strings depends on whether pyarrow is installed, not on them.
            *(
                [(pd.StringDtype("python"), pd.StringDtype("pyarrow"))]
                if importlib.util.find_spec("pyarrow")
                else []
            ),
        ],
    ),
    "pandas.api.extensions.ExtensionArray": Distinctions(
        different=[
            (pd.Categorical(["x"], ["x", "y"]), pd.Categorical(["x"], ["x", "z"])),
            (pd.array([2**53, None], "Int64"), pd.array([2**53 + 1, None], "Int64")),
            (pd.array([True, None], "boolean"), pd.array([True, False], "boolean")),
        ],
        equal=[(pd.array([1, None], "Int64"), pd.array([1, pd.NA], "Int64"))],
    ),
    "pydantic.BaseModel": Distinctions(
        different=[(Site(name="a"), Host(name="a")), (Site(name="a"), Site(name="b"))],
        equal=[(Site(name="a"), Site.model_validate({"name": "a"}))],
    ),
    # standard library -------------------------------------------------------------------------
    "enum.Enum": Distinctions(
        different=[(Mode.FAST, Speed.FAST), (Mode.FAST, Mode.SAFE)],
        equal=[(Mode.FAST, Mode(1))],
    ),
    "dataclass": Distinctions(
        different=[(Meters(1.0), Feet(1.0)), (Meters(1.0), Meters(2.0))],
        equal=[(Meters(1.0), Meters(value=1.0))],
    ),
    "zoneinfo.ZoneInfo": Distinctions(
        different=[(NEW_YORK, PANAMA)],
        equal=[(NEW_YORK, ZoneInfo.no_cache("America/New_York"))],
    ),
    "datetime.timezone": Distinctions(
        different=[
            (datetime.timezone(datetime.timedelta(hours=1)), datetime.UTC),
            (
                datetime.timezone(datetime.timedelta(hours=1)),
                datetime.timezone(datetime.timedelta(hours=1), "CET"),
            ),
        ],
        equal=[(datetime.timezone(datetime.timedelta(0)), datetime.UTC)],
    ),
    "datetime.datetime": Distinctions(
        different=[
            (JANUARY.replace(tzinfo=NEW_YORK), JANUARY.replace(tzinfo=PANAMA)),
            (JANUARY.replace(tzinfo=datetime.UTC), JANUARY.replace(tzinfo=ZoneInfo("UTC"))),
            (JANUARY, JANUARY.replace(fold=1)),
            (JANUARY, JANUARY.replace(tzinfo=datetime.UTC)),
            (
                JANUARY.replace(tzinfo=dateutil.tz.gettz("America/New_York")),
                JANUARY.replace(tzinfo=dateutil.tz.gettz("America/Panama")),
            ),
        ],
        equal=[
            (JANUARY.replace(tzinfo=NEW_YORK), JANUARY.replace(tzinfo=ZoneInfo("America/New_York")))
        ],
    ),
    "datetime.date": Distinctions(
        different=[(datetime.date(2024, 1, 1), datetime.date(2024, 1, 2))],
        equal=[(datetime.date(2024, 1, 1), datetime.date.fromisoformat("2024-01-01"))],
    ),
    "datetime.time": Distinctions(
        different=[
            (datetime.time(12, tzinfo=NEW_YORK), datetime.time(12, tzinfo=PANAMA)),
            (datetime.time(1), datetime.time(1, fold=1)),
        ],
        equal=[(datetime.time(12, tzinfo=NEW_YORK), datetime.time(12, tzinfo=NEW_YORK))],
    ),
    "datetime.timedelta": Distinctions(
        different=[(datetime.timedelta(days=1), datetime.timedelta(days=1, microseconds=1))],
        equal=[(datetime.timedelta(hours=24), datetime.timedelta(days=1))],
    ),
    "decimal.Decimal": Distinctions(
        different=[
            (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
            (decimal.Decimal("0"), decimal.Decimal("-0")),
            (decimal.Decimal("NaN"), decimal.Decimal("sNaN")),
        ],
        equal=[(decimal.Decimal("1E+10"), decimal.Decimal("1e10"))],
    ),
    "uuid.UUID": Distinctions(
        different=[(uuid.UUID(int=1), uuid.UUID(int=2))],
        equal=[(uuid.UUID(int=1), uuid.UUID("00000000-0000-0000-0000-000000000001"))],
    ),
    "pathlib.Path": Distinctions(
        different=[
            (PATHS / "a.txt", PATHS / "b.txt"),
            (PATHS / "a.txt", pathlib.PurePosixPath(PATHS / "a.txt")),  # content vs name only
            (PATHS, PATHS / "a.txt"),
            (PATHS / "missing.txt", PATHS / "a.txt"),
        ],
        equal=[(PATHS / "a.txt", Path(str(PATHS / "a.txt")))],
    ),
    "pathlib.PurePath": Distinctions(
        different=[
            (pathlib.PurePosixPath("a/b"), pathlib.PureWindowsPath("a/b")),
            (pathlib.PurePosixPath("/no/such/file"), pathlib.Path("/no/such/file")),
        ],
        equal=[(pathlib.PurePosixPath("/a/b"), pathlib.PurePosixPath("/a//b"))],
    ),
    "namedtuple": Distinctions(
        different=[(Point(1, 2), Size(1, 2)), (Point(1, 2), Point(2, 1))],
        equal=[(Point(1, 2), Point(x=1, y=2))],
    ),
    "collections.OrderedDict": Distinctions(
        different=[(OrderedDict(a=1, b=2), OrderedDict(b=2, a=1))],
        equal=[(OrderedDict(a=1), OrderedDict([("a", 1)]))],
    ),
    "collections.defaultdict": Distinctions(
        different=[
            (defaultdict(int), defaultdict(list)),
            (defaultdict(int), defaultdict(None)),
            (defaultdict(int, a=1), defaultdict(int, a=2)),
        ],
        equal=[(defaultdict(int, a=1, b=2), defaultdict(int, b=2, a=1))],
    ),
    "subclass of int": subclass_case(Count, 1, int),
    "subclass of float": subclass_case(Ratio, 1.5, float),
    "subclass of complex": subclass_case(Signal, 1j, complex),
    "subclass of str": Distinctions(
        different=[(Tag("a"), Label("a")), (Tag("a"), annotated(Tag("a"), lang="en"))],
        equal=[(Tag("a"), Tag("a"))],
    ),
    "subclass of bytes": subclass_case(Blob, b"a", bytes),
    "subclass of bytearray": subclass_case(Buffer, b"a", bytearray),
    "subclass of tuple": subclass_case(Row, (1,), tuple),
    "subclass of list": subclass_case(Stack, [1], list),
    "subclass of dict": Distinctions(
        different=[
            (Record(a=1), {"a": 1}),
            (Record(a=1), annotated(Record(a=1), unit="m")),
            (Counter("ab"), {"a": 1, "b": 1}),
        ],
        equal=[(Record(a=1, b=2), Record(b=2, a=1))],
    ),
    "subclass of set": subclass_case(Members, {1}, set),
    "subclass of frozenset": subclass_case(FrozenMembers, {1}, frozenset),
    "class, function or module": Distinctions(
        different=[(first, second), (Plain, Tagged), (json, os)],
        equal=[(first, first), (types, sys.modules["types"])],
    ),
    "pickle reduction": Distinctions(
        different=[
            (Plain({"a"}), Plain({"b"})),
            (deque([1], maxlen=2), deque([1], maxlen=3)),
            (pd.offsets.Day(1), pd.offsets.Day(2)),
            (
                pd.offsets.CustomBusinessDay(holidays=["2024-01-01"]),
                pd.offsets.CustomBusinessDay(holidays=["2024-01-02"]),
            ),
            (
                dateutil.tz.gettz("America/New_York"),
                dateutil.tz.gettz("America/Panama"),
            ),
        ],
        equal=[(Plain({"a", "b", "c"}), Plain({"c", "b", "a"}))],
    ),
}


def cases(which: str) -> list[tuple[str, Pair]]:
    return [
        (kind, pair)
        for kind, distinctions in DISTINCTIONS.items()
        for pair in getattr(distinctions, which)
    ]


def case_id(case: tuple[str, Pair]) -> str:
    return case[0]


@pytest.mark.parametrize("case", cases("different"), ids=case_id)
def test_values_that_behave_differently_get_different_keys(case: tuple[str, Pair]) -> None:
    _, (a, b) = case
    assert hash_objects(a) != hash_objects(b)


@pytest.mark.parametrize("case", cases("equal"), ids=case_id)
def test_equal_values_share_a_key(case: tuple[str, Pair]) -> None:
    _, (a, b) = case
    assert hash_objects(a) == hash_objects(b)


def test_every_built_in_kind_has_an_entry() -> None:
    names = [kind.name for kind in BUILT_IN_KINDS]
    assert len(set(names)) == len(names)
    assert sorted(names) == sorted(DISTINCTIONS)


@pytest.mark.parametrize("case", cases("different") + cases("equal"), ids=case_id)
def test_each_entry_exercises_the_hasher_it_is_listed_under(case: tuple[str, Pair]) -> None:
    # Guards the table: a pair hashed by another kind would prove nothing about this one.
    kind, (a, _) = case
    assert kind_for(type(a)).name == kind


def test_decimal_keys_do_not_depend_on_the_context() -> None:
    number = decimal.Decimal("1E+10")
    with decimal.localcontext(capitals=0):
        lower = hash_objects(number)
    assert lower == hash_objects(number)


def all_keys() -> list[str]:
    return [hash_objects(pair) for _, pair in cases("different") + cases("equal")]


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_the_keys_are_the_same_in_a_fresh_interpreter(seed: str) -> None:
    # Zone, dtype and class state cross a process boundary (and a hash seed) unchanged.
    script = "import json, test_key_distinctions as t; print(json.dumps(t.all_keys()))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == all_keys()
