"""Arrays and tables stored in open formats by type: readable without taskstash, and faithful."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from format_support import GOLDEN_FRAME, golden_frame

from taskstash import task
from taskstash.cache_policies import INPUTS
from taskstash.store import resolve_serializer

RAN: list[object] = []


def cached(value: object, **options: Any) -> Any:
    """A task returning `value`, called twice: the second call is a hit."""

    @task(cache_policy=INPUTS, **options)
    def produce(tag: str) -> object:
        RAN.append(tag)
        return value

    RAN.clear()
    produce("x")
    hit = produce("x")
    assert RAN == ["x"], "the second call was not a hit"
    return hit


def stored_serializers(home: Path) -> list[str]:
    with sqlite3.connect(home / "index.db") as conn:
        return [row[0] for row in conn.execute("SELECT serializer FROM records")]


def result_files(home: Path) -> list[Path]:
    return [p for p in (home / "storage").rglob("*") if p.is_file()]


def test_results_are_stored_in_a_format_chosen_by_type(taskstash_home: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(cached(array), array)
    frame = pd.DataFrame({"a": [1, 2]})
    pd.testing.assert_frame_equal(cached(frame), frame)
    series = pd.Series([1.5, 2.5], name="s")
    pd.testing.assert_series_equal(cached(series), series)
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert cached(table).equals(table)
    assert cached({"a": array}).keys() == {"a"}
    assert stored_serializers(taskstash_home) == [
        "numpy",
        "pandas-arrow",
        "pandas-arrow",
        "arrow",
        "cloudpickle",
    ]


def test_an_explicit_serializer_wins(taskstash_home: Path) -> None:
    array = np.arange(5)
    hit = cached(array, result_serializer="cloudpickle")
    assert np.array_equal(hit, array)
    assert hit.flags.writeable  # unpickled: the caller's own copy
    assert stored_serializers(taskstash_home) == ["cloudpickle"]


@pytest.mark.parametrize(
    "value",
    [
        pd.DataFrame({"lists": [[1], [2, 3]]}),  # Arrow would give arrays back, not lists
        pd.DataFrame({"mixed": [1, "a"]}),
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        np.array([1, "a", None], dtype=object),
        np.ma.masked_array([1, 2], mask=np.array([False, True])),  # a subclass: no mask in .npy
    ],
    ids=["lists", "mixed", "duplicate-columns", "object-array", "masked-array"],
)
def test_values_an_open_format_would_change_are_pickled(value: Any, taskstash_home: Path) -> None:
    hit = cached(value)
    assert type(hit) is type(value)
    assert stored_serializers(taskstash_home) == ["cloudpickle"]


def test_a_frame_with_attrs_is_pickled(taskstash_home: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    frame.attrs["unit"] = "m"
    assert cached(frame).attrs == {"unit": "m"}
    assert stored_serializers(taskstash_home) == ["cloudpickle"]


FRAMES = {
    "golden": golden_frame(),
    "int-labels": pd.DataFrame({1: [1.0, 2.0], 2: [3.0, 4.0]}),
    "multiindex": pd.DataFrame(
        {"v": [1, 2, 3]},
        index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")], names=["k", "s"]),
    ),
    "multiindex-columns": pd.DataFrame(
        [[1, 2], [3, 4]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])
    ),
    "range-index": pd.DataFrame({"v": [1, 2]}, index=pd.RangeIndex(10, 14, 2)),
    "times": pd.DataFrame(
        {
            "naive": pd.to_datetime(pd.Series(["2024-01-01", None])),
            "utc": pd.to_datetime(["2024-01-01", "2024-06-01"]).tz_localize("UTC"),
            "delta": pd.to_timedelta([1, 2], unit="s"),
            "period": pd.period_range("2024-01", periods=2, freq="M"),
        }
    ),
    "categorical-index": pd.DataFrame(
        {"v": [1, 2]}, index=pd.CategoricalIndex(["b", "a"], name="c")
    ),
    "nullable": pd.DataFrame(
        {"b": pd.array([True, None], dtype="boolean"), "f": pd.array([0.5, None], "Float64")}
    ),
    "empty": pd.DataFrame({"a": pd.Series([], dtype="int64")}),
}


@pytest.mark.parametrize("name", FRAMES)
def test_data_frames_round_trip_labels_index_and_dtypes(name: str, taskstash_home: Path) -> None:
    frame = FRAMES[name]
    pd.testing.assert_frame_equal(cached(frame), frame)
    assert stored_serializers(taskstash_home) == ["pandas-arrow"]


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1, 2], name="named"),
        pd.Series([1, 2]),
        pd.Series([1, 2], name=0),
        pd.Series(pd.Categorical(["a", "b"]), index=pd.Index(["x", "y"], name="i")),
    ],
    ids=["named", "unnamed", "named-0", "categorical"],
)
def test_series_round_trip_with_their_name(series: pd.Series, taskstash_home: Path) -> None:
    pd.testing.assert_series_equal(cached(series), series)
    assert stored_serializers(taskstash_home) == ["pandas-arrow"]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.arange(20)[::3],  # not contiguous
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        np.zeros((0, 3)),
        np.array(3.5),
        np.array(["ab", "c"]),
        np.array([1 + 2j], dtype=">c16"),
    ],
    ids=["3d", "fortran", "strided", "record", "empty", "scalar", "unicode", "big-endian"],
)
def test_arrays_round_trip_shape_order_and_dtype(array: np.ndarray, taskstash_home: Path) -> None:
    hit = cached(array)
    assert hit.dtype == array.dtype
    assert hit.shape == array.shape
    assert np.array_equal(hit, array)
    if array.ndim > 1:  # a 1-d array is in both orders
        assert hit.flags.f_contiguous == array.flags.f_contiguous
    assert stored_serializers(taskstash_home) == ["numpy"]


def test_a_hit_array_is_read_only_and_cannot_be_poisoned(taskstash_home: Path) -> None:
    @task(cache_policy=INPUTS)
    def produce(size: int) -> np.ndarray:
        return np.zeros(size)

    produce(4)
    hit = produce(4)
    with pytest.raises(ValueError, match="read-only"):
        hit[0] = 1
    with pytest.raises(ValueError, match="WRITEABLE"):
        hit.flags.writeable = True
    mine = hit.copy()
    mine[0] = 1  # a copy is the caller's to change
    assert produce(4)[0] == 0


# Reads a result file as docs/schema.md describes it, with numpy and pyarrow only.
WITHOUT_TASKSTASH = """
import io, json, struct, sys
import numpy as np
import pyarrow as pa

