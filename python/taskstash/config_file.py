"""The settings file: `$TASKSTASH_HOME/config.toml`, or the file `TASKSTASH_CONFIG` names.

It holds any setting, named like its environment variable in lower case without the prefix
(`max_size = "2GiB"` for `TASKSTASH_MAX_SIZE`; an environment variable that is set wins), and
named storages:

    signing_key = "..."

    [storages.my-cache-bucket]
    url = "s3://my-bucket/cache"
    key = "AKIA..."                           # any option of the URL's filesystem (s3fs here)
    secret = { env = "CACHE_BUCKET_SECRET" }  # or taken from the environment when used
    client_kwargs = { region_name = "eu-west-1" }
    storage_timeout = 30                      # taskstash's own: TASKSTASH_STORAGE_TIMEOUT here

`result_storage="my-cache-bucket"` then resolves to that storage on every machine with the
same file. The file may hold secrets: taskstash creates it owner-only (0o600), like
`~/.aws/credentials`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigFile", "NamedStorage", "config_path", "read", "save_storage"]


@dataclass(frozen=True)
class NamedStorage:
    """A `[storages.NAME]` table: a URL and the options of its filesystem.

    Attributes:
        name: The table's name.
        url: The storage's URL or path.
        options: Everything else in the table, passed to the filesystem; `{env = "VAR"}` values
            are read from the environment by `resolved_options`. Kept out of `repr`: it may
            hold secrets.
    """

    name: str
    url: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def resolved_options(self) -> dict[str, Any]:
        """The options, with each `{env = "VAR"}` replaced by the variable's value.

        Raises:
            KeyError: A variable named so is not set.
        """
        return _resolve(dict(self.options), self.name)


@dataclass(frozen=True)
class ConfigFile:
    """What a settings file holds.

    Attributes:
        path: The file (which may not exist).
        settings: Setting values by environment variable name (`TASKSTASH_MAX_SIZE`), as text.
        storages: Named storages.
        problems: What in the file was ignored, and why.
    """

    path: Path
    settings: Mapping[str, str] = field(default_factory=dict, repr=False)
    storages: Mapping[str, NamedStorage] = field(default_factory=dict, repr=False)
    problems: tuple[str, ...] = ()


def config_path(environ: Mapping[str, str], home: Path) -> Path:
    """The settings file: `TASKSTASH_CONFIG`, or `config.toml` in `home`."""
    named = environ.get("TASKSTASH_CONFIG")
    return Path(named).expanduser() if named else home / "config.toml"


def read(path: Path) -> ConfigFile:
    """Reads the settings file at `path`; a missing file is an empty one.

    A file that cannot be read or parsed is ignored as a whole, and said so in `problems`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # no file (or no home) yet
        return ConfigFile(path)
    except (OSError, UnicodeDecodeError) as exc:
        return ConfigFile(path, problems=(f"settings file {path} is ignored: {exc}",))
    import tomllib  # only with a file to parse: `import taskstash` need not load the parser

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ConfigFile(path, problems=(f"settings file {path} is ignored: {exc}",))
    problems: list[str] = []
    values: dict[str, str] = {}
    storages: dict[str, NamedStorage] = {}
    for name, value in raw.items():
        if name == "storages" and isinstance(value, dict):
            for storage_name, table in value.items():
                if not isinstance(table, dict) or not isinstance(table.get("url"), str):
                    problems.append(f"{path}: [storages.{storage_name}] needs a url; ignored")
                    continue
                options = {k: v for k, v in table.items() if k != "url"}
                storages[storage_name] = NamedStorage(storage_name, table["url"], options)
        elif isinstance(value, str | int | float | bool):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            values["TASKSTASH_" + name.upper()] = text
        else:
            problems.append(f"{path}: {name} is not a setting (a string, number or boolean)")
    return ConfigFile(path, values, storages, tuple(problems))


def save_storage(path: Path, name: str, url: str, options: Mapping[str, Any]) -> None:
    """Records `[storages.NAME]` in the settings file at `path`, replacing one of that name.

    The file is written whole to a temporary file, owner-only, then renamed into place.

    Raises:
        ValueError: The existing file cannot be parsed (it is left alone).
        OSError: It cannot be written.
    """
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raw = {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(
            f"settings file {path} cannot be parsed, so is not changed: {exc}"
        ) from None
    raw.setdefault("storages", {})[name] = {"url": url, **options}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(fd, "w", encoding="utf-8") as file:
            file.write(_dumps(raw))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _resolve(options: dict[str, Any], storage: str) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, dict) and set(value) == {"env"}:
            variable = value["env"]
            if variable not in os.environ:
                raise KeyError(
                    f"storage {storage!r}: option {name} is taken from the environment "
                    f"variable {variable}, which is not set"
                )
            resolved[name] = os.environ[variable]
        elif isinstance(value, dict):
            resolved[name] = _resolve(value, storage)
        else:
            resolved[name] = value
    return resolved


def _dumps(data: Mapping[str, Any]) -> str:
    """TOML for what `save_storage` writes: scalars and tables (nested tables inline)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines.extend(_tables([name], table))
    return "\n".join(lines) + "\n"


def _tables(prefix: list[str], table: Mapping[str, Any]) -> list[str]:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not _is_table(v)]
    lines = ["", f"[{'.'.join(map(_key, prefix))}]", *scalars] if scalars or not prefix else []
    for name, value in table.items():
        if _is_table(value):
            lines.extend(_tables([*prefix, name], value))
    return lines


def _is_table(value: object) -> bool:
    # `{env = "VAR"}` stays inline, as written.
    return isinstance(value, dict) and set(value) != {"env"}


def _key(name: str) -> str:
    bare = name.replace("-", "").replace("_", "").isalnum() and name.isascii()
    return name if bare else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"{type(value).__name__} cannot be written to the settings file")
