"""Canonical forms of numpy, pandas and pydantic values.

These libraries are never imported here: an object of their types can exist only once its library
has been imported, so looking the library up in `sys.modules` is enough and keeps
`import taskstash` fast.

Arrays are hashed by dtype, shape and their bytes in C order, read in place (a contiguous array is
never copied).
"""

from __future__ import annotations

import sys
from typing import Any

from taskstash.hashing._types import Handler, Reduction

__all__ = ["handler_for"]


def handler_for(cls: type, name: str) -> Handler | None:
    """The handler for a numpy, pandas or pydantic type, if `cls` is one."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        masked = sys.modules.get("numpy.ma")
        if masked is not None and issubclass(cls, masked.MaskedArray):
            return lambda array: (name, (masked.getdata(array), masked.getmaskarray(array)))
        if issubclass(cls, numpy.ndarray):
            return lambda array: (name, _array(numpy, array))
        if issubclass(cls, numpy.generic):
            return lambda scalar: (name, (_dtype(scalar.dtype), scalar.tobytes()))
        if issubclass(cls, numpy.dtype):
            return lambda dtype: (name, _dtype(dtype))
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        handler = _pandas_handler(pandas, cls, name)
        if handler is not None:
            return handler
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return _pydantic_handler(cls, name)
    return None


def _dtype(dtype: Any) -> object:
    # `str` loses field names of structured dtypes; `descr` keeps them.
    return dtype.descr if dtype.fields is not None else dtype.str


def _array(numpy: Any, array: Any) -> object:
    if array.dtype.hasobject:
        return (_dtype(array.dtype), array.shape, array.tolist())
    contiguous = numpy.ascontiguousarray(array)
    if contiguous.dtype.fields is None and not contiguous.dtype.isnative:
        # The same numbers stored big-endian would otherwise hash differently.
        contiguous = contiguous.astype(contiguous.dtype.newbyteorder("="))
    raw = memoryview(contiguous.reshape(-1).view(numpy.uint8))
    return (_dtype(contiguous.dtype), array.shape, raw)


def _pandas_handler(pandas: Any, cls: type, name: str) -> Handler | None:
    if issubclass(cls, pandas.DataFrame):
        return lambda frame: (name, _dataframe(frame))
    if issubclass(cls, pandas.Series):
        return lambda series: (
            name,
            (str(series.dtype), series.name, series.index, series.to_numpy()),
        )
    if issubclass(cls, pandas.MultiIndex):
        return lambda index: (
            name,
            (list(index.names), list(index.levels), list(index.codes)),
        )
    if issubclass(cls, pandas.RangeIndex):
        return lambda index: (name, (index.name, index.start, index.stop, index.step))
    if issubclass(cls, pandas.Index):
        return lambda index: (name, (str(index.dtype), list(index.names), index.to_numpy()))
    # Timestamp and Timedelta subclass datetime and timedelta but carry nanoseconds.
    if issubclass(cls, pandas.Timestamp):
        return lambda moment: (name, (moment.value, moment.tzname()))
    if issubclass(cls, pandas.Timedelta):
        return lambda delta: (name, delta.value)
    return None


def _dataframe(frame: Any) -> object:
    dtypes = frame.dtypes
    kinds = set(dtypes)
    if len(kinds) == 1:
        (dtype,) = kinds
        if type(dtype).__module__.startswith("numpy") and not dtype.hasobject:
            # One dtype: hash all values as one 2-D array instead of column by column.
            return ("block", frame.columns, frame.index, frame.to_numpy())
    columns = [
        (str(dtype), series.to_numpy())
        for (_, series), dtype in zip(frame.items(), dtypes, strict=True)
    ]
    return ("columns", frame.columns, frame.index, columns)


def _pydantic_handler(cls: Any, name: str) -> Handler:
    fields = tuple(cls.model_fields)

    def handle(model: Any) -> Reduction:
        values = {field: getattr(model, field) for field in fields}
        extra = model.model_extra
        return name, (values, extra or None)

    return handle
