"""The `taskstash` command: look after the cache from a shell.

    taskstash ls --task add_one --limit 20
    taskstash show 3f9a2c
    taskstash rm 3f9a2c0d1e7b4a5f9c8d2e6b1a0f3c4d
    taskstash stats
    taskstash explain mypipeline:add_one --arg x=1
    taskstash prune --expired --max-size 2GiB --keep-newest 5 --dry-run
    taskstash clear --task add_one
    taskstash verify --fix
    taskstash reindex

Tables for people by default, `--json` for scripts. The index is opened by the commands that use
it, when they use it: `reindex` rebuilds one too damaged to open. Every failure is one line on
standard error, `taskstash: error: <what is wrong>; <what to do>`, and an exit code of `EPILOG`.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence

from taskstash import settings
from taskstash.cli.commands import parser
from taskstash.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNUSABLE,
    EXIT_USAGE,
    CommandError,
    describe,
    fail,
)
from taskstash.exceptions import TaskstashError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command with `argv` (default: the process's arguments); the exit code.

    Usage errors exit through `SystemExit(2)`, as argparse does, after their one line.
    """
    options = parser().parse_args(argv)
    try:
        problems = settings.Settings.from_environment().problems
        if problems:
            raise CommandError(
                f"{problems[0]}; set it to an allowed value, or unset it", EXIT_USAGE
            )
        code: int = options.run(options)
    except CommandError as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except (TaskstashError, sqlite3.Error, OSError) as exc:
        return fail(describe(exc), EXIT_UNUSABLE)
    return code


if __name__ == "__main__":
    sys.exit(main())
