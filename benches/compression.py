"""The codecs of the compressed serializers: ratio and speed, to choose the default.

    python -m benches.compression     # about half a minute; prints a Markdown table

Each codec compresses, at its fast level, the pickle of a 10 MiB numpy array of three kinds
(a random walk rounded to 3 decimals, Poisson counts, uniform random floats: incompressible) and
of a small dict, through `CompressedSerializer.dumps`/`loads` as a task's result would be (the
pickling included; the "pickle" row is the same without compression). The best of several runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from taskstash.store.compression import CODECS
from taskstash.store.serializers import CompressedSerializer, PickleSerializer, Serializer

SMALL = {
    "user": "alice",
    "scores": list(range(50)),
    "tags": ["a", "b", "c"],
    "ok": True,
    "nested": {f"k{i}": f"value {i}" for i in range(20)},
}


def _values() -> dict[str, object]:
    rng = np.random.default_rng(0)
    n = (10 << 20) // 8
    return {
        "10 MiB float64 random walk": np.round(np.cumsum(rng.normal(size=n)), 3),
        "10 MiB int64 counts": rng.poisson(20, size=n).astype(np.int64),
        "10 MiB float64 uniform": rng.random(n),
        "small dict": SMALL,
    }


def _best(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Prints the table."""
    serializers: dict[str, Serializer] = {"pickle (none)": PickleSerializer()}
    for name in CODECS:
        try:
            serializers[name] = CompressedSerializer("pickle", compressionlib=name)
        except ModuleNotFoundError:
            print(f"({name} is not installed)")
    print("| value | codec (level) | ratio | dumps | loads |")
    print("|---|---|---|---|---|")
    for label, value in _values().items():
        raw = len(PickleSerializer().dumps(value))
        large = raw > 1 << 20
        for name, serializer in serializers.items():
            repeats = 5 if large else 2000
            if large and name in ("lzma", "bz2"):
                repeats = 1  # slow: one run says enough
            data = serializer.dumps(value)
            dumps = _best(lambda s=serializer, v=value: s.dumps(v), repeats)  # type: ignore[misc]
            loads = _best(lambda s=serializer, d=data: s.loads(d), repeats)  # type: ignore[misc]
            level = getattr(serializer, "level", "-")
            if large:
                speeds = f"{raw / dumps / 1e6:.0f} MB/s | {raw / loads / 1e6:.0f} MB/s"
            else:
                speeds = f"{dumps * 1e6:.1f} µs | {loads * 1e6:.1f} µs"
            print(f"| {label} | {name} ({level}) | {raw / len(data):.2f} | {speeds} |")


if __name__ == "__main__":
    main()
