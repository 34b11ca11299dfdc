"""Who a task is: what scopes its policy keys, so that two different tasks never share a record.

A task's identity is its function's importable `module.qualname`, its name, and the values its
function closes over:

- tasks made by one factory with different closure values differ (`make_multiplier(2)` and
  `make_multiplier(3)`);
- a task given another `name=` differs from the original;
- a function in a file run as a script (`python pipeline.py`, whose module is `__main__`) is
  named as `import pipeline` would name it, so a script and an import of the same file share
  records, and two different scripts never do.

A cached flow's identity is made the same way from its function and name, under another tag: a
flow's records are never a task's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskstash.hashing import hash_objects
from taskstash.hashing.modules import importable_module_name, module_name_of_file
from taskstash.hashing.source import closure_key

__all__ = [
    "flow_identity",
    "importable_module_name",
    "module_name_of_file",
    "qualified_name",
    "task_identity",
]


def qualified_name(function: Callable[..., Any]) -> str:
    """`module.qualname` of `function`, with its module's importable name."""
    module = importable_module_name(str(getattr(function, "__module__", None) or "__main__"))
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "")
    return f"{module}.{qualname}"


def task_identity(function: Callable[..., Any], name: str) -> str:
    """The key of a task's identity: `qualified_name`, the task's name and its closure values."""
    return hash_objects("task-identity", qualified_name(function), name, closure_key(function))


def flow_identity(function: Callable[..., Any], name: str) -> str:
    """The key of a cached flow's identity: as a task's, but never equal to any task's."""
    return hash_objects("flow-identity", qualified_name(function), name, closure_key(function))
