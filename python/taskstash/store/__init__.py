"""Storage of cached results: the SQLite index, result files and serializers.

The store knows records, never tasks, flows or cache policies. The index schema is a public
contract, documented in docs/schema.md.
"""

from taskstash.exceptions import (
    CacheCorruptedError,
    CorruptIndexError,
    CorruptResultError,
    SerializationError,
)
from taskstash.store.fsspec_storage import FsspecStorage
from taskstash.store.index import SCHEMA_VERSION, Index, Record
from taskstash.store.rebuild import rebuild_index
from taskstash.store.registry import open_store
from taskstash.store.results import (
    RESULT_FORMAT_VERSION,
    ResultHeader,
    decode_result,
    encode_result,
    make_header,
)
from taskstash.store.serializers import Serializer, dump_value, load_value, resolve_serializer
from taskstash.store.storages import (
    LocalStorage,
    ResultStorage,
    check_location,
    default_location,
    resolve_storage,
    storage_for_url,
)
from taskstash.store.store import LARGE_RESULT_BYTES, Payload, Staged, Store

__all__ = [
    "LARGE_RESULT_BYTES",
    "RESULT_FORMAT_VERSION",
    "SCHEMA_VERSION",
    "CacheCorruptedError",
    "CorruptIndexError",
    "CorruptResultError",
    "FsspecStorage",
    "Index",
    "LocalStorage",
    "Payload",
    "Record",
    "ResultHeader",
    "ResultStorage",
    "SerializationError",
    "Serializer",
    "Staged",
    "Store",
    "check_location",
    "decode_result",
    "default_location",
    "dump_value",
    "encode_result",
    "load_value",
    "make_header",
    "open_store",
    "rebuild_index",
    "resolve_serializer",
    "resolve_storage",
    "storage_for_url",
]
