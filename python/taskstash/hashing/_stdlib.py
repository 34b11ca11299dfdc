"""Canonical forms of standard-library types, and the pickle-reduction fallback.

Principle: two values get the same key only if nothing a function could observe tells them
apart in ordinary use. So `Decimal('1.0')` and `Decimal('1.00')` differ (they print differently),
an aware datetime keeps its UTC offset and zone name, and a subclass of a built-in type keeps its
own type name.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import pathlib
import types
import uuid
from collections import OrderedDict
from typing import Any

from taskstash.hashing._types import Handler, Reduction

__all__ = ["handler_for", "pickle_reduction_handler"]

# Pinned so that reductions (and therefore keys) do not change with the interpreter's default.
_PICKLE_PROTOCOL = 4

# Built-in types whose subclasses hash as their base value under the subclass's name. Order
# matters only for readability: no type here subclasses another.
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


def handler_for(cls: type, name: str) -> Handler | None:
    """The handler for a standard-library type (or a subclass of a built-in), if `cls` is one."""
    if issubclass(cls, enum.Enum):
        return lambda member: (name, (member._name_, member._value_))
    if dataclasses.is_dataclass(cls):
        return _dataclass_handler(cls, name)
    # datetime before date: datetime is a subclass of date.
    if issubclass(cls, datetime.datetime):
        return lambda dt: (name, (dt.isoformat(), dt.fold, dt.tzname()))
    if issubclass(cls, datetime.date):
        return lambda day: (name, day.isoformat())
    if issubclass(cls, datetime.time):
        return lambda moment: (name, (moment.isoformat(), moment.fold, moment.tzname()))
    if issubclass(cls, datetime.timedelta):
        return lambda delta: (name, (delta.days, delta.seconds, delta.microseconds))
    if issubclass(cls, decimal.Decimal):
        return lambda number: (name, str(number))
    if issubclass(cls, uuid.UUID):
        return lambda identifier: (name, identifier.bytes)
    if issubclass(cls, pathlib.PurePath):
        return lambda path: (name, str(path))
    return _builtin_subclass_handler(cls, name) or _reference_handler(cls, name)


def _dataclass_handler(cls: type, name: str) -> Handler:
    # Fields with compare=False are not part of the value by the dataclass's own definition
    # (they typically hold caches, handles or locks), so they are left out like `==` leaves them.
    compared = tuple(field.name for field in dataclasses.fields(cls) if field.compare)

    def handle(obj: object) -> Reduction:
        return name, {field: getattr(obj, field) for field in compared}

    return handle


def _builtin_subclass_handler(cls: type, name: str) -> Handler | None:
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # a namedtuple
        fields = tuple(cls._fields)
        return lambda row: (name, (fields, tuple(row)))
    if issubclass(cls, OrderedDict):  # unlike dict, its equality depends on order
        return lambda mapping: (name, list(mapping.items()))
    for base in _BUILTIN_BASES:
        if issubclass(cls, base):
            return _as_base(base, name)
    return None


def _as_base(base: type, name: str) -> Handler:
    def handle(obj: Any) -> Reduction:
        return name, base(obj)

    return handle


def _reference_handler(cls: type, name: str) -> Handler | None:
    """Classes, functions and modules are hashed by their importable name, not their code."""
    if not issubclass(cls, _REFERENCE_TYPES):
        return None

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
