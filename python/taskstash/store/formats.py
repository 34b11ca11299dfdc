"""Open formats for arrays and tables, chosen by the type of a task's result.

With the default serializer, a task's result is stored in a format chosen by its type:

- a `numpy.ndarray` (exactly, with no Python objects in it) as a `.npy` file (numpy's own array
  format, version 1.0 or 2.0): serializer `"numpy"`;
- a `pyarrow.Table` as an Arrow IPC file: serializer `"arrow"`;
- a `pandas.DataFrame` or `pandas.Series` as an Arrow IPC file with pyarrow's pandas metadata
  (index, column labels, dtypes): serializer `"pandas-arrow"`; it needs pyarrow
  (`pip install 'taskstash[arrow]'`), without which data frames are pickled;
- anything else with cloudpickle.

These payloads open without taskstash (`numpy.load`, `pyarrow.ipc.open_file`) and depend on no
pandas internals, so they load after an upgrade of pandas. They load without a copy: the value
is built over the payload's memory (a mapped file, for a large result), and is read-only.

numpy, pandas and pyarrow are imported only when a value of theirs is stored or loaded.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from functools import cache, lru_cache
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from taskstash.exceptions import SerializationError

if TYPE_CHECKING:
    from taskstash.store.compression import Writable

__all__ = [
    "MAPPABLE",
    "ArrowSerializer",
    "NumpySerializer",
    "PandasArrowSerializer",
    "by_type",
]

_NPY_MAGIC: Final = b"\x93NUMPY"
_NPY_LENGTHS: Final = {1: struct.Struct("<H"), 2: struct.Struct("<I")}
_SERIES: Final = b"taskstash.series"
"""Schema metadata of a `"pandas-arrow"` payload holding a Series: JSON, whether it was named."""
_PANDAS_OBJECT_KINDS: Final = frozenset({"unicode", "bytes", "empty"})
"""Object columns Arrow stores faithfully; others (lists, dicts, mixed values) are pickled."""


class NumpySerializer:
    """A numpy array in numpy's `.npy` format; loaded as a read-only view of the payload."""

    name = "numpy"

    def dumps(self, value: object) -> bytes:
        """The `.npy` bytes of `value`.

        Raises:
            SerializationError: `value` is not a numpy array without Python objects.
        """
        out = io.BytesIO()
        self.dump(value, out)
        return out.getvalue()

    def dump(self, value: object, file: Writable) -> None:
        """Writes the `.npy` header, then the array's memory as it is (no copy if contiguous).

        Raises:
            SerializationError: `value` is not a numpy array without Python objects.
        """
        import numpy as np

        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise SerializationError(
                f"the numpy serializer stores numpy arrays without Python objects, not a "
                f"{type(value).__module__}.{type(value).__qualname__}"
            )
        if not (value.flags.c_contiguous or value.flags.f_contiguous):
            value = np.ascontiguousarray(value)
        header = io.BytesIO()
        fields = np.lib.format.header_data_from_array_1_0(value)
        try:
            np.lib.format.write_array_header_1_0(header, fields)
        except ValueError:  # a header too long for version 1.0 (a very wide record type)
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, fields)
        file.write(header.getvalue())
        if value.size:
            # An F-ordered array's memory is its transpose's, in C order: the .npy data.
            data = value.T if value.flags.f_contiguous and not value.flags.c_contiguous else value
            file.write(data.data.cast("B"))

    def loads(self, data: bytes | memoryview) -> object:
        """The array, a read-only view of `data` (which it keeps alive).

        Raises:
            SerializationError: `data` is not a `.npy` file of version 1.0 or 2.0.
        """
        import numpy as np

        view = memoryview(data)
        try:
            version = view[6] if bytes(view[:6]) == _NPY_MAGIC else 0
            length = _NPY_LENGTHS[version]
            start = 8 + length.size
            end = start + length.unpack_from(view, 8)[0]
            shape, fortran, dtype = _npy_header(version, bytes(view[8:end]))
            count = 1
            for size in shape:
                count *= size
            array = np.frombuffer(view, dtype=dtype, count=count, offset=end)
        except Exception as exc:
            raise SerializationError(f"the stored result is not a .npy array: {exc}") from exc
        array = array.reshape(shape, order="F" if fortran else "C")
        array.flags.writeable = False  # frombuffer of a writable buffer (a copy) is writable
        return array

    def load(self, file: BinaryIO) -> object:
        """`loads` of the rest of `file`, read into memory once.

        Raises:
            SerializationError: It is not a `.npy` array.
        """
        return self.loads(file.read())


