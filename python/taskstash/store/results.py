"""Result files: a self-describing header followed by the serialized payload.

Layout of a result file (format version 1)::

    offset  size  content
    0       7     magic b"TSKSTSH"
    7       1     format version, 0x01
    8       4     header length N, unsigned little-endian
    12      N     header: UTF-8 JSON object, sorted keys, no whitespace (the `ResultHeader` fields),
                  then, in a signed file, a last field "signature" (see `taskstash.store.signing`);
                  a header written ahead of a streamed payload is padded with spaces to N
    12+N    ...   payload: exactly `payload_size` bytes, whose XXH3-128 hex is `checksum`

The header holds everything an index row needs, so the index can be rebuilt from the files alone.
A streamed payload (`Store.save_value`) is written after a reserved header, which is filled in
once the payload's checksum and size are known: the layout is the same.
Where files live is a `ResultStorage`: a local directory (`LocalStorage`) or any fsspec
filesystem (`FsspecStorage`); see `taskstash.store.storages`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO, Final

from taskstash.exceptions import CorruptResultError
from taskstash.hashing import hash_bytes
from taskstash.store.signing import add_signature, finish, new_mac, verify

__all__ = [
    "MAGIC",
    "MAX_PAYLOAD_SIZE",
    "PREFIX_SIZE",
    "RESULT_FORMAT_VERSION",
    "ResultHeader",
    "decode_result",
    "encode_result",
    "frame_prefix",
    "header_json",
    "make_header",
    "names_key",
    "payload_if_checksum",
    "read_header",
    "read_result_header",
    "signed_for_key",
]

MAGIC: Final = b"TSKSTSH"
RESULT_FORMAT_VERSION: Final = 1
_PREFIX: Final = struct.Struct("<7sBI")  # magic, format version, header length
PREFIX_SIZE: Final = _PREFIX.size
"""Bytes before the header: magic, format version, header length (12)."""
_PREFIX_SIZE: Final = PREFIX_SIZE
_MAX_HEADER: Final = 16 * 1024 * 1024  # a longer header is damage, not data
MAX_PAYLOAD_SIZE: Final = 2**63 - 1
"""The largest payload a result file may hold (the widest `payload_size` a reserved header fits)."""


@dataclass(frozen=True, slots=True)
class ResultHeader:
    """The header of a result file: everything needed to rebuild its index row.

    Attributes:
        key: The cache key (32 hex digits for keys made by taskstash).
        task_name: The task's name (`@task(name=...)` or the function's name).
        task_qualname: The function's `module.qualname`.
        serializer: Name of the serializer that wrote the payload.
        checksum: XXH3-128 hex digest of the payload.
        payload_size: Length of the payload in bytes.
        created_at: When the result was stored, Unix seconds.
        expires_at: When it stops being a hit, Unix seconds; None for never.
        compute_seconds: How long computing the result took.
        run_id: The flow run that computed it, if any.
        components: Hash of each cache-policy component that made the key, by component name.
        parameters: A short text of the call's arguments (`x=1, path='a.csv'`), or None.
        kind: `"task"` for the result of a task's call, `"flow"` for a flow's.
    """

    key: str
    task_name: str
    task_qualname: str
    serializer: str
    checksum: str
    payload_size: int
    created_at: float
    expires_at: float | None
    compute_seconds: float
    run_id: str | None
    components: dict[str, str] = field(default_factory=dict)
    parameters: str | None = None
    kind: str = "task"


_HEADER_FIELDS: Final = tuple(f.name for f in fields(ResultHeader))


def make_header(
    key: str,
    payload: bytes | bytearray | memoryview,
    *,
    task_name: str,
    task_qualname: str,
    serializer: str,
    created_at: float,
    expires_at: float | None = None,
    compute_seconds: float = 0.0,
    run_id: str | None = None,
    components: dict[str, str] | None = None,
    parameters: str | None = None,
    kind: str = "task",
) -> ResultHeader:
    """A header for `payload`, with its checksum and size computed.

    Args:
        key: The cache key.
        payload: The serialized result.
        task_name: The task's name.
        task_qualname: The function's `module.qualname`.
        serializer: The serializer's name.
        created_at: Unix seconds.
        expires_at: Unix seconds, or None for never.
        compute_seconds: How long computing the result took.
        run_id: The flow run, if any.
        components: Per-component hashes of the cache policy.
        parameters: A short text of the call's arguments, or None.
        kind: `"task"` or `"flow"`: what the result is of.

    Returns:
        The header.
    """
    return ResultHeader(
        key=key,
        task_name=task_name,
        task_qualname=task_qualname,
        serializer=serializer,
        checksum=hash_bytes(payload),
        payload_size=memoryview(payload).nbytes,
        created_at=float(created_at),
        expires_at=None if expires_at is None else float(expires_at),
        compute_seconds=float(compute_seconds),
        run_id=run_id,
        components=dict(components or {}),
        parameters=parameters,
        kind=kind,
    )


def header_json(header: ResultHeader) -> bytes:
    """The header's canonical JSON: UTF-8, sorted keys, no whitespace.

    Raises:
        ValueError: A time is not finite.
    """
    for name in ("created_at", "compute_seconds", "expires_at"):
        value = getattr(header, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"header.{name} must be finite, not {value!r}")
    # A shallow field dict: `dataclasses.asdict` would deep-copy every value, on each write.
    fields = {name: getattr(header, name) for name in _HEADER_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def frame_prefix(header_size: int) -> bytes:
    """The 12 bytes before the header: magic, format version and header length."""
    return _PREFIX.pack(MAGIC, RESULT_FORMAT_VERSION, header_size)


def encode_result(
    header: ResultHeader,
    payload: bytes | bytearray | memoryview,
    *,
    signing_key: bytes | None = None,
) -> list[bytes | bytearray | memoryview]:
    """The bytes of a result file, as chunks to write in order (the payload is not copied).

    Args:
        header: The header; its `payload_size` must be the payload's length.
        payload: The serialized result.
        signing_key: Sign the file with this key (see `taskstash.store.signing`); None for an
            unsigned file.

    Returns:
        `[prefix and header, payload]`.

    Raises:
        ValueError: `header.payload_size` is not the payload's length, or a time is not finite.
    """
    size = memoryview(payload).nbytes
    if header.payload_size != size:
        raise ValueError(f"header.payload_size is {header.payload_size}, the payload has {size}")
    encoded = header_json(header)
    if signing_key is not None:
        mac = new_mac(signing_key)
        mac.update(payload)
        encoded = add_signature(encoded, finish(mac, encoded, size))
    return [frame_prefix(len(encoded)) + encoded, payload]


def _parse_header(region: bytes | memoryview) -> dict[str, Any]:
    """The JSON header, checked to have a `str` key and checksum and an `int` payload_size."""
    try:
        header: dict[str, Any] = json.loads(str(region, "utf-8"))
        key = header["key"]
        checksum = header["checksum"]
        size = header["payload_size"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptResultError(f"result header is not valid: {exc}") from None
    if type(key) is not str or type(checksum) is not str or type(size) is not int:
        raise CorruptResultError("result header is not valid: bad key, checksum or payload_size")
    return header


def _header_size(prefix: bytes | memoryview) -> int:
    """The header length from a file's first 12 bytes, after checking magic and version."""
    magic, version, header_size = _PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        raise CorruptResultError("not a taskstash result file (bad magic)")
    if version != RESULT_FORMAT_VERSION:
        raise CorruptResultError(
            f"result format version {version}; this taskstash reads {RESULT_FORMAT_VERSION}"
        )
    if header_size > _MAX_HEADER:
        raise CorruptResultError("result file truncated inside its header")
    size: int = header_size
    return size


