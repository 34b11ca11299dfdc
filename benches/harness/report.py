"""The markdown report: targets, then one table per benchmark, then the machine."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from . import runners
from .cases import size_key
from .large import DESCRIPTION, KINDS, PICKLE_LABEL
from .peers import LATENCY_CONTENDERS, TASKSTASH, TASKSTASH_DISK
from .results import LargeHit, Results, Timing, median
from .targets import evaluate
from .units import size_text, time_text

LATENCY_CASES = (
    ("hit-small", "hit, small result"),
    ("hit-array-result", "hit, {array} numpy result"),
    ("hit-array-argument", "hit, {array} numpy argument"),
    ("miss-small", "miss, small result"),
    ("miss-array-result", "miss, {array} numpy result"),
)
KEY_CASES = (
    ("key-dict5", "dict of 5 scalars"),
    ("key-list1000", "list of 1000 ints"),
    ("key-dataframe1000x3", "1000x3 float DataFrame"),
)

METHOD = """\
How it was measured:

- Every contender caches the same function in its own fresh directory (taskstash: a fresh
  `TASKSTASH_HOME` per case). Times are medians over {reps} repetitions; each repetition times a
  batch of calls sized to last about {batch} ms (a miss with a large result: one call), and
  repetitions go contender after contender so that drift is shared. Ratios are taskstash's
  median over the peer's, from this same run.
- A hit calls the function again with the argument of a stored result, dropping each result
  at once (as `timeit` does); a miss calls it with a new argument (function + storing the
  result), after an untimed `sync` so that nobody pays for another's pending writeback. Every
  result is checked, and so is the number of times the function body ran: a timed hit that
  computed, or a miss that did not, fails the run.
- "memory layer off" is `@task(cache_policy=INPUTS, cache_result_in_memory=False)`: every hit
  reads the index row and the result file, as diskcache, joblib and cachier read theirs.
- diskcache runs with its size limit raised to 1 TiB: its default, 1 GiB, would evict a 1 GiB
  result as soon as it is stored (under the limit, its value changes nothing).
- cachier runs with its defaults: the pickle backend keeps all of a function's entries in one
  file, reloaded on every call and rewritten on every miss, so its costs grow with its entries.
