"""The final states of a task or flow run, as `return_state=True` returns them."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

__all__ = ["Cached", "Completed", "Failed", "State"]

R = TypeVar("R")


class State(Generic[R]):
    """How a run ended. `result()` gives its value or raises its exception.

    Attributes:
        name: `"Completed"`, `"Cached"` or `"Failed"`, as Prefect's states are named.
    """

    __slots__ = ("_exception", "_value")
    name: ClassVar[str] = ""

    def __init__(self, value: R | None = None, exception: BaseException | None = None) -> None:
        self._value = value
        self._exception = exception

    def result(self) -> R:
        """The run's return value.

        Raises:
            BaseException: The exception the run raised, if it failed.
        """
        if self._exception is not None:
            raise self._exception
        return self._value  # type: ignore[return-value]

    def is_completed(self) -> bool:
        """Whether the run ended with a value (computed or from the cache)."""
        return self._exception is None

    def is_cached(self) -> bool:
        """Whether the value came from the cache."""
        return False

    def is_failed(self) -> bool:
        """Whether the run raised."""
        return self._exception is not None


class Completed(State[R]):
    """The body ran and returned."""

    __slots__ = ()
    name: ClassVar[str] = "Completed"

    def __repr__(self) -> str:
        return "Completed()"


class Cached(State[R]):
    """The value came from the cache; the body did not run."""

    __slots__ = ()
    name: ClassVar[str] = "Cached"

    def is_cached(self) -> bool:
        """Always true."""
        return True

    def __repr__(self) -> str:
        return "Cached(type=COMPLETED)"


class Failed(State[R]):
    """The body raised; `result()` raises the same exception."""

    __slots__ = ()
    name: ClassVar[str] = "Failed"

    def __init__(self, exception: BaseException) -> None:
        super().__init__(None, exception)

    def __repr__(self) -> str:
        exception = self._exception
        name = type(exception).__name__
        message = f"{name}: {exception}" if str(exception) else name
        return f"Failed(message={message!r})"
