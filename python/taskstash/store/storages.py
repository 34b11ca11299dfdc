"""Local result storage, and how a task's `result_storage` option becomes a `ResultStorage`.

Writes are atomic: a reader sees the old file, the new file or nothing, never a partial file.
`LocalStorage` writes and deletes only inside its root: it follows no symbolic link below the
root (a link there could lead anywhere), and refuses the operation instead. Reads do follow
links: a read result is only ever used if it matches the checksum the index recorded (and, with
a signing key, carries a valid signature), so a link can turn a hit into a miss but never change
what a hit returns. Anyone able to create a link in the storage could write a file there anyway.
Only regular files are read: a FIFO, device or socket at a location is refused, without
blocking, as an unreadable file (`OSError`), which callers treat as a damaged result.

fsspec is imported only when an fsspec URL or filesystem is used (`FsspecStorage` lives in
`taskstash.store.fsspec_storage`). The shared parts (locations, the ABC) are in
`taskstash.store.base` and re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol, cast

from taskstash.store.base import (
    Chunks,
    ResultStorage,
    StagedFile,
    as_views,
    check_location,
    default_location,
    is_temp,
    makedirs_private,
    temp_name,
    trust,
    trusted_storage,
    write_all,
)

if TYPE_CHECKING:
    import fsspec

__all__ = [
    "Chunks",
    "LocalStorage",
    "ResultStorage",
    "StorageDefinition",
    "UnknownStorageError",
    "check_location",
    "default_location",
    "locate",
    "makedirs_private",
    "resolve_storage",
    "storage_for_url",
]

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_FIRST_READ: Final = 64 * 1024
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
# Non-blocking, so that opening a FIFO (which waits for a writer) returns at once; see
# `_open_regular`.
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS: Final = os.O_RDONLY | _NONBLOCK | _CLOEXEC | getattr(os, "O_BINARY", 0)
# Below the root, every directory is opened relative to its parent and without following a
# link, so that no component can be swapped for a link between a check and its use.
_DIR_FLAGS: Final = os.O_RDONLY | _CLOEXEC | getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CREATE_FLAGS: Final = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
)


class LocalStorage(ResultStorage):
    """Result files in a local directory.

    The root and any directory below it are created on first write, owner-only (0o700); files
    are 0o600. A write goes to a temporary file in the destination directory, then is renamed
    into place. A directory below the root that is a symbolic link is refused for writing and
    deleting (`OSError` with errno `ELOOP`), since it could lead outside the root.

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

    def path(self, location: str) -> str:
        """The absolute file name of `location`."""
        return self._prefix + check_location(location)

    def write(self, location: str, data: Chunks) -> None:  # noqa: D102 (documented on the ABC)
        views = as_views(data)
        with self.open_write(location) as file:
            for view in views:
                write_all(file, view)

    @contextlib.contextmanager
    def open_write(self, location: str) -> Iterator[BinaryIO]:  # noqa: D102
        staged = self.stage(location)
        with staged.open() as file:
            yield file
        try:
            staged.publish()
        except BaseException:
            staged.discard()
            raise

    def stage(self, location: str) -> StagedFile:
        """A temporary file in the destination directory, renamed into place when published."""
        return _TempFile(self, check_location(location))

    def read(self, location: str) -> bytes | memoryview | None:  # noqa: D102
        try:
            fd, size = _open_regular(self._prefix + check_location(location), blocking=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            # A small file in one read: a short read of a regular file means EOF.
            data = os.read(fd, _FIRST_READ)
            if len(data) < _FIRST_READ:
                return data
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

    def open_read(self, location: str) -> BinaryIO | None:  # noqa: D102
        try:
            fd, _ = _open_regular(self._prefix + check_location(location))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return open(fd, "rb")

    def delete(self, location: str) -> None:  # noqa: D102
        *parts, base = check_location(location).split("/")
        try:
            directory = self._open_dir(parts, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return  # no such directory, so no such file
        try:
            os.unlink(base, dir_fd=directory)
        except FileNotFoundError:
            pass
        finally:
            os.close(directory)

    def locations(self) -> Iterator[str]:  # noqa: D102
        # os.walk lists a link to a directory but does not descend into it.
        for directory, dirs, files in os.walk(self.root):
            dirs.sort()
            relative = os.path.relpath(directory, self.root)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for name in sorted(files):
                if not is_temp(name):
                    yield prefix + name

    def _open_dir(self, parts: Sequence[str], *, create: bool) -> int:
        """A descriptor of the directory `parts` below the root, reached through no link."""
        if len(parts) == 1:
            # The common case (`ab/<key>`): one open does what opening the root, then the child
            # without following a link, does (the root's own path is followed either way).
            try:
                return os.open(self._prefix + parts[0], _DIR_FLAGS | _NOFOLLOW)
            except OSError:
                pass  # missing, or a link: the general way below creates or refuses it
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            makedirs_private(self.root)
            fd = os.open(self.root, _DIR_FLAGS)
        try:
            for depth, part in enumerate(parts):
                child = self._open_child(fd, part, parts[: depth + 1], create=create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child(self, parent: int, name: str, parts: Sequence[str], *, create: bool) -> int:
        try:
            try:
                return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, _DIR_MODE, dir_fd=parent)
                return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=parent)
        except OSError as exc:
            # A link opened with O_NOFOLLOW | O_DIRECTORY fails with ENOTDIR (or ELOOP).
            if exc.errno in (errno.ENOTDIR, errno.ELOOP) and stat.S_ISLNK(
                os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            ):
                raise OSError(
                    errno.ELOOP,
                    "refusing to go through a symbolic link inside the result storage "
                    "(it could lead outside the storage root)",
                    self._prefix + "/".join(parts),
                ) from None
            raise


class _TempFile(StagedFile):
    """A result file written under a temporary name beside its location (`.name.random.tstmp`).

    Renaming within one directory is atomic, so `publish` makes the whole file appear at once;
    a temporary file left by a killed process is removed by `taskstash verify --fix`.
    """

    def __init__(self, storage: LocalStorage, location: str) -> None:
        self.location = location
        self._storage = storage
        *self._parts, self._base = location.split("/")
        self._temp = temp_name(self._base)
        self._written = False
        self._identity: tuple[int, int] | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        directory = self._storage._open_dir(self._parts, create=True)
        try:
            fd = os.open(self._temp, _CREATE_FLAGS, _FILE_MODE, dir_fd=directory)
            status = os.fstat(fd)
            self._identity = (status.st_dev, status.st_ino)
            try:
                with open(fd, "wb", buffering=0) as file:
                    yield file
                    if self._storage.fsync:
                        os.fsync(fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temp, dir_fd=directory)
                raise
            self._written = True
        finally:
            os.close(directory)

    def publish(self) -> None:
        directory = self._storage._open_dir(self._parts, create=False)
        try:
            os.replace(self._temp, self._base, src_dir_fd=directory, dst_dir_fd=directory)
        finally:
            os.close(directory)
        self._written = False

    def in_place(self) -> bool | None:
        try:
            status = os.stat(self._storage._prefix + self.location, follow_symlinks=False)
        except OSError:
            return False  # gone (or its directory): not ours any more
        return (status.st_dev, status.st_ino) == self._identity

    def discard(self) -> None:
        if not self._written:
            return
        self._written = False
        try:
            directory = self._storage._open_dir(self._parts, create=False)
        except OSError:
            return  # its directory is gone, and the file with it
        try:
            os.unlink(self._temp, dir_fd=directory)
        except OSError:
            pass  # left for verify --fix, which removes stale temporary files
        finally:
            os.close(directory)


def _open_regular(path: str, *, blocking: bool = True) -> tuple[int, int]:
    """A descriptor of the regular file at `path`, and the file's size.

    Anyone who can write to the storage could leave a FIFO, a device or a socket at a result's
    path (or a link to one): opening a FIFO for reading waits for a writer, and reading a device
    may never end. So the file is opened without blocking and refused unless it is a regular
    file, before anything is read from it. The descriptor is made blocking again only if
    `blocking`: reads of a regular file never wait, so `os.read` on the hit path can skip the
    two system calls that takes; a file object handed to a serializer gets the usual flags.

    Raises:
        OSError: It cannot be opened, or is not a regular file (errno `EINVAL`).
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(
                errno.EINVAL,
                f"not a regular file ({_kind(status.st_mode)}); refusing to read it",
                path,
            )
        if _NONBLOCK and blocking:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, status.st_size


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "an unknown file type"


def _is_fsspec_filesystem(obj: object) -> bool:
    # Without fsspec imported, nothing can be one of its filesystems: no import needed to tell.
    module = sys.modules.get("fsspec")
    return module is not None and isinstance(obj, module.AbstractFileSystem)


def _from_url(
    url: str, options: Mapping[str, Any] | None = None, timeout: float | None = None
) -> ResultStorage:
    if url.startswith("file://"):
        from urllib.request import url2pathname

        return LocalStorage(url2pathname(url.removeprefix("file://").removeprefix("localhost")))
    try:
        import fsspec  # noqa: F401 (only to say what is missing)
    except ImportError:
        raise ImportError(
            f"result storage {url!r} needs fsspec (and the filesystem's own package, such as "
            "s3fs): pip install fsspec"
        ) from None
    from taskstash.store.fsspec_storage import FsspecStorage, filesystem_for_url

    return FsspecStorage(*filesystem_for_url(url, options or {}, timeout))


class StorageDefinition(Protocol):
    """A storage given by a URL and its filesystem's options (a named storage, an `S3Bucket`)."""

    @property
    def url(self) -> str:
        """The storage's URL (`s3://bucket/prefix`) or path."""
        ...

    def resolved_options(self) -> dict[str, Any]:
        """The filesystem's options (credentials among them)."""
        ...


_DEFINED: dict[tuple[str, str, float | None], ResultStorage] = {}


def _defined(definition: StorageDefinition, timeout: float | None) -> ResultStorage:
    """The storage `definition` describes, the same object for the same URL and options.

    An option `storage_timeout` is taskstash's own (`timeout` for this storage), not the
    filesystem's.
    """
    options = definition.resolved_options()
    timeout = options.pop("storage_timeout", timeout)
    cache_key = (definition.url, repr(sorted(options.items())), timeout)
    storage = _DEFINED.get(cache_key)
    if storage is None:
        url = definition.url
        storage = _from_url(url, options, timeout) if "://" in url else LocalStorage(url)
        with _RESOLVED_LOCK:
            storage = _DEFINED.setdefault(cache_key, storage)
    trust(storage)
    return storage


_RESOLVED: dict[tuple[str, str, float | None], ResultStorage] = {}
_RESOLVED_LOCK = threading.Lock()
_RESOLVED_FS: dict[Any, ResultStorage] = {}  # fsspec filesystems hash and compare by token


def resolve_storage(
    spec: str
    | os.PathLike[str]
    | fsspec.AbstractFileSystem
    | ResultStorage
    | StorageDefinition
    | None,
    default_root: str | os.PathLike[str],
    named: Mapping[str, StorageDefinition] | None = None,
    *,
    timeout: float | None = None,
) -> ResultStorage:
    """The storage for a task's `result_storage` option.

    Args:
        spec: None for `LocalStorage(default_root)`; a name of `named` for that storage; a
            `StorageDefinition` (such as `taskstash.aws.S3Bucket`) for the storage at its URL
            with its options; a path or `file://` URL for a
            `LocalStorage`; any other URL (`"s3://bucket/prefix"`, `"memory://x"`) for an
            `FsspecStorage` through `fsspec.core.url_to_fs`; an fsspec filesystem for
            `FsspecStorage(fs, "")`, results at the filesystem's own root (pass a
            `DirFileSystem`, or a URL, to put them under a prefix); a `ResultStorage` as is.
        default_root: The root used for None (the local storage setting).
        named: Storages by name (the settings file's); a string that is one of these names is
            that storage, not a path.
        timeout: Seconds an object store resolved from a URL or definition may take to
            answer (see `taskstash.store.fsspec_storage.with_timeouts`); None leaves the
            filesystem's own. A filesystem or `ResultStorage` given keeps its own.

    Returns:
        The storage; the same object for the same string, path or filesystem (a relative path is
        resolved against the working directory once, when first seen).

    Raises:
        ImportError: `spec` is a URL and fsspec is not installed.
        TypeError: `spec` is none of the above.
    """
    if isinstance(spec, ResultStorage):
        trust(spec)
        return spec
    if named and isinstance(spec, str) and spec in named:
        return _defined(named[spec], timeout)
    cache_key: tuple[str, str, float | None]
    if spec is None:
        cache_key = ("", os.fspath(default_root), None)
    elif isinstance(spec, str | os.PathLike):
        cache_key = (os.fspath(spec), "", timeout if "://" in os.fspath(spec) else None)
    elif _is_fsspec_filesystem(spec):
        storage = _RESOLVED_FS.get(spec)
        if storage is None:
            from taskstash.store.fsspec_storage import FsspecStorage

            storage = _RESOLVED_FS.setdefault(spec, FsspecStorage(spec, ""))
        trust(storage)
        return storage
    elif callable(getattr(spec, "resolved_options", None)):
        return _defined(cast(StorageDefinition, spec), timeout)
    else:
        raise TypeError(
            "result_storage must be a path, a URL, a storage name, an fsspec filesystem, a "
            f"ResultStorage or a storage definition (S3Bucket), not {type(spec).__name__}"
        )
    storage = _RESOLVED.get(cache_key)
    if storage is None:
        path = cache_key[0] or cache_key[1]
        storage = _from_url(path, timeout=timeout) if "://" in path else LocalStorage(path)
        with _RESOLVED_LOCK:
            storage = _RESOLVED.setdefault(cache_key, storage)
            # Trusted before another thread can find it here: rows naming it may be followed
            # as soon as any thread has resolved it.
            trust(storage)
    return storage


def storage_for_url(url: str) -> ResultStorage | None:
    """The storage this process configured under `url` (as stored in an index row), or None.

    Whoever can write the index can put any path or URL in a row, so a row is only ever
    followed into a storage this process resolved itself (a task's `result_storage`, the local
    storage setting, one given to `Cache` or `rebuild_index`) or wrote a result to; never into
    one built from the row.

    Args:
        url: A `ResultStorage.url`.

    Returns:
        That storage, or None.
    """
    return trusted_storage(url)


class UnknownStorageError(ValueError):
    """An index row names a storage this process was not configured with."""


def locate(
    url: str, location: str, given: ResultStorage | None = None
) -> tuple[ResultStorage, str]:
    """The storage and checked location of the file an index row names.

    Every read and delete of a file named by a row goes through here.

    Args:
        url: The row's `storage`.
        location: The row's `location`.
        given: A storage the caller was handed (a task's), used if `url` is its url.

    Returns:
        The storage (`given`, or one `storage_for_url` knows) and the normalised location.

    Raises:
        UnknownStorageError: `url` names no storage this process configured.
        ValueError: `location` is not a relative path inside a storage (`check_location`).
    """
    storage = given if given is not None and given.url == url else trusted_storage(url)
    if storage is None:
        raise UnknownStorageError(
            f"storage {url!r} was not configured in this process (a task's result_storage, "
            "TASKSTASH_LOCAL_STORAGE_PATH or a storage given to Cache); an index row may name "
            "only those, so the file is neither read nor deleted"
        )
    return storage, check_location(location)


_INDEX_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def is_index_file(storage: ResultStorage, location: str, index_path: str) -> bool:
    """Whether `location` in `storage` is the index file `index_path` or one of SQLite's files.

    An index kept inside a storage directory must never be taken for a result file: opening
    and closing it would drop this process's SQLite locks on it, and a repair would delete it.
    """
    if not isinstance(storage, LocalStorage):
        return False
    real = os.path.realpath(index_path)
    if location.rpartition("/")[2] not in {os.path.basename(real) + s for s in _INDEX_SUFFIXES}:
        return False  # the common case, answered without touching the filesystem
    return os.path.realpath(storage.path(location)) in {real + s for s in _INDEX_SUFFIXES}
