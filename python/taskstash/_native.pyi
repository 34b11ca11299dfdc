"""The native core of taskstash: XXH3-128 and the canonical key encoding (private)."""

from collections.abc import Callable
from typing import Any, final

__all__ = [
    "KEY_FORMAT_VERSION",
    "MAX_DEPTH",
    "CallKeyer",
    "EnvironWatch",
    "Hasher",
    "HashingError",
    "HitTally",
    "__version__",
    "hash_bytes",
    "hash_key",
]

__version__: str
KEY_FORMAT_VERSION: int
"""The version of the canonical encoding; part of every key."""
MAX_DEPTH: int
"""How deeply containers and objects may nest inside a hashed value."""

class HashingError(ValueError):
    """A value has no canonical form to hash (unsupported type, self-reference, absurd nesting).

    Attributes:
        path: Where the value sits, e.g. `config['lock']` or `args[0][2]`.
        type_name: The qualified name of the value's type, e.g. `_thread.lock`.
    """

    path: str
    type_name: str

def hash_key(
    values: tuple[object, ...],
    named: dict[str, object],
    reducer: Callable[[Any], tuple[str, object]],
) -> str:
    """Hashes `values` and `named` into a key of 32 hex digits.

    Args:
        values: Positional values, hashed in order.
        named: Named values, hashed regardless of order.
        reducer: Called for objects of types the encoder does not know; returns the object's
            qualified type name and a value that stands for it.

    Raises:
        HashingError: A value cannot be hashed.
    """

# Buffers are typed `object`: on Python 3.11, numpy's stubs do not mark arrays as `Buffer`.

def hash_bytes(data: object) -> str:
    """XXH3-128 of the bytes of `data` as 32 hex digits (equal to `xxhash.xxh3_128_hexdigest`).

    `data` is any object supporting the buffer protocol.

    `bytes` are read in place, with the interpreter released when large; other buffers
    (bytearray, memoryview, numpy arrays) in place with it held.

    Raises:
        BufferError: `data` is not C-contiguous.
        TypeError: `data` does not support the buffer protocol.
    """

@final
class Hasher:
    """An incremental XXH3-128 hasher, the digest of everything passed to `update`."""

    def __new__(cls, data: object | None = None) -> Hasher: ...
    def update(self, data: object) -> None:
        """Adds the bytes of `data` (bytes or any C-contiguous buffer)."""
    def digest(self) -> bytes:
        """The 16-byte digest so far (big-endian, as `xxhash.xxh3_128().digest()`)."""
    def hexdigest(self) -> str:
        """The digest so far as 32 hex digits."""

@final
class CallKeyer:
    """Keys the calls of one task from their arguments (the other components are fixed)."""

    def __new__(
        cls, identity: str, before: list[tuple[str, str]], after: list[tuple[str, str]]
    ) -> CallKeyer: ...
    def key(
        self,
        names: tuple[str, ...],
        values: tuple[object, ...],
        reducer: Callable[[object], tuple[str, object]],
    ) -> str:
        """`hash_key(("task", identity, [*before, ("inputs", <names: values>), *after]), {})`.

        Raises:
            HashingError: An argument has no canonical form.
            ValueError: `names` and `values` differ in length.
        """

@final
class EnvironWatch:
    """Watches some keys of a dict (`os.environ._data`) for values bound to other objects."""

    def __new__(cls, data: dict[bytes, bytes], keys: tuple[bytes, ...]) -> EnvironWatch: ...
    def changed(self) -> bool:
        """Whether a watched key's value changed (by identity) since the last call."""

@final
class HitTally:
    """Hit counts per key between writes to the index, shared by a process's threads."""

    def __new__(cls) -> HitTally: ...
    def add(self, key: str, last: float, count: int = 1) -> bool:
        """Counts `count` hits of `key`, the last at `last`; returns whether none were pending."""
    def discard(self, key: str) -> None:
        """Drops the pending hits of `key`."""
    def take(self) -> dict[str, tuple[int, float]]:
        """The pending hits as `{key: (count, last)}`, leaving none."""
    def __len__(self) -> int: ...
