"""Results too large to hold twice in memory: streamed into their file, checked in chunks.

Writing: the serializer writes the payload straight into the result file through a
`PayloadSink`, which hashes (and signs) it on the way; the header, reserved ahead of the payload,
is filled in last. pickle's protocol 5 hands a large buffer (a numpy array's data) to the sink
as one view of the array's own memory, so nothing is copied.

Reading: the payload is read once in chunks to check its checksum (and signature), and the
caller then deserializes from the file with the serializer's `load`, which for pickle reads a
large buffer straight into the new object. So a 1 GiB array costs about 1 GiB to store and to
load, not 2.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO, Final, cast

from taskstash.exceptions import CorruptResultError, ResultTooLargeError
from taskstash.hashing import Hasher
from taskstash.store.base import ResultStorage, write_all
from taskstash.store.results import (
    MAX_PAYLOAD_SIZE,
    PREFIX_SIZE,
    ResultHeader,
    frame_prefix,
    header_json,
    read_header,
)
from taskstash.store.signing import (
    SIGNATURE_SIZE,
    add_signature,
    finish,
    new_mac,
    split_signature,
)

if TYPE_CHECKING:
    import hmac

__all__ = [
    "PAYLOAD_ALIGNMENT",
    "UNSIGNED",
    "CopyingSink",
    "PayloadSink",
    "Refused",
    "open_verified",
    "write_streamed",
]

_CHUNK: Final = 8 << 20
PAYLOAD_ALIGNMENT: Final = 64
"""Where in a streamed result file its payload starts: at a multiple of this many bytes."""


class Refused(Exception):
    """An intact result file that must not be loaded; the message says why."""


class PayloadSink:
    """The file a serializer writes a payload to: passed on to the result file, hashed on the way.

    Args:
        file: The result file, positioned where the payload starts.
        mac: The signature being computed, or None.
        max_size: The largest result file to allow (see `write`), or None for no limit.
        offset: Bytes of the result file ahead of the payload.

    Attributes:
        size: Bytes written so far.
        failure: The error that stopped the writing, if any: the result file's own, or
            `ResultTooLargeError` (a serializer may wrap it in its own error; the store
            reports this one).
    """

    def __init__(
        self,
        file: BinaryIO,
        mac: hmac.HMAC | None,
        max_size: int | None = None,
        offset: int = 0,
    ) -> None:
        self.size = 0
        self.failure: OSError | ResultTooLargeError | None = None
        self._file = file
        self._hasher = Hasher()
        self._mac = mac
        self._max_size = max_size
        self._offset = offset

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Writes `data` (any C-contiguous buffer, not copied) to the result file.

        Raises:
            ResultTooLargeError: The file would pass `max_size`; nothing more is written.
            OSError: The result file could not be written.
        """
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if self._max_size is not None:
            wanted = self._offset + self.size + view.nbytes
            if wanted > self._max_size:
                self.failure = ResultTooLargeError(wanted, self._max_size)
                raise self.failure
        self._hasher.update(view)
        if self._mac is not None:
            self._mac.update(view)
        try:
            write_all(self._file, view)
        except OSError as exc:
            self.failure = exc
            raise
        self.size += view.nbytes
        return view.nbytes

    def checksum(self) -> str:
        """XXH3-128 hex of everything written."""
        return self._hasher.hexdigest()


class CopyingSink:
    """Passes a payload on to its sink and keeps a copy of it, up to `limit` bytes.

    For the memory layer: a small result's payload is kept as it is written, not read back. A
    negative `limit` keeps nothing (`wrap` then hands out the sink itself).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] | None = [] if limit >= 0 else None
        self._size = 0
        self.sink: PayloadSink | None = None

    def wrap(self, sink: PayloadSink) -> PayloadSink | CopyingSink:
        """What the serializer writes to: `sink` itself when nothing is to be kept."""
        if self._parts is None:
            return sink
        self.sink = sink
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Writes `data` to the sink, and keeps a copy while the payload is within the limit."""
        assert self.sink is not None
        written = self.sink.write(data)
        parts = self._parts
        if parts is not None:
            self._size += memoryview(data).nbytes
            if self._size > self.limit:
                self._parts = None  # too large to keep: the file is the only copy
            else:
                parts.append(bytes(data))
        return written

    def payload(self) -> memoryview | None:
        """The whole payload, if it was kept."""
        return None if self._parts is None else memoryview(b"".join(self._parts))


def reserved_header_size(draft: ResultHeader, *, signed: bool) -> int:
    """Bytes to reserve ahead of a streamed payload for the final header of `draft`.

    Everything but the checksum (always 32 hex digits), `payload_size` and the signature is
    known before the payload is; the reservation fits the widest of these.
    """
    widest = replace(draft, checksum="0" * 32, payload_size=MAX_PAYLOAD_SIZE)
    size = len(header_json(widest)) + (SIGNATURE_SIZE if signed else 0)
    # The payload starts on a multiple of PAYLOAD_ALIGNMENT, so that a mapped array's data (at a
    # multiple of 64 in a .npy or Arrow payload) is aligned in memory too.
    return size + -(PREFIX_SIZE + size) % PAYLOAD_ALIGNMENT


