"""Settings from `TASKSTASH_*` environment variables and the settings file.

The settings file (`$TASKSTASH_HOME/config.toml`, or the file `TASKSTASH_CONFIG` names; see
`taskstash.config_file`) holds the same settings, named in lower case without the prefix, and
named storages; a variable that is set wins over the file. The file is read with the variables.

`current()` reads them where they are used: it compares the variables with those it last read
(a fraction of a microsecond) and reads them again when one changed, so setting
`os.environ["TASKSTASH_HOME"]` in a running program takes effect at the next call. `reload()`
reads them again unconditionally. Unset variables take the defaults below.

| variable | default | meaning |
|---|---|---|
| `TASKSTASH_HOME` | `~/.taskstash` | base directory of the defaults below |
| `TASKSTASH_LOCAL_STORAGE_PATH` | `$TASKSTASH_HOME/storage` | where result files go |
| `TASKSTASH_INDEX_PATH` | `$TASKSTASH_HOME/index.db` | the SQLite index |
| `TASKSTASH_INDEX_URL` | unset | `postgresql://user@host:port/db` or `sqlite:///path` |
| `TASKSTASH_TASKS_REFRESH_CACHE` | `false` | refresh every task whose `refresh_cache` is unset |
| `TASKSTASH_LOGGING_LEVEL` | `INFO` | level of the `taskstash` logger |
| `TASKSTASH_SIGNING_KEY` | unset | sign result files (HMAC-SHA256) and load only signed ones |
| `TASKSTASH_MAX_SIZE` | unset | most bytes of results to keep (`500MB`, `2GiB`); LRU out first |
| `TASKSTASH_RECORD_PARAMETERS` | `true` | keep a short text of each call's arguments |
| `TASKSTASH_TASKS_DISABLE_CACHING` | `false` | run every task uncached |
| `TASKSTASH_TASKS_DEFAULT_NO_CACHE` | `false` | run uncached the tasks given no policy or key fn |
| `TASKSTASH_RESULTS_PERSIST_BY_DEFAULT` | `false` | cache tasks leaving `persist_result` unset |
| `TASKSTASH_STORAGE_TIMEOUT` | `10` | seconds an object store may take to answer (S3 URLs) |
| `TASKSTASH_CONFIG` | `$TASKSTASH_HOME/config.toml` | the settings file |

`TASKSTASH_INDEX_URL`, when set, wins over `TASKSTASH_INDEX_PATH`.

A value that means nothing (`TASKSTASH_LOGGING_LEVEL=quiet`) never breaks `import taskstash` nor
a call: its default is used, and a warning of the `taskstash` logger names the variable, its value
and the values allowed, once. The `taskstash` command refuses to run with it instead.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from taskstash import config_file
from taskstash._native import EnvironWatch
from taskstash.config_file import NamedStorage

__all__ = ["Settings", "apply_logging_level", "current", "parse_size", "reload"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEFAULT_LEVEL = "INFO"

_log = logging.getLogger("taskstash")


@dataclass(frozen=True)
class Settings:
    """The effective settings.

    Attributes:
        home: Base directory of the default index and storage.
        local_storage_path: Where result files go by default.
        index_path: The SQLite index, unless `index_url` is set.
        index_url: The index as a URL (`postgresql://...`, `sqlite:///...`), or None.
        tasks_refresh_cache: Refresh every task whose `refresh_cache` is unset.
        logging_level: Level of the `taskstash` logger.
        signing_key: The key (UTF-8 bytes of `TASKSTASH_SIGNING_KEY`) that result files are
            signed with and must be signed with to be loaded; None (unset or empty) for no
            signing. Kept out of `repr`, so that it does not end up in logs.
        max_size: The most bytes of results the index may hold; None for no limit.
        record_parameters: Keep a short text of each call's arguments in its record (and
            result header); off for inputs too sensitive to be shown by `taskstash ls`.
        tasks_disable_caching: Run every task uncached, whatever its policy.
        tasks_default_no_cache: Run uncached the tasks given no cache policy or key function.
        results_persist_by_default: Cache the calls of tasks whose `persist_result` is left
            unset (with their DEFAULT policy), outside flows and in flows that leave it unset.
        problems: What is wrong with each variable whose value means nothing and was replaced
            by its default: the variable, its value, the values allowed and the default.
        storage_timeout: Seconds a request to an object store (an S3 URL or named storage)
            may wait for a connection, and then for each answer, before it is given up (it is
            tried twice); see `taskstash.store.fsspec_storage.with_timeouts`.
        storages: The named storages of the settings file (`result_storage="NAME"`). Kept out
            of `repr`: they may hold secrets.
        config_path: The settings file (which may not exist).
    """

    home: Path
    local_storage_path: Path
    index_path: Path
    tasks_refresh_cache: bool
    logging_level: str
    signing_key: bytes | None = field(default=None, repr=False)
    max_size: int | None = None
    record_parameters: bool = True
    tasks_disable_caching: bool = False
    tasks_default_no_cache: bool = False
    results_persist_by_default: bool = False
    storage_timeout: float = 10.0
    problems: tuple[str, ...] = ()
    storages: Mapping[str, NamedStorage] = field(default_factory=dict, repr=False)
    config_path: Path | None = None
    index_url: str | None = None

    @property
    def index(self) -> str:
        """The index: `index_url` if set, else the file `index_path`."""
        return self.index_url or os.fspath(self.index_path)

    @classmethod
    def from_environment(cls) -> Settings:
        """Reads the variables and the settings file; a bad value gets its default (`problems`)."""
        problems: list[str] = []
        home = Path(os.environ.get("TASKSTASH_HOME") or Path.home() / ".taskstash").expanduser()
        file = config_file.read(config_file.config_path(os.environ, home))
        problems.extend(file.problems)
        env = {**file.settings, **os.environ}
        storage = env.get("TASKSTASH_LOCAL_STORAGE_PATH")
        index = env.get("TASKSTASH_INDEX_PATH")
        return cls(
            home=home,
            local_storage_path=Path(storage).expanduser() if storage else home / "storage",
            index_path=Path(index).expanduser() if index else home / "index.db",
            tasks_refresh_cache=_flag("TASKSTASH_TASKS_REFRESH_CACHE", problems, env),
            logging_level=_level(problems, env),
            signing_key=_signing_key(env),
            max_size=_max_size(problems, env),
            record_parameters=_flag("TASKSTASH_RECORD_PARAMETERS", problems, env, default=True),
            tasks_disable_caching=_flag("TASKSTASH_TASKS_DISABLE_CACHING", problems, env),
            tasks_default_no_cache=_flag("TASKSTASH_TASKS_DEFAULT_NO_CACHE", problems, env),
            results_persist_by_default=_flag("TASKSTASH_RESULTS_PERSIST_BY_DEFAULT", problems, env),
            storage_timeout=_seconds("TASKSTASH_STORAGE_TIMEOUT", problems, env, default=10.0),
            problems=tuple(problems),
            storages=file.storages,
            config_path=file.path,
            index_url=env.get("TASKSTASH_INDEX_URL") or None,
        )


def _signing_key(env: Mapping[str, str]) -> bytes | None:
    # surrogateescape gives back the exact bytes of a variable that is not valid UTF-8.
    key = env.get("TASKSTASH_SIGNING_KEY", "").encode("utf-8", "surrogateescape")
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


def _max_size(problems: list[str], env: Mapping[str, str]) -> int | None:
    text = env.get("TASKSTASH_MAX_SIZE", "").strip()
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError:
        problems.append(
            f"TASKSTASH_MAX_SIZE={text!r} is not a size (write it like 10000, 500MB or 2GiB; "
            "unset means no limit)"
        )
        return None


def _seconds(name: str, problems: list[str], env: Mapping[str, str], *, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if 0 < seconds < float("inf"):
        return seconds
    problems.append(f"{name}={text!r} is not a number of seconds above 0 (unset means {default:g})")
    return default


def _flag(name: str, problems: list[str], env: Mapping[str, str], *, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    problems.append(
        f"{name}={env[name]!r} is not a boolean (true or false; unset means {str(default).lower()})"
    )
    return default


def _level(problems: list[str], env: Mapping[str, str]) -> str:
    text = env.get("TASKSTASH_LOGGING_LEVEL", "").strip()
    if not text:
        return _DEFAULT_LEVEL
    if text.upper() in _LEVELS:
        return text.upper()
    problems.append(
        f"TASKSTASH_LOGGING_LEVEL={text!r} is not a logging level ({', '.join(_LEVELS)}; "
        f"unset means {_DEFAULT_LEVEL})"
    )
    return _DEFAULT_LEVEL


# What `current()` watches to notice a change: these variables. os.environ.get() costs about
# 0.6 µs a name (it encodes the name, decodes the value, and raises and catches KeyError for an
# unset one). The dict behind os.environ holds each value as an object that assigning to
# os.environ replaces, so a native watch of that dict tells a change by identity, in about
# 0.1 µs for all of them: it runs on every task call.
_NAMES = (
    "TASKSTASH_HOME",
    "TASKSTASH_LOCAL_STORAGE_PATH",
    "TASKSTASH_INDEX_PATH",
    "TASKSTASH_INDEX_URL",
    "TASKSTASH_TASKS_REFRESH_CACHE",
    "TASKSTASH_LOGGING_LEVEL",
    "TASKSTASH_SIGNING_KEY",
    "TASKSTASH_MAX_SIZE",
    "TASKSTASH_RECORD_PARAMETERS",
    "TASKSTASH_TASKS_DISABLE_CACHING",
    "TASKSTASH_TASKS_DEFAULT_NO_CACHE",
    "TASKSTASH_RESULTS_PERSIST_BY_DEFAULT",
    "TASKSTASH_STORAGE_TIMEOUT",
    "TASKSTASH_CONFIG",
    "HOME",  # the default TASKSTASH_HOME is ~/.taskstash
)

# os.environ's dict (`_data` in CPython's and PyPy's os module), which every assignment updates.
_changed = EnvironWatch(vars(os.environ)["_data"], tuple(map(os.fsencode, _NAMES))).changed
_current: Settings | None = None
_warned: set[str] = set()
_applied_level: str | None = None


def current() -> Settings:
    """The settings, read again whenever one of their environment variables changed.

    A value that means nothing is replaced by its default and warned about once (see
    `Settings.problems`).
    """
    global _current
    if _changed() or _current is None:
        _current = Settings.from_environment()
        _apply(_current)
    return _current


def reload() -> Settings:
    """Reads the environment again now (`current()` does it when a variable changes)."""
    global _current
    _current = None
    return current()


def _apply(new: Settings) -> None:
    for problem in new.problems:
        if problem not in _warned:
            _warned.add(problem)
            _log.warning("%s: ignored, the default is used", problem)
    apply_logging_level(new.logging_level)


def apply_logging_level(level: str) -> None:
    """Sets the `taskstash` logger's level, if the setting changed since it was last applied.

    So a level the application set on the logger itself stands until `TASKSTASH_LOGGING_LEVEL`
    changes.
    """
    global _applied_level
    if level != _applied_level:
        _log.setLevel(level)
        _applied_level = level
