"""One "machine" of the sharing tests: a process with its own TASKSTASH_HOME (so its own index)
calling a task whose results live in a shared storage.

Run as `python machine_worker.py STORAGE X [MEBIBYTES [BLOCK_MEBIBYTES]]`. STORAGE is a URL or a
storage name; with MEBIBYTES the task returns that many pseudo-random mebibytes (seeded by X),
written with an S3 block size of BLOCK_MEBIBYTES if given. Prints `computed` when the task's body
runs, then `result <checksum>`.
"""

from __future__ import annotations

import hashlib
import random
import sys
from typing import Any

from taskstash import task
from taskstash.cache_policies import INPUTS


def main(storage_spec: str, x: int, mebibytes: int, block: int) -> None:
    storage: Any = storage_spec
    if block:
        import s3fs

        from taskstash.store.fsspec_storage import FsspecStorage

        fs = s3fs.S3FileSystem(default_block_size=block << 20, skip_instance_cache=True)
        storage = FsspecStorage(fs, storage_spec)

    @task(name="shared", cache_policy=INPUTS, result_storage=storage)
    def shared(x: int) -> bytes | int:
        print("computed", flush=True)
        if mebibytes:
            return random.Random(x).randbytes(mebibytes << 20)
        return x + 42

    value = shared(x)
    text = repr(value).encode() if isinstance(value, int) else value
    print("result", hashlib.sha256(text).hexdigest()[:16], flush=True)


if __name__ == "__main__":
    arguments = [*sys.argv[1:], "0", "0"]
    main(arguments[0], int(arguments[1]), int(arguments[2]), int(arguments[3]))