out = {}
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    magic, version, size = struct.unpack_from("<7sBI", data)
    assert magic == b"TSKSTSH" and version == 1
    header = json.loads(data[12 : 12 + size])
    payload = data[12 + size :]
    if header["serializer"] == "numpy":
        out["numpy"] = np.load(io.BytesIO(payload)).tolist()
    else:
        table = pa.ipc.open_file(payload).read_all()
        frame = table.to_pandas()
        out[header["serializer"]] = [frame.index.name, frame.to_dict("split")]
assert "taskstash" not in sys.modules
print(json.dumps(out))
"""


def test_a_payload_opens_with_plain_numpy_and_pyarrow(taskstash_home: Path) -> None:
    cached(np.arange(6, dtype=np.int64).reshape(2, 3))
    cached(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=pd.Index([5, 6], name="i")))
    files = sorted(map(str, result_files(taskstash_home)))
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TASKSTASH, *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},  # no PYTHONPATH: taskstash cannot be imported by mistake
    )
    out = json.loads(result.stdout)
    assert out["numpy"] == [[0, 1, 2], [3, 4, 5]]
    assert out["pandas-arrow"] == [
        "i",
        {"index": [5, 6], "columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]},
    ]


def test_a_stored_frame_needs_no_pandas_to_be_read() -> None:
    # The payload is Arrow data and JSON metadata: nothing in it is pickled pandas state.
    script = (
        "import sys; sys.modules['pandas'] = None\n"
        "import json, pyarrow as pa\n"
        f"t = pa.ipc.open_file(pa.memory_map({str(GOLDEN_FRAME)!r})).read_all()\n"
        "print(json.dumps([t.num_rows, t.column_names]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == [4, ["n", "x", "cat", "when", "maybe", "text", "id"]]


def test_a_frame_written_by_an_earlier_version_loads() -> None:
    loaded = resolve_serializer("pandas-arrow").loads(GOLDEN_FRAME.read_bytes())
    assert isinstance(loaded, pd.DataFrame)
    pd.testing.assert_frame_equal(loaded, golden_frame())


NO_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # as if it were not installed
import numpy as np, pandas as pd
from taskstash import task
from taskstash.cache_policies import INPUTS

@task(cache_policy=INPUTS)
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": range(n)})

@task(cache_policy=INPUTS)
def array(n: int) -> np.ndarray:
    return np.arange(n)

for _ in range(2):
    assert frame(2)["a"].tolist() == [0, 1]
    assert array(3).tolist() == [0, 1, 2]
"""


def test_without_pyarrow_frames_are_pickled(taskstash_home: Path) -> None:
    subprocess.run([sys.executable, "-c", NO_PYARROW], check=True, timeout=60)
    assert sorted(stored_serializers(taskstash_home)) == ["cloudpickle", "numpy"]
