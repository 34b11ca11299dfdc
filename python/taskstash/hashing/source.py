"""The key of a function's code, for the TASK_SOURCE cache policy.

The source is captured when the function is decorated and normalised to its token stream: comments,
blank lines, spacing, line breaks inside brackets and the decorators above the `def` do not change
the key; any change to a name, operator, literal (docstrings included) or indentation does. Values
the function closes over are part of the key, so tasks made by one factory with different
arguments never share records. A function whose source cannot be read (defined in a REPL or by
`exec`) is keyed by its code object instead: bytecode, constants and names, which are the same in
every process of one Python version.
"""

from __future__ import annotations

import inspect
import io
import textwrap
import tokenize
import types
from collections.abc import Callable, Iterator
from typing import Any

from taskstash._native import HashingError
from taskstash.hashing import hash_objects

__all__ = ["function_source_key", "normalise_source"]

_SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def function_source_key(function: Callable[..., Any]) -> str:
    """The key of `function`'s normalised source (or code) and closure values."""
    code = _normalised_source(function)
    body: object = code if code is not None else ("code", _code_fingerprint(function.__code__))
    return hash_objects(source=body, closure=_closure_fingerprint(function))


def normalise_source(source: str) -> str:
    """The token stream of a function definition, without its decorators.

    Raises:
        SyntaxError: `source` does not tokenize (e.g. a lambda cut out of a longer line).
    """
    tokens = list(_significant_tokens(textwrap.dedent(source)))
    start = _definition_start(tokens)
    return " ".join(_token_text(token) for token in tokens[start:])


def _normalised_source(function: Callable[..., Any]) -> str | None:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # no file (REPL, exec), or a builtin
        return None
    try:
        return normalise_source(source)
    except (SyntaxError, tokenize.TokenError):
        return None


def _significant_tokens(source: str) -> Iterator[tokenize.TokenInfo]:
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _SKIPPED_TOKENS:
            yield token


def _definition_start(tokens: list[tokenize.TokenInfo]) -> int:
    """Index of the `def` (or `async def`) that follows the decorators, or 0."""
    for index, token in enumerate(tokens):
        if token.type == tokenize.NAME and token.string == "def":
            before = tokens[index - 1] if index else None
            is_async = before is not None and before.string == "async"
            return index - 1 if is_async else index
    return 0  # a lambda: no decorators to strip


def _token_text(token: tokenize.TokenInfo) -> str:
    if token.type == tokenize.INDENT:
        return "<indent>"
    if token.type == tokenize.DEDENT:
        return "<dedent>"
    if token.type == tokenize.NEWLINE:
        return "<newline>"
    return token.string


def _code_fingerprint(code: types.CodeType) -> object:
    constants = tuple(
        _code_fingerprint(constant) if isinstance(constant, types.CodeType) else constant
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
