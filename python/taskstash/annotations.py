"""Wrappers that change how `task.submit` and `task.map` treat an argument, as Prefect's do.

    from taskstash import unmapped

    add_n.map([1, 2, 3], n=unmapped([10, 20]))   # every call gets the whole list

- `unmapped(value)`: `map` passes `value` whole to every call instead of mapping over it.
- `quote(value)`: the task gets `value` as it is: futures inside are not resolved, and `map`
  does not map over it.
- `allow_failure(future)`: the task runs even if the future's task failed, and gets the
  exception as the argument's value.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["BaseAnnotation", "allow_failure", "quote", "unmapped"]

T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    """A value wrapped to say how a task runner treats it; `unwrap()` gives it back."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """The wrapped value."""
        return self.value

    def rewrap(self, value: T) -> BaseAnnotation[T]:
        """The same annotation around another value."""
        return type(self)(value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(BaseAnnotation[T]):
    """Passes an iterable argument of `task.map` whole to every call instead of mapping over it.

    Indexing it gives the value whatever the index, so it can stand beside mapped lists.
    """

    __slots__ = ()

    def __getitem__(self, _: object) -> T:
        return self.value


class quote(BaseAnnotation[T]):
    """Passes a value as it is: futures inside it are not resolved, and `map` does not map it."""

    __slots__ = ()


class allow_failure(BaseAnnotation[T]):
    """Runs the task even if the futures in the value failed; it gets their exceptions."""

    __slots__ = ()
