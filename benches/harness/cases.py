"""Hit and miss latencies of every contender, on small and on large (numpy) values, and the hit
time of array results of growing sizes.

Each case caches one workload with every contender, each in its own directory and with its own
arguments (two taskstash variants share the case's TASKSTASH_HOME, so they must not share keys).
Repetitions are interleaved (contender after contender, round after round), so a slow phase of
the machine is spread over all of them instead of landing on one; ratios are taken between the
medians of the same run.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from taskstash.store.mapped import SETTLED_SECONDS

from . import workloads
from .peers import NOT_INSTALLED, Contender, taskstash_home
from .plan import MIB, Plan
from .results import Timing
from .timing import calibrate, timed, timed_repeat

_STRIDE = 1_000_000_000
"""Arguments of contender i are i * _STRIDE + n: no two contenders share a key."""


@dataclass(frozen=True)
class Case:
    """One latency case.

    Attributes:
        key: Its id in the results.
        kind: "hit" (the same cached call again and again) or "miss" (a new argument per call).
        workload: The function cached.
        argument: The argument of contender i's n-th call.
        check: Asserts that a result is right for its argument.
        large: Large values: misses are timed one call per repetition.
        section: The results' section its timings go to.
        settle: Wait until the stored files are settled before sizing and timing batches.
    """

    key: str
    kind: Literal["hit", "miss"]
    workload: Callable[..., Any]
    argument: Callable[[int, int], Any]
    check: Callable[[Any, Any], None]
    large: bool = False
    section: str = "latency"
    settle: bool = False

    @property
    def counter(self) -> str:
        """The workload's entry in `workloads.COMPUTED`."""
        return self.workload.__name__


@dataclass
class _Subject:
    """One contender set up for a case."""

    index: int
    contender: Contender
    fn: Callable[..., Any]
    timing: Timing
    calls: int = 1
    serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _check_small(argument: Any, result: Any) -> None:
    assert result == argument + 1, (argument, result)


def _check_array(argument: Any, result: Any) -> None:
    assert isinstance(result, np.ndarray), type(result)
    assert result.shape == workloads.template().shape, result.shape
    assert result[0] == argument, (argument, result[0])
    assert result[-1] == workloads.template()[-1], "not the template's data"


def _check_first(argument: Any, result: Any) -> None:
    assert result == float(argument[0]), (argument[0], result)


def _int_argument(index: int, serial: int) -> int:
    return index * _STRIDE + serial


