"""The targets of issues #6 and #14 (and of the earlier hashing benchmarks), checked on a run."""

from __future__ import annotations

from dataclasses import dataclass

from .large import KINDS, PICKLE_LABEL
from .peers import DISKCACHE, SERIALIZABLE, TASKSTASH, TASKSTASH_DISK, Contender
from .peers import LATENCY_CONTENDERS as _LATENCY
from .results import Results, median
from .units import size_text

PERSISTENT_PEERS = tuple(c for c in _LATENCY if c.persistent and c.module != "taskstash")


@dataclass(frozen=True)
class Target:
    """One target: what it asks, what was measured, and whether it is met (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.3g} µs" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def _ratio(results: Results, case: str, contender: Contender, peer: str, most: float) -> Target:
    goal = f"{case}: {contender.label} <= {most:g}x {peer}"
    mine, theirs = results.timing(case, contender.label), results.timing(case, peer)
    if mine is None or theirs is None or mine.median is None or theirs.median is None:
        return Target(goal, "not measured", None)
    ratio = mine.median / theirs.median
    measured = f"{ratio:.3g}x ({_us(mine.median)} vs {_us(theirs.median)})"
    return Target(goal, measured, ratio <= most)


def _at_most(results: Results, case: str, contender: str, most: float, goal: str) -> Target:
    timing = results.timing(case, contender)
    if timing is None or timing.median is None:
        return Target(goal, "not measured", None)
    return Target(goal, _us(timing.median), timing.median <= most)


def _stampede(results: Results, mode: str) -> Target:
    goal = f"stampede, {mode}: {SERIALIZABLE.label} computes once, no caller hangs"
    for stampede in results.stampedes:
        if stampede.contender == SERIALIZABLE.label and stampede.mode == mode and stampede.runs:
            computations = [run.computations for run in stampede.runs]
            hung = [run.hung for run in stampede.runs]
            errors = sum(len(run.errors) for run in stampede.runs)
            measured = f"computations {computations}, hung {hung}, errors {errors}"
            met = all(c == 1 for c in computations) and not any(hung) and not errors
            return Target(goal, measured, met)
    return Target(goal, "not measured", None)


def _hash_speed(results: Results, case: str) -> Target:
    mine = results.timing(case, "taskstash.hash_objects")
    theirs = results.timing(case, "xxhash xxh3_128")
    goal = f"{case}: taskstash.hash_objects throughput >= 0.8x xxhash"
    if mine is None or theirs is None or mine.median is None or theirs.median is None:
        return Target(goal, "not measured", None)
    speed = theirs.median / mine.median
    return Target(goal, f"{speed:.2f}x", speed >= 0.8)


def _large(results: Results, kind: str, title: str) -> list[Target]:
    """A large result's hit: its time against pickle.load's, and its memory until touched."""
    nbytes = results.plan.get("large_bytes")  # absent from the results of older runs
    size = "large" if nbytes is None else size_text(nbytes)
    name = f"hit, {size} {title}: {TASKSTASH.label}"
    speed_goal = f"{name} <= 0.1x pickle.load (first call of a fresh process)"
    memory_goal = f"{name}: peak RSS growth <= 10% of the result until it is touched"
    mine, base = results.large_hit(kind, TASKSTASH.label), results.large_hit(kind, PICKLE_LABEL)
    first = None if mine is None else median(mine.seconds)
    base_first = None if base is None else median(base.seconds)
    if first is None or base_first is None:
        speed = Target(speed_goal, "not measured", None)
    else:
        ratio = first / base_first
        speed = Target(
            speed_goal, f"{ratio:.3g}x ({_us(first)} vs {_us(base_first)})", ratio <= 0.1
        )
    peak = None if mine is None else median(mine.peak_growth)
    if mine is None or peak is None:
        return [speed, Target(memory_goal, "not measured", None)]
    share = peak / mine.nbytes
    return [speed, Target(memory_goal, f"{share:.1%} ({size_text(peak)})", share <= 0.1)]


def evaluate(results: Results) -> list[Target]:
    """Every target, in the issues' order."""
    disk, default, diskcache = TASKSTASH_DISK, TASKSTASH, DISKCACHE.label
    targets = [
        _ratio(results, "hit-small", disk, diskcache, 1.0),
        _at_most(
            results, "hit-small", default.label, 1.5e-6, f"hit-small: {default.label} <= 1.5 µs"
        ),
    ]
    targets += [
        _ratio(results, "hit-array-argument", disk, peer.label, 0.1) for peer in PERSISTENT_PEERS
    ]
    targets += [
        _ratio(results, "hit-array-result", disk, diskcache, 0.5),
        _ratio(results, "miss-small", disk, diskcache, 1.0),
        _ratio(results, "miss-array-result", disk, diskcache, 0.75),
        _stampede(results, "threads"),
        _stampede(results, "processes"),
        _at_most(results, "import", "taskstash", 0.050, "import taskstash <= 50 ms (process)"),
        _hash_speed(results, "hash-bytes"),
        _hash_speed(results, "hash-array"),
    ]
    for case, most in (
        ("key-dict5", 2e-6),
        ("key-list1000", 15e-6),
        ("key-dataframe1000x3", 60e-6),
    ):
        goal = f"{case}: taskstash.hash_objects <= {_us(most)}"
        targets.append(_at_most(results, case, "taskstash.hash_objects", most, goal))
    for kind, title in KINDS:
        targets += _large(results, kind, title)
    return targets
