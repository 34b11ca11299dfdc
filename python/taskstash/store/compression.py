"""Compression codecs for compressed serializers: whole buffers and streams, both ways.

Four codecs, named after the modules that implement them: `"zstandard"` (the default when the
optional `zstandard` package is installed: `pip install 'taskstash[zstd]'`), `"zlib"` (the
default otherwise; always available), `"lzma"` and `"bz2"`. Each one's output starts with its
format's magic number, so a payload is decompressed by whichever codec wrote it, whatever the
reader's default: the codec is never part of the serializer's name.

Payloads are compressed and decompressed as streams, in chunks of `CHUNK_BYTES`, so a large one
is never held whole, compressed or not.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from typing import Any, BinaryIO, Final, Protocol, cast

__all__ = [
    "CHUNK_BYTES",
    "CODECS",
    "Codec",
    "CompressingWriter",
    "Compressor",
    "Writable",
    "codec_named",
    "default_codec",
    "open_decompressed",
]


class Writable(Protocol):
    """What payloads are written to: a file, or the store's payload sink."""

    def write(self, data: bytes | bytearray | memoryview, /) -> object:
        """Writes `data`."""


CHUNK_BYTES: Final = 1 << 20
"""How much is compressed or read at a time when streaming."""

_HEAD_BYTES: Final = 6  # the longest magic number (lzma's)


class Compressor(Protocol):
    """An incremental compressor (what `zlib.compressobj()` returns, and its likes)."""

    def compress(self, data: Any, /) -> bytes:
        """Compresses more data; returns what output is ready."""
        ...

    def flush(self) -> bytes:
        """The rest of the output."""
        ...


@dataclass(frozen=True)
class Codec:
    """One compression format.

    Attributes:
        name: The module that implements it, as `compressionlib` names it.
        magic: The bytes every compressed payload of this format starts with.
        fast_level: The level used when none is given: fast, still compressing well.
        compressor: A new incremental compressor at a level.
        reader: A file of the decompressed data, read from a compressed file.
    """

    name: str
    magic: tuple[bytes, ...]
    fast_level: int
    compressor: Callable[[int], Compressor]
    reader: Callable[[BinaryIO], BinaryIO]


class _ZlibReader(io.RawIOBase):
    """The decompressed contents of a zlib stream; never more than asked for at once."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._inflate = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        while not self._inflate.eof and out.nbytes:
            data = self._inflate.unconsumed_tail or self._file.read(CHUNK_BYTES)
            if not data:
                raise zlib.error("the compressed stream ends early")
            # Bounded by a chunk: a payload of zeros inflates a thousandfold.
            chunk = self._inflate.decompress(data, min(out.nbytes, CHUNK_BYTES))
            if chunk:
                out[: len(chunk)] = chunk
                return len(chunk)
        return 0


def _buffered(raw: Any) -> BinaryIO:
    """A buffered file (with `readline` and `peek`, as pickle likes) over a raw reader."""
    return cast(BinaryIO, io.BufferedReader(raw, CHUNK_BYTES))


def _zstd_compressor(level: int) -> Compressor:
    import zstandard  # optional, and ~5 ms to import: only when used

    compressor: Compressor = zstandard.ZstdCompressor(level=level).compressobj()
    return compressor


def _zstd_reader(file: BinaryIO) -> BinaryIO:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(file, read_size=CHUNK_BYTES, closefd=False)
    return _buffered(reader)


def _lzma_reader(file: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, lzma.LZMAFile(file, "rb"))  # buffered already; leaves `file` open


def _bz2_reader(file: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, bz2.BZ2File(file, "rb"))


CODECS: Final[dict[str, Codec]] = {
    codec.name: codec
    for codec in (
        Codec(
            "zstandard",
            (b"\x28\xb5\x2f\xfd",),
            1,
            _zstd_compressor,
            _zstd_reader,
        ),
        Codec(
            "zlib",
            # The second byte depends on the level and window: these are the 32 KiB window's.
            (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"),
            1,
            lambda level: zlib.compressobj(level),
            lambda file: _buffered(_ZlibReader(file)),
        ),
        Codec(
            "lzma",
            (b"\xfd7zXZ\x00",),
            0,
            lambda level: lzma.LZMACompressor(preset=level),
            _lzma_reader,
        ),
        Codec(
            "bz2",
            (b"BZh",),
            1,
            lambda level: bz2.BZ2Compressor(level),
            _bz2_reader,
        ),
    )
}
"""The codecs, by name."""


@cache
def default_codec() -> Codec:
    """The codec of zstandard if installed (thrice zlib's speed, as good a ratio), else zlib."""
    return CODECS["zstandard" if find_spec("zstandard") is not None else "zlib"]


def codec_named(name: str | None) -> Codec:
    """The codec `name` (None: the default).

    Raises:
        ValueError: No codec has that name.
        ModuleNotFoundError: It is `"zstandard"`, which is not installed.
    """
    if name is None:
        return default_codec()
    try:
        codec = CODECS[name]
    except KeyError:
        known = ", ".join(map(repr, CODECS))
        raise ValueError(f"unknown compressionlib {name!r}; use one of {known}") from None
    _importable(codec)
    return codec


def _importable(codec: Codec) -> None:
    if codec.name == "zstandard" and find_spec("zstandard") is None:
        raise ModuleNotFoundError(
            "the zstandard codec needs the zstandard package: pip install 'taskstash[zstd]'",
            name="zstandard",
        )


def _codec_of(head: bytes | memoryview) -> Codec:
    """The codec that wrote a payload starting with `head`.

    Raises:
        ValueError: `head` starts no known format.
        ModuleNotFoundError: The payload is zstandard's, which is not installed.
    """
    head = bytes(head[:_HEAD_BYTES])
    for codec in CODECS.values():
        if head.startswith(codec.magic):
            _importable(codec)
            return codec
    raise ValueError(f"the payload is not compressed in a known format (it starts {head!r})")


def open_decompressed(file: BinaryIO) -> BinaryIO:
    """A file of the decompressed contents of `file` from where it is (a seekable file).

    Closing it leaves `file` open.

    Raises:
        ValueError: Not a known format.
        ModuleNotFoundError: A zstandard payload, and zstandard is not installed.
    """
    start = file.tell()
    head = file.read(_HEAD_BYTES)
    file.seek(start)
    return _codec_of(head).reader(file)


class CompressingWriter:
    """Compresses what is written to it into `file`, a chunk at a time; `close()` finishes.

    Args:
        file: Where the compressed bytes go.
        compressor: The incremental compressor.
    """

    def __init__(self, file: Writable, compressor: Compressor) -> None:
        self._file = file
        self._compressor = compressor

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Compresses `data` (any C-contiguous buffer) in chunks; returns its size in bytes."""
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        for start in range(0, view.nbytes, CHUNK_BYTES):
            out = self._compressor.compress(view[start : start + CHUNK_BYTES])
            if out:
                self._file.write(out)
        return view.nbytes

    def close(self) -> None:
        """Writes the end of the compressed stream."""
        self._file.write(self._compressor.flush())
