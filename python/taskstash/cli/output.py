"""How the command prints: tables, sizes, times, counts, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["count", "duration", "print_json", "progress_bar", "shorten", "size", "table", "when"]


def print_json(value: object) -> None:
    """Prints `value` as indented JSON with sorted keys."""
    print(json.dumps(value, indent=2, sort_keys=True))


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Prints left-aligned columns under `header`."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def count(number: int, singular: str, plural: str | None = None) -> str:
    """`1 record`, `2 records`: the number and the noun that agrees with it."""
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def when(moment: float | None, never: str = "") -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SS` UTC; `never` for None."""
    if moment is None:
        return never
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def size(number: float) -> str:
    """Bytes for people: `812 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """Seconds for people: `4.2 s`, `3.5 min`, `2.1 h`."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def progress_bar(label: str) -> Callable[[int, int], None] | None:
    """A progress bar on standard error for work over many records, if that is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
