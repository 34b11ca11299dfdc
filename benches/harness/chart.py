"""The PNG chart: latencies, import times, hashing throughput, stampede computations, and hit
time against result size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cases import size_key
from .peers import LATENCY_CONTENDERS
from .report import LATENCY_CASES
from .results import Results, median
from .units import size_text


def available() -> bool:
    """Whether matplotlib is installed (a smoke run goes without the chart)."""
    from .peers import installed

    return installed("matplotlib")


def write_chart(results: Results, path: Path) -> None:
    """Draws five panels into one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplot_mosaic(
        [["latency", "imports"], ["hashing", "stampede"], ["sizes", "sizes"]],
        figsize=(15, 16),
        width_ratios=[3, 2],
        height_ratios=[1, 1, 1.2],
    )
    latency, imports = axes["latency"], axes["imports"]
    hashing, stampede = axes["hashing"], axes["stampede"]
    array = size_text(results.plan["array_bytes"])

    # Hit and miss latency, log scale: one group per case, one bar per contender.
    contenders = [
        c.label
        for c in LATENCY_CONTENDERS
        if any(t.contender == c.label and t.samples for t in results.timings)
    ]
    width = 0.8 / max(1, len(contenders))
    for i, label in enumerate(contenders):
        xs, ys = [], []
        for x, (case, _) in enumerate(LATENCY_CASES):
            timing = results.timing(case, label)
            if timing is not None and timing.median is not None:
                xs.append(x + i * width)
                ys.append(timing.median * 1e6)
        latency.bar(xs, ys, width, label=label)
    latency.set_yscale("log")
    latency.set_ylabel("µs per call (median, log scale)")
    latency.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(LATENCY_CASES))],
        [
            "hit\nsmall",
            f"hit\n{array} result",
            f"hit\n{array} arg.",
            "miss\nsmall",
            f"miss\n{array} result",
        ],
    )
    latency.legend(fontsize=8)
    latency.set_title("Cache hits and misses")

    measured = [t for t in results.timings if t.section == "import" and t.median is not None]
    imports.barh([t.contender for t in measured], [(t.median or 0) * 1e3 for t in measured])
    imports.invert_yaxis()
    imports.set_xlabel('ms, whole `python -c "import X"` process')
    imports.set_title("Import time")

    size = size_text(results.plan["hash_bytes"])
    large = [t for t in results.timings if t.case == "hash-array" and t.median is not None]
    hashing.barh(
        [t.contender for t in large],
        [results.plan["hash_bytes"] / (t.median or 1) / (1 << 30) for t in large],
    )
    hashing.invert_yaxis()
    hashing.set_xlabel(f"GiB/s hashing a {size} float64 array")
    hashing.set_title("Cache-key hashing")

    runs = [s for s in results.stampedes if s.runs]
    ys = list(range(len(runs)))
    computed = [max(run.computations for run in s.runs) for s in runs]
    hung = [max(run.hung for run in s.runs) for s in runs]
    stampede.barh([y - 0.2 for y in ys], computed, 0.4, label="computations")
    stampede.barh([y + 0.2 for y in ys], hung, 0.4, label="hung callers", color="tab:red")
    stampede.set_yticks(ys, [f"{s.contender}, {s.mode}" for s in runs])
    stampede.invert_yaxis()
    stampede.set_xlabel("callers (worst run)")
    stampede.legend(fontsize=8)
    stampede.set_title("Stampede: computations and hung callers")

    _sizes(results, axes["sizes"])

    title = "taskstash beside its peers" + (" (smoke run: meaningless)" if results.smoke else "")
    figure.suptitle(f"{title}: {results.machine.get('CPU', '')}, {results.machine.get('cores')}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _sizes(results: Results, axis: Any) -> None:
    """Hit time against result size, log-log: a line per contender, the large hits as points."""
    sizes: list[int] = results.plan.get("sweep_bytes", [])
    colors: dict[str, Any] = {}
    for contender in LATENCY_CONTENDERS:
        points = [(n, results.timing(size_key(n), contender.label)) for n in sizes]
        xs = [n for n, t in points if t is not None and t.median is not None]
        ys = [t.median for _, t in points if t is not None and t.median is not None]
        if xs:
            (line,) = axis.plot(xs, ys, marker="o", label=contender.label)
            colors[contender.label] = line.get_color()
    for hit in results.large:
        first = median(hit.seconds)
        if hit.kind != "array" or first is None:
            continue
        # The same library's colour where it has a line; a new one (the pickle baseline) if not.
        color = colors.get(hit.contender)
        axis.plot(
            [hit.nbytes],
            [first],
            marker="D",
            linestyle="none",
            color=color,
            label=f"{hit.contender}: first call of a fresh process",
        )
        again = median(hit.again_seconds)
        if again is not None:  # comparable with the lines: a hit after the process's first
            axis.plot(
                [hit.nbytes],
                [again],
                marker="o",
                markerfacecolor="none",
                linestyle="none",
                color=color,
                label=f"{hit.contender}: second call in that process",
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    ticks = sorted({*sizes, *(hit.nbytes for hit in results.large)})
    axis.set_xticks(ticks, [size_text(n) for n in ticks])
    axis.minorticks_off()
    axis.set_xlabel("size of the array result (log scale)")
    axis.set_ylabel("seconds per hit (median, log scale)")
    if axis.get_legend_handles_labels()[0]:  # an older run's results have no such cases
        axis.legend(fontsize=7, ncol=2)
    axis.set_title(
        "Hit time against result size (lines: repeated hits in one process; "
        "points: the large array, a fresh process's first and second hits)"
    )
