"""Cache keys from Python values.

A key is 32 hex digits of XXH3-128 over a canonical, type-tagged encoding of the values (see
`docs/keys.md`). It depends only on the values: not on the process, the machine or
`PYTHONHASHSEED`. Values of different types never share a key even where Python calls them equal
(`1`, `1.0`, `True`), and dict and set order never matters.

Built-in types are encoded natively. numpy arrays, pandas objects, datetimes, `Decimal`, `UUID`,
paths, enums, dataclasses and pydantic models are hashed by value; other objects by their pickle
reduction (class by qualified name, state by value); types with no canonical form raise
`HashingError`, naming where the value sits. `register` adds a hasher for your own types.
"""

from taskstash._native import (
    KEY_FORMAT_VERSION,
    MAX_DEPTH,
    Hasher,
    HashingError,
    hash_bytes,
    hash_key,
)
from taskstash.hashing._dispatch import Canonicalizer, reduce, register

__all__ = [
    "KEY_FORMAT_VERSION",
    "MAX_DEPTH",
    "Canonicalizer",
    "Hasher",
    "HashingError",
    "hash_bytes",
    "hash_named",
    "hash_objects",
    "register",
]


def hash_objects(*values: object, **named: object) -> str:
    """The cache key of `values` and `named` values.

    Positional values are hashed in order, named ones by name regardless of order:
    `hash_objects(1, 2) != hash_objects(2, 1)` but `hash_objects(a=1, b=2) == hash_objects(b=2,
    a=1)`.

    Args:
        *values: Values hashed as a sequence.
        **named: Values hashed as a mapping from name to value.

    Returns:
        32 lowercase hex digits.

    Raises:
        HashingError: A value has no canonical form (for example a lock, an open file, a
            lambda), refers to itself, or is nested absurdly deep. Its `path` attribute says where
            the value sits (`config['lock']`) and `type_name` what it is.
    """
    return hash_key(values, named, reduce)


def hash_named(values: dict[str, object]) -> str:
    """`hash_objects(**values)`, without unpacking and repacking the dict (it is on hot paths).

    Raises:
        HashingError: A value has no canonical form.
    """
    return hash_key((), values, reduce)
