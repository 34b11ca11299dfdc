"""Canonical forms of standard-library types, and the pickle-reduction fallback.

Principle: two values get the same key only if nothing a function could observe tells them
apart in ordinary use. So `Decimal('1.0')` and `Decimal('1.00')` differ (they print differently),
an aware datetime keeps its zone (the zone itself, not only today's offset and abbreviation), a
`defaultdict` keeps its default factory, and a subclass of a built-in type keeps its own type name
and the attributes its instances carry.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import pathlib
import types
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

from taskstash.hashing._files import path_reduction
from taskstash.hashing._types import Handler, Kind, Reduction, library_type, subclass_of

__all__ = ["KINDS", "pickle_reduction_handler"]

# Pinned so that reductions (and therefore keys) do not change with the interpreter's default.
_PICKLE_PROTOCOL = 4

# Built-in types whose subclasses hash as their base value under the subclass's name. No type
# here subclasses another, so their order does not matter.
_BUILTIN_BASES: tuple[type, ...] = (
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    tuple,
    list,
    dict,
    set,
    frozenset,
)

_REFERENCE_TYPES = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)


def _enum(cls: type, name: str) -> Handler:
    return lambda member: (name, (member._name_, member._value_))


def _dataclass(cls: type, name: str) -> Handler:
    # Fields with compare=False are not part of the value by the dataclass's own definition
    # (they typically hold caches, handles or locks), so they are left out like `==` leaves them.
    compared = tuple(field.name for field in dataclasses.fields(cls) if field.compare)

    def handle(obj: object) -> Reduction:
        return name, {field: getattr(obj, field) for field in compared}

    return handle


def _zone(cls: type, name: str) -> Handler:
    # The zone's name is its identity: two zones may agree on today's offset and abbreviation
    # (New York and Panama in January) and still differ on other dates.
    def handle(zone: Any) -> Reduction:
        if zone.key is None:
            raise TypeError(
                "a ZoneInfo read from a file without a key has no name to hash by; "
                "pass key= to ZoneInfo.from_file"
            )
        return name, zone.key

    return handle


def _fixed_offset(cls: type, name: str) -> Handler:
    return lambda zone: (name, (zone.utcoffset(None), zone.tzname(None)))


def _moment(cls: type, name: str) -> Handler:
    # The tzinfo is hashed as an object of its own (by zone name, see `_zone`), not by the
    # offset and abbreviation it gives for this one moment.
    return lambda moment: (name, (moment.isoformat(), moment.fold, moment.tzinfo))


def _date(cls: type, name: str) -> Handler:
    return lambda day: (name, day.isoformat())


def _timedelta(cls: type, name: str) -> Handler:
    return lambda delta: (name, (delta.days, delta.seconds, delta.microseconds))


def _decimal(cls: type, name: str) -> Handler:
    # `str()` depends on the thread's decimal context (`capitals`); the tuple does not.
    return lambda number: (name, tuple(number.as_tuple()))


def _uuid(cls: type, name: str) -> Handler:
    return lambda identifier: (name, identifier.bytes)


def _path(cls: type, name: str) -> Handler:
    # The type name tells the flavours apart: PurePosixPath('a/b') and PureWindowsPath('a/b')
    # print alike but split, compare and join differently.
    return lambda path: (name, str(path))


def _file_path(cls: type, name: str) -> Handler:
    # A concrete path names something on disk: its content is what the function reads.
    return lambda path: (name, path_reduction(path))


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _namedtuple(cls: Any, name: str) -> Handler:
    fields = tuple(cls._fields)
    return lambda row: (name, (fields, tuple(row), row.__getstate__()))


def _ordered_dict(cls: type, name: str) -> Handler:
    # Unlike dict, its equality depends on order.
    return lambda mapping: (name, (list(mapping.items()), mapping.__getstate__()))


def _defaultdict(cls: type, name: str) -> Handler:
    # The factory decides what a missing key reads as: `defaultdict(int)` and `defaultdict(list)`
    # are equal while empty but behave differently.
    return lambda mapping: (
        name,
        (mapping.default_factory, dict(mapping), mapping.__getstate__()),
    )


def _builtin_subclass(base: type) -> Callable[[type, str], Handler]:
    def factory(cls: type, name: str) -> Handler:
        # `__getstate__()` is None unless instances carry attributes (then what pickle would
        # keep of them), which the subclass's methods may read.
        return lambda obj: (name, (base(obj), obj.__getstate__()))

    return factory


def _reference(cls: type, name: str) -> Handler:
    """Classes, functions and modules are hashed by their importable name, not their code."""

    def handle(obj: Any) -> Reduction:
        if isinstance(obj, types.ModuleType):
            return name, obj.__name__
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            return pickle_reduction_handler(cls, name)(obj)
        if "<" in qualname:  # <lambda>, or <locals> of an enclosing function
            raise TypeError(
                f"{qualname} is a lambda or is defined inside a function, so it has no stable "
                "name to hash by; define it at module level"
            )
        return name, f"{module}.{qualname}"

    return handle


def pickle_reduction_handler(cls: type, name: str) -> Handler:
    """The fallback: hash an object by its pickle reduction, encoded canonically.

    This is the same information pickle would store (constructor, arguments, state), but encoded
    by taskstash's canonical encoder rather than as pickle bytes: dicts and sets in the state are
    order-independent, and classes and functions are named, never serialised by value, so the key
    is deterministic across processes where pickle bytes are not.
    """

    def handle(obj: Any) -> Reduction:
        try:
            reduction = obj.__reduce_ex__(_PICKLE_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"it has no canonical form ({exc}); to hash it, register a hasher for "
                f"{name} with taskstash.hashing.register()"
            ) from exc
        if isinstance(reduction, str):  # a module-level singleton, pickled by name
            return name, reduction
        constructor, arguments, *rest = reduction
        state, list_items, dict_items = (*rest, None, None, None)[:3]
        return name, (
            constructor,
            arguments,
            state,
            None if list_items is None else list(list_items),
            None if dict_items is None else dict(dict_items),
        )

    return handle


# Order matters: the first kind that matches a type hashes it (an IntEnum is an Enum before it
# is an int subclass; a datetime is a date).
KINDS: tuple[Kind, ...] = (
    Kind("enum.Enum", subclass_of(enum.Enum), _enum),
    Kind("dataclass", dataclasses.is_dataclass, _dataclass),
    Kind("zoneinfo.ZoneInfo", library_type("zoneinfo", lambda zoneinfo: zoneinfo.ZoneInfo), _zone),
    Kind("datetime.timezone", subclass_of(datetime.timezone), _fixed_offset),
    Kind("datetime.datetime", subclass_of(datetime.datetime), _moment),
    Kind("datetime.date", subclass_of(datetime.date), _date),
    Kind("datetime.time", subclass_of(datetime.time), _moment),
    Kind("datetime.timedelta", subclass_of(datetime.timedelta), _timedelta),
    Kind("decimal.Decimal", library_type("decimal", lambda decimal: decimal.Decimal), _decimal),
    Kind("uuid.UUID", library_type("uuid", lambda uuid: uuid.UUID), _uuid),
    Kind("pathlib.Path", subclass_of(pathlib.Path), _file_path),
    Kind("pathlib.PurePath", subclass_of(pathlib.PurePath), _path),
    Kind("namedtuple", _is_namedtuple, _namedtuple),
    Kind("collections.OrderedDict", subclass_of(OrderedDict), _ordered_dict),
    Kind("collections.defaultdict", subclass_of(defaultdict), _defaultdict),
    *(
        Kind(f"subclass of {base.__name__}", subclass_of(base), _builtin_subclass(base))
        for base in _BUILTIN_BASES
    ),
    Kind("class, function or module", subclass_of(_REFERENCE_TYPES), _reference),
    Kind("pickle reduction", lambda cls: True, pickle_reduction_handler),
)
