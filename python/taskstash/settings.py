"""Settings from `TASKSTASH_*` environment variables.

They are read on first use and kept; call `reload()` after changing the environment in-process
(tests do). Unset variables take the defaults below.

| variable | default | meaning |
|---|---|---|
| `TASKSTASH_HOME` | `~/.taskstash` | base directory of the defaults below |
| `TASKSTASH_LOCAL_STORAGE_PATH` | `$TASKSTASH_HOME/storage` | where result files go |
| `TASKSTASH_INDEX_PATH` | `$TASKSTASH_HOME/index.db` | the SQLite index |
| `TASKSTASH_TASKS_REFRESH_CACHE` | `false` | refresh every task whose `refresh_cache` is unset |
| `TASKSTASH_LOGGING_LEVEL` | `INFO` | level of the `taskstash` logger |
| `TASKSTASH_SIGNING_KEY` | unset | sign result files (HMAC-SHA256) and load only signed ones |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "current", "reload"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """The effective settings.

    Attributes:
        home: Base directory of the default index and storage.
        local_storage_path: Where result files go by default.
        index_path: The SQLite index.
        tasks_refresh_cache: Refresh every task whose `refresh_cache` is unset.
        logging_level: Level of the `taskstash` logger.
        signing_key: The key (UTF-8 bytes of `TASKSTASH_SIGNING_KEY`) that result files are
            signed with and must be signed with to be loaded; None (unset or empty) for no
            signing. Kept out of `repr`, so that it does not end up in logs.
    """

    home: Path
    local_storage_path: Path
    index_path: Path
    tasks_refresh_cache: bool
    logging_level: str
    signing_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls) -> Settings:
        """Reads the `TASKSTASH_*` variables.

        Raises:
            ValueError: A variable has a value that means nothing (e.g. a non-boolean flag).
        """
        env = os.environ
        home = Path(env.get("TASKSTASH_HOME") or Path.home() / ".taskstash").expanduser()
        storage = env.get("TASKSTASH_LOCAL_STORAGE_PATH")
        index = env.get("TASKSTASH_INDEX_PATH")
        return cls(
            home=home,
            local_storage_path=Path(storage).expanduser() if storage else home / "storage",
            index_path=Path(index).expanduser() if index else home / "index.db",
            tasks_refresh_cache=_flag("TASKSTASH_TASKS_REFRESH_CACHE"),
            logging_level=env.get("TASKSTASH_LOGGING_LEVEL", "INFO").upper(),
            signing_key=_signing_key(),
        )


def _signing_key() -> bytes | None:
    # surrogateescape gives back the exact bytes of a variable that is not valid UTF-8.
    key = os.environ.get("TASKSTASH_SIGNING_KEY", "").encode("utf-8", "surrogateescape")
    return key or None


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not a boolean; use true or false")


_current: Settings | None = None


def current() -> Settings:
    """The settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_environment()
    return _current


def reload() -> Settings:
    """Reads the environment again, for changes made after first use."""
    global _current
    _current = None
    return current()
