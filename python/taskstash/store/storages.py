"""Where result files live: a local directory or an fsspec filesystem.

A location is a relative, "/"-separated path under the storage's root: `default_location(key)`
(`"ab/abcdef..."`, sharded by the key's first two hex digits so that no directory holds
millions of files) or a task's rendered `result_storage_key` (checked by `check_location`).

Writes are atomic: a reader sees the old file, the new file or nothing, never a partial file.
fsspec is imported only when an fsspec URL or filesystem is used (`FsspecStorage` lives in
`taskstash.store.fsspec_storage`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    import fsspec

__all__ = [
    "Chunks",
    "LocalStorage",
    "ResultStorage",
    "check_location",
    "default_location",
    "makedirs_private",
    "resolve_storage",
    "storage_for_url",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
Chunks: TypeAlias = Buffer | Sequence[Buffer]
"""What `ResultStorage.write` takes: one buffer, or buffers written one after the other."""

_TEMP_SUFFIX: Final = ".tstmp"
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_FIRST_READ: Final = 64 * 1024
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# Locations that need no normalising: segments of [A-Za-z0-9_.-] not starting with a dot.
_PLAIN_LOCATION: Final = re.compile(r"(?:[\w-][\w.-]*/)*[\w-][\w.-]*", re.ASCII)


def default_location(key: str) -> str:
    """The location of a key's result file when the task names none: `"ab/abcdef..."`."""
    return f"{key[:2]}/{key}"


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def temp_name(base: str) -> str:
    # Unique per writer; the base (shortened to keep under NAME_MAX) helps a human who finds one.
    return f".{base[:180]}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"


def check_location(location: str) -> str:
    """Validates and normalises a location relative to a storage root.

    `"a//b"` and `"./a/b"` become `"a/b"`; backslashes are separators too.

    Args:
        location: A relative path such as `"42-bar"` or `"reports/2024/x"`.

    Returns:
        The normalised location.

    Raises:
        ValueError: It is empty, absolute, contains a `..` segment or a NUL byte, or names a
            taskstash temporary file; any of these could escape or corrupt the storage root.
    """
    if type(location) is str and _PLAIN_LOCATION.fullmatch(location):
        return location  # the common case, checked in one regex match
    if not isinstance(location, str):
        raise TypeError(f"a result location must be a str, not {type(location).__name__}")
    problem = None
    normalized = location.replace("\\", "/")
    if not normalized.strip():
        problem = "it is empty"
    elif "\0" in normalized:
        problem = "it contains a NUL byte"
    elif normalized.startswith("/") or re.match(r"[A-Za-z]:", normalized):
        problem = "it is absolute"
    segments = [s for s in normalized.split("/") if s not in ("", ".")]
    if problem is None and ".." in segments:
        problem = "it contains '..'"
    if problem is None and not segments:
        problem = "it names the storage root itself"
    if problem is None and is_temp(segments[-1]):
        problem = f"names ending in {_TEMP_SUFFIX!r} and starting with '.' are temporary files"
    if problem is not None:
        raise ValueError(
            f"invalid result location {location!r}: {problem}; a location (such as a rendered "
            "result_storage_key) must be a relative path inside the result storage, "
            "like 'reports/2024/x'"
        )
    return "/".join(segments)


