"""Large results loaded by mapping their file: checked once per file per process, then mapped.

A hit on a large array or table (a payload in a format of `taskstash.store.formats`) maps the
result file read-only and builds the value over the mapping: nothing is read until it is
touched, and memory grows by what is touched.

A file is mapped only if nobody but this user (and root) can change it: a local regular file,
owned by this process's user, writable by no group or other user. Anything else (another
owner, a shared directory's file, a remote object) is read and checked whole, as a copy
(`taskstash.store.streams.open_verified`).

The payload of a file is checked against its checksum (and signature) the first time this
process maps it, by reading it in chunks, and the check is remembered for the file's identity:
(device, inode, size, modification time, change time), in nanoseconds. A later hit on the same
identity skips the reading. This is sound because result files never change once in place:
taskstash writes a file aside and renames it, so a replacement is another inode; a change in
place (by this user: nobody else may write the file) moves its change time, which no one but
root can set back. A check is remembered only once the file's change time is `SETTLED_SECONDS`
old, so that a change within the timestamps' granularity cannot keep the same identity.
"""

from __future__ import annotations

import io
import mmap
import os
import stat
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple, cast

from taskstash.exceptions import CorruptResultError
from taskstash.hashing import Hasher
from taskstash.store.results import read_header
from taskstash.store.signing import finish, new_mac, split_signature
from taskstash.store.streams import UNSIGNED, Refused

if TYPE_CHECKING:
    from taskstash.store.base import ResultStorage

__all__ = ["SETTLED_SECONDS", "VerifiedFiles", "map_verified"]

SETTLED_SECONDS: Final = 2.0
"""How old a file's change time must be for its check to be remembered: coarser than any local
filesystem's timestamps (FAT's are 2 s)."""

_CHUNK: Final = 8 << 20
_MAX_REMEMBERED: Final = 4096


class _Checked(NamedTuple):
    """What a check of one file proved: its header's key and checksum, where its payload is."""

    key: str
    checksum: str
    offset: int


_Identity = tuple[int, int, int, int, int]


class VerifiedFiles:
    """The files this process has checked, by identity (a bounded, thread-safe LRU map)."""

    def __init__(self) -> None:
        self._checked: OrderedDict[_Identity, _Checked] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, identity: _Identity) -> _Checked | None:
        """What was proved of the file with this identity, if it was checked."""
        with self._lock:
            found = self._checked.get(identity)
            if found is not None:
                self._checked.move_to_end(identity)
            return found

    def add(self, identity: _Identity, checked: _Checked) -> None:
        """Remembers a check."""
        with self._lock:
            self._checked[identity] = checked
            while len(self._checked) > _MAX_REMEMBERED:
                self._checked.popitem(last=False)


def map_verified(
    storage: ResultStorage,
    location: str,
    *,
    key: str,
    checksum: str,
    signing_key: bytes | None,
    verified: VerifiedFiles,
) -> memoryview | None:
    """The checked payload of a result file, mapped read-only; None if it may not be mapped.

    The file must answer for `key` as in `open_verified`: its payload matches `checksum` (the
    index's) or its header names `key`; with a signing key, it is signed and names `key`.

    Args:
        storage: Where the file is.
        location: Its location.
        key: The record's key.
        checksum: The record's checksum.
        signing_key: The key the file must be signed with, or None.
        verified: The checks this process remembers.

    Returns:
        A read-only view of the payload in the mapped file, or None if the file is not a local
        file that only this user can change (read it with `open_verified` instead).

    Raises:
        Refused: The file is missing, holds another key's result, or is not signed.
        CorruptResultError: The file is damaged.
        OSError: It cannot be read.
    """
    file = storage.open_read(location)
    if file is None:
        raise Refused("is missing")
    with file:
        try:
            status = os.fstat(file.fileno())
        except (AttributeError, OSError, ValueError):
            return None  # not a local file
        if not _private(status):
            return None
        identity = (
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        checked = verified.get(identity)
        if checked is None:
            checked = _check(file, signing_key)
            if time.time() - status.st_ctime_ns / 1e9 > SETTLED_SECONDS:
                verified.add(identity, checked)
        # A signed file answers only the key its (signed) header names; an unsigned one may
        # also answer for a key whose row records its checksum: the same payload.
        if checked.key != key and (signing_key is not None or checked.checksum != checksum):
            raise Refused(f"holds the result of another key ({checked.key})")
        if status.st_size == checked.offset:
            return memoryview(b"")  # mmap refuses an empty file's payload: nothing to map
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapping)[checked.offset :]


def _private(status: os.stat_result) -> bool:
    """Whether nobody but this user (and root) can change the file."""
    geteuid = getattr(os, "geteuid", None)
    return (
        stat.S_ISREG(status.st_mode)
        and geteuid is not None
        and status.st_uid == geteuid()
        and not status.st_mode & 0o022
    )


def _check(file: BinaryIO, signing_key: bytes | None) -> _Checked:
    """Reads a result file in chunks and checks its payload's checksum and signature.

    Raises:
        Refused: A signing key is given and the file is not signed with it.
        CorruptResultError: The file is damaged.
    """
    header, region = read_header(file)
    offset = file.tell()
    signature = None if signing_key is None else split_signature(region)
    if signing_key is not None and signature is None:
        raise Refused(UNSIGNED)
    hasher = Hasher()
    mac = None if signing_key is None else new_mac(signing_key)
    reader = cast(io.BufferedReader, file)  # what `open_read` returns for a local file
    buffer = bytearray(min(_CHUNK, header["payload_size"]))
    view = memoryview(buffer)
    remaining: int = header["payload_size"]
    while remaining:
        got = reader.readinto(view[: min(_CHUNK, remaining)])
        if not got:
            raise CorruptResultError("result file truncated while it was read")
        hasher.update(view[:got])
        if mac is not None:
            mac.update(view[:got])
        remaining -= got
    if hasher.hexdigest() != header["checksum"]:
        raise CorruptResultError("result payload does not match its checksum")
    if mac is not None and signature is not None:
        import hmac

        unsigned, expected = signature
        if not hmac.compare_digest(finish(mac, unsigned, header["payload_size"]), expected):
            raise Refused(UNSIGNED)
    return _Checked(header["key"], header["checksum"], offset)