def write_streamed(
    target: AbstractContextManager[BinaryIO],
    draft: ResultHeader,
    write_payload: Callable[[PayloadSink], None],
    signing_key: bytes | None,
    max_size: int | None = None,
) -> tuple[ResultHeader, int]:
    """Writes a result file whose payload `write_payload` streams into a sink.

    Args:
        target: The file to write, opened by entering it (`ResultStorage.open_write`, or a
            staged file's `open`); if the writing fails, it is left as its block leaves it.
        draft: The header, but for `checksum` and `payload_size`, which are filled in.
        write_payload: Writes the payload to the sink it is given.
        signing_key: Sign the file with this key, or None.
        max_size: The largest file to write, in bytes, or None for no limit. The writing stops
            as soon as the file would pass it.

    Returns:
        The final header and the size of the file.

    Raises:
        OSError: The storage could not be written (even if a serializer wrapped the error).
        ResultTooLargeError: The file would be larger than `max_size`.
        ValueError: The payload is larger than `MAX_PAYLOAD_SIZE`.
        Exception: Whatever `write_payload` raised. Nothing is written then.
    """
    reserved = reserved_header_size(draft, signed=signing_key is not None)
    mac = None if signing_key is None else new_mac(signing_key)
    with target as file:
        write_all(file, memoryview(frame_prefix(reserved) + b" " * reserved))
        sink = PayloadSink(file, mac, max_size, PREFIX_SIZE + reserved)
        try:
            write_payload(sink)
        except BaseException:
            if sink.failure is not None:
                raise sink.failure from None
            raise
        if sink.size > MAX_PAYLOAD_SIZE:
            raise ValueError(f"a payload of {sink.size} bytes is too large to store")
        header = replace(draft, checksum=sink.checksum(), payload_size=sink.size)
        encoded = header_json(header)
        if mac is not None:
            encoded = add_signature(encoded, finish(mac, encoded, sink.size))
        file.seek(PREFIX_SIZE)
        write_all(file, memoryview(encoded.ljust(reserved)))
    return header, PREFIX_SIZE + reserved + sink.size


def open_verified(
    storage: ResultStorage, location: str, *, key: str, checksum: str, signing_key: bytes | None
) -> BinaryIO:
    """The payload of a result file, checked, as a file positioned at the payload's start.

    The payload is read once in chunks and must match `checksum` (the index's), or else its own
    header's checksum with the header naming `key` (a concurrent writer replaced the file);
    with a signing key, it must also carry a valid signature. Only then is the file handed out.

    What is handed out must be what was checked. A local file that nobody else can write is
    read again in place: taskstash replaces files by renaming, never writes into one. Anything
    else (a file other users may write while signing is on, a remote file) is copied to a
    private temporary file while it is checked, and the copy is handed out.

    Args:
        storage: Where the file is.
        location: Its location.
        key: The record's key.
        checksum: The record's checksum.
        signing_key: The key the file must be signed with, or None.

    Returns:
        The open file; the caller closes it.

    Raises:
        Refused: The file is missing, holds another key's result, or is not signed with
            `signing_key`.
        CorruptResultError: The file is damaged.
        OSError: It cannot be read.
    """
    file = storage.open_read(location)
    if file is None:
        raise Refused("is missing")
    copy: BinaryIO | None = None
    try:
        header, region = read_header(file)
        offset = file.tell()
        signature = None if signing_key is None else split_signature(region)
        if signing_key is not None and signature is None:
            raise Refused(UNSIGNED)
        # A signed file answers only the key its (signed) header names; an unsigned one may
        # also answer for a key whose row records its checksum: the same payload.
        if header["key"] != key and (signing_key is not None or header["checksum"] != checksum):
            raise Refused(f"holds the result of another key ({header['key']})")
        if not _unchangeable(file, signed=signing_key is not None):
            import tempfile

            copy = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115 (handed out open)
        hasher = Hasher()
        mac = None if signing_key is None else new_mac(signing_key)
        remaining: int = header["payload_size"]
        while remaining:
            chunk = file.read(min(_CHUNK, remaining))
            if not chunk:
                raise CorruptResultError("result file truncated while it was read")
            hasher.update(chunk)
            if mac is not None:
                mac.update(chunk)
            if copy is not None:
                copy.write(chunk)
            remaining -= len(chunk)
        if hasher.hexdigest() != header["checksum"]:
            raise CorruptResultError("result payload does not match its checksum")
        if mac is not None and signature is not None:
            import hmac

            unsigned, expected = signature
            if not hmac.compare_digest(finish(mac, unsigned, header["payload_size"]), expected):
                raise Refused(UNSIGNED)
        if copy is None:
            file.seek(offset)
            return file
        file.close()
        copy.seek(0)
        return copy
    except BaseException:
        file.close()
        if copy is not None:
            copy.close()
        raise


UNSIGNED: Final = "is not signed with this store's signing key"


def _unchangeable(file: BinaryIO, *, signed: bool) -> bool:
    """Whether nobody but this user (and root) could change `file` while it is being read."""
    try:
        status = os.fstat(file.fileno())
    except (AttributeError, OSError, ValueError):
        return False  # not a local file: a remote object may be replaced between two reads
    if not stat.S_ISREG(status.st_mode):
        return False
    if not signed:
        return True  # unsigned, the storage's writers are trusted; taskstash never writes in place
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and status.st_uid == geteuid() and not status.st_mode & 0o022
