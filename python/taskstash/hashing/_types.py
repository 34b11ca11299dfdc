"""Shapes shared by the handlers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

Reduction = tuple[str, object]
"""A qualified type name and the value that stands for an object in a key."""

Handler = Callable[[Any], Reduction]
"""Turns an object of one type into its `Reduction`."""


class Kind(NamedTuple):
    """A family of types that one built-in handler hashes by value.

    Attributes:
        name: What the family is called in docs and tests (`pandas.Series`, `dataclass`).
        matches: Whether a concrete type belongs to the family.
        handler: Makes the handler for one concrete type of the family, given its qualified
            name (which the handler puts first in the reduction, so subclasses never share keys
            with their base).
    """

    name: str
    matches: Callable[[type], bool]
    handler: Callable[[type, str], Handler]


def type_name(cls: type) -> str:
    """`module.QualName`: the stable name of a type, the same in every process."""
    return f"{cls.__module__}.{cls.__qualname__}"


def subclass_of(base: type | tuple[type, ...]) -> Callable[[type], bool]:
    """Matches `base` (or any of several bases) and its subclasses."""
    return lambda cls: issubclass(cls, base)


def library_type(module: str, find: Callable[[Any], type]) -> Callable[[type], bool]:
    """Matches subclasses of the type `find(library)` of a library, without importing it.

    An object of a library's type can exist only once its library has been imported, so looking
    the library up in `sys.modules` is enough and keeps `import taskstash` fast.
    """

    def matches(cls: type) -> bool:
        library = sys.modules.get(module)
        return library is not None and issubclass(cls, find(library))

    return matches
