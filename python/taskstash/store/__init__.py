"""Storage of cached results: the SQLite index, result files and serializers.

The store knows records, never tasks, flows or cache policies. The index schema is a public
contract, documented in docs/schema.md.
"""

from taskstash.exceptions import CacheCorruptedError, CorruptResultError, SerializationError
from taskstash.store.fsspec_storage import FsspecStorage
from taskstash.store.index import SCHEMA_VERSION, Index, Record
from taskstash.store.results import (
    RESULT_FORMAT_VERSION,
    ResultHeader,
    decode_result,
    encode_result,
    make_header,
)
from taskstash.store.serializers import Serializer, resolve_serializer
from taskstash.store.storages import (
    LocalStorage,
    ResultStorage,
    check_location,
    default_location,
    resolve_storage,
    storage_for_url,
)
from taskstash.store.store import Store, open_store

__all__ = [
    "RESULT_FORMAT_VERSION",
    "SCHEMA_VERSION",
    "CacheCorruptedError",
    "CorruptResultError",
    "FsspecStorage",
    "Index",
    "LocalStorage",
    "Record",
    "ResultHeader",
    "ResultStorage",
    "SerializationError",
    "Serializer",
    "Store",
    "check_location",
    "decode_result",
    "default_location",
    "encode_result",
    "make_header",
    "open_store",
    "resolve_serializer",
    "resolve_storage",
    "storage_for_url",
]