def split_result(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    """Checks a result file's framing and checksum; returns its raw header and the payload.

    This is the hit path's decoder: it skips building a `ResultHeader`. The header dict is
    guaranteed to have a `str` "key" and "checksum" and an `int` "payload_size".

    Args:
        data: The whole file.

    Returns:
        The parsed JSON header and a zero-copy view of the payload.

    Raises:
        CorruptResultError: Bad magic or version, truncated, trailing bytes, or a checksum
            mismatch.
    """
    view = memoryview(data)
    total = view.nbytes
    if total < _PREFIX_SIZE:
        raise CorruptResultError(f"result file too short ({total} bytes)")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    end = _PREFIX_SIZE + _header_size(view)
    if end > total:
        raise CorruptResultError("result file truncated inside its header")
    header = _parse_header(view[_PREFIX_SIZE:end])
    size = header["payload_size"]
    if total - end != size:
        state = "truncated" if total - end < size else "longer than its header says"
        raise CorruptResultError(f"result file {state}: payload {total - end} of {size} bytes")
    payload = view[end:]
    if hash_bytes(payload) != header["checksum"]:
        raise CorruptResultError("result payload does not match its checksum")
    return header, payload


def signed_for_key(
    signing_key: bytes, data: bytes | bytearray | memoryview, payload: memoryview, key: str
) -> bool:
    """Whether a whole result file, whose framing was checked, is `key`'s and signed.

    The signature covers the header, so a signed file is only ever the result of the key its
    header names: whoever can edit the index must not make one key answer with another key's
    (equally well signed) file.

    Args:
        signing_key: The signing key.
        data: The whole file, as checked by `split_result` or `payload_if_checksum`.
        payload: Its payload.
        key: The key asked for.
    """
    view = memoryview(data)
    header_size = _PREFIX.unpack_from(view)[2]
    region = view[_PREFIX_SIZE : _PREFIX_SIZE + header_size]
    return names_key(region, key) and verify(signing_key, region, payload)


_KEY_FIELD: Final = b',"key":"'


def names_key(region: bytes | memoryview, key: str) -> bool:
    """Whether a header region's top-level `key` field is `key`, without parsing the JSON.

    A JSON string holds no unescaped quote, so `,"key":"` appears only where a member named
    "key" starts; in the sorted header, the top-level one is the last such member, as every
    field after it (`kind` to `task_qualname`, then `signature`) is a number, a string or null.
    """
    text = bytes(region)
    at = text.rfind(_KEY_FIELD)
    if at < 0:
        return False
    quoted = key if key.isalnum() else json.dumps(key, ensure_ascii=False)[1:-1]
    return text.startswith(b'%s"' % quoted.encode(), at + len(_KEY_FIELD))


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise CorruptResultError("result file truncated inside its header")
    return data


def read_header(file: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """Reads the header of a result file open at its start, leaving the file at the payload.

    Reads only the header; the file's length is checked against `payload_size`, but the
    payload is not read (so not checked against its checksum).

    Args:
        file: The result file, seekable, positioned at its start.

    Returns:
        The parsed JSON header (as `split_result` returns it) and the exact header bytes.

    Raises:
        CorruptResultError: Bad magic or version, truncated, or trailing bytes.
    """
    region = _read_exactly(file, _header_size(_read_exactly(file, _PREFIX_SIZE)))
    header = _parse_header(region)
    offset = _PREFIX_SIZE + len(region)
    size = file.seek(0, os.SEEK_END) - offset
    if size != header["payload_size"]:
        state = "truncated" if size < header["payload_size"] else "longer than its header says"
        raise CorruptResultError(
            f"result file {state}: payload {size} of {header['payload_size']} bytes"
        )
    file.seek(offset)
    return header, region


_CHECKSUM_FIELD: Final = b'{"checksum":"'
_CHECKSUM_AT: Final = _PREFIX_SIZE + len(_CHECKSUM_FIELD)


def payload_if_checksum(data: bytes | bytearray | memoryview, checksum: str) -> memoryview | None:
    """The payload of a result file if its header and payload both match `checksum`.

    The hit path's check, with no JSON parsing: `checksum` is the first field of the sorted
    header, so its place is fixed. A match proves the payload is the one the index recorded.
    None means "not proven": decode the file with `split_result` to learn why.

    Args:
        data: The whole file.
        checksum: The checksum the index holds for it.

    Returns:
        A zero-copy view of the payload, or None.
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1 or view.nbytes < _CHECKSUM_AT:
        return None
    magic, version, header_size = _PREFIX.unpack_from(view)
    end = _PREFIX_SIZE + header_size
    if (
        magic != MAGIC
        or version != RESULT_FORMAT_VERSION
        or end > view.nbytes
        or view[_PREFIX_SIZE : _CHECKSUM_AT + len(checksum) + 1].tobytes()
        != b'%s%s"' % (_CHECKSUM_FIELD, checksum.encode())
    ):
        return None
    payload = view[end:]
    return payload if hash_bytes(payload) == checksum else None


def _header_from_dict(raw: dict[str, Any]) -> ResultHeader:
    def text(name: str, *, optional: bool = False) -> Any:
        value = raw[name]
        if not (isinstance(value, str) or (optional and value is None)):
            raise TypeError(f"{name} must be a string")
        return value

    def number(name: str, *, optional: bool = False) -> Any:
        value = raw[name]
        if optional and value is None:
            return None
        if type(value) not in (int, float):
            raise TypeError(f"{name} must be a number")
        return float(value)

    components = raw["components"]
    if not isinstance(components, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in components.items()
    ):
        raise TypeError("components must map strings to strings")
    return ResultHeader(
        key=text("key"),
        task_name=text("task_name"),
        task_qualname=text("task_qualname"),
        serializer=text("serializer"),
        checksum=text("checksum"),
        payload_size=raw["payload_size"],
        created_at=number("created_at"),
        expires_at=number("expires_at", optional=True),
        compute_seconds=number("compute_seconds"),
        run_id=text("run_id", optional=True),
        components=components,
        parameters=text("parameters", optional=True) if "parameters" in raw else None,
        kind=text("kind") if "kind" in raw else "task",  # files written before it: tasks'
    )


def read_result_header(file: BinaryIO) -> ResultHeader:
    """The header of a result file open at its start, read without the payload.

    Raises:
        CorruptResultError: The framing is wrong (see `read_header`) or the header is not a
            `ResultHeader`.
    """
    raw, _ = read_header(file)
    try:
        return _header_from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise CorruptResultError(f"result header is not valid: {exc}") from None


def decode_result(data: bytes | bytearray | memoryview) -> tuple[ResultHeader, memoryview]:
    """Parses and verifies a whole result file.

    Args:
        data: The file's bytes.

    Returns:
        The header and a zero-copy view of the payload.

    Raises:
        CorruptResultError: Bad magic or version, truncation, trailing bytes, a header that is
            not a `ResultHeader`, or a payload that does not match its checksum.
    """
    raw, payload = split_result(data)
    try:
        header = _header_from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise CorruptResultError(f"result header is not valid: {exc}") from None
    return header, payload
