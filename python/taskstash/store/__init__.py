"""Storage of cached results: the SQLite index, result files and serializers.

The store knows records, never tasks, flows or cache policies. The index schema is a public
contract, documented in docs/schema.md.
"""

from typing import TYPE_CHECKING

from taskstash.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CacheCorruptedError": "taskstash.exceptions",
        "CorruptIndexError": "taskstash.exceptions",
        "CorruptResultError": "taskstash.exceptions",
        "SerializationError": "taskstash.exceptions",
        "FsspecStorage": "taskstash.store.fsspec_storage",
        "SCHEMA_VERSION": "taskstash.store.index",
        "Index": "taskstash.store.index",
        "Record": "taskstash.store.index",
        "rebuild_index": "taskstash.store.rebuild",
        "open_store": "taskstash.store.registry",
        "RESULT_FORMAT_VERSION": "taskstash.store.results",
        "ResultHeader": "taskstash.store.results",
        "decode_result": "taskstash.store.results",
        "encode_result": "taskstash.store.results",
        "make_header": "taskstash.store.results",
        "Serializer": "taskstash.store.serializers",
        "dump_value": "taskstash.store.serializers",
        "load_value": "taskstash.store.serializers",
        "resolve_serializer": "taskstash.store.serializers",
        "LocalStorage": "taskstash.store.storages",
        "ResultStorage": "taskstash.store.storages",
        "check_location": "taskstash.store.storages",
        "default_location": "taskstash.store.storages",
        "resolve_storage": "taskstash.store.storages",
        "storage_for_url": "taskstash.store.storages",
        "LARGE_RESULT_BYTES": "taskstash.store.store",
        "Payload": "taskstash.store.store",
        "Staged": "taskstash.store.store",
        "Store": "taskstash.store.store",
    },
)
