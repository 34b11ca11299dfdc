"""Signed result files: HMAC-SHA256 under the signing key, checked before anything is loaded.

Loading a pickle runs code, so a result storage that others can write to could make a process
run theirs. With a signing key (`TASKSTASH_SIGNING_KEY`), every result file's header ends with a
`"signature"` field: 64 hex digits of HMAC-SHA256, keyed with the signing key, over

    payload || header || payload length

where `header` is the exact header JSON without the signature field (the same bytes with
`,"signature":"..."` taken out before the closing brace) and the length is 8 bytes,
little-endian. The payload comes first so that a writer can sign while it streams the payload,
before the header (which holds the payload's checksum and size) is known; the length at the end
makes the split between payload and header unambiguous.

`hmac` is imported on first use: signing is off unless a key is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import hmac

__all__ = ["SIGNATURE_SIZE", "add_signature", "finish", "new_mac", "split_signature", "verify"]

_FIELD: Final = b',"signature":"'
_HEX: Final = 64  # HMAC-SHA256 in hex
SIGNATURE_SIZE: Final = len(_FIELD) + _HEX + 1
"""How many bytes the signature field adds to a header."""
_SUFFIX: Final = SIGNATURE_SIZE + 1  # the field and the closing brace
_HEX_DIGITS: Final = frozenset(b"0123456789abcdef")


def new_mac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 under `key`, to be fed the payload, then closed with `finish`."""
    import hmac

    return hmac.new(key, digestmod="sha256")


def finish(mac: hmac.HMAC, header: bytes, payload_size: int) -> bytes:
    """The signature (hex, as bytes) of a payload already fed to `mac` and its unsigned header."""
    mac.update(header)
    mac.update(payload_size.to_bytes(8, "little"))
    return mac.hexdigest().encode()


def add_signature(header: bytes, signature: bytes) -> bytes:
    """The header JSON with `"signature"` added as its last field."""
    return b'%s%s%s"}' % (header[:-1], _FIELD, signature)


def split_signature(region: bytes | memoryview) -> tuple[bytes, bytes] | None:
    """The unsigned header and the signature of a header region, or None if it has no signature.

    Args:
        region: The header bytes of a result file (possibly padded with spaces).

    Returns:
        `(header without the signature field, signature hex as bytes)`, or None.
    """
    text = bytes(region).rstrip(b" ")
    if (
        len(text) <= _SUFFIX
        or text[-_SUFFIX : -_SUFFIX + len(_FIELD)] != _FIELD
        or text[-2:] != b'"}'
    ):
        return None
    signature = text[-_HEX - 2 : -2]
    if not _HEX_DIGITS.issuperset(signature):
        return None
    return text[:-_SUFFIX] + b"}", signature


def verify(key: bytes, region: bytes | memoryview, payload: memoryview) -> bool:
    """Whether a header region carries a valid signature of itself and `payload` under `key`.

    Compared in constant time (`hmac.compare_digest`).
    """
    import hmac

    parts = split_signature(region)
    if parts is None:
        return False
    header, signature = parts
    mac = new_mac(key)
    mac.update(payload)
    return hmac.compare_digest(finish(mac, header, payload.nbytes), signature)
