"""Result files on any fsspec filesystem: S3, GCS, Azure, memory, SFTP...

This module does not import fsspec: it is handed filesystems that the caller (or
`resolve_storage`, from a URL) made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from taskstash.store.base import (
    Chunks,
    ResultStorage,
    as_views,
    check_location,
    is_temp,
    temp_name,
)

if TYPE_CHECKING:
    import fsspec

__all__ = ["FsspecStorage"]

# Object stores make a single PUT visible atomically, and have no cheap rename: write in place.
_OBJECT_STORES: Final = frozenset(
    {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss", "r2", "b2", "tos"}
)
_SLICE: Final = 8 << 20
_SPOOL_IN_MEMORY: Final = 8 << 20


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class FsspecStorage(ResultStorage):
    """Result files on any fsspec filesystem (S3, GCS, Azure, memory, SFTP...).

    On object stores (`s3`, `gs`, `abfs`...) a file is uploaded in place: a PUT becomes visible
    whole or not at all, and they have no atomic rename. Elsewhere it is written to a temporary
    name in the destination directory, then moved into place.

    Args:
        fs: The filesystem.
        root: The root path on `fs`, with or without protocol (`"bucket/prefix"`,
            `"s3://bucket/prefix"`). `""` uses the filesystem's own namespace, which is what a
            `DirFileSystem` (a filesystem rooted at a prefix) wants.
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

    def path(self, location: str) -> str:
        """The path of `location` on the filesystem."""
        location = check_location(location)
        return f"{self.root}/{location}" if self.root else location

    def write(self, location: str, data: Chunks) -> None:  # noqa: D102
        views = as_views(data)

        def put(file: Any) -> None:
            for view in views:
                # In slices: a buffered remote file would otherwise copy a whole large view.
                for start in range(0, view.nbytes, _SLICE):
                    file.write(view[start : start + _SLICE])

        self._put(self.path(location), put)

    @contextlib.contextmanager
    def open_write(self, location: str) -> Iterator[BinaryIO]:  # noqa: D102
        import shutil
        import tempfile

        path = self.path(location)
        # Spooled locally (in memory while small), then uploaded in one go: an upload cannot
        # seek back, and a half-uploaded file must never be visible.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            yield cast(BinaryIO, spool)
            spool.seek(0)
            self._put(path, lambda file: shutil.copyfileobj(spool, file, _SLICE))

    def _put(self, path: str, fill: Callable[[Any], None]) -> None:
        """Writes the file at `path` atomically, its bytes written to an open file by `fill`."""
        if self._in_place:
            with self.fs.open(path, "wb") as file:
                fill(file)
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
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(temp)
            raise

    def read(self, location: str) -> bytes | memoryview | None:  # noqa: D102
        try:
            data: bytes = self.fs.cat_file(self.path(location))
        except FileNotFoundError:
            return None
        return data

    def open_read(self, location: str) -> BinaryIO | None:  # noqa: D102
        try:
            file: BinaryIO = self.fs.open(self.path(location), "rb")
        except FileNotFoundError:
            return None
        return file

    def delete(self, location: str) -> None:  # noqa: D102
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(location))

    def locations(self) -> Iterator[str]:  # noqa: D102
        try:
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
