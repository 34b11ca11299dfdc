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
| `TASKSTASH_MAX_SIZE` | unset | most bytes of results to keep (`500MB`, `2GiB`); LRU out first |
| `TASKSTASH_RECORD_PARAMETERS` | `true` | keep a short text of each call's arguments |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "current", "parse_size", "reload"]

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
        max_size: The most bytes of results the index may hold; None for no limit.
        record_parameters: Keep a short text of each call's arguments in its record (and
            result header); off for inputs too sensitive to be shown by `taskstash ls`.
    """

    home: Path
    local_storage_path: Path
    index_path: Path
    tasks_refresh_cache: bool
    logging_level: str
    signing_key: bytes | None = field(default=None, repr=False)
    max_size: int | None = None
    record_parameters: bool = True

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
            max_size=_max_size(),
            record_parameters=_flag("TASKSTASH_RECORD_PARAMETERS", default=True),
        )


def _signing_key() -> bytes | None:
    # surrogateescape gives back the exact bytes of a variable that is not valid UTF-8.
    key = os.environ.get("TASKSTASH_SIGNING_KEY", "").encode("utf-8", "surrogateescape")
    return key or None


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """Bytes from `10000`, `500MB`, `1.5GB` (powers of 1000) or `2GiB` (powers of 1024).

    Raises:
        ValueError: `text` is not a size.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write it like 10000, 500MB or 2GiB")
    number, unit = match.group(1), (match.group(2) or "").lower()
    scale = 1024 ** "kmgt".index(unit[0]) * 1024 if unit.endswith("i") else _UNITS[unit]
    return int(float(number) * scale)


def _max_size() -> int | None:
    text = os.environ.get("TASKSTASH_MAX_SIZE", "").strip()
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"TASKSTASH_MAX_SIZE: {exc}") from None


def _flag(name: str, *, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
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
