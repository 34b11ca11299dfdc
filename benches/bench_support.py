"""What the benchmark modules share."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Benchmark(Protocol):
    """The parts of pytest-benchmark's `benchmark` fixture used here."""

    disabled: bool

    def __call__(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def pedantic(
        self,
        target: Callable[..., R],
        args: tuple[object, ...] = (),
        *,
        rounds: int = 1,
        iterations: int = 1,
        warmup_rounds: int = 0,
    ) -> R: ...
