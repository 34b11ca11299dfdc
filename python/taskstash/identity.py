"""Who a task is: what scopes its policy keys, so that two different tasks never share a record.

A task's identity is its function's importable `module.qualname`, its name, and the values its
function closes over:

- tasks made by one factory with different closure values differ (`make_multiplier(2)` and
  `make_multiplier(3)`);
- a task given another `name=` differs from the original;
- a function in a file run as a script (`python pipeline.py`, whose module is `__main__`) is
  named as `import pipeline` would name it, so a script and an import of the same file share
  records, and two different scripts never do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from taskstash.hashing import hash_objects
from taskstash.hashing.source import closure_key

__all__ = ["importable_module_name", "qualified_name", "task_identity"]


def importable_module_name(module: str) -> str:
    """The name under which `module` would be imported: `__main__` resolved, if it can be.

    `python -m pkg.mod` records the real name on `__main__.__spec__`; `python path/to/mod.py`
    does not, so the name is made from the file: its stem, under the packages (directories with
    an `__init__.py`) that contain it. `__main__` with no file (a REPL, a notebook) stays
    `__main__`.
    """
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        return name
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return module
    return module_name_of_file(file)


def module_name_of_file(file: str | os.PathLike[str]) -> str:
    """The dotted name that importing `file` from the directory above its packages gives."""
    path = os.path.realpath(os.fspath(file))
    directory, base = os.path.split(path)
    parts = [os.path.splitext(base)[0]]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        if not package:
            break
        parts.append(package)
    return ".".join(reversed(parts))


def qualified_name(function: Callable[..., Any]) -> str:
    """`module.qualname` of `function`, with its module's importable name."""
    module = importable_module_name(str(getattr(function, "__module__", None) or "__main__"))
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "")
    return f"{module}.{qualname}"


def task_identity(function: Callable[..., Any], name: str) -> str:
    """The key of a task's identity: `qualified_name`, the task's name and its closure values."""
    return hash_objects("task-identity", qualified_name(function), name, closure_key(function))
