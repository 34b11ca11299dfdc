"""The `taskstash` logger, in the format `16:28:51.276 | INFO | Task run 'add_one-d85' - ...`.

A console handler is attached on first use unless the application has configured the logger
(given it handlers) itself; the level comes from `TASKSTASH_LOGGING_LEVEL`.
"""

from __future__ import annotations

import logging

from taskstash import settings

__all__ = ["logger"]

FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)s | %(message)s"
DATE_FORMAT = "%H:%M:%S"


def _configure() -> logging.Logger:
    configured = logging.getLogger("taskstash")
    if not configured.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        configured.addHandler(handler)
        configured.propagate = False
        try:
            level = settings.current().logging_level
        except ValueError:
            # A bad TASKSTASH_* value must not break `import taskstash`: it is reported, with
            # its name, where the setting is used.
            level = "INFO"
        configured.setLevel(level)
    return configured


logger = _configure()
