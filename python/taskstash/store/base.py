"""What every result storage shares: locations, temporary names, and the `ResultStorage` ABC.

A location is a relative, "/"-separated path under the storage's root: `default_location(key)`
(`"ab/abcdef..."`, sharded by the key's first two hex digits so that no directory holds
millions of files) or a task's rendered `result_storage_key` (checked by `check_location`).
Concrete storages live in `taskstash.store.storages` (local directories) and
`taskstash.store.fsspec_storage` (any fsspec filesystem).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Final, TypeAlias, cast

__all__ = [
    "Buffer",
    "Chunks",
    "ResultStorage",
    "StagedFile",
    "StorageUnreachableError",
    "WouldBlock",
    "as_views",
    "check_location",
    "default_location",
    "is_temp",
    "makedirs_private",
    "temp_name",
    "trust",
    "trusted_storage",
    "write_all",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
Chunks: TypeAlias = Buffer | Sequence[Buffer]
"""What `ResultStorage.write` takes: one buffer, or buffers written one after the other."""

_TEMP_SUFFIX: Final = ".tstmp"
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_SPOOL_IN_MEMORY: Final = 8 << 20
# Locations that need no normalising: segments of [A-Za-z0-9_.-] not starting with a dot.
_PLAIN_LOCATION: Final = re.compile(r"(?:[\w-][\w.-]*/)*[\w-][\w.-]*", re.ASCII)


def default_location(key: str) -> str:
    """The location of a key's result file when the task names none: `"ab/abcdef..."`."""
    return f"{key[:2]}/{key}"


def is_temp(name: str) -> bool:
    """Whether a file name is a writer's temporary file (`.<name>.<random>.tstmp`)."""
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def temp_name(base: str) -> str:
    """A fresh temporary file name for a file to be renamed to `base` once written."""
    # Unique per writer; the base (shortened to keep under NAME_MAX) helps a human who finds one.
    return f".{base[:180]}.{os.urandom(8).hex()}{_TEMP_SUFFIX}"


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


def write_all(file: BinaryIO, view: memoryview) -> None:
    """Writes all of `view` to `file`, which may be raw (writing less than asked at a time)."""
    while view:  # Linux writes at most ~2 GiB per call
        view = view[file.write(view) :]


def as_views(data: Chunks) -> list[memoryview]:
    """The chunks of `data` as flat byte views, without copying."""
    if isinstance(data, bytes | bytearray | memoryview):
        data = [data]
    return [memoryview(chunk).cast("B") for chunk in data]


# The storages this process configured or wrote to, by url: the only ones an index row may name.
# Whoever can write the index can put any path or URL in a row; following it would let them
# read or delete files anywhere this process can. Kept for the life of the process (a few
# small objects), so that a record stays reachable after the task that wrote it is gone.
_TRUSTED: dict[str, ResultStorage] = {}


def trust(storage: ResultStorage) -> None:
    """Lets index rows name `storage` (by its url); the first storage trusted for a url stays."""
    _TRUSTED.setdefault(storage.url, storage)


def trusted_storage(url: str) -> ResultStorage | None:
    """The storage trusted under `url` (see `trust`), if any."""
    return _TRUSTED.get(url)


class StorageUnreachableError(OSError):
    """A storage could not be asked (a server down, refusing or slower than its timeouts).

    Args:
        url: The storage.
        problem: What went wrong.

    Attributes:
        url: The storage.
    """

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(problem)
        self.url = url


class WouldBlock(Exception):
    """A lookup asked to stay short (`read_limit`) stopped before a long read.

    Raised before reading a result file larger than the limit, or any file of a remote storage,
    or asking a remote index: for a caller on an event loop, which looks again in a worker
    thread.
    """


class ResultStorage(ABC):
    """A place for result files, addressed by relative locations.

    Attributes:
        url: Canonical identity of the root, stored in each index row (an absolute path for a
            local directory, an fsspec URL such as `"s3://bucket/prefix"` otherwise).
        shared: Whether other machines may use its files (an object store): removing records
            from an index then leaves their files alone unless asked to delete them.
    """

    url: str
    shared: bool = False

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
        """Deletes the file at `location` (a link itself, never what it points to).

        A missing file is not an error.
        """

    @abstractmethod
    def locations(self) -> Iterator[str]:
        """Every result file's location (temporary files skipped), for verify and reindex."""

    def open_read(self, location: str) -> BinaryIO | None:
        """The file at `location`, open for binary reading (seekable), or None if there is none.

        Large results are read through this, in chunks. This default reads the whole file into
        memory; a storage that can open its files should override it.
        """
        data = self.read(location)
        return None if data is None else io.BytesIO(data)

    @contextlib.contextmanager
    def open_write(self, location: str) -> Iterator[BinaryIO]:
        """A seekable binary file that replaces the file at `location` when the block ends.

        The replacement is atomic, as with `write`; if the block raises, nothing is written and
        no temporary file remains. This default collects the bytes in memory and passes them to
        `write`; a storage that can write its files in place should override it.

        Args:
            location: Where, relative to the root.

        Yields:
            The file to write.
        """
        buffer = io.BytesIO()
        yield buffer
        with buffer.getbuffer() as view:
            self.write(location, view)

    def stage(self, location: str) -> StagedFile:
        """A file for `location` to be written now and put in place later, or thrown away.

        What a transaction writes: its files must all appear when it commits, none before. This
        default spools the bytes to a local temporary file and writes them with `open_write`
        when published; a storage that can rename its files should override it.

        Args:
            location: Where the file will go, relative to the root.
        """
        return _SpooledFile(self, check_location(location))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class StagedFile(ABC):
    """A result file written aside (see `ResultStorage.stage`), then published or discarded.

    Attributes:
        location: Where `publish` puts it.
    """

    location: str

    @abstractmethod
    def open(self) -> contextlib.AbstractContextManager[BinaryIO]:
        """The file to write once, seekable; if the block raises, nothing is left behind."""

    @abstractmethod
    def publish(self) -> None:
        """Puts the written file at its location, atomically replacing any file there.

        Raises:
            OSError: It could not be put there (the staged file may have been removed by a
                repair, see `taskstash.store.verify`); nothing changed at the location.
        """

    @abstractmethod
    def discard(self) -> None:
        """Throws the written file away; nothing is left behind. Errors are not raised."""

    def in_place(self) -> bool | None:
        """After `publish`: whether the file at the location is still this one (None: unknown).

        A storage that can tell (a local file's device and inode) spares the caller reading the
        file back to learn what is there.
        """
        return None


class _SpooledFile(StagedFile):
    def __init__(self, storage: ResultStorage, location: str) -> None:
        self.location = location
        self._storage = storage
        self._spool: BinaryIO | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        import tempfile

        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        try:
            yield cast(BinaryIO, spool)
        except BaseException:
            spool.close()
            raise
        self._spool = cast(BinaryIO, spool)

    def publish(self) -> None:
        import shutil

        assert self._spool is not None, "publish() before the file was written"
        self._spool.seek(0)
        with self._storage.open_write(self.location) as file:
            shutil.copyfileobj(self._spool, file, _SPOOL_IN_MEMORY)
        self.discard()

    def discard(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


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
