"""Result files on any fsspec filesystem: S3, GCS, Azure, memory, SFTP...

This module does not import fsspec: it is handed filesystems that the caller (or
`resolve_storage`, from a URL) made.

A server that is down, refuses connections or does not answer in time must cost a task call a
bounded wait, not one per request: a request that fails so raises `StorageUnreachableError`, and
the storage is then not asked again for `RETRY_AFTER_SECONDS` (its requests fail at once, with
the same error). How long one request may take is the filesystem's business; for S3 URLs that
taskstash resolves, `with_timeouts` sets it from `TASKSTASH_STORAGE_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from taskstash.store.base import (
    Chunks,
    ResultStorage,
    StorageUnreachableError,
    as_views,
    check_location,
    is_temp,
    temp_name,
)

if TYPE_CHECKING:
    import fsspec

__all__ = [
    "RETRY_AFTER_SECONDS",
    "FsspecStorage",
    "filesystem_for_url",
    "is_unreachable",
    "with_timeouts",
]

RETRY_AFTER_SECONDS: Final = 30.0
"""How long a storage whose server could not be reached is not asked again."""

# Object stores make an object visible whole or not at all (a single PUT, or a multipart upload
# once completed), and have no cheap rename: objects are written in place.
_OBJECT_STORES: Final = frozenset(
    {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss", "r2", "b2", "tos"}
)
_S3: Final = frozenset({"s3", "s3a"})
# Filesystems whose files stay on this machine: never shared with another.
_LOCAL: Final = frozenset({"file", "local", "memory"})
# Errors of the network, by the module and name of a class the exception is an instance of:
# matched by name so that neither botocore nor aiohttp need be imported to recognise theirs.
_NETWORK_ERRORS: Final = frozenset(
    {
        ("botocore.exceptions", "ConnectionError"),  # connecting failed, or timed out
        ("botocore.exceptions", "HTTPClientError"),  # a read timed out, a connection closed
        ("aiohttp.client_exceptions", "ClientConnectionError"),
        ("aiohttp.client_exceptions", "ClientPayloadError"),
    }
)
_SLICE: Final = 8 << 20
_SPOOL_IN_MEMORY: Final = 8 << 20
# Objects up to this size go up in a single request; larger ones as a multipart upload.
_ONE_REQUEST: Final = _SPOOL_IN_MEMORY


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) says the server could not be reached.

    Refused or dropped connections and timeouts are; an answer from the server (no such
    object, access denied) is not.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # an exception's chain of causes, not a cycle
        if seen is None:
            return False
        if isinstance(seen, ConnectionError | TimeoutError):  # asyncio's and fsspec's too
            return True
        if any((c.__module__, c.__name__) in _NETWORK_ERRORS for c in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def with_timeouts(url: str, options: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
    """The filesystem options of `url` with timeouts of `timeout` seconds, where none is given.

    For S3 (s3fs, through aiobotocore), botocore's `connect_timeout` and `read_timeout` of
    `timeout` and two attempts in its "standard" retry mode (a connection the server dropped
    is tried again once), in `config_kwargs`; the same keys given there win. Other
    filesystems are left to their own options.
    """
    merged = dict(options)
    if timeout is None or url.partition("://")[0] not in _S3:
        return merged
    config = dict(merged.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"mode": "standard", "total_max_attempts": 2})
    merged["config_kwargs"] = config
    return merged


def filesystem_for_url(
    url: str, options: Mapping[str, Any], timeout: float | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root of `url`, with `with_timeouts(url, options, timeout)`.

    s3fs tries a request that timed out again, five times, on top of botocore's attempts;
    with a timeout set, it tries once, so that a request gives up after at most about twice
    `timeout` without an answer.
    """
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(url, **with_timeouts(url, options, timeout))
    if timeout is not None and not _S3.isdisjoint(_protocols(fs)):
        fs.retries = 1
    return fs, root


