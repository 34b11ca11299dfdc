"""Cache in a shared place: result_storage points every machine at the same results. Here two
processes, each with its own TASKSTASH_HOME (its own index, as on another machine), share a
directory; the second finds the record the first stored there. With a URL such as
"s3://bucket/cache" (or a named storage) the same code shares a bucket.

Run: python examples/shared_storage.py
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from taskstash import task
from taskstash.cache_policies import INPUTS

# The parent makes a fresh shared directory; the child inherits it.
SHARED = Path(os.environ.setdefault("SHARED_STORAGE_EXAMPLE", tempfile.mkdtemp()))


@task(cache_policy=INPUTS, result_storage=SHARED / "results")
def my_cached_task(x: int) -> int:
    print(f"computing in process {'child' if '--child' in sys.argv else 'parent'}")
    return x + 42


if __name__ == "__main__":
    print("result:", my_cached_task(1))
    if "--child" not in sys.argv:
        # Another "machine": its own home and index, the same storage.
        home = tempfile.mkdtemp()
        env = {**os.environ, "TASKSTASH_HOME": home}
        subprocess.run([sys.executable, __file__, "--child"], check=True, env=env)
