"""Fixed values whose keys are committed in `tests/data/golden_keys.json`.

If a change to taskstash changes any of these keys, every cache built by an earlier release
silently stops hitting. So such a change must be deliberate: bump `KEY_FORMAT_VERSION` in
`rust/encode.rs`, then regenerate the file with

    python tests/golden_values.py --write

Run without `--write`, this prints the keys as JSON (the key-stability tests run it in fresh
interpreters with different `PYTHONHASHSEED`s).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import sys
import uuid
from collections import OrderedDict, defaultdict, namedtuple
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pydantic

from taskstash.hashing import KEY_FORMAT_VERSION, hash_objects

GOLDEN_FILE = pathlib.Path(__file__).parent / "data" / "golden_keys.json"


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float
    tags: frozenset[str] = frozenset()


class Settings(pydantic.BaseModel):
    name: str
    retries: int = 3
    labels: set[str] = set()


class PlainConfig:
    """An ordinary class, hashed by its pickle reduction."""

    def __init__(self, path: str, options: set[str]) -> None:
        self.path = path
        self.options = options


Pair = namedtuple("Pair", ["left", "right"])


def scale(value: float) -> float:
    return value * 2


def golden_values() -> dict[str, Any]:
    """Name -> value. Never change an entry; add new ones with new names."""
    words = {f"word-{i}" for i in range(40)}
    return {
        "none": None,
        "true": True,
        "false": False,
        "zero": 0,
        "one": 1,
        "minus-one": -1,
        "int-2**63": 2**63,
        "int-minus-2**63": -(2**63),
        "int-2**200": 2**200,
        "float-one": 1.0,
        "float-minus-zero": -0.0,
        "float-nan": float("nan"),
        "float-inf": float("inf"),
        "float-pi": 3.141592653589793,
        "complex": complex(1.5, -2.0),
        "str-empty": "",
        "str-one": "1",
        "str-unicode": "naïve café ☕ 𝄞",
        "str-lone-surrogate": "a\udc80b",
        "bytes": b"\x00\x01binary",
        "bytearray": bytearray(b"mutable"),
        "memoryview-int32": memoryview(np.arange(6, dtype=np.int32).tobytes()).cast("i"),
        "tuple": (1, 2),
        "list": [1, 2],
        "nested": {"a": [1, {"b": (2, 3)}], "c": {"d": None}},
        "dict-int-key": {1: "a"},
        "dict-str-key": {"1": "a"},
        "set-of-strings": words,
        "frozenset-of-tuples": frozenset({("a", 1), ("b", 2), ("c", 3)}),
        "dict-of-sets": {"x": {"p", "q", "r"}, "y": set()},
        "numpy-float64": np.linspace(0.0, 1.0, 50),
        "numpy-int32-2d": np.arange(12, dtype=np.int32).reshape(3, 4),
        "numpy-object": np.array(["a", 1, None], dtype=object),
        "numpy-scalar": np.float32(1.5),
        "numpy-datetime64": np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]"),
        "pandas-frame": pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}),
        "pandas-mixed-frame": pd.DataFrame({"n": [1, 2], "s": ["x", "y"]}, index=["r1", "r2"]),
        "pandas-series": pd.Series([1, 2, 3], name="counts"),
        "pandas-timestamp": pd.Timestamp("2024-03-01 12:00:00.000000001", tz="UTC"),
        "datetime-naive": datetime.datetime(2024, 3, 1, 12, 30, 15, 500),
        "datetime-aware": datetime.datetime(2024, 3, 1, 12, 30, tzinfo=datetime.UTC),
        "date": datetime.date(2024, 3, 1),
        "time": datetime.time(23, 59, 59),
        "timedelta": datetime.timedelta(days=1, seconds=5, microseconds=7),
        "decimal": decimal.Decimal("1.10"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "path": pathlib.PurePosixPath("/data/input.csv"),
        "enum": Color.RED,
        "int-enum": Level.LOW,
        "dataclass": Point(1.0, 2.0, frozenset({"p", "q"})),
        "pydantic": Settings(name="job", labels={"a", "b", "c"}),
        "plain-object": PlainConfig("/tmp/x", {"fast", "safe", "verbose"}),
        "namedtuple": Pair(1, "two"),
        "ordered-dict": OrderedDict([("b", 1), ("a", 2)]),
        "function": scale,
        "class": PlainConfig,
        "range": range(0, 10, 3),
        "defaultdict": defaultdict(list, a=[1]),
        "numpy-masked": np.ma.array([1.0, 2.0], mask=[False, True], fill_value=-1.0),
        "pandas-categorical-series": pd.Series(
            ["x", "y"], dtype=pd.CategoricalDtype(["x", "y", "z"], ordered=True)
        ),
        "pandas-datetime-index": pd.date_range(
            "2024-01-01", periods=3, freq="D", tz="America/New_York"
        ),
        "datetime-zoneinfo": datetime.datetime(2024, 1, 15, 12, tzinfo=ZoneInfo("America/Panama")),
    }


def golden_keys() -> dict[str, str]:
    return {name: hash_objects(value) for name, value in golden_values().items()}


def main(argv: list[str]) -> int:
    keys = golden_keys()
    if argv == ["--write"]:
        document = {"key_format_version": KEY_FORMAT_VERSION, "keys": keys}
        GOLDEN_FILE.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(keys)} keys to {GOLDEN_FILE}")
    else:
        print(json.dumps(keys, sort_keys=True))
    return 0


if __name__ == "__main__":
    # Type names are part of keys: run the copy importable as `golden_values` (as the tests see
    # it), not this `__main__` one.
    import importlib

    raise SystemExit(importlib.import_module("golden_values").main(sys.argv[1:]))
