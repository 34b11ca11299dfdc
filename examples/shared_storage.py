"""Cache in a shared place: result_storage points every process (or machine) at the same
results. Here two processes share a directory; with an fsspec URL such as "s3://bucket/cache"
the same code shares a bucket.

Run: python examples/shared_storage.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from taskstash import task
from taskstash.cache_policies import INPUTS

SHARED = Path(tempfile.gettempdir()) / "taskstash-shared-example"


@task(cache_policy=INPUTS, result_storage=SHARED / "results")
def my_cached_task(x: int) -> int:
    print(f"computing in process {'child' if '--child' in sys.argv else 'parent'}")
    return x + 42


if __name__ == "__main__":
    print("result:", my_cached_task(1))
    if "--child" not in sys.argv:
        # Another process with the same storage (and index) reuses the result.
        subprocess.run([sys.executable, __file__, "--child"], check=True)