@lru_cache(maxsize=256)
def _npy_header(version: int, header: bytes) -> tuple[tuple[int, ...], bool, Any]:
    """Shape, Fortran order and dtype of a `.npy` header (kept: numpy parses it with `ast`)."""
    import numpy as np

    read = getattr(np.lib.format, f"read_array_header_{version}_0")
    shape, fortran, dtype = read(io.BytesIO(header))
    return shape, fortran, dtype


class ArrowSerializer:
    """A `pyarrow.Table` as an Arrow IPC file; loaded over the payload's memory."""

    name = "arrow"

    def dumps(self, value: object) -> bytes:
        """The Arrow IPC file of `value`.

        Raises:
            SerializationError: `value` is not a table Arrow can write.
        """
        out = io.BytesIO()
        self.dump(value, out)
        return out.getvalue()

    def dump(self, value: object, file: Writable) -> None:
        """Writes `value` (a `pyarrow.Table`) as an Arrow IPC file, its buffers not copied.

        Raises:
            SerializationError: `value` is not a table Arrow can write.
        """
        import pyarrow as pa

        if not isinstance(value, pa.Table):
            raise SerializationError(
                f"the arrow serializer stores pyarrow tables, not a "
                f"{type(value).__module__}.{type(value).__qualname__}"
            )
        _write_table(value, file)

    def loads(self, data: bytes | memoryview) -> object:
        """The table, whose buffers are views of `data`.

        Raises:
            SerializationError: `data` is not an Arrow IPC file.
        """
        return _read_table(data)

    def load(self, file: BinaryIO) -> object:
        """`loads` of the rest of `file`, read into memory once."""
        return self.loads(file.read())


class PandasArrowSerializer:
    """A pandas DataFrame or Series as an Arrow IPC file with pyarrow's pandas metadata.

    The index (a RangeIndex as metadata only, other indexes as columns), column labels (strings,
    numbers, tuples of a MultiIndex) and dtypes (numpy ones, categoricals, time zones, periods,
    intervals, nullable integers and booleans, strings) are rebuilt by pyarrow from that
    metadata, which is independent of pandas' internal layout. Loaded columns share the
    payload's memory where Arrow's layout is numpy's (numbers and times without missing
    values), so they are read-only.
    """

    name = "pandas-arrow"

    def __init__(self, table: Any = None) -> None:
        self._table = table

    def dumps(self, value: object) -> bytes:
        """The Arrow IPC file of a DataFrame or Series.

        Raises:
            SerializationError: `value` is not a DataFrame or Series Arrow stores faithfully.
        """
        out = io.BytesIO()
        self.dump(value, out)
        return out.getvalue()

    def dump(self, value: object, file: Writable) -> None:
        """Writes `value` as an Arrow IPC file (a table prepared by `by_type` if given one).

        Raises:
            SerializationError: `value` is not a DataFrame or Series Arrow stores faithfully.
        """
        table = self._table if self._table is not None else _pandas_table(value)
        if table is None:
            raise SerializationError(
                f"the pandas-arrow serializer cannot store a "
                f"{type(value).__module__}.{type(value).__qualname__} faithfully; "
                "use result_serializer='cloudpickle'"
            )
        _write_table(table, file)

    def loads(self, data: bytes | memoryview) -> object:
        """The DataFrame or Series, its columns sharing `data`'s memory where they can.

        Raises:
            SerializationError: `data` is not an Arrow IPC file written from pandas.
        """
        table = _read_table(data)
        try:
            frame = table.to_pandas(split_blocks=True)
            metadata = table.schema.metadata or {}
            if _SERIES not in metadata:
                return frame
            series = frame.iloc[:, 0]
            if not json.loads(metadata[_SERIES])["named"]:
                series.name = None
            return series
        except Exception as exc:
            raise SerializationError(f"cannot rebuild the stored data frame: {exc}") from exc

    def load(self, file: BinaryIO) -> object:
        """`loads` of the rest of `file`, read into memory once."""
        return self.loads(file.read())