- Stampede: all callers start together (a barrier; a line on each process's stdin) on a cache
  that exists but lacks the key; the function sleeps {stampede} s. A caller still waiting after
  {hang} s is counted as hung and abandoned (threads) or killed (processes).
"""


def _cell(timing: Timing | None) -> str:
    if timing is None:
        return "—"
    if timing.median is None:
        return timing.note or "—"
    return time_text(timing.median) + (f" ({timing.note})" if timing.note else "")


def _ratio(mine: Timing | None, theirs: Timing | None) -> str:
    if mine is None or theirs is None or mine.median is None or theirs.median is None:
        return "—"
    return f"{mine.median / theirs.median:.3g}x"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _latency(results: Results) -> list[str]:
    array = size_text(results.plan["array_bytes"])
    titles = [title.format(array=array) for _, title in LATENCY_CASES]
    cases = [case for case, _ in LATENCY_CASES]
    lines = ["## Cache hits and misses", "", "Median time per call.", ""]
    lines += _table(
        ["contender", *titles],
        (
            [c.label, *(_cell(results.timing(case, c.label)) for case in cases)]
            for c in LATENCY_CONTENDERS
        ),
    )
    for mine in (TASKSTASH_DISK, TASKSTASH):
        lines += [f"Ratios: {mine.label} ÷ peer (below 1: taskstash is faster).", ""]
        lines += _table(
            ["peer", *titles],
            (
                [
                    c.label,
                    *(
                        _ratio(results.timing(case, mine.label), results.timing(case, c.label))
                        for case in cases
                    ),
                ]
                for c in LATENCY_CONTENDERS
                if c.module != "taskstash"
            ),
        )
    return lines


def _sizes(results: Results) -> list[str]:
    sizes: list[int] = results.plan.get("sweep_bytes", [])
    if not sizes:
        return []
    lines = [
        "## Hit time by result size",
        "",
        "A hit of a float64 array result of each size, as in the numpy result case above: "
        f"median time per call over {results.plan['sweep_reps']} batches of about "
        f"{round(results.plan['sweep_batch_seconds'] * 1000)} ms.",
        "",
    ]
    return lines + _table(
        ["contender", *(size_text(n) for n in sizes)],
        (
            [c.label, *(_cell(results.timing(size_key(n), c.label)) for n in sizes)]
            for c in LATENCY_CONTENDERS
        ),
    )


def _share(values: list[float], nbytes: int) -> str:
    """A median number of bytes, and its share of `nbytes`."""
    value = median(values)
    if value is None:
        return "—"
    value = max(value, 0.0)  # memory given back during the call can make it negative
    return f"{size_text(value)} ({value / nbytes:.1%})"


def large_tables(hits: list[LargeHit], reps: int) -> list[str]:
    """One table per kind of large result, and taskstash's second hit in the same process."""
    lines: list[str] = []
    for kind, title in KINDS:
        rows = [hit for hit in hits if hit.kind == kind]
        if not rows:
            continue
        nbytes = rows[0].nbytes
        base = next((median(hit.seconds) for hit in rows if hit.contender == PICKLE_LABEL), None)
        table = []
        for hit in rows:
            first = median(hit.seconds)
            if first is None:
                table.append([hit.contender, hit.note or "—", "", "", "", ""])
                continue
            ratio = "—" if base is None else f"{first / base:.3g}x"
            table.append(
                [
                    hit.contender + (f" ({hit.note})" if hit.note else ""),
                    time_text(first),
                    ratio,
                    _share(hit.peak_growth, nbytes),
                    _share(hit.touched_growth, nbytes),
                    time_text(median(hit.touch_seconds)),
                ]
            )
        runs = f"{reps} processes, the median" if reps > 1 else "one process"
        lines += [f"{size_text(nbytes)} {title} ({runs}):", ""]
        lines += _table(
            [
                "contender",
                "first call",
                "÷ pickle.load",
                "peak RSS growth until touched",
                "RSS growth after reading all",
                "reading all",
            ],
            table,
        )
        ours = next((h for h in rows if h.contender == TASKSTASH.label and h.seconds), None)
        if ours is not None and reps > 1:
            lines += [
                f"{TASKSTASH.label}: its first process after the store checks the whole file "
                f"once and records the check in the index ({time_text(ours.seconds[0])}); the "
                "processes after it map the file at once "
                f"({', '.join(time_text(s) for s in ours.seconds[1:])}).",
                "",
            ]
        again = next(
            (median(h.again_seconds) for h in rows if h.contender == TASKSTASH.label), None
        )
        if again is not None:
            lines += [
                f"{TASKSTASH.label}, a second hit in the same process (its file already "
                f"checked): {time_text(again)}.",
                "",
            ]
    return lines


def _large(results: Results) -> list[str]:
    if not results.large:
        return []
    reps = results.plan["large_reps"]
    lines = [
        "## Large results",
        "",
        "Each process is a fresh `python` whose first call is the hit (after its imports). The "
        "result was stored by another process, synced, then read once: its files are warm in "
        "the page cache. RSS is VmRSS from /proc/self/status; the peak is VmHWM, reset just "
        "before the call (/proc/self/clear_refs). Reading all sums every number of the result "
        "after the call: a mapped result's pages come from the page cache then. " + DESCRIPTION,
        "",
    ]
    return lines + large_tables(results.large, reps)


def _imports(results: Results) -> list[str]:
    timings = [t for t in results.timings if t.section == "import"]
    mine = results.timing("import", "taskstash")
    lines = ["## Import time", "", '`python -c "import X"`, the whole process.', ""]
    return lines + _table(
        ["module", "median", "taskstash ÷ it"],
        ([t.contender, _cell(t), _ratio(mine, t)] for t in timings),
    )


def _hashing(results: Results) -> list[str]:
    size = size_text(results.plan["hash_bytes"])
    lines = ["## Cache-key hashing", "", f"One {size} input: median time and throughput.", ""]
    labels = list(dict.fromkeys(t.contender for t in results.timings if t.case == "hash-array"))
    labels += [t.contender for t in results.timings if t.case == "hash-bytes"]
    rows = []
    for label in dict.fromkeys(labels):
        row = [label]
        for case in ("hash-bytes", "hash-array"):
            timing = results.timing(case, label)
            if timing is not None and timing.median is not None:
                speed = results.plan["hash_bytes"] / timing.median / (1 << 30)
                row.append(f"{time_text(timing.median)} ({speed:.3g} GiB/s)")
            else:
                row.append(_cell(timing))
            row.append(_ratio(results.timing(case, "taskstash.hash_objects"), timing))
        rows.append(row)
    lines += _table(
        ["hasher", f"{size} bytes", "hash_objects ÷ it", f"{size} float64 array", "÷ it"], rows
    )
    lines += ["One key of a small value: median time.", ""]
    labels = list(dict.fromkeys(t.contender for t in results.timings if t.case.startswith("key-")))
    header = ["hasher"]
    for _, title in KEY_CASES:
        header += [title, "hash_objects ÷ it"]
    rows = []
    for label in labels:
        row = [label]
        for case, _ in KEY_CASES:
            timing = results.timing(case, label)
            row += [_cell(timing), _ratio(results.timing(case, "taskstash.hash_objects"), timing)]
        rows.append(row)
    return lines + _table(header, rows)


def _stampede(results: Results) -> list[str]:
    first = results.stampedes[0] if results.stampedes else None
    lines = ["## Stampede", ""]
    if first is not None:
        lines += [
            f"{results.plan['stampede_threads']} threads, or {results.plan['stampede_processes']}"
            f" processes, call one uncached {first.seconds:g} s function at once; each cell"
            " lists the runs.",
            "",
        ]
    rows = []
    for stampede in results.stampedes:
        if not stampede.runs:
            rows.append([stampede.contender, stampede.mode, stampede.note, "", "", ""])
            continue
        # A run with a hung caller has no slowest time: it is longer than the hang limit.
        limit = results.plan["stampede_seconds"] * results.plan["hang_factor"]
        slowest = [
            math.inf if run.hung or run.slowest is None else run.slowest for run in stampede.runs
        ]
        median = statistics.median(slowest)
        errors = sorted({error for run in stampede.runs for error in run.errors})
        rows.append(
            [
                stampede.contender,
                f"{stampede.callers} {stampede.mode}",
                ", ".join(str(run.computations) for run in stampede.runs),
                f"> {limit:g} s (hung)" if math.isinf(median) else time_text(median),
                ", ".join(str(run.hung) for run in stampede.runs),
                "; ".join(errors)[:200] or "none",
            ]
        )
    header = ["contender", "callers", "computations", "slowest caller (median)", "hung", "errors"]
    return lines + _table(header, rows)


def _scale(results: Results) -> list[str]:
    if not results.scale:
        return []
    base = results.scale[0].hit
    lines = [
        "## Index size",
        "",
        f"A hit of {TASKSTASH_DISK.label} while the index holds N records (generated).",
        "",
    ]
    return lines + _table(
        ["records", "hit", f"÷ hit at {results.scale[0].records:,}", "generated in", "index file"],
        (
            [
                f"{s.records:,}",
                _cell(s.hit),
                _ratio(s.hit, base),
                time_text(s.generate_seconds),
                size_text(s.index_bytes),
            ]
            for s in results.scale
        ),
    )


def _runners(results: Results) -> list[str]:
    if not results.runners:
        return []
    tasks = results.runners[0].calls
    return [
        "## Task runners",
        "",
        f"{tasks:,} mapped calls of a function doing next to nothing, gathered; {runners.SETUP}. "
        "Cold: every call computed and stored in an empty cache; warm: every call a hit. One run "
        "each.",
        "",
        runners.render(results.runners),
    ]


def render(results: Results, command: str) -> str:
    """The whole report."""
    lines = ["# taskstash benchmarks", ""]
    if results.smoke:
        lines += ["**Smoke run: tiny sizes, one repetition. These numbers mean nothing.**", ""]
    lines += [
        f"Run `{command}` on {results.started}, {results.duration / 60:.1f} minutes.",
        "",
        "## Targets",
        "",
    ]
    marks = {True: "met", False: "**missed**", None: "not measured"}
    lines += _table(
        ["target", "measured", ""], ([t.goal, t.measured, marks[t.met]] for t in evaluate(results))
    )
    lines += _latency(results) + _sizes(results) + _large(results)
    lines += _imports(results) + _hashing(results)
    lines += _stampede(results) + _scale(results) + _runners(results)
    plan = results.plan
    lines += [
        "## Method",
        "",
        METHOD.format(
            reps=plan["reps"],
            batch=round(plan["batch_seconds"] * 1000),
            stampede=plan["stampede_seconds"],
            hang=plan["stampede_seconds"] * plan["hang_factor"],
        ),
        "## Machine",
        "",
    ]
    lines += _table(["", ""], results.machine.items())
    lines += _table(["package", "version"], results.versions.items())
    return "\n".join(lines)
