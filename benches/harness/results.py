"""What a run measured, as plain data: written to results.json, read back to redo a report."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """Seconds per call of one contender in one case.

    Attributes:
        section: "latency", "size", "import", "hash", "scale" or "runners".
        case: The case's id (e.g. "hit-small").
        contender: The contender's label.
        samples: Seconds per call, one per repetition (empty when not measured).
        calls: Calls per repetition.
        note: Why it was not measured ("not installed", "n/a: ..."), or a caveat.
    """

    section: str
    case: str
    contender: str
    samples: list[float] = field(default_factory=list)
    calls: int = 0
    note: str = ""

    @property
    def median(self) -> float | None:
        """Median seconds per call, None if not measured."""
        return statistics.median(self.samples) if self.samples else None


@dataclass
class StampedeRun:
    """One stampede: callers started together on one uncached key.

    Attributes:
        computations: How many times the function body ran.
        slowest: Seconds until the slowest caller that returned got its value (None: none did).
        hung: Callers that had not returned after the hang limit, abandoned or killed.
        errors: What callers raised or returned wrongly.
    """

    computations: int
    slowest: float | None
    hung: int
    errors: list[str] = field(default_factory=list)


@dataclass
class Stampede:
    """Every run of one contender's stampede in one mode ("threads" or "processes")."""

    contender: str
    mode: str
    callers: int
    seconds: float
    runs: list[StampedeRun] = field(default_factory=list)
    note: str = ""


@dataclass
class Scale:
    """A hit on an index holding `records` records."""

    records: int
    generate_seconds: float
    index_bytes: int
    hit: Timing


def median(values: list[float]) -> float | None:
    """The median of `values`, None if there are none."""
    return statistics.median(values) if values else None


@dataclass
class LargeHit:
    """Hits on one large result, each the first call of a fresh process: one entry per process.

    Attributes:
        kind: "array" or "frame".
        nbytes: Size of the result's data.
        contender: The contender's label.
        seconds: Time of the process's first call, until it returned.
        peak_growth: Bytes: peak RSS during the call over the RSS before it.
        touched_growth: Bytes: RSS after reading all of the result over the RSS before the call.
        touch_seconds: Time of reading all of the result after the call.
        again_seconds: Time of a second call in the same process (taskstash only).
        note: Why it was not measured, or a caveat.
    """

    kind: str
    nbytes: int
    contender: str
    seconds: list[float] = field(default_factory=list)
    peak_growth: list[float] = field(default_factory=list)
    touched_growth: list[float] = field(default_factory=list)
    touch_seconds: list[float] = field(default_factory=list)
    again_seconds: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Results:
    """Everything one run measured, and where."""

    smoke: bool
    started: str
    duration: float
    machine: dict[str, str]
    versions: dict[str, str]
    plan: dict[str, Any]
    timings: list[Timing] = field(default_factory=list)
    stampedes: list[Stampede] = field(default_factory=list)
    scale: list[Scale] = field(default_factory=list)
    runners: list[Timing] = field(default_factory=list)
    large: list[LargeHit] = field(default_factory=list)

    def timing(self, case: str, contender: str) -> Timing | None:
        """The timing of a contender in a case, if the run has it."""
        for timing in self.timings:
            if timing.case == case and timing.contender == contender:
                return timing
        return None

    def large_hit(self, kind: str, contender: str) -> LargeHit | None:
        """The hits of a contender on a large result of `kind`, if the run has them."""
        for hit in self.large:
            if hit.kind == kind and hit.contender == contender:
                return hit
        return None

    def write(self, path: Path) -> None:
        """Writes the results as JSON (with each timing's median, for readers of the file)."""
        data = asdict(self)
        for timing, raw in zip(self.timings, data["timings"], strict=True):
            raw["median"] = timing.median
        for timing, raw in zip(self.runners, data["runners"], strict=True):
            raw["median"] = timing.median
        for scale, raw in zip(self.scale, data["scale"], strict=True):
            raw["hit"]["median"] = scale.hit.median
        path.write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> Results:
        """Reads what `write` wrote."""
        data = json.loads(path.read_text())

        def timing(raw: dict[str, Any]) -> Timing:
            raw.pop("median", None)
            return Timing(**raw)

        return cls(
            smoke=data["smoke"],
            started=data["started"],
            duration=data["duration"],
            machine=data["machine"],
            versions=data["versions"],
            plan=data["plan"],
            timings=[timing(raw) for raw in data["timings"]],
            stampedes=[
                Stampede(**{**raw, "runs": [StampedeRun(**run) for run in raw["runs"]]})
                for raw in data["stampedes"]
            ],
            scale=[Scale(**{**raw, "hit": timing(raw["hit"])}) for raw in data["scale"]],
            runners=[timing(raw) for raw in data.get("runners", [])],
            large=[LargeHit(**raw) for raw in data.get("large", [])],
        )