class _ArrayArguments:
    """One large array argument per contender, made once (each a different key)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.arrays: dict[int, workloads.Array] = {}

    def __call__(self, index: int, serial: int) -> workloads.Array:
        array = self.arrays.get(index)
        if array is None:
            array = np.random.default_rng(4).random(self.nbytes // 8)
            array[0] = index
            self.arrays[index] = array
        return array


def cases(plan: Plan) -> list[Case]:
    """The latency cases, in report order."""
    workloads.set_array_bytes(plan.array_bytes)
    return [
        Case("hit-small", "hit", workloads.add_one, _int_argument, _check_small),
        Case("hit-array-result", "hit", workloads.array_result, _int_argument, _check_array),
        Case(
            "hit-array-argument",
            "hit",
            workloads.first_element,
            _ArrayArguments(plan.array_bytes),
            _check_first,
        ),
        Case("miss-small", "miss", workloads.add_one, _int_argument, _check_small),
        Case(
            "miss-array-result",
            "miss",
            workloads.array_result,
            _int_argument,
            _check_array,
            large=True,
        ),
    ]


def size_key(nbytes: int) -> str:
    """The id of the hit case whose array result has `nbytes` bytes."""
    return f"hit-array-{nbytes}"


def run_sizes(plan: Plan, contenders: Sequence[Contender], root: Path) -> list[Timing]:
    """Hit time of an array result of each size of `plan.sweep_bytes`, for every contender.

    Each size is the hit-array-result case with another template, with shorter batches and
    fewer repetitions than the latency cases (a curve across sizes, not a target). Sizes that
    taskstash maps are timed once its files are settled: with such short rounds, the hits would
    otherwise all fall in the seconds in which it checks a new file on every hit.
    """
    sweep = dataclasses.replace(plan, reps=plan.sweep_reps, batch_seconds=plan.sweep_batch_seconds)
    timings: list[Timing] = []
    try:
        for nbytes in plan.sweep_bytes:
            workloads.set_array_bytes(nbytes)
            case = Case(
                size_key(nbytes),
                "hit",
                workloads.array_result,
                _int_argument,
                _check_array,
                section="size",
                settle=nbytes >= MIB,  # taskstash maps result files over 1 MiB
            )
            timings += run_case(case, contenders, sweep, root)
    finally:
        workloads.set_array_bytes(plan.array_bytes)
    return timings


def run_case(case: Case, contenders: Sequence[Contender], plan: Plan, root: Path) -> list[Timing]:
    """Measures one case for every contender; skipped ones get a row saying why."""
    timings: list[Timing] = []
    with ExitStack() as stack:
        directory = Path(tempfile.mkdtemp(prefix=f"{case.key}-", dir=root))
        stack.enter_context(taskstash_home(directory / "taskstash-home"))
        subjects: list[_Subject] = []
        for index, contender in enumerate(contenders):
            timing = Timing(case.section, case.key, contender.label)
            timings.append(timing)
            if not contender.installed:
                timing.note = NOT_INSTALLED
            elif contender.hashable_args and isinstance(case.argument, _ArrayArguments):
                timing.note = "n/a: caches hashable arguments only"
            else:
                fn = contender.memoize(case.workload, directory / contender.key, stack)
                subjects.append(_Subject(index, contender, fn, timing))
        stored = 0.0
        for subject in subjects:
            _store(case, subject)
            if subject.contender.module == "taskstash":
                stored = time.time()
        if case.settle:
            _settle(case, subjects, stored)
        for subject in subjects:
            subject.calls = _calls(case, subject, plan)
        reps = plan.large_miss_reps if case.large and case.kind == "miss" else plan.reps
        for _ in range(reps):
            for subject in subjects:
                subject.timing.samples.append(_batch(case, subject, subject.calls) / subject.calls)
        for subject in subjects:
            subject.timing.calls = subject.calls
    return timings


def _store(case: Case, subject: _Subject) -> None:
    """Stores the hit's record (and proves it is hit) or a first miss."""
    if case.kind == "hit":
        argument = case.argument(subject.index, 0)
        before = workloads.COMPUTED[case.counter]
        for _ in range(2):  # a miss, then a hit
            case.check(argument, subject.fn(argument))
        assert workloads.COMPUTED[case.counter] == before + 1, (
            f"{subject.contender.label} did not cache {case.key}: the body ran "
            f"{workloads.COMPUTED[case.counter] - before} times in two calls"
        )
    else:
        # The first store creates the cache's files (an index, directories): not a miss's cost.
        argument = case.argument(subject.index, next(subject.serial))
        case.check(argument, subject.fn(argument))


def _settle(case: Case, subjects: list[_Subject], stored: float) -> None:
    """Waits until taskstash's files are settled, then hits each subject once, untimed.

    taskstash checks a mapped result file on every hit until the file is SETTLED_SECONDS old,
    then once per process: the hits timed are those on settled files, as a cache's files
    usually are, after the process's first (which checks the file).
    """
    time.sleep(max(0.0, stored + SETTLED_SECONDS - time.time()))
    for subject in subjects:
        _batch(case, subject, 1)


def _calls(case: Case, subject: _Subject, plan: Plan) -> int:
    """How many calls make one of the subject's batches."""
    if case.large and case.kind == "miss":
        return 1  # each call writes a large file: one per repetition
    return calibrate(lambda calls: _batch(case, subject, calls), plan.batch_seconds)


def _batch(case: Case, subject: _Subject, calls: int) -> float:
    """Times `calls` calls, checks their results and that they hit or missed as they should."""
    if case.kind == "miss":
        # Start with no dirty pages waiting to be written back: otherwise whoever comes after a
        # contender that writes a lot (cachier rewrites its whole file) pays for its writeback.
        os.sync()
    before = workloads.COMPUTED[case.counter]
    if case.kind == "hit":
        argument = case.argument(subject.index, 0)
        elapsed, result = timed_repeat(subject.fn, argument, calls)
        case.check(argument, result)
        expected_runs = 0
    else:
        arguments = [case.argument(subject.index, next(subject.serial)) for _ in range(calls)]
        elapsed, results = timed(subject.fn, arguments)
        for argument, result in zip(arguments, results, strict=True):
            case.check(argument, result)
        expected_runs = calls
    ran = workloads.COMPUTED[case.counter] - before
    assert ran == expected_runs, (
        f"{subject.contender.label}, {case.key}: the body ran {ran} times in {calls} calls, "
        f"expected {expected_runs}"
    )
    return elapsed
