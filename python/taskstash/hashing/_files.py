"""`pathlib.Path` arguments keyed by what they name: a file's content, a directory's tree.

A pipeline whose input file was regenerated at the same path must not get the old result, nor a
second project with the same relative path the first one's. So a concrete `Path` is keyed by
the path as given and:

- a regular file: the XXH3-128 digest of its content, read in chunks (remembered per device,
  inode, size, modification and change time, so an unchanged file is read once per process);
- a directory: the sorted relative paths of the files below it and their digests (links to
  directories are not followed);
- a path that does not exist: its absence;
- anything else (a FIFO, a device, a socket): its kind, never opened (opening a FIFO waits).

A `PurePath` (no filesystem behind it) and a `str` stay keyed by their text: pass one of those,
or exclude the argument (`INPUTS - "path"`), to key a path by its name only.
"""

from __future__ import annotations

import os
import pathlib
import stat
import threading
import time
from collections import OrderedDict
from typing import Final

from taskstash._native import Hasher

__all__ = ["path_reduction"]

_CHUNK: Final = 8 << 20
# A digest is remembered only once the file has been left alone this long: a change within the
# filesystem's timestamp granularity could otherwise keep the same identity and a stale digest.
_SETTLED_SECONDS: Final = 2.0
_REMEMBERED: Final = 4096

_digests: OrderedDict[tuple[int, int, int, int, int], str] = OrderedDict()
_digests_lock = threading.Lock()


def path_reduction(path: pathlib.Path) -> object:
    """What a concrete `Path` argument is keyed by (see the module's documentation)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return ("missing", str(path))
    except OSError as exc:  # not readable: keyed by what can be said of it
        return ("unreadable", str(path), type(exc).__name__)
    if stat.S_ISREG(status.st_mode):
        return ("file", str(path), _file_digest(path, status))
    if stat.S_ISDIR(status.st_mode):
        return ("directory", str(path), _tree(path))
    return ("special", str(path), stat.S_IFMT(status.st_mode))


def _tree(root: pathlib.Path) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            try:
                status = os.stat(full)
            except OSError:
                continue  # removed meanwhile, or a dangling link
            if stat.S_ISREG(status.st_mode):
                entries.append((relative, _file_digest(pathlib.Path(full), status)))
    return entries


def _file_digest(path: pathlib.Path, status: os.stat_result) -> str:
    identity = (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )
    with _digests_lock:
        known = _digests.get(identity)
        if known is not None:
            _digests.move_to_end(identity)
            return known
    hasher = Hasher()
    # Without blocking, and checked again on the descriptor: the path may have been replaced by
    # a FIFO since it was looked at, and opening one for reading waits for a writer.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file"
        while chunk := os.read(fd, _CHUNK):
            hasher.update(chunk)
    finally:
        os.close(fd)
    digest = hasher.hexdigest()
    if time.time() - status.st_ctime_ns / 1e9 > _SETTLED_SECONDS:
        with _digests_lock:
            _digests[identity] = digest
            while len(_digests) > _REMEMBERED:
                _digests.popitem(last=False)
    return digest
