"""The `explain` command's target (a task or flow, `module:name` or `path/to/file.py:name`)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from taskstash.cli.errors import EXIT_NOT_FOUND, EXIT_USAGE, CommandError
from taskstash.flows import Flow
from taskstash.identity import module_name_of_file
from taskstash.tasks import Task

__all__ = ["arguments", "load_task"]


def load_task(target: str) -> Task[Any, Any] | Flow[Any, Any]:
    """The task or flow `target` names, importing its module (which runs its top-level code).

    Raises:
        CommandError: `target` is malformed, cannot be imported, or names no task.
    """
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise CommandError(
            f"{target!r} names no task or flow; write it as module:task or path/to/file.py:task",
            EXIT_USAGE,
        )
    print(
        f"taskstash: note: loading {module_name} runs its top-level code (not the task)",
        file=sys.stderr,
    )
    try:
        module = _import(module_name)
    except CommandError:
        raise
    except Exception as exc:  # the user's module raised while it was imported
        raise CommandError(
            f"importing {module_name} failed ({type(exc).__name__}: {exc}); fix it, or check "
            "the name",
            EXIT_NOT_FOUND,
        ) from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise CommandError(
            f"{module_name} has no {attribute!r}; name a task or flow defined at its top level",
            EXIT_NOT_FOUND,
        )
    if not isinstance(found, Task | Flow):
        raise CommandError(
            f"{target} is not a task but a {type(found).__name__}; name a function decorated "
            "with @task or @flow",
            EXIT_NOT_FOUND,
        )
    return found


def _import(module_name: str) -> object:
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise CommandError(
                f"there is no file {module_name}; give path/to/file.py:task or module:task",
                EXIT_NOT_FOUND,
            )
        # Named as the task's own records name it (`pkg.sub.steps` for a file in packages),
        # and importable from the directory above its packages, as running it would be.
        name = module_name_of_file(path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CommandError(
                f"{module_name} cannot be loaded as a module; rename it", EXIT_NOT_FOUND
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parents[name.count(".")]))
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, "")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # something the module imports is missing: reported as its import failing
        raise CommandError(
            f"there is no module {module_name!r} here; run from the directory that holds it, "
            "or give path/to/file.py:task",
            EXIT_NOT_FOUND,
        ) from exc


def arguments(task: Task[Any, Any] | Flow[Any, Any], texts: list[str]) -> dict[str, object]:
    """The `--arg NAME=VALUE`s as the task's (or flow's) keyword arguments.

    A value is a Python literal (`2`, `'a'`, `[1, 2]`, `None`) if it reads as one, else the plain
    string.

    Raises:
        CommandError: An argument is malformed, unknown or missing.
    """
    signature = inspect.signature(task.fn)
    given: dict[str, object] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals or not name.isidentifier():
            raise CommandError(
                f"--arg {text!r} is not NAME=VALUE; parameters of {task.name}: {signature}",
                EXIT_USAGE,
            )
        given[name] = _value(value)
    try:
        signature.bind(**given)
    except TypeError as exc:
        raise CommandError(
            f"{exc} for {task.name}; give each parameter as --arg NAME=VALUE, from "
            f"{task.name}{signature}",
            EXIT_USAGE,
        ) from None
    return given


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # not a Python literal: the plain string
