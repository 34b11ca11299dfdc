"""How the report writes times and sizes."""

from __future__ import annotations

from .plan import GIB, MIB


def time_text(seconds: float | None) -> str:
    """Seconds in the unit that suits them: µs, ms or s, three significant digits."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def size_text(nbytes: float) -> str:
    """Bytes as KiB, MiB or GiB."""
    if nbytes >= GIB:
        return f"{nbytes / GIB:.3g} GiB"
    if nbytes >= MIB:
        return f"{nbytes / MIB:.3g} MiB"
    return f"{nbytes / 1024:.3g} KiB"