MAPPABLE: Final = frozenset(
    {NumpySerializer.name, ArrowSerializer.name, PandasArrowSerializer.name}
)
"""Serializers whose payloads are loaded in place: large ones are mapped, not read."""

_NUMPY: Final = NumpySerializer()
_ARROW: Final = ArrowSerializer()


@cache
def _have_pyarrow() -> bool:
    return find_spec("pyarrow") is not None


def by_type(value: object) -> NumpySerializer | ArrowSerializer | PandasArrowSerializer | None:
    """The open format for `value`, or None if it is to be pickled.

    Only exact types are chosen (a subclass may carry state the format drops), and a data frame
    only if every column is one Arrow stores faithfully and it has no `attrs`.
    """
    cls = type(value)
    module = sys.modules.get("numpy")
    if module is not None and cls is module.ndarray:
        return None if value.dtype.hasobject else _NUMPY  # type: ignore[attr-defined]
    if not _have_pyarrow():
        return None
    module = sys.modules.get("pyarrow")
    if module is not None and cls is module.Table:
        return _ARROW
    module = sys.modules.get("pandas")
    if module is not None and (cls is module.DataFrame or cls is module.Series):
        table = _pandas_table(value)
        return None if table is None else PandasArrowSerializer(table)
    return None


def _pandas_table(value: Any) -> Any:
    """The Arrow table of a DataFrame or Series, or None if Arrow would not keep it intact."""
    import pandas as pd
    import pyarrow as pa

    series = type(value) is pd.Series
    if not (series or type(value) is pd.DataFrame) or value.attrs:
        return None
    frame = value.to_frame() if series else value
    if not frame.columns.is_unique:
        return None
    try:
        table = pa.Table.from_pandas(frame)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    described = json.loads(table.schema.metadata[b"pandas"])
    for column in described["columns"]:
        if column["numpy_type"] == "object" and column["pandas_type"] not in _PANDAS_OBJECT_KINDS:
            return None  # lists, dicts, decimals... would come back as other types
    if series:
        named = json.dumps({"named": value.name is not None}).encode()
        table = table.replace_schema_metadata({**table.schema.metadata, _SERIES: named})
    return table


class _SinkFile(io.RawIOBase):
    """A writable file over a payload sink, counting what was written (Arrow asks `tell`)."""

    def __init__(self, sink: Writable) -> None:
        self._sink = sink
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self._sink.write(data)
        self._position += size
        return size

    def tell(self) -> int:
        return self._position


def _write_table(table: Any, file: Writable) -> None:
    import pyarrow as pa

    # Arrow writes many small pieces (messages, padding) between the large buffers: gather those.
    out = io.BufferedWriter(_SinkFile(file), 1 << 16)
    try:
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)
        out.flush()
    except pa.ArrowException as exc:
        raise SerializationError(f"Arrow cannot write this table: {exc}") from exc


def _read_table(data: bytes | memoryview) -> Any:
    import pyarrow as pa

    try:
        return pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except (pa.ArrowException, ValueError) as exc:
        raise SerializationError(f"the stored result is not an Arrow IPC file: {exc}") from exc
