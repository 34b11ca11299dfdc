"""The key of a function's code, for the TASK_SOURCE cache policy.

The source is captured when the function is decorated and normalised to its syntax tree: comments,
blank lines, spacing, line breaks, redundant parentheses, trailing commas and the decorators above
the `def` do not change the key; any change to a name, operator, literal (docstrings included) or
the structure of the code does. Values
the function closes over are part of the key, so tasks made by one factory with different
arguments never share records. A function whose source cannot be read (defined in a REPL or by
`exec`) is keyed by its code object instead: bytecode, constants and names, which are the same in
every process of one Python version.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from taskstash._native import HashingError
from taskstash.hashing import hash_objects

__all__ = ["closure_key", "code_fingerprint", "function_source_key", "normalise_source"]


def function_source_key(function: Callable[..., Any]) -> str:
    """The key of `function`'s normalised source (or code) and closure values."""
    code = _normalised_source(function)
    body: object = code if code is not None else ("code", code_fingerprint(function.__code__))
    return hash_objects(source=body, closure=_closure_fingerprint(function))


def closure_key(function: Callable[..., Any]) -> str:
    """The key of the values `function` closes over, by variable name.

    A value with no canonical form counts by its type, and a cell not yet assigned as empty.
    """
    return hash_objects(closure=_closure_fingerprint(function))


def normalise_source(source: str) -> str:
    """A canonical text of a function definition's syntax tree, without its decorators.

    Parsing discards comments, blank lines, spacing, line breaks, redundant parentheses and
    trailing commas. Fields that are empty or None are left out, so the fields newer Pythons
    add to the tree (empty for code that does not use the new syntax) do not change the text.

    Raises:
        SyntaxError: `source` does not parse (e.g. a lambda cut out of a longer line).
    """
    tree = ast.parse(textwrap.dedent(source))
    _drop_docstrings(tree)
    definitions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    if len(definitions) == 1:  # a def statement: its decorators are configuration, not code
        definitions[0].decorator_list = []
        return _node_text(definitions[0])
    return _node_text(tree)  # a lambda: the statement around it


def _drop_docstrings(tree: ast.AST) -> None:
    """Removes every docstring: documentation is not code, and never changes a key."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]


def _normalised_source(function: Callable[..., Any]) -> str | None:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # no file (REPL, exec), or a builtin
        return None
    try:
        return normalise_source(source)
    except (SyntaxError, ValueError):
        return None


def _node_text(node: ast.AST) -> str:
    fields = [
        f"{name}={_value_text(value)}"
        for name, value in ast.iter_fields(node)
        if name != "ctx" and value is not None and value != []
    ]
    return f"{type(node).__name__}({', '.join(fields)})"


def _value_text(value: object) -> str:
    if isinstance(value, ast.AST):
        return _node_text(value)
    if isinstance(value, list):
        return f"[{', '.join(_value_text(item) for item in value)}]"
    return repr(value)  # identifiers and constants: str, bytes, numbers, None, Ellipsis


def code_fingerprint(code: types.CodeType) -> object:
    """What a code object does, for code with no source: bytecode, constants and names."""
    constants = tuple(
        code_fingerprint(constant) if isinstance(constant, types.CodeType) else constant
        for constant in code.co_consts
    )
    return (
        code.co_code,
        constants,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )


def _closure_fingerprint(function: Callable[..., Any]) -> tuple[object, ...]:
    closure = getattr(function, "__closure__", None) or ()
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    return tuple((name, _cell_key(cell)) for name, cell in zip(names, closure, strict=False))


def _cell_key(cell: types.CellType) -> object:
    try:
        contents = cell.cell_contents
    except ValueError:  # an empty cell: the variable is assigned after the function is made
        return ("empty",)
    try:
        return hash_objects(contents)
    except HashingError:
        # A closed-over lock or client has no value to hash; its type still tells factory-made
        # tasks apart when the other closure values do not.
        return ("unhashable", f"{type(contents).__module__}.{type(contents).__qualname__}")
