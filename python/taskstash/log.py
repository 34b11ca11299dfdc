"""The `taskstash` logger, in the format `16:28:51.276 | INFO | Task run 'add_one-d85' - ...`.

It behaves as a library's logger should: its records propagate to the application's handlers,
and it prints them itself, in the format above on standard error, only while nobody else would:
while neither the root logger nor any logger between has a handler. An application that
configures logging (`logging.basicConfig()`, pytest's `caplog`, a handler on `taskstash`) gets
every line exactly once, through its own handlers and format. The level comes from
`TASKSTASH_LOGGING_LEVEL` (default INFO); set it, or the logger's level, to change it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from taskstash import settings

__all__ = ["logger"]

FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)s | %(message)s"
DATE_FORMAT = "%H:%M:%S"


class _ConsoleHandler(logging.Handler):
    """Writes to the current `sys.stderr`, unless another handler will receive the record.

    Deciding at each record, not once when taskstash is imported, lets the application
    configure logging after importing taskstash.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))

    def handle(self, record: logging.LogRecord) -> bool:
        if self._handled_elsewhere(record):
            return False
        return super().handle(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one is on the record's way up to the root."""
        current: logging.Logger | None = logging.getLogger(record.name)
        while current is not None:
            if any(handler is not self for handler in current.handlers):
                return True
            current = current.parent if current.propagate else None
        return False

    def emit(self, record: logging.LogRecord) -> None:
        stream: TextIO = sys.stderr  # the one in use now, as pytest's capsys replaces it
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _configure() -> logging.Logger:
    configured = logging.getLogger("taskstash")
    if not any(isinstance(h, _ConsoleHandler) for h in configured.handlers):
        configured.addHandler(_ConsoleHandler())
    configured.propagate = True
    # The variables are read without warning here: a bad value is reported, once, where the
    # settings are first used (and the `taskstash` command refuses it with a one-line error).
    settings.apply_logging_level(settings.Settings.from_environment().logging_level)
    return configured


logger = _configure()
