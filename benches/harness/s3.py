"""One cache on an object store, seen from two machines: taskstash on a loopback S3 server.

moto's S3 server is started here on 127.0.0.1 (with `tests/s3_support.py`, the test suite's),
behind a proxy that counts the HTTP requests each operation makes. Machine "a" (a cache home of
its own) calls a task on new arguments: misses, each storing its result in the bucket. Machine
"b" (another home, so another index) then calls it on the same arguments: its first call of each
finds the record in the bucket and adopts it, and its later calls are index hits that read the
object. Beside them, a hit on local storage. The memory layer is off, so that every hit reads
its result from the storage; with it on (the default), repeated hits in one process make no
request at all.

Loopback numbers show taskstash's own cost and the request count, not a real network's round
trips: multiply the requests by the network's latency for those.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .peers import taskstash_home
from .plan import Plan
from .results import Timing

_TESTS = Path(__file__).resolve().parent.parent.parent / "tests"

SECTION = "s3"
OPERATIONS = {
    "miss": "miss (compute, then store in the bucket)",
    "adopt": "first hit from a second machine (adopt)",
    "hit": "later hit from the second machine",
    "hit-local": "hit on local storage",
}


@dataclass
class Measured:
    """One operation: seconds per call and HTTP requests per call.

    Attributes:
        timing: Seconds per call, one sample per call.
        requests: Requests the operation made, by method (`GET`, `PUT`...), over all calls.
    """

    timing: Timing
    requests: dict[str, int]

    def requests_per_call(self) -> float:
        """Requests per call, all methods together."""
        return sum(self.requests.values()) / max(len(self.timing.samples), 1)


def _calls(plan: Plan) -> int:
    return 3 if plan.smoke else 200


@contextmanager
def _server(root: Path) -> Iterator[Any]:
    """The S3 server and a counting proxy in front of it, every AWS client pointed at it."""
    sys.path.insert(0, str(_TESTS))
    try:
        from s3_support import (  # type: ignore[import-not-found]
            MotoServer,
            Proxy,
            aws_environment,
            environment,
        )
    finally:
        sys.path.remove(str(_TESTS))
    server = MotoServer(root / "moto.log")
    proxy = Proxy(server.port)
    try:
        with environment(aws_environment(proxy.endpoint, root)):
            yield proxy
    finally:
        proxy.stop()
        server.stop()


def _measure(
    operation: str, call: Callable[[int], object], arguments: range, proxy: Any
) -> Measured:
    """Calls `call` once per argument, each call timed; counts the requests they made."""
    samples = []
    proxy.requests.clear()
    for argument in arguments:
        started = time.perf_counter()
        call(argument)
        samples.append(time.perf_counter() - started)
    requests: dict[str, int] = {}
    for line in proxy.requests:
        method = line.split(" ", 1)[0]
        requests[method] = requests.get(method, 0) + 1
    return Measured(Timing(SECTION, operation, "taskstash", samples, 1), requests)


def run_s3(plan: Plan, root: Path) -> list[Measured]:
    """Measures a miss, an adoption and a hit on S3, and a hit on local storage."""
    import s3fs

    from taskstash import task
    from taskstash.cache_policies import INPUTS

    url = f"s3://taskstash-test/bench-{os.getpid()}"
    arguments = range(_calls(plan))

    def body(x: int) -> list[int]:
        return [x] * 100  # a small result, about 300 bytes pickled

    shared = task(
        name="shared", cache_policy=INPUTS, result_storage=url, cache_result_in_memory=False
    )(body)
    local = task(name="local", cache_policy=INPUTS, cache_result_in_memory=False)(body)
    measured: list[Measured] = []
    with _server(root) as proxy:
        s3fs.S3FileSystem.clear_instance_cache()
        with taskstash_home(root / "machine-a"):
            measured.append(_measure("miss", shared, arguments, proxy))
        with taskstash_home(root / "machine-b"):
            measured.append(_measure("adopt", shared, arguments, proxy))
            measured.append(_measure("hit", shared, arguments, proxy))
            for argument in arguments:
                local(argument)
            measured.append(_measure("hit-local", local, arguments, proxy))
    return measured


def render(measured: list[Measured]) -> str:
    """A Markdown table: per operation, the median time per call and the requests per call."""
    lines = [
        "| operation | median per call | requests per call |",
        "|---|---:|---|",
    ]
    for each in measured:
        median = each.timing.median or 0.0
        kinds = ", ".join(
            f"{count / len(each.timing.samples):g} {method}"
            for method, count in sorted(each.requests.items())
        )
        lines.append(
            f"| {OPERATIONS[each.timing.case]} | {median * 1000:.2f} ms | "
            f"{each.requests_per_call():g}{f' ({kinds})' if kinds else ''} |"
        )
    return "\n".join(lines) + "\n"
