"""Serializers: how a task's return value becomes the payload of a result file and back.

Built in, chosen by name: `"cloudpickle"` (functions, lambdas and classes defined in `__main__`
too), `"pickle"`, `"json"`, and the open formats of `taskstash.store.formats` (`"numpy"`,
`"arrow"`, `"pandas-arrow"`), each also compressed (`"compressed/pickle"` and so on; see
`CompressedSerializer`). Any object with `dumps` and `loads` works as well. The default,
`DEFAULT_SERIALIZER`, stores arrays and tables in their open format and anything else with
cloudpickle. The `name` of the serializer that wrote a payload is stored in the index and in
each result file's header.

The built-in serializers also stream: `dump(value, file)` and `load(file)`. pickle's protocol 5
writes a large buffer (a numpy array's data) to the file as one view of the value's own memory,
and reads it straight into the new object, so a large result is never held twice in memory.
`dump_value` and `load_value` use the streaming methods when a serializer has them.

cloudpickle is imported on the first `dumps`, never at import time; reading a cloudpickle payload
needs only the standard `pickle` module.
"""

from __future__ import annotations

import io
import json
import pickle
import types
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol

from taskstash.exceptions import SerializationError
from taskstash.store.formats import (
    ArrowSerializer,
    NumpySerializer,
    PandasArrowSerializer,
    by_type,
)

if TYPE_CHECKING:
    from taskstash.store import compression

__all__ = [
    "DEFAULT_SERIALIZER",
    "PICKLE_PROTOCOL",
    "CloudpickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "SupportsDumpsLoads",
    "TypedSerializer",
    "dump_value",
    "load_value",
    "resolve_serializer",
    "serializer_for",
]

PICKLE_PROTOCOL: Final = 5
"""The pickle protocol of the `"pickle"` and `"cloudpickle"` serializers, pinned so that a newer
Python's default never changes what is written (protocol 5 reads back on every supported Python)."""


class Serializer(Protocol):
    """Turns values into bytes and back.

    `name` is read-only here so that plain attributes, class attributes and properties all
    satisfy the protocol. A serializer may also offer `dump(value, file)` and `load(file)`,
    which `dump_value` and `load_value` prefer (the built-in ones do).
    """

    @property
    def name(self) -> str:
        """Identifies the format; stored in the index and in the result file's header."""
        ...

    def dumps(self, value: object) -> bytes:
        """Serializes `value`."""
        ...

    def loads(self, data: bytes | memoryview) -> object:
        """Deserializes what `dumps` returned (possibly as a zero-copy memoryview)."""
        ...


class SupportsDumpsLoads(Protocol):
    """What `resolve_serializer` accepts besides a name: any object with `dumps` and `loads`.

    Its `loads` may accept only `bytes`: the adapter passes `bytes`. A module such as `pickle`
    qualifies.
    """

    def dumps(self, value: Any, /) -> bytes:
        """Serializes `value`."""
        ...

    def loads(self, data: bytes, /) -> Any:
        """Deserializes what `dumps` returned."""
        ...


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


