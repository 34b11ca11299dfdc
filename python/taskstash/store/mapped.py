"""Large results loaded by mapping their file: checked once per file per process, then mapped.

A hit on a large array or table (a payload in a format of `taskstash.store.formats`) maps the
result file read-only and builds the value over the mapping: nothing is read until it is
touched, and memory grows by what is touched.

A file is mapped only if nobody but this user (and root) can change it: a local regular file,
owned by this process's user, writable by no group or other user. Anything else (another
owner, a shared directory's file, a remote object) is read and checked whole, as a copy
(`taskstash.store.streams.open_verified`).

The payload of a file is checked against its checksum (and signature) the first time a process
maps it, by reading it in chunks, and the check is remembered for the file's identity:
(device, inode, size, modification time, change time), in nanoseconds. A later hit on the same
identity skips the reading: in this process (a map of checks), and in any other process using
the index, which keeps the identity in the record's `verified` column. This is sound because
result files never change once in place: taskstash writes a file aside and renames it, so a
replacement is another inode (and a replaced record's `verified` is cleared); a change in place
(by this user: nobody else may write the file) moves its change time, which no one but root can
set back. A check is remembered only once the file's change time is `SETTLED_SECONDS` old, so
that a change within the timestamps' granularity cannot keep the same identity. With a signing
key, the `verified` text carries a MAC of the identity, the key and the checksum: whoever can
write the index but lacks the key cannot vouch for a file.
"""

from __future__ import annotations

import hmac
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
    recorded: str | None = None,
) -> tuple[memoryview, str | None] | None:
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
        recorded: The record's `verified` text, if a process checked the file before.

    Returns:
        A read-only view of the payload in the mapped file, and the `verified` text to record
        if the file was checked now (else None); or None if the file is not a local file that
        only this user can change (read it with `open_verified` instead).

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
        to_record = None
        if checked is None and recorded is not None:
            checked = _recorded_check(recorded, identity, key, checksum, signing_key)
            if checked is not None:
                verified.add(identity, checked)
        if checked is None:
            checked = _check(file, signing_key)
            if time.time() - status.st_ctime_ns / 1e9 > SETTLED_SECONDS:
                verified.add(identity, checked)
                if checked.key == key:
                    to_record = _verified_text(identity, checked, checksum, signing_key)
        # A signed file answers only the key its (signed) header names; an unsigned one may
        # also answer for a key whose row records its checksum: the same payload.
        if checked.key != key and (signing_key is not None or checked.checksum != checksum):
            raise Refused(f"holds the result of another key ({checked.key})")
        if status.st_size == checked.offset:
            return memoryview(b""), to_record  # mmap refuses an empty payload: nothing to map
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapping)[checked.offset :], to_record


def _verified_text(
    identity: _Identity, checked: _Checked, checksum: str, signing_key: bytes | None
) -> str:
    """The record's `verified` text: `dev:ino:size:mtime_ns:ctime_ns:offset[:mac]`."""
    text = ":".join(map(str, (*identity, checked.offset)))
    if signing_key is None:
        return text
    return f"{text}:{_vouch(signing_key, text, checked.key, checksum)}"


def _recorded_check(
    recorded: str, identity: _Identity, key: str, checksum: str, signing_key: bytes | None
) -> _Checked | None:
    """What a recorded check proves of the file with `identity`, if it is of this very file."""
    fields = recorded.split(":")
    if len(fields) != (7 if signing_key is not None else 6):
        return None  # recorded without a signing key, or with one: check again
    try:
        numbers = tuple(int(field) for field in fields[:6])
    except ValueError:
        return None
    if numbers[:5] != identity:
        return None
    if signing_key is not None:
        text = ":".join(fields[:6])
        if not hmac.compare_digest(fields[6], _vouch(signing_key, text, key, checksum)):
            return None
    return _Checked(key, checksum, numbers[5])


def _vouch(signing_key: bytes, text: str, key: str, checksum: str) -> str:
    message = f"taskstash-verified\0{key}\0{checksum}\0{text}".encode()
    return hmac.new(signing_key, message, "sha256").hexdigest()


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
        unsigned, expected = signature
        if not hmac.compare_digest(finish(mac, unsigned, header["payload_size"]), expected):
            raise Refused(UNSIGNED)
    return _Checked(header["key"], header["checksum"], offset)