def as_views(data: Chunks) -> list[memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        data = [data]
    return [memoryview(chunk).cast("B") for chunk in data]


# Storages by url, so that a record's file can be reached from the url stored in its row.
_BY_URL: weakref.WeakValueDictionary[str, ResultStorage] = weakref.WeakValueDictionary()


def register(storage: ResultStorage) -> None:
    """Makes `storage_for_url(storage.url)` find `storage` while it lives."""
    _BY_URL[storage.url] = storage


class ResultStorage(ABC):
    """A place for result files, addressed by relative locations.

    Attributes:
        url: Canonical identity of the root, stored in each index row (an absolute path for a
            local directory, an fsspec URL such as `"s3://bucket/prefix"` otherwise).
    """

    url: str

    @abstractmethod
    def write(self, location: str, data: Chunks) -> None:
        """Writes a file atomically: a reader sees the old file or the whole new one.

        Args:
            location: Where, relative to the root (checked with `check_location`).
            data: The bytes, or chunks written one after the other.
        """

    @abstractmethod
    def read(self, location: str) -> bytes | memoryview | None:
        """The whole file at `location`, or None if there is none."""

    @abstractmethod
    def delete(self, location: str) -> None:
        """Deletes the file at `location`; a missing file is not an error."""

    @abstractmethod
    def locations(self) -> Iterator[str]:
        """Every result file's location (temporary files skipped), for verify and reindex."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def makedirs_private(path: str) -> None:
    """Like `os.makedirs(path, 0o700, exist_ok=True)`, but owner-only for every level made."""
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        makedirs_private(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, _DIR_MODE)


class LocalStorage(ResultStorage):
    """Result files in a local directory.

    The root and any directory below it are created on first write, owner-only (0o700); files
    are 0o600. A write goes to a temporary file in the destination directory, then `os.replace`
    moves it into place.

    Files are not `fsync`ed by default: a file damaged by a power loss fails its checksum and is
    a miss, and the index (WAL, `synchronous=NORMAL`) makes the same trade. Pass `fsync=True` to
    make each write durable before it is renamed, at the cost of milliseconds per write.

    Args:
        root: The directory; `~` is expanded and the path made absolute.
        fsync: Flush each file to disk before renaming it into place.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = os.path.realpath(os.path.expanduser(os.fspath(root)))
        self.url = self.root
        self.fsync = fsync
        self._prefix = os.path.join(self.root, "")
        register(self)

    def path(self, location: str) -> str:
        """The absolute file name of `location`."""
        return self._prefix + check_location(location)

    def write(self, location: str, data: Chunks) -> None:  # noqa: D102 (documented on the ABC)
        path = self.path(location)
        directory, base = os.path.split(path)
        temp = os.path.join(directory, temp_name(base))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(temp, flags, _FILE_MODE)
        except FileNotFoundError:
            makedirs_private(directory)
            fd = os.open(temp, flags, _FILE_MODE)
        try:
            try:
                for view in as_views(data):
                    while view:
                        view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def read(self, location: str) -> bytes | memoryview | None:  # noqa: D102
        try:
            fd = os.open(self._prefix + check_location(location), _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            # A small file in one read, no fstat: a short read of a regular file means EOF.
            data = os.read(fd, _FIRST_READ)
            if len(data) < _FIRST_READ:
                return data
            size = os.fstat(fd).st_size
            buffer = bytearray(max(size, _FIRST_READ))
            view = memoryview(buffer)
            done = len(data)
            view[:done] = data
            del data
            while done < len(view):
                n = os.readv(fd, [view[done:]])  # at most ~2 GiB per call on Linux
                if n == 0:
                    break
                done += n
            return view[:done]
        finally:
            os.close(fd)

    def delete(self, location: str) -> None:  # noqa: D102
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(location))

    def locations(self) -> Iterator[str]:  # noqa: D102
        for directory, dirs, files in os.walk(self.root):
            dirs.sort()
            relative = os.path.relpath(directory, self.root)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for name in sorted(files):
                if not is_temp(name):
                    yield prefix + name


def _is_fsspec_filesystem(obj: object) -> bool:
    # Without fsspec imported, nothing can be one of its filesystems: no import needed to tell.
    module = sys.modules.get("fsspec")
    return module is not None and isinstance(obj, module.AbstractFileSystem)


def _from_url(url: str) -> ResultStorage:
    if url.startswith("file://"):
        from urllib.request import url2pathname

        return LocalStorage(url2pathname(url.removeprefix("file://").removeprefix("localhost")))
    try:
        import fsspec.core
    except ImportError:
        raise ImportError(
            f"result storage {url!r} needs fsspec (and the filesystem's own package, such as "
            "s3fs): pip install fsspec"
        ) from None
    from taskstash.store.fsspec_storage import FsspecStorage

    fs, root = fsspec.core.url_to_fs(url)
    return FsspecStorage(fs, root)


_RESOLVED: dict[tuple[str, str], ResultStorage] = {}
_RESOLVED_LOCK = threading.Lock()
_RESOLVED_FS: dict[Any, ResultStorage] = {}  # fsspec filesystems hash and compare by token


def resolve_storage(
    spec: str | os.PathLike[str] | fsspec.AbstractFileSystem | ResultStorage | None,
    default_root: str | os.PathLike[str],
) -> ResultStorage:
    """The storage for a task's `result_storage` option.

    Args:
        spec: None for `LocalStorage(default_root)`; a path or `file://` URL for a
            `LocalStorage`; any other URL (`"s3://bucket/prefix"`, `"memory://x"`) for an
            `FsspecStorage` through `fsspec.core.url_to_fs`; an fsspec filesystem for
            `FsspecStorage(fs, "")`, results at the filesystem's own root (pass a
            `DirFileSystem`, or a URL, to put them under a prefix); a `ResultStorage` as is.
        default_root: The root used for None (the local storage setting).

    Returns:
        The storage; the same object for the same string, path or filesystem (a relative path is
        resolved against the working directory once, when first seen).

    Raises:
        ImportError: `spec` is a URL and fsspec is not installed.
        TypeError: `spec` is none of the above.
    """
    if isinstance(spec, ResultStorage):
        _BY_URL.setdefault(spec.url, spec)
        return spec
    if spec is None:
        cache_key = ("", os.fspath(default_root))
    elif isinstance(spec, str | os.PathLike):
        cache_key = (os.fspath(spec), "")
    elif _is_fsspec_filesystem(spec):
        storage = _RESOLVED_FS.get(spec)
        if storage is None:
            from taskstash.store.fsspec_storage import FsspecStorage

            storage = _RESOLVED_FS.setdefault(spec, FsspecStorage(spec, ""))
        return storage
    else:
        raise TypeError(
            "result_storage must be a path, a URL, an fsspec filesystem or a ResultStorage, "
            f"not {type(spec).__name__}"
        )
    storage = _RESOLVED.get(cache_key)
    if storage is None:
        path = cache_key[0] or cache_key[1]
        storage = _from_url(path) if "://" in path else LocalStorage(path)
        with _RESOLVED_LOCK:
            storage = _RESOLVED.setdefault(cache_key, storage)
    return storage


def storage_for_url(url: str) -> ResultStorage | None:
    """The storage whose `url` is `url` (as stored in an index row), or None if unreachable.

    Args:
        url: A `ResultStorage.url`.

    Returns:
        A live storage with that url, or one rebuilt from it (an absolute path or an fsspec
        URL); None if it cannot be rebuilt (fsspec missing, or an unknown protocol).
    """
    storage = _BY_URL.get(url)
    if storage is not None:
        return storage
    if os.path.isabs(url):
        return resolve_storage(url, Path(url))
    if "://" in url:
        try:
            return resolve_storage(url, Path())
        except (ImportError, ValueError):
            return None
    return None