class FsspecStorage(ResultStorage):
    """Result files on any fsspec filesystem (S3, GCS, Azure, memory, SFTP...).

    On object stores (`s3`, `gs`, `abfs`...), which have no atomic rename, an object is uploaded
    in place and all or nothing: up to 8 MiB in a single request (a PUT is published whole or
    not at all), larger ones as a multipart upload that is completed only once every part is
    sent, and aborted otherwise (an exception, a lost connection, Ctrl-C). Elsewhere a file is
    written to a temporary name in the destination directory, then moved into place.

    A request that fails for want of an answer (see `is_unreachable`) raises
    `StorageUnreachableError`, and so does every request of the next `retry_after` seconds,
    without asking the server.

    Args:
        fs: The filesystem.
        root: The root path on `fs`, with or without protocol (`"bucket/prefix"`,
            `"s3://bucket/prefix"`). `""` uses the filesystem's own namespace, which is what a
            `DirFileSystem` (a filesystem rooted at a prefix) wants.

    Attributes:
        retry_after: Seconds during which a storage that could not be reached is not asked
            again (`RETRY_AFTER_SECONDS`).
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = fs._strip_protocol(root).rstrip("/") if root else ""
        inner = getattr(fs, "fs", None)
        if "dir" in _protocols(fs) and inner is not None:  # DirFileSystem: identify its target
            target = "/".join(p for p in (fs.path.rstrip("/"), self.root) if p)
            self.url = inner.unstrip_protocol(target)
        else:
            self.url = fs.unstrip_protocol(self.root)
        self._in_place = not _OBJECT_STORES.isdisjoint(_protocols(fs))
        underlying = inner if "dir" in _protocols(fs) and inner is not None else fs
        self.shared = _LOCAL.isdisjoint(_protocols(underlying))
        self.retry_after = RETRY_AFTER_SECONDS
        self._down_at: float | None = None
        self._down_because = ""
        # s3fs asks for an object's size (a HEAD) before reading it unless told to read it in
        # one GET: a hit costs one request, a miss one small one.
        self._cat_options = {"max_concurrency": 1} if _S3.intersection(_protocols(fs)) else {}

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Turns a failure to reach the server into `StorageUnreachableError`, remembered.

        Raises:
            StorageUnreachableError: The server could not be reached, now or less than
                `retry_after` seconds ago.
        """
        down_at = self._down_at
        if down_at is not None and time.monotonic() < down_at + self.retry_after:
            raise StorageUnreachableError(self.url, self._down_because)
        try:
            yield
        except StorageUnreachableError:
            raise
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            problem = f"{type(exc).__name__}: {exc}"
            self._down_at = time.monotonic()
            self._down_because = f"{problem}; not asked again for {self.retry_after:g} s"
            raise StorageUnreachableError(self.url, problem) from exc

    def path(self, location: str) -> str:
        """The path of `location` on the filesystem."""
        location = check_location(location)
        return f"{self.root}/{location}" if self.root else location

    def write(self, location: str, data: Chunks) -> None:  # noqa: D102
        views = as_views(data)
        path = self.path(location)
        if self._in_place and sum(view.nbytes for view in views) <= _ONE_REQUEST:
            with self._reaching():
                self.fs.pipe_file(path, b"".join(views))
            return

        def put(file: Any) -> None:
            for view in views:
                # In slices: a buffered remote file would otherwise copy a whole large view.
                for start in range(0, view.nbytes, _SLICE):
                    file.write(view[start : start + _SLICE])

        self._put(path, put)

    @contextlib.contextmanager
    def open_write(self, location: str) -> Iterator[BinaryIO]:  # noqa: D102
        import shutil
        import tempfile

        path = self.path(location)
        # Spooled locally (in memory while small), then uploaded in one go: an upload cannot
        # seek back, and a half-written file must never be visible.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            yield cast(BinaryIO, spool)
            size = spool.tell()
            spool.seek(0)
            if self._in_place and size <= _ONE_REQUEST:
                with self._reaching():
                    self.fs.pipe_file(path, spool.read())
            else:
                self._put(path, lambda file: shutil.copyfileobj(spool, file, _SLICE))

    def _put(self, path: str, fill: Callable[[Any], None]) -> None:
        """Writes the file at `path` atomically, its bytes written to an open file by `fill`."""
        with self._reaching():
            if self._in_place:
                self._upload(path, fill)
                return
            parent, _, base = path.rpartition("/")
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            temp = f"{parent}/{temp_name(base)}" if parent else temp_name(base)
            try:
                with self.fs.open(temp, "wb") as file:
                    fill(file)
                self.fs.mv(temp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(temp)
                raise

    def _upload(self, path: str, fill: Callable[[Any], None]) -> None:
        """Uploads a large object in parts that become visible together, or not at all.

        `with fs.open(path, "wb")` must not be used: on an exception its exit still closes the
        file, and closing completes the upload with the parts sent so far, publishing a
        truncated object. Opened without `autocommit`, closing sends the last part but publishes
        nothing; `commit()` completes the upload (S3's CompleteMultipartUpload), and on any
        failure `discard()` aborts it.
        """
        file = self.fs.open(path, "wb", autocommit=False)
        try:
            fill(file)
            file.close()
            file.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                file.discard()
            file.closed = True  # so that no later close() (the finalizer's) completes it
            raise

    def read(self, location: str) -> bytes | memoryview | None:  # noqa: D102
        try:
            with self._reaching():
                data: bytes = self.fs.cat_file(self.path(location), **self._cat_options)
        except FileNotFoundError:
            return None
        return data

    def open_read(self, location: str) -> BinaryIO | None:  # noqa: D102
        try:
            with self._reaching():
                file: BinaryIO = self.fs.open(self.path(location), "rb")
        except FileNotFoundError:
            return None
        return file

    def delete(self, location: str) -> None:  # noqa: D102
        with contextlib.suppress(FileNotFoundError), self._reaching():
            self.fs.rm_file(self.path(location))

    def locations(self) -> Iterator[str]:  # noqa: D102
        try:
            with self._reaching():
                found = self.fs.find(self.root or self.fs.root_marker or "", withdirs=False)
        except FileNotFoundError:
            return
        strip = self.fs._strip_protocol
        prefix = self.root + "/" if self.root else ""
        for full in sorted(found):
            path = strip(full)
            if prefix:
                if not path.startswith(prefix):
                    continue
                path = path[len(prefix) :]
            path = path.lstrip("/")
            if path and not is_temp(path.rpartition("/")[2]):
                yield path
