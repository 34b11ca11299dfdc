"""Which canonical form an object of a non-built-in type is hashed by.

The native encoder handles exact built-in types itself and calls `reduce(obj)` for everything
else. `reduce` returns `(type_name, value)`: the encoder writes the name, then encodes `value`,
which may again contain objects it hands back here. Handlers are resolved once per exact type and
cached, so a hot path pays one dict lookup per object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from taskstash.hashing import _scientific, _stdlib
from taskstash.hashing._types import Handler, Kind, Reduction, type_name

__all__ = ["BUILT_IN_KINDS", "Canonicalizer", "kind_for", "reduce", "register"]

Canonicalizer = Callable[[Any], object]
"""A user hasher: maps an object to a value taskstash can hash (built-ins, or other hashable
objects), which stands for it in the key. Equal objects must map to equal values."""

_T = TypeVar("_T", bound=type)

BUILT_IN_KINDS: tuple[Kind, ...] = _scientific.KINDS + _stdlib.KINDS
"""Every kind of value with a built-in hasher, in the order they are tried; the last one, the
pickle reduction, matches every type."""

_registered: dict[type, Canonicalizer] = {}
_handlers: dict[type, Handler] = {}


@overload
def register(cls: _T, canonicalize: Canonicalizer) -> _T: ...
@overload
def register(cls: _T, canonicalize: None = None) -> Callable[[Canonicalizer], Canonicalizer]: ...
def register(
    cls: _T, canonicalize: Canonicalizer | None = None
) -> _T | Callable[[Canonicalizer], Canonicalizer]:
    """Hash instances of `cls` (and its subclasses) by the value `canonicalize` maps them to.

    Registered hashers take precedence over the built-in ones, so this also changes how, say,
    `datetime` is hashed. The key includes the instance's qualified type name, so two types
    mapping to the same value still get different keys.

    Use it directly or as a decorator::

        register(Point, lambda p: (p.x, p.y))

        @register(Grid)
        def _(grid):
            return grid.cells.tobytes()

    Args:
        cls: The type to hash.
        canonicalize: Maps an instance to the value that stands for it in the key.

    Returns:
        `cls` when `canonicalize` is given; otherwise a decorator that registers a function.

    Raises:
        TypeError: `cls` is not a class or `canonicalize` is not callable.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register() needs a class, got {cls!r}")
    if canonicalize is None:

        def decorator(function: Canonicalizer) -> Canonicalizer:
            register(cls, function)
            return function

        return decorator
    if not callable(canonicalize):
        raise TypeError(f"register() needs a callable hasher, got {canonicalize!r}")
    _registered[cls] = canonicalize
    # Cached resolutions may have picked a built-in handler that this registration overrides.
    _handlers.clear()
    return cls


def reduce(obj: object) -> Reduction:
    """The `(type_name, value)` that stands for `obj` in a key.

    Raises:
        TypeError: `obj` has no canonical form; the message says why and what to do.
    """
    cls = type(obj)
    handler = _handlers.get(cls)
    if handler is None:
        handler = _handlers[cls] = _resolve(cls)
    return handler(obj)


def _resolve(cls: type) -> Handler:
    name = type_name(cls)
    for base in cls.__mro__:
        canonicalize = _registered.get(base)
        if canonicalize is not None:
            return _registered_handler(name, canonicalize)
    return kind_for(cls).handler(cls, name)


def kind_for(cls: type) -> Kind:
    """The built-in kind whose hasher handles `cls` when no registered hasher does."""
    return next(kind for kind in BUILT_IN_KINDS if kind.matches(cls))


def _registered_handler(name: str, canonicalize: Canonicalizer) -> Handler:
    def handle(obj: object) -> Reduction:
        return name, canonicalize(obj)

    return handle
