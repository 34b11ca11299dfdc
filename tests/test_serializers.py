"""Serializers: the built-ins by name, custom objects, and their errors."""

from __future__ import annotations

import datetime
import json
import pickle
import re
import subprocess
import sys
from typing import Any

import pytest

from taskstash.exceptions import SerializationError, TaskstashError
from taskstash.store import Serializer, resolve_serializer
from taskstash.store.serializers import PICKLE_PROTOCOL

JSON_VALUES: list[object] = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "text ünïcode ✓",
    [1, "a", None, [2.5]],
    {"a": 1, "b": {"c": [True, False]}},
]
PICKLE_VALUES: list[object] = [
    *JSON_VALUES,
    (1, 2),
    {1, 2},
    b"\x00bytes",
    datetime.datetime(2024, 5, 1, 16, 28, 51),
    float("nan"),
]


@pytest.mark.parametrize("name", ["cloudpickle", "pickle"])
@pytest.mark.parametrize("value", PICKLE_VALUES, ids=repr)
def test_pickles_round_trip(name: str, value: object) -> None:
    serializer = resolve_serializer(name)
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    for given in (data, memoryview(data)):
        result = serializer.loads(given)
        if value != value:  # NaN
            assert isinstance(result, float)
            assert result != result
        else:
            assert result == value
            assert type(result) is type(value)


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_round_trips(value: object) -> None:
    serializer = resolve_serializer("json")
    data = serializer.dumps(value)
    assert serializer.loads(data) == value
    assert serializer.loads(memoryview(data)) == value


def test_json_is_compact_utf8() -> None:
    assert resolve_serializer("json").dumps({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, b"bytes", float("nan"), float("inf"), datetime.date(2024, 1, 1)]
)
def test_json_refuses_non_json_values(value: object) -> None:
    with pytest.raises(SerializationError, match="json serializer cannot store") as info:
        resolve_serializer("json").dumps(value)
    assert isinstance(info.value.__cause__, TypeError | ValueError)
    assert isinstance(info.value, TaskstashError)


def test_json_refuses_invalid_data() -> None:
    with pytest.raises(SerializationError, match="not valid JSON"):
        resolve_serializer("json").loads(b"\xff{")


def test_pickle_protocol_is_pinned() -> None:
    for name in ("pickle", "cloudpickle"):
        data = resolve_serializer(name).dumps([1, 2, 3])
        assert data[:2] == bytes([pickle.PROTO[0], PICKLE_PROTOCOL])


def test_cloudpickle_stores_lambdas_that_pickle_refuses() -> None:
    def double(x: int) -> int:
        return 2 * x

    data = resolve_serializer("cloudpickle").dumps(double)
    restored: Any = resolve_serializer("cloudpickle").loads(data)
    assert restored(21) == 42
    with pytest.raises(SerializationError, match=re.escape("cannot pickle a builtins.function")):
        resolve_serializer("pickle").dumps(double)


def test_unpicklable_values_raise_serialization_error() -> None:
    import threading

    with pytest.raises(SerializationError, match=re.escape("_thread.lock")):
        resolve_serializer("cloudpickle").dumps(threading.Lock())
    with pytest.raises(SerializationError, match="cannot unpickle"):
        resolve_serializer("pickle").loads(b"not a pickle")


def test_names() -> None:
    for name in ("cloudpickle", "pickle", "json"):
        serializer = resolve_serializer(name)
        assert serializer.name == name
        assert resolve_serializer(name) is serializer
        assert resolve_serializer(serializer) is serializer


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown result serializer 'yaml'") as info:
        resolve_serializer("yaml")
    for name in ("cloudpickle", "pickle", "json"):
        assert repr(name) in str(info.value)


class Upper:
    """A custom serializer with a name; its loads accepts only bytes."""

    name = "upper-text"

    def dumps(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise TypeError("only strings")
        return value.upper().encode()

    def loads(self, data: bytes) -> object:
        assert type(data) is bytes
        return data.decode().lower()


class Nameless:
    def dumps(self, value: object) -> bytes:
        return repr(value).encode()

    def loads(self, data: bytes) -> object:
        return data.decode()


def test_custom_serializer() -> None:
    serializer = resolve_serializer(Upper())
    assert serializer.name == "upper-text"
    data = serializer.dumps("abc")
    assert data == b"ABC"
    assert serializer.loads(memoryview(data)) == "abc"  # passed on as bytes
    with pytest.raises(
        SerializationError, match=re.escape("'upper-text' cannot serialize a builtins.int")
    ):
        serializer.dumps(1)


def test_custom_serializer_without_name_is_named_by_its_type() -> None:
    serializer = resolve_serializer(Nameless())
    assert serializer.name == f"{__name__}.Nameless"
    assert serializer.loads(serializer.dumps(1)) == "1"


def test_a_module_is_a_serializer() -> None:
    serializer = resolve_serializer(pickle)
    assert serializer.name == "pickle"
    assert serializer.loads(serializer.dumps({"a": (1, 2)})) == {"a": (1, 2)}
    with pytest.raises(SerializationError, match=re.escape("returned a builtins.str")):
        resolve_serializer(json).dumps([1])  # type: ignore[arg-type]  # dumps returns str


def test_custom_serializer_satisfies_the_protocol() -> None:
    serializer: Serializer = resolve_serializer(Upper())
    assert isinstance(serializer.name, str)


def test_objects_without_dumps_and_loads_are_refused() -> None:
    with pytest.raises(TypeError, match="dumps\\(\\) and loads\\(\\)"):
        resolve_serializer(42)  # type: ignore[arg-type]


def test_importing_the_store_loads_neither_cloudpickle_nor_fsspec() -> None:
    script = (
        "import sys, taskstash.store; "
        "s = taskstash.store.resolve_serializer('cloudpickle'); "
        "s.loads(b'\\x80\\x05K\\x01.'); "
        "print(sorted(m for m in ('cloudpickle', 'fsspec') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
