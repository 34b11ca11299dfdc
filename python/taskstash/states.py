"""The states of a task or flow run.

The final ones are what `return_state=True` returns; the pending ones are what a future reports
before its run has ended, or when its task never ran.
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from taskstash.exceptions import UnfinishedRun, UpstreamTaskError

__all__ = ["Cached", "Completed", "Failed", "NotReady", "Pending", "State"]

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

    def result(self, raise_on_failure: bool = True) -> R:
        """The run's return value.

        Args:
            raise_on_failure: False returns the exception of a failed run instead of raising it.

        Raises:
            BaseException: The exception the run raised, if it failed.
        """
        if self._exception is not None:
            if raise_on_failure:
                raise self._exception
            return self._exception  # type: ignore[return-value]
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

    def is_pending(self) -> bool:
        """Whether the run has not ended (or never started)."""
        return False


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


class Pending(State[R]):
    """The run has not ended yet: a future's state while its task is queued or running."""

    __slots__ = ()
    name: ClassVar[str] = "Pending"

    def result(self, raise_on_failure: bool = True) -> R:
        """Raises: there is no value yet.

        Raises:
            UnfinishedRun: Always.
        """
        raise UnfinishedRun(f"the run is in state {self!r}: it has no result yet")

    def is_completed(self) -> bool:
        """Never."""
        return False

    def is_failed(self) -> bool:
        """Never."""
        return False

    def is_pending(self) -> bool:
        """Always."""
        return True

    def __repr__(self) -> str:
        return "Pending()"


class NotReady(Pending[R]):
    """The task never ran: a future it was given (argument or `wait_for`) did not complete.

    `result()` raises `UpstreamTaskError`, which names the upstream task run and its state.
    """

    __slots__ = ()
    name: ClassVar[str] = "NotReady"

    def __init__(self, exception: UpstreamTaskError) -> None:
        super().__init__(None, exception)

    def result(self, raise_on_failure: bool = True) -> R:
        """Raises why the task did not run.

        Raises:
            UpstreamTaskError: Always.
        """
        assert self._exception is not None
        raise self._exception

    def __repr__(self) -> str:
        return f"NotReady(message={str(self._exception)!r})"
