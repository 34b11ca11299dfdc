"""Shapes shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reduction = tuple[str, object]
"""A qualified type name and the value that stands for an object in a key."""

Handler = Callable[[Any], Reduction]
"""Turns an object of one type into its `Reduction`."""


def type_name(cls: type) -> str:
    """`module.QualName`: the stable name of a type, the same in every process."""
    return f"{cls.__module__}.{cls.__qualname__}"
