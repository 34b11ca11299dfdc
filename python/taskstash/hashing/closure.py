"""The code a task reaches: its function and, transitively, the user's own code it refers to.

Starting from a function, every name its code refers to (module globals, imported names,
attributes of imported modules, closure cells, default values) is looked up, and followed when
it is a function, a class or a module-level constant of the user's project:

- functions and classes are keyed by their normalised source (`normalise_source`: comments,
  docstrings and formatting never count), or by their code object where there is no source;
- constants (any other value a module of the project holds, or a function closes over) are keyed
  by value, with the canonical hasher;
- functions, classes and modules of installed packages and the standard library are not followed:
  their code changes with their version, which `versions=True` records instead
  (`distribution_versions`).

The result maps each piece's importable qualified name (`helpers.normalize`, `config.THRESHOLD`)
to its key: no paths, no bytecode offsets, the same in every process and on every machine, and
for a file run as a script or imported. Cycles (mutual recursion) end, as each piece is visited
once. It is computed once per task per process, on the task's first keyed call, when the
helpers a task calls (often defined below it) exist.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

from taskstash._native import HashingError
from taskstash.hashing import hash_objects
from taskstash.hashing.modules import importable_module_name
from taskstash.hashing.source import code_fingerprint, normalise_source

__all__ = ["code_closure", "distribution_versions", "is_user_module"]


@functools.cache
def _installed() -> tuple[str, ...]:
    """Where installed code lives: neither the standard library nor site-packages is the user's."""
    import sysconfig  # on the first task made, not with taskstash

    return tuple(
        os.path.join(os.path.realpath(path), "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    )


_OWN_PACKAGE = __name__.split(".", 1)[0]


@functools.cache
def is_user_module(name: str) -> bool:
    """Whether the module `name` is the user's own code (not installed, not built in)."""
    if name.split(".", 1)[0] == _OWN_PACKAGE:
        return False
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return name == "__main__"  # a REPL or notebook: its code is the user's
    path = os.path.realpath(file)
    if any(path.startswith(prefix) for prefix in _installed()):
        return False
    return "site-packages" not in path and "dist-packages" not in path


def code_closure(function: Callable[..., Any]) -> dict[str, str]:
    """The key of `function` and of each function, class and constant of user code it reaches.

    Args:
        function: The task's function.

    Returns:
        Importable qualified name -> key, sorted by name.
    """
    walk = _Walk()
    walk.function(function)
    return dict(sorted(walk.found.items()))


def distribution_versions(function: Callable[..., Any]) -> dict[str, str]:
    """`distribution -> version` of the installed packages the code of `function` refers to."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    walk = _Walk()
    walk.function(function)
    distributions = packages_distributions()
    found: dict[str, str] = {}
    for top in sorted(walk.installed):
        for name in distributions.get(top, ()):
            try:
                found[name] = version(name)
            except PackageNotFoundError:
                continue
    return found


class _Walk:
    """One walk over the code a function reaches; each object is visited once."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.installed: set[str] = set()  # top-level packages of installed code referred to
        self._seen: set[int] = set()

    def function(self, function: Callable[..., Any]) -> None:
        function = inspect.unwrap(function)
        if id(function) in self._seen or not isinstance(function, types.FunctionType):
            return
        self._seen.add(id(function))
        self.found[_name(function)] = _source_key(function)
        self._references(function, function.__code__, function.__globals__)
        for value in (*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values()):
            self._value(value, None, None)
        names = function.__code__.co_freevars
        for name, cell in zip(names, function.__closure__ or (), strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            self._value(contents, f"{_name(function)}.<{name}>", None)

    def _class(self, cls: type) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        self.found[_name(cls)] = _source_key(cls)
        for base in cls.__bases__:
            self._value(base, None, None)
        for member in vars(cls).values():
            for inner in (member, getattr(member, "__func__", None), getattr(member, "fget", None)):
                if isinstance(inner, types.FunctionType):
                    self._seen.add(id(inner))  # its source is part of the class's
                    self._references(inner, inner.__code__, inner.__globals__)

    def _references(
        self, function: types.FunctionType, code: types.CodeType, namespace: dict[str, Any]
    ) -> None:
        names = set(_code_names(code))
        builtins = namespace.get("__builtins__")
        for name in sorted(names):
            if name in namespace:
                self._value(namespace[name], _global_name(namespace, name), names)
            elif isinstance(builtins, dict) and name in builtins:
                continue

    def _value(self, value: object, name: str | None, attributes: set[str] | None) -> None:
        """Follows `value`, found under `name` (a module global) if given."""
        if isinstance(value, types.ModuleType):
            if is_user_module(value.__name__):
                # `import helpers` then `helpers.normalize(...)`: the attributes the code names.
                for attribute in sorted(attributes or ()):
                    if attribute in vars(value):
                        self._value(vars(value)[attribute], f"{value.__name__}.{attribute}", None)
            else:
                self.installed.add(value.__name__.split(".", 1)[0])
            return
        wrapped = getattr(value, "__wrapped__", None)
        if callable(wrapped) and not isinstance(value, type):  # a task, or any decorated function
            value = wrapped
        if isinstance(value, types.FunctionType | type):
            module = getattr(value, "__module__", None) or ""
            if not is_user_module(module):
                self.installed.add(module.split(".", 1)[0])
            elif isinstance(value, type):
                self._class(value)
            else:
                self.function(value)
            return
        if isinstance(value, types.BuiltinFunctionType | types.MethodType):
            return
        if name is not None:
            # A global of the user's module (or a closed-over value) that is no code: a
            # constant, keyed by value, wherever it was imported from.
            self.found[name] = _value_key(value)


def _code_names(code: types.CodeType) -> Iterator[str]:
    """The global and attribute names a code object (and the code nested in it) refers to."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_names(constant)


def _global_name(namespace: dict[str, Any], name: str) -> str:
    module = namespace.get("__name__", "__main__")
    return f"{_importable(str(module))}.{name}"


def _name(obj: Any) -> str:
    module = _importable(str(getattr(obj, "__module__", None) or "__main__"))
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _importable(module: str) -> str:
    return importable_module_name(module)


def _source_key(obj: types.FunctionType | type) -> str:
    try:
        return hash_objects("source", normalise_source(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError, ValueError):
        pass  # no source (a REPL, exec): the code object, the same in every process
    if isinstance(obj, types.FunctionType):
        return hash_objects("code", code_fingerprint(obj.__code__))
    return hash_objects("class", sorted(vars(obj)))


def _value_key(value: object) -> str:
    try:
        return hash_objects("value", value)
    except HashingError:
        # A client or lock has no value to hash; its type still tells a change of kind.
        return hash_objects("type", f"{type(value).__module__}.{type(value).__qualname__}")
