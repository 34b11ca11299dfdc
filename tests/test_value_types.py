"""Values of library and user types are hashed by value; the ones that can't be say so clearly."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import io
import pathlib
import threading
import uuid
from collections import Counter, OrderedDict, defaultdict, namedtuple
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pydantic
import pytest

from taskstash import HashingError, hash_objects, register


def same(a: object, b: object) -> bool:
    return hash_objects(a) == hash_objects(b)


# numpy ----------------------------------------------------------------------------------------


def test_arrays_hash_by_dtype_shape_and_values_not_by_memory_layout() -> None:
    c_order = np.arange(12, dtype=np.float64).reshape(3, 4)
    fortran = np.asfortranarray(c_order)
    assert same(c_order, fortran)
    assert same(c_order, c_order.copy())
    assert not same(c_order, c_order.reshape(4, 3))
    assert not same(c_order, c_order.astype(np.float32))
    assert not same(c_order, c_order + 1e-12)
    assert same(c_order.T, np.ascontiguousarray(c_order.T))


def test_byte_order_does_not_change_an_arrays_key() -> None:
    little = np.array([1, 2, 3], dtype="<i4")
    big = np.array([1, 2, 3], dtype=">i4")
    assert same(little, big)


def test_views_and_zero_dimensional_arrays() -> None:
    base = np.arange(10)
    assert same(base[::2], np.array([0, 2, 4, 6, 8]))
    assert not same(np.array(5), np.array([5]))


def test_object_and_structured_arrays() -> None:
    assert same(np.array(["a", None], dtype=object), np.array(["a", None], dtype=object))
    assert not same(np.array(["a", None], dtype=object), np.array(["b", None], dtype=object))
    record = np.dtype([("x", "<i4"), ("y", "<f8")])
    renamed = np.dtype([("u", "<i4"), ("y", "<f8")])
    assert not same(np.zeros(2, dtype=record), np.zeros(2, dtype=renamed))


def test_numpy_scalars_differ_from_python_numbers_and_each_other() -> None:
    assert not same(np.float64(1.5), 1.5)
    assert not same(np.float64(1.5), np.float32(1.5))
    assert same(np.int64(7), np.int64(7))


def test_the_mask_of_a_masked_array_is_part_of_its_value() -> None:
    data = np.array([1.0, 2.0, 3.0])
    one_masked = np.ma.array(data, mask=[False, True, False])
    assert not same(one_masked, np.ma.array(data, mask=[False] * 3))


def test_large_arrays_are_hashed_without_copies() -> None:
    # 64 MiB; the key path must not fall back to pickling (which would copy it).
    big = np.ones(8 << 20)
    key = hash_objects(big)
    big[-1] = 2.0
    assert hash_objects(big) != key


# pandas ---------------------------------------------------------------------------------------


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}, index=["x", "y", "z"])


def test_equal_frames_share_a_key_however_they_were_built() -> None:
    rebuilt = pd.DataFrame(
        np.array([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]), columns=["a", "b"], index=["x", "y", "z"]
    )
    assert same(frame(), rebuilt)
    assert same(frame(), frame().copy())


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f[["b", "a"]],
        lambda f: f.rename(columns={"a": "A"}),
        lambda f: f.set_axis(["x", "y", "w"]),
        lambda f: f.astype({"a": "float32"}),
        lambda f: f.assign(a=[1.0, 2.0, 3.5]),
        lambda f: f.reset_index(drop=True),
    ],
    ids=["column-order", "column-name", "index", "dtype", "value", "index-type"],
)
def test_anything_that_changes_a_frame_changes_its_key(change: Any) -> None:
    assert not same(frame(), change(frame()))


def test_mixed_dtype_frames_and_series() -> None:
    mixed = pd.DataFrame({"n": [1, 2], "s": ["p", "q"], "t": pd.to_datetime(["2024", "2025"])})
    assert same(mixed, mixed.copy())
    assert not same(mixed, mixed.assign(s=["p", "r"]))
    series = pd.Series([1, 2, 3], name="a")
    assert same(series, pd.Series([1, 2, 3], name="a"))
    assert not same(series, series.rename("b"))
    assert not same(series, series.to_frame())


def test_multi_and_range_indexes() -> None:
    pairs = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    assert same(pairs, pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"]))
    assert not same(pairs, pairs.set_names(["k", "m"]))
    assert not same(pd.RangeIndex(3), pd.Index([0, 1, 2]))


def test_timestamps_keep_nanoseconds() -> None:
    moment = pd.Timestamp("2024-01-01 00:00:00.000000001")
    assert not same(moment, pd.Timestamp("2024-01-01 00:00:00.000000002"))
    assert not same(pd.Timedelta(1, "ns"), pd.Timedelta(2, "ns"))


# standard library -----------------------------------------------------------------------------


def test_datetimes_keep_zone_and_fold() -> None:
    naive = datetime.datetime(2024, 3, 1, 12)
    utc = naive.replace(tzinfo=datetime.UTC)
    paris = datetime.datetime(2024, 3, 1, 13, tzinfo=ZoneInfo("Europe/Paris"))
    assert same(naive, datetime.datetime(2024, 3, 1, 12))
    assert not same(naive, utc)
    assert utc == paris  # one instant, two zones
    assert not same(utc, paris)
    assert not same(naive, naive.replace(fold=1))
    assert not same(datetime.date(2024, 3, 1), datetime.datetime(2024, 3, 1))


def test_timedeltas_decimals_uuids_and_paths() -> None:
    assert same(datetime.timedelta(hours=24), datetime.timedelta(days=1))
    assert not same(decimal.Decimal("1.0"), decimal.Decimal("1.00"))
    assert same(decimal.Decimal("1.0"), decimal.Decimal("1.0"))
    identifier = uuid.uuid4()
    assert same(identifier, uuid.UUID(str(identifier)))
    assert not same(identifier, str(identifier))
    assert same(pathlib.PurePosixPath("/a/b"), pathlib.PurePosixPath("/a//b"))
    assert not same(pathlib.PurePosixPath("/a/b"), "/a/b")


class Mode(enum.Enum):
    FAST = 1
    SAFE = 2


class Size(enum.IntEnum):
    SMALL = 1


def test_enums_hash_by_member() -> None:
    assert same(Mode.FAST, Mode(1))
    assert not same(Mode.FAST, Mode.SAFE)
    assert not same(Size.SMALL, 1)


@dataclasses.dataclass
class Job:
    name: str
    inputs: list[str]
    lock: Any = dataclasses.field(default=None, compare=False)


def test_dataclasses_hash_by_compared_fields() -> None:
    assert same(Job("a", ["x"]), Job("a", ["x"]))
    assert not same(Job("a", ["x"]), Job("a", ["y"]))
    # compare=False fields are not part of the value, so a lock there does not matter.
    assert same(Job("a", ["x"], lock=threading.Lock()), Job("a", ["x"]))


class Model(pydantic.BaseModel):
    name: str
    tags: set[str] = set()


def test_pydantic_models_hash_by_fields() -> None:
    assert same(Model(name="a", tags={"x", "y"}), Model(name="a", tags={"y", "x"}))
    assert not same(Model(name="a"), Model(name="b"))
    assert not same(Model(name="a"), {"name": "a", "tags": set()})


Row = namedtuple("Row", ["a", "b"])


def test_subclasses_of_builtins_keep_their_type() -> None:
    assert not same(Row(1, 2), (1, 2))
    assert same(Row(1, 2), Row(1, 2))
    assert not same(OrderedDict(a=1, b=2), OrderedDict(b=2, a=1))  # order is their equality
    assert not same(OrderedDict(a=1), {"a": 1})
    assert same(defaultdict(list, a=[1]), defaultdict(list, a=[1]))
    assert not same(defaultdict(list, a=[1]), {"a": [1]})
    assert not same(Counter("aab"), {"a": 2, "b": 1})


class Plain:
    def __init__(self, path: str, options: set[str]) -> None:
        self.path = path
        self.options = options


class WithSlots:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def test_other_objects_hash_by_their_state() -> None:
    assert same(Plain("/x", {"a", "b"}), Plain("/x", {"b", "a"}))
    assert not same(Plain("/x", {"a"}), Plain("/y", {"a"}))
    assert same(WithSlots(1), WithSlots(1))
    assert not same(WithSlots(1), WithSlots(2))


def module_level_function() -> None:
    """Hashed by its qualified name."""


def test_functions_and_classes_hash_by_name() -> None:
    assert same(module_level_function, module_level_function)
    assert not same(module_level_function, Plain)
    assert same(len, len)


# register -------------------------------------------------------------------------------------


class Celsius:
    def __init__(self, degrees: float, sensor: Any = None) -> None:
        self.degrees = degrees
        self.sensor = sensor


def test_registered_hashers_define_the_value() -> None:
    register(Celsius, lambda reading: reading.degrees)
    assert same(Celsius(20.0, sensor=threading.Lock()), Celsius(20.0))
    assert not same(Celsius(20.0), Celsius(21.0))
    assert not same(Celsius(20.0), 20.0)  # the type name is part of the key


class Grid:
    def __init__(self, cells: list[int]) -> None:
        self.cells = cells


class SubGrid(Grid):
    pass


def test_register_works_as_a_decorator_and_covers_subclasses() -> None:
    @register(Grid)
    def grid_cells(grid: Grid) -> object:
        return tuple(grid.cells)

    assert grid_cells(Grid([1])) == (1,)
    assert same(SubGrid([1, 2]), SubGrid([1, 2]))
    assert not same(SubGrid([1, 2]), Grid([1, 2]))


class Stamp(datetime.date):
    pass


def test_registration_overrides_a_built_in_hasher_already_used() -> None:
    stamp = Stamp(2024, 1, 1)
    before = hash_objects(stamp)
    register(Stamp, lambda value: "always the same")
    assert hash_objects(stamp) != before
    assert same(stamp, Stamp(1999, 1, 1))


def test_register_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="needs a class"):
        register("not a class", str)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callable"):
        register(Plain, 42)  # type: ignore[call-overload]


class Fussy:
    pass


def test_a_failing_hasher_becomes_a_hashing_error_with_its_cause() -> None:
    def refuse(value: Fussy) -> object:
        raise ValueError("not today")

    register(Fussy, refuse)
    with pytest.raises(HashingError, match=r"options\[1\]: .*Fussy.*not today") as error:
        hash_objects(options=[0, Fussy()])
    assert isinstance(error.value.__cause__, ValueError)


class Interrupting:
    pass


def test_keyboard_interrupt_in_a_hasher_is_not_swallowed() -> None:
    def interrupt(value: Interrupting) -> object:
        raise KeyboardInterrupt

    register(Interrupting, interrupt)
    with pytest.raises(KeyboardInterrupt):
        hash_objects(Interrupting())


class Malformed:
    pass


def test_a_hasher_returning_itself_is_refused_not_looped() -> None:
    register(Malformed, lambda value: value)
    with pytest.raises(HashingError, match="contains itself"):
        hash_objects(Malformed())


# unhashable values ----------------------------------------------------------------------------


def generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (threading.Lock(), "_thread.lock"),
        (generator(), "generator"),
        (lambda: 1, "function"),
    ],
    ids=["lock", "generator", "lambda"],
)
def test_values_without_canonical_form_name_their_type_and_place(
    value: object, type_name: str
) -> None:
    with pytest.raises(HashingError) as error:
        hash_objects(config={"inputs": [1, {"handle": value}]})
    assert error.value.path == "config['inputs'][1]['handle']"
    assert error.value.type_name == type_name
    assert str(error.value).startswith(f"config['inputs'][1]['handle']: {type_name} ")


def test_open_files_cannot_be_hashed(tmp_path: pathlib.Path) -> None:
    with (tmp_path / "data.txt").open("w") as handle, pytest.raises(HashingError) as error:
        hash_objects(output=handle)
    assert error.value.type_name == "_io.TextIOWrapper"
    assert error.value.path == "output"


def test_in_memory_buffers_hash_by_their_content() -> None:
    assert same(io.StringIO("abc"), io.StringIO("abc"))
    assert not same(io.StringIO("abc"), io.StringIO("abd"))


def test_the_error_for_an_unpicklable_object_says_how_to_fix_it() -> None:
    with pytest.raises(HashingError, match="register") as error:
        hash_objects(threading.Lock())
    assert error.value.path == "args[0]"


def test_local_functions_have_no_stable_name() -> None:
    def helper() -> None:
        pass

    with pytest.raises(HashingError, match="defined inside a function"):
        hash_objects(helper)


class SelfReferencing:
    def __init__(self) -> None:
        self.me = self


def test_objects_referring_to_themselves_are_a_clear_error() -> None:
    with pytest.raises(HashingError, match="contains itself"):
        hash_objects(SelfReferencing())
