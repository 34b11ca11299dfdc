"""Exit codes, and the one line that says what went wrong and what to do."""

from __future__ import annotations

import sqlite3
import sys
from typing import Final

from taskstash.exceptions import CorruptIndexError

__all__ = [
    "EPILOG",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNUSABLE",
    "EXIT_USAGE",
    "CommandError",
    "describe",
    "fail",
]

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNUSABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = """\
exit codes:
  0    done
  1    nothing found (no record matches the key given to show or rm; the explain target
       cannot be loaded), or verify found problems
  2    usage error: a bad option or argument, an ambiguous key prefix, a bad TASKSTASH_* setting
  3    the index or storage cannot be used: damaged (run `taskstash reindex`), made by a newer
       taskstash, not readable or writable, not a file, or its directory cannot be created
  130  interrupted (Ctrl-C)

Every failure is one line on standard error: taskstash: error: <what is wrong>; <what to do>
"""


class CommandError(Exception):
    """A failure to report in one line, with its exit code.

    Args:
        message: What is wrong; what to do.
        code: The exit code.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> int:
    """Prints `message` as the command's one error line; returns `code`."""
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"taskstash: error: {line}", file=sys.stderr)
    return code


def describe(exc: BaseException) -> str:
    """What is wrong and what to do, for an error of the index or storage."""
    if isinstance(exc, CorruptIndexError):
        return (
            f"the index {exc.path} is damaged; rebuild it from the result files with "
            "`taskstash reindex` (the damaged file is moved aside, no result is lost)"
        )
    if isinstance(exc, sqlite3.Error):
        return (
            f"the index cannot be used ({exc}); check that it is a file you may read and write, "
            "in a directory you may write, or choose another with --index or TASKSTASH_INDEX_PATH"
        )
    if isinstance(exc, IsADirectoryError):
        return (
            f"{exc.filename} is a directory, not a file; point --index or TASKSTASH_INDEX_PATH "
            "at a file"
        )
    if isinstance(exc, OSError):
        where = f"{exc.filename}" if exc.filename else "a file of the cache"
        return (
            f"cannot use {where} ({exc.strerror or exc}); check that its directory exists or "
            "can be created and that you may write there, or choose another place with "
            "TASKSTASH_HOME, --index or --storage"
        )
    return str(exc)  # taskstash's own errors say what to do