class PickleSerializer:
    """The standard `pickle` module, protocol pinned to `PICKLE_PROTOCOL`."""

    name = "pickle"

    def dumps(self, value: object) -> bytes:
        """Pickles `value`.

        Raises:
            SerializationError: `value` cannot be pickled (a lock, a lambda, a local class...).
        """
        try:
            return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise self._dump_error(value, exc) from exc

    def dump(self, value: object, file: compression.Writable) -> None:
        """Pickles `value` into `file`, large buffers written without a copy.

        Raises:
            SerializationError: `value` cannot be pickled, or writing to `file` failed.
        """
        try:
            pickle.dump(value, file, protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise self._dump_error(value, exc) from exc

    def _dump_error(self, value: object, exc: Exception) -> SerializationError:
        return SerializationError(
            f"cannot pickle a {_type_name(value)}: {exc}; "
            "try result_serializer='cloudpickle' or persist_result=False"
        )

    def loads(self, data: bytes | memoryview) -> object:
        """Unpickles `data` in place (no copy).

        Raises:
            SerializationError: The payload cannot be unpickled (for example its class moved).
        """
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(f"cannot unpickle the stored result: {exc}") from exc

    def load(self, file: BinaryIO) -> object:
        """Unpickles from `file`, reading large buffers straight into the new objects.

        Raises:
            SerializationError: The payload cannot be unpickled.
        """
        try:
            return pickle.load(file)
        except Exception as exc:
            raise SerializationError(f"cannot unpickle the stored result: {exc}") from exc


class CloudpickleSerializer(PickleSerializer):
    """cloudpickle (by-value pickling of functions and `__main__` classes), protocol pinned."""

    name = "cloudpickle"

    def dumps(self, value: object) -> bytes:
        """Pickles `value` with cloudpickle.

        Raises:
            SerializationError: `value` cannot be pickled even by cloudpickle (a lock, a file).
        """
        import cloudpickle  # Lazily: importing it costs ~10 ms and is not needed on a hit.

        try:
            result: bytes = cloudpickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise self._dump_error(value, exc) from exc
        return result

    def dump(self, value: object, file: compression.Writable) -> None:
        """Pickles `value` into `file` with cloudpickle, large buffers written without a copy.

        Raises:
            SerializationError: `value` cannot be pickled, or writing to `file` failed.
        """
        import cloudpickle

        try:
            cloudpickle.dump(value, file, protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise self._dump_error(value, exc) from exc

    def _dump_error(self, value: object, exc: Exception) -> SerializationError:
        return SerializationError(
            f"cannot pickle a {_type_name(value)} with cloudpickle: {exc}; "
            "return a picklable value or set persist_result=False"
        )

    # load and loads are pickle's: a cloudpickle payload imports what it needs while it is read.


class TypedSerializer(CloudpickleSerializer):
    """The default: a format chosen by the value's type (see `taskstash.store.formats`).

    Itself cloudpickle, so its name is `"cloudpickle"`; `serializer_for` picks the open format
    of an array or a table before a result is written, and the header and index row then name
    that format. An explicit `result_serializer`, even `"cloudpickle"`, is used as it is.
    """


DEFAULT_SERIALIZER: Final = TypedSerializer()
"""The serializer of a task that sets no `result_serializer` (nor does its flow)."""


def serializer_for(serializer: Serializer, value: object) -> Serializer:
    """The serializer that writes `value`: an open format by type for the default one."""
    if type(serializer) is TypedSerializer:
        chosen = by_type(value)
        if chosen is not None:
            return chosen
    return serializer


class JSONSerializer:
    """Standard JSON as UTF-8.

    Only what JSON represents is accepted: `dict` (with `str`, `int`, `float`, `bool` or `None`
    keys, which come back as strings, as in the `json` module), `list`, `tuple` (comes back as a
    list), `str`, finite `int`/`float`, `bool` and `None`. NaN and infinities are refused, since
    JSON has no spelling for them.
    """

    name = "json"

    def dumps(self, value: object) -> bytes:
        """Encodes `value` as compact UTF-8 JSON.

        Raises:
            SerializationError: `value` is not representable in JSON.
        """
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"the json serializer cannot store a {_type_name(value)}: {exc}; "
                "use result_serializer='cloudpickle' for non-JSON values"
            ) from exc
        return text.encode()

    def loads(self, data: bytes | memoryview) -> object:
        """Decodes UTF-8 JSON.

        Raises:
            SerializationError: `data` is not UTF-8 JSON.
        """
        try:
            return json.loads(str(data, "utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"the stored result is not valid JSON: {exc}") from exc

    def dump(self, value: object, file: compression.Writable) -> None:
        """Writes `dumps(value)` to `file` (JSON text is built whole, then written).

        Raises:
            SerializationError: `value` is not representable in JSON.
        """
        file.write(self.dumps(value))

    def load(self, file: BinaryIO) -> object:
        """`loads` of the rest of `file`.

        Raises:
            SerializationError: The rest of `file` is not UTF-8 JSON.
        """
        return self.loads(file.read())


class _CustomSerializer:
    """Adapts a user object with `dumps`/`loads` to the `Serializer` protocol.

    The user's `loads` receives `bytes` (many, like `json.loads`, refuse a memoryview), and
    failures in either direction become `SerializationError` naming the serializer.
    """

    __slots__ = ("_dumps", "_loads", "name", "wrapped")

    def __init__(self, wrapped: Any, name: str) -> None:
        self.wrapped: object = wrapped
        self.name = name
        self._dumps = wrapped.dumps
        self._loads = wrapped.loads

    def dumps(self, value: object) -> bytes:
        try:
            data = self._dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"serializer {self.name!r} cannot serialize a {_type_name(value)}: {exc}"
            ) from exc
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SerializationError(
                f"serializer {self.name!r}.dumps returned a {_type_name(data)}, not bytes"
            )
        return bytes(data)

    def loads(self, data: bytes | memoryview) -> object:
        try:
            return self._loads(bytes(data))
        except Exception as exc:
            raise SerializationError(
                f"serializer {self.name!r} cannot deserialize the stored result: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"<serializer {self.name!r} wrapping {self.wrapped!r}>"


class CompressedSerializer:
    """Another serializer's output, compressed; Prefect's serializer of the same name.

    `"compressed/pickle"`, `"compressed/json"` and `"compressed/cloudpickle"` name this class
    around the built-in serializers, with the default codec. The codec is not part of the name:
    every compressed payload starts with its format's magic number and is read back with
    whichever codec wrote it. Large values stream through both ways, a chunk at a time.

    Args:
        serializer: The serializer whose output is compressed: a name or an object, as for
            `resolve_serializer`.
        compressionlib: `"zstandard"`, `"zlib"`, `"lzma"` or `"bz2"`; None for zstandard if
            it is installed (`pip install 'taskstash[zstd]'`), else zlib.
        level: The compression level; None for the codec's fast one (1, or 0 for lzma).

    Raises:
        ValueError: An unknown codec or serializer name.
        ModuleNotFoundError: `compressionlib="zstandard"` without zstandard installed.
    """

    def __init__(
        self,
        serializer: str | Serializer | SupportsDumpsLoads = "cloudpickle",
        compressionlib: str | None = None,
        level: int | None = None,
    ) -> None:
        # The codecs (zlib, lzma, bz2) are loaded by the first compressed serializer.
        from taskstash.store import compression

        self.serializer = resolve_serializer(serializer)
        self.codec = compression.codec_named(compressionlib)
        self.level = self.codec.fast_level if level is None else level
        self.name = f"compressed/{self.serializer.name}"

    def dumps(self, value: object) -> bytes:
        """Serializes `value`, then compresses it.

        Raises:
            SerializationError: The inner serializer cannot serialize `value`.
        """
        compressor = self.codec.compressor(self.level)
        return compressor.compress(self.serializer.dumps(value)) + compressor.flush()

    def loads(self, data: bytes | memoryview) -> object:
        """Decompresses `data`, then deserializes it, streaming from one to the other.

        A small payload may hold a large value (an array of zeros), which is read straight
        into place as from a file, never held decompressed as a whole.

        Raises:
            SerializationError: `data` cannot be decompressed or deserialized.
        """
        return self.load(io.BytesIO(data))

    def dump(self, value: object, file: compression.Writable) -> None:
        """Serializes `value` into `file` through the compressor, a chunk at a time.

        Raises:
            SerializationError: `value` cannot be serialized.
        """
        from taskstash.store import compression

        writer = compression.CompressingWriter(file, self.codec.compressor(self.level))
        dump_value(self.serializer, value, writer)
        writer.close()

    def load(self, file: BinaryIO) -> object:
        """Deserializes from `file` through the decompressor, a chunk at a time.

        Raises:
            SerializationError: The rest of `file` cannot be decompressed or deserialized.
        """
        from taskstash.store import compression

        try:
            reader = compression.open_decompressed(file)
        except Exception as exc:
            raise self._load_error(exc) from exc
        return load_value(self.serializer, reader)  # closes the reader, not `file`

    def _load_error(self, exc: Exception) -> SerializationError:
        return SerializationError(f"cannot decompress the stored result: {exc}")

    def __repr__(self) -> str:
        return (
            f"CompressedSerializer(serializer={self.serializer.name!r}, "
            f"compressionlib={self.codec.name!r}, level={self.level})"
        )


def dump_value(serializer: Serializer, value: object, file: compression.Writable) -> None:
    """Writes `value`, serialized, to `file`: streamed by the serializer's `dump` if it has one.

    Raises:
        SerializationError: `value` cannot be serialized (or, from a built-in serializer's
            `dump`, writing to `file` failed).
    """
    dump = getattr(serializer, "dump", None)
    if callable(dump):
        dump(value, file)
    else:
        file.write(serializer.dumps(value))


def load_value(serializer: Serializer, payload: memoryview | BinaryIO) -> object:
    """Deserializes a payload: a buffer with `loads`, a file with `load` if the serializer has it.

    A file is closed afterwards, whatever happens.

    Raises:
        SerializationError: The payload cannot be deserialized.
    """
    if isinstance(payload, memoryview):
        return serializer.loads(payload)
    with payload:
        load = getattr(serializer, "load", None)
        if callable(load):
            return load(payload)
        return serializer.loads(payload.read())


_BUILTIN: Final[dict[str, Serializer]] = {
    s.name: s
    for s in (
        CloudpickleSerializer(),
        PickleSerializer(),
        JSONSerializer(),
        NumpySerializer(),
        ArrowSerializer(),
        PandasArrowSerializer(),
    )
}
_COMPRESSED: Final = "compressed/"
_BUILTIN_COMPRESSED: dict[str, Serializer] = {}  # made on first use: the default codec is looked up


def resolve_serializer(spec: str | Serializer | SupportsDumpsLoads) -> Serializer:
    """The serializer for a task's `result_serializer` option.

    Args:
        spec: `"cloudpickle"`, `"pickle"`, `"json"`, `"numpy"`, `"arrow"` or
            `"pandas-arrow"`, or one of them compressed
            (`"compressed/pickle"`...; see `CompressedSerializer`); or any object with
            `dumps(value) -> bytes` and `loads(bytes) -> value` methods (a module such as
            `pickle` works too). Its name is its `name` attribute if that is a string, else its
            module's name for a module, else the qualified name of its type.

    Returns:
        A shared built-in serializer, or an adapter around `spec`.

    Raises:
        ValueError: `spec` is a string naming no built-in serializer.
        TypeError: `spec` has no callable `dumps` and `loads`.
    """
    if isinstance(spec, str):
        found = _BUILTIN.get(spec) or _BUILTIN_COMPRESSED.get(spec)
        if found is not None:
            return found
        inner = spec.removeprefix(_COMPRESSED)
        if inner != spec and inner in _BUILTIN:
            return _BUILTIN_COMPRESSED.setdefault(spec, CompressedSerializer(inner))
        known = ", ".join([*map(repr, _BUILTIN), *(repr(_COMPRESSED + n) for n in _BUILTIN)])
        raise ValueError(
            f"unknown result serializer {spec!r}; use one of {known} "
            "or an object with dumps() and loads() methods"
        )
    if isinstance(
        spec,
        PickleSerializer
        | JSONSerializer
        | CompressedSerializer
        | _CustomSerializer
        | NumpySerializer
        | ArrowSerializer
        | PandasArrowSerializer,
    ):
        return spec
    if not (callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None))):
        raise TypeError(
            f"a result serializer must be a name ({', '.join(map(repr, _BUILTIN))}) or an object "
            f"with dumps() and loads() methods, not a {_type_name(spec)}"
        )
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or not name:
        name = spec.__name__ if isinstance(spec, types.ModuleType) else _type_name(spec)
    return _CustomSerializer(spec, name)
