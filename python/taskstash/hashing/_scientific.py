"""Canonical forms of numpy, pandas and pydantic values.

These libraries are never imported here (see `library_type`). Arrays are hashed by dtype, shape
and their bytes in C order, read in place (a contiguous array is never copied). Everything that
makes two pandas objects behave differently is kept: the full state of extension dtypes (the
categories and order of a categorical, the zone of a datetime, the frequency of a period, the
closed side of an interval, the storage and missing value of strings), names of indexes and
levels, the frequency of a datetime index, and `attrs` and `flags`, which operations carry along.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from taskstash.hashing._types import Handler, Kind, Reduction, library_type

__all__ = ["KINDS"]


def _masked(cls: type, name: str) -> Handler:
    masked = sys.modules["numpy.ma"]
    # The fill value shows in `filled()` and the hard mask refuses writes under the mask. The
    # shared `numpy.ma.masked` constant refuses to have its fill value read.
    constant = issubclass(cls, type(masked.masked))

    def handle(array: Any) -> Reduction:
        fill_value = None if constant else array.fill_value
        return name, (
            masked.getdata(array),
            masked.getmaskarray(array),
            fill_value,
            array.hardmask,
        )

    return handle


def _ndarray(cls: type, name: str) -> Handler:
    numpy = sys.modules["numpy"]
    return lambda array: (name, _array(numpy, array))


def _numpy_scalar(cls: type, name: str) -> Handler:
    return lambda scalar: (name, (_dtype(scalar.dtype), scalar.tobytes()))


def _numpy_dtype(cls: type, name: str) -> Handler:
    return lambda dtype: (name, _dtype(dtype))


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


def _dataframe(cls: type, name: str) -> Handler:
    def handle(frame: Any) -> Reduction:
        dtypes = frame.dtypes
        kinds = set(dtypes)
        values: object
        if len(kinds) == 1 and _is_plain_numpy(next(iter(kinds))):
            # One numpy dtype: hash all values as one 2-D array instead of column by column.
            values = ("block", frame.to_numpy())
        else:
            values = ("columns", _columns(frame, dtypes))
        return name, (frame.columns, frame.index, values, *_carried(frame))

    return handle


def _is_plain_numpy(dtype: Any) -> bool:
    return type(dtype).__module__.startswith("numpy") and not dtype.hasobject


def _columns(frame: Any, dtypes: Any) -> list[object]:
    return [
        (dtype, _values(series)) for (_, series), dtype in zip(frame.items(), dtypes, strict=True)
    ]


def _carried(obj: Any) -> tuple[object, object]:
    """What a Series or DataFrame carries through operations besides its data."""
    return obj.attrs, obj.flags.allows_duplicate_labels


def _series(cls: type, name: str) -> Handler:
    return lambda series: (
        name,
        (series.dtype, series.name, series.index, _values(series), *_carried(series)),
    )


def _multi_index(cls: type, name: str) -> Handler:
    return lambda index: (name, (list(index.names), list(index.levels), list(index.codes)))


def _range_index(cls: type, name: str) -> Handler:
    return lambda index: (name, (index.name, index.start, index.stop, index.step))


def _index(cls: type, name: str) -> Handler:
    # Only datetime, timedelta and period indexes have a frequency; it changes shifts and
    # resampling, and a DatetimeIndex may have one or not for the same values.
    return lambda index: (
        name,
        (index.dtype, list(index.names), _values(index), getattr(index, "freq", None)),
    )


def _values(obj: Any) -> object:
    """The values of a Series or Index: a numpy array, or those of its extension array."""
    if type(obj.dtype).__module__.startswith("numpy"):
        return obj.to_numpy()
    return _extension_values(obj.array)


def _extension_values(array: Any) -> object:
    pandas = sys.modules["pandas"]
    if isinstance(array, pandas.Categorical):
        # With the categories in the dtype, the codes are the values, and much faster to hash.
        return array.codes
    masked = (pandas.arrays.IntegerArray, pandas.arrays.FloatingArray, pandas.arrays.BooleanArray)
    if isinstance(array, masked):
        # `to_numpy()` would turn integers with a missing value into floats, losing precision.
        numpy_dtype = array.dtype.numpy_dtype
        return array.isna(), array.to_numpy(numpy_dtype, na_value=numpy_dtype.type(0))
    return array.to_numpy()


def _timestamp(cls: type, name: str) -> Handler:
    # Timestamp subclasses datetime but carries nanoseconds and a resolution (`unit`), which
    # decides the dtype of the arrays it goes into.
    return lambda moment: (name, (moment.value, moment.unit, moment.tzinfo, moment.fold))


def _timedelta(cls: type, name: str) -> Handler:
    return lambda delta: (name, (delta.value, delta.unit))


def _not_a_time(cls: type, name: str) -> Handler:
    # NaT subclasses datetime but has no date, time or zone to read.
    return lambda _: (name, None)


# Attributes of `_metadata` that say how pandas stores values, not what they are: pandas itself
# picks a string dtype's storage from what is installed ("pyarrow" where pyarrow is, else
# "python"), and the strings behave the same. Keying it would give one value two keys on two
# machines that differ only in having pyarrow.
_STORAGE_ONLY: Final = {"StringDtype": frozenset({"storage"})}


def _extension_dtype(cls: type, name: str) -> Handler:
    # `_metadata` is the documented list of the attributes that define an extension dtype (its
    # `==` and `hash()` use them): categories and order, unit and zone, frequency, ...
    left_out = _STORAGE_ONLY.get(cls.__name__, frozenset())
    fields = tuple(f for f in getattr(cls, "_metadata", ()) if f not in left_out)
    return lambda dtype: (name, {field: getattr(dtype, field) for field in fields})


def _extension_array(cls: type, name: str) -> Handler:
    return lambda array: (name, (array.dtype, _extension_values(array)))


def _pydantic(cls: Any, name: str) -> Handler:
    fields = tuple(cls.model_fields)

    def handle(model: Any) -> Reduction:
        values = {field: getattr(model, field) for field in fields}
        extra = model.model_extra
        return name, (values, extra or None)

    return handle


# Order matters: the first kind that matches a type hashes it. numpy scalars and pandas
# timestamps subclass Python numbers and datetimes, so these come before the standard library's.
KINDS: tuple[Kind, ...] = (
    Kind("numpy.ma.MaskedArray", library_type("numpy.ma", lambda ma: ma.MaskedArray), _masked),
    Kind("numpy.ndarray", library_type("numpy", lambda numpy: numpy.ndarray), _ndarray),
    Kind("numpy.generic", library_type("numpy", lambda numpy: numpy.generic), _numpy_scalar),
    Kind("numpy.dtype", library_type("numpy", lambda numpy: numpy.dtype), _numpy_dtype),
    Kind("pandas.DataFrame", library_type("pandas", lambda pd: pd.DataFrame), _dataframe),
    Kind("pandas.Series", library_type("pandas", lambda pd: pd.Series), _series),
    Kind("pandas.MultiIndex", library_type("pandas", lambda pd: pd.MultiIndex), _multi_index),
    Kind("pandas.RangeIndex", library_type("pandas", lambda pd: pd.RangeIndex), _range_index),
    Kind("pandas.Index", library_type("pandas", lambda pd: pd.Index), _index),
    Kind("pandas.Timestamp", library_type("pandas", lambda pd: pd.Timestamp), _timestamp),
    Kind("pandas.Timedelta", library_type("pandas", lambda pd: pd.Timedelta), _timedelta),
    Kind("pandas.NaT", library_type("pandas", lambda pd: type(pd.NaT)), _not_a_time),
    Kind(
        "pandas.api.extensions.ExtensionDtype",
        library_type("pandas", lambda pd: pd.api.extensions.ExtensionDtype),
        _extension_dtype,
    ),
    Kind(
        "pandas.api.extensions.ExtensionArray",
        library_type("pandas", lambda pd: pd.api.extensions.ExtensionArray),
        _extension_array,
    ),
    Kind(
        "pydantic.BaseModel",
        library_type("pydantic", lambda pydantic: pydantic.BaseModel),
        _pydantic,
    ),
)
