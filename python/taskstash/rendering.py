"""A short, safe text of a call's arguments, kept with its record so people can tell calls apart.

`load_csv(path='data/2026-11.csv', sep=',')` is stored as `path='data/2026-11.csv', sep=','`.
Only plain values are shown by value: None, bools, numbers, strings, bytes, paths, and lists,
tuples, sets and dicts of them, each cut short. Any other object is shown by its type (and shape
and dtype where it has them, as arrays and data frames do), without calling its `repr`, which
could be slow, fail, or print what should not be printed. The whole text is cut at
`MAX_LENGTH` characters. `TASKSTASH_RECORD_PARAMETERS=false` turns it off (for sensitive inputs).
"""

from __future__ import annotations

import enum
import itertools
import pathlib
import reprlib
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_LENGTH", "render_parameters"]

MAX_LENGTH: Final = 200
"""The longest text kept for one call's arguments."""

_PLAIN: Final = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS: Final = (list, tuple, set, frozenset, dict)


class _Short(reprlib.Repr):
    """`reprlib` limits, and objects that are not plain values shown by their type only."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 4
        self.maxstring = 60
        self.maxlong = 30
        self.maxother = 40

    # reprlib sorts a whole dict or set to show its first few members: a call with a dict of a
    # million keys would pay for the sort. Sort small ones only (for a stable text); show big
    # ones in their own order.
    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(x[key], level - 1)}"
            for key in itertools.islice(_few_sorted(x), self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def repr_set(self, x: set[Any], level: int) -> str:
        return self._members(x, level, "set()", "{", "}", self.maxset)

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._members(x, level, "frozenset()", "frozenset({", "})", self.maxfrozenset)

    def _members(
        self, x: set[Any] | frozenset[Any], level: int, empty: str, left: str, right: str, most: int
    ) -> str:
        if not x:
            return empty
        if level <= 0:
            return left + self.fillvalue + right
        pieces = [self.repr1(m, level - 1) for m in itertools.islice(_few_sorted(x), most)]
        if len(x) > most:
            pieces.append(self.fillvalue)
        return left + ", ".join(pieces) + right

    def repr1(self, x: Any, level: int) -> str:
        if type(x) in _PLAIN or type(x) in _CONTAINERS:
            return super().repr1(x, level)
        if isinstance(x, pathlib.PurePath):
            return super().repr1(str(x), level)
        if isinstance(x, enum.Enum):
            return f"{type(x).__name__}.{x.name}"
        return _by_type(x)


def _few_sorted(members: dict[Any, Any] | set[Any] | frozenset[Any]) -> list[Any]:
    """The members sorted if there are few and they sort; else in their own order."""
    if len(members) <= 64:
        try:
            return sorted(members)
        except TypeError:
            pass
    return list(itertools.islice(members, 64))


def _by_type(value: object) -> str:
    kind = type(value)
    text = kind.__qualname__ if kind.__module__ == "builtins" else kind.__name__
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        text += f" {shape}"
        dtype = getattr(value, "dtype", None)
        if dtype is not None and type(dtype).__module__.startswith("numpy"):
            text += f" {dtype}"
    return f"<{text}>"


_SHORT: Final = _Short()


def render_parameters(parameters: Mapping[str, Any]) -> str:
    """`name=value, ...` for a call's bound arguments, at most `MAX_LENGTH` characters."""
    parts: list[str] = []
    length = 0
    for name, value in parameters.items():
        try:
            shown = _SHORT.repr(value)
        except Exception:  # a str subclass with a failing __repr__, say: never fail a call
            shown = _by_type(value)
        parts.append(f"{name}={shown}")
        length += len(parts[-1]) + 2
        if length > MAX_LENGTH:
            break
    text = ", ".join(parts)
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."
