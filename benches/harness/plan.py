"""How big and how often: a full run (the report) and a smoke run (the test suite)."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run.

    Attributes:
        smoke: Tiny sizes, one repetition: proves the harness works, measures nothing.
        array_bytes: Size of the "10 MiB" numpy argument and result.
        hash_bytes: Size of the "256 MiB" inputs of the hashing throughput cases.
        reps: Repetitions (batches) of each latency case; the median is reported.
        batch_seconds: Target duration of one batch of fast calls (0: one call per batch).
        large_miss_reps: Repetitions of the miss with a large result (one call each).
        import_reps: Processes started per package for the import time.
        hash_reps: Repetitions of each 256 MiB hash.
        stampede_seconds: How long the slow function of the stampede takes.
        stampede_threads: Callers of the threads stampede.
        stampede_processes: Callers of the processes stampede.
        stampede_runs: Runs of each stampede.
        hang_factor: A caller still waiting after this many times the function's duration is
            counted as hung and abandoned.
        scale_records: Sizes of the index for the index-scale case.
        runner_tasks: Mapped calls of each task runner case.
        sweep_bytes: Sizes of the array results of the hit-time-by-size cases.
        sweep_reps: Repetitions (batches) of each of those cases.
        sweep_batch_seconds: Target duration of one of their batches.
        large_bytes: Size of the large array and DataFrame results ("1 GiB").
        large_reps: Processes started per contender and large result; the median is reported.
    """

    smoke: bool
    array_bytes: int
    hash_bytes: int
    reps: int
    batch_seconds: float
    large_miss_reps: int
    import_reps: int
    hash_reps: int
    stampede_seconds: float
    stampede_threads: int
    stampede_processes: int
    stampede_runs: int
    hang_factor: float
    scale_records: tuple[int, ...]
    runner_tasks: int
    sweep_bytes: tuple[int, ...]
    sweep_reps: int
    sweep_batch_seconds: float
    large_bytes: int
    large_reps: int

    @property
    def hang_seconds(self) -> float:
        """How long a stampede caller may take before it counts as hung."""
        return self.hang_factor * self.stampede_seconds


# Sized for a full run of about five minutes on a 2-core machine (the issue allows ten).
FULL = Plan(
    smoke=False,
    array_bytes=10 * MIB,
    hash_bytes=256 * MIB,
    reps=15,
    batch_seconds=0.1,
    large_miss_reps=15,
    import_reps=21,
    hash_reps=7,
    stampede_seconds=0.5,
    stampede_threads=8,
    stampede_processes=4,
    stampede_runs=3,
    hang_factor=10.0,
    scale_records=(1_000, 1_000_000),
    runner_tasks=1_000,
    sweep_bytes=(KIB, 64 * KIB, MIB, 10 * MIB, 100 * MIB),
    sweep_reps=3,
    sweep_batch_seconds=0.05,
    large_bytes=GIB,
    large_reps=3,
)

SMOKE = Plan(
    smoke=True,
    array_bytes=64 * 1024,
    hash_bytes=1 * MIB,
    reps=1,
    batch_seconds=0.0,
    large_miss_reps=1,
    import_reps=1,
    hash_reps=1,
    stampede_seconds=0.05,
    stampede_threads=8,
    # Each process imports taskstash and a peer: two keep the smoke run fast on two cores.
    stampede_processes=2,
    stampede_runs=1,
    hang_factor=10.0,
    scale_records=(10, 100),
    runner_tasks=20,
    sweep_bytes=(KIB, 64 * KIB),
    sweep_reps=1,
    sweep_batch_seconds=0.0,
    # Above the size from which taskstash maps a result file, so the smoke run maps too.
    large_bytes=4 * MIB,
    large_reps=1,
)
