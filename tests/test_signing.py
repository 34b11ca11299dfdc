"""Signed result files (TASKSTASH_SIGNING_KEY): nothing unsigned is ever deserialized."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskstash import settings, task
from taskstash.cache_policies import INPUTS
from taskstash.store import (
    LocalStorage,
    ResultStorage,
    Store,
    default_location,
    encode_result,
    load_value,
    make_header,
    open_store,
    resolve_serializer,
    resolve_storage,
)
from taskstash.store.results import PREFIX_SIZE

KEY = "0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0
LOCATION = default_location(KEY)


class Boobytrap:
    """Unpickling it creates the directory `path`: proof that a payload was deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.path),)


def forged(key: str, value: object) -> bytes:
    """An intact, unsigned result file for `key`: what someone without the key can write."""
    payload = pickle.dumps(value, protocol=5)
    header = make_header(
        key, payload, task_name="f", task_qualname="f", serializer="pickle", created_at=NOW
    )
    return b"".join(encode_result(header, payload))


def header_and_payload(data: bytes) -> tuple[bytes, bytes]:
    size = int.from_bytes(data[8:12], "little")
    return data[PREFIX_SIZE : PREFIX_SIZE + size], data[PREFIX_SIZE + size :]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "index.db", signing_key=b"s3cret")
    yield store
    store.close()


def save(store: Store, storage: ResultStorage, value: object) -> None:
    store.save_value(
        KEY,
        value,
        resolve_serializer("pickle"),
        storage,
        LOCATION,
        task_name="f",
        task_qualname="tests.f",
        created_at=NOW,
    )


def fetch(store: Store, storage: ResultStorage) -> object:
    fetched = store.fetch(KEY, NOW, storage)
    if fetched is None:
        return None
    return load_value(resolve_serializer(fetched[1]), fetched[0])


# --- settings and stores ------------------------------------------------------------------


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSTASH_SIGNING_KEY", "clé")
    current = settings.reload()
    assert current.signing_key == "clé".encode()
    assert "clé" not in repr(current)  # never logged by accident
    monkeypatch.setenv("TASKSTASH_SIGNING_KEY", "")
    assert settings.reload().signing_key is None
    monkeypatch.delenv("TASKSTASH_SIGNING_KEY")
    assert settings.reload().signing_key is None


def test_one_store_per_index_and_key(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    plain = open_store(path)
    assert open_store(str(path)) is plain
    keyed = open_store(path, b"k")
    assert keyed is not plain
    assert open_store(path, b"k") is keyed
    assert open_store(path, b"other") is not keyed
    assert keyed.signing_key == b"k"
    assert plain.signing_key is None


# --- the file format ----------------------------------------------------------------------


def test_the_signature_is_the_documented_hmac(signed: Store, storage: LocalStorage) -> None:
    save(signed, storage, {"a": 1})
    data = bytes(storage.read(LOCATION) or b"")
    region, payload = header_and_payload(data)
    text = region.rstrip(b" ")
    fields = json.loads(text)
    signature = fields.pop("signature")
    # The header without the signature: the same bytes, the last field taken out.
    unsigned = text[: text.rindex(b',"signature":')] + b"}"
    assert json.loads(unsigned) == fields
    message = payload + unsigned + len(payload).to_bytes(8, "little")
    assert signature == hmac.new(b"s3cret", message, hashlib.sha256).hexdigest()


def test_without_a_key_nothing_is_signed_and_signatures_are_not_required(
    tmp_path: Path, storage: LocalStorage, signed: Store
) -> None:
    plain = Store(tmp_path / "plain.db")
    save(plain, storage, "unsigned")
    region, _ = header_and_payload(bytes(storage.read(LOCATION) or b""))
    assert b"signature" not in region
    assert fetch(plain, storage) == "unsigned"
    save(signed, storage, "signed")
    assert fetch(plain, storage) == "signed"  # a signed file is still a valid result
    plain.close()


# --- what a store with a key refuses ------------------------------------------------------


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
@pytest.mark.parametrize("forgery", ["unsigned", "other key", "signature moved"])
def test_a_file_without_a_valid_signature_is_never_deserialized(
    forgery: str,
    large: bool,
    signed: Store,
    storage: LocalStorage,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if large:
        signed.large_result_bytes = 0  # read in chunks, as a large file
    save(signed, storage, "genuine")
    assert fetch(signed, storage) == "genuine"
    marker = tmp_path / "unpickled"
    if forgery == "unsigned":
        bad = forged(KEY, Boobytrap(marker))
    elif forgery == "other key":
        other = Store(tmp_path / "other.db", signing_key=b"not the key")
        other.save_value(
            KEY,
            Boobytrap(marker),
            resolve_serializer("pickle"),
            storage,
            "x",
            task_name="f",
            task_qualname="f",
            created_at=NOW,
        )
        other.close()
        bad = bytes(storage.read("x") or b"")
    else:  # a genuine signature pasted onto another payload
        genuine_region, _ = header_and_payload(bytes(storage.read(LOCATION) or b""))
        trap_region, trap_payload = header_and_payload(forged(KEY, Boobytrap(marker)))
        signature = genuine_region.rstrip(b" ")[-80:-1]  # ,"signature":"<64 hex>"
        region = trap_region[:-1] + signature + b"}"
        bad = b"TSKSTSH\x01" + len(region).to_bytes(4, "little") + region + trap_payload
    storage.write(LOCATION, bad)
    with caplog.at_level(logging.WARNING, logger="taskstash"):
        assert signed.fetch(KEY, NOW, storage) is None
        assert signed.fetch(KEY, NOW, storage) is None
    assert not marker.exists()
    (warning,) = warnings_of(caplog)
    assert "is not signed with this store's signing key" in warning
    save(signed, storage, "recomputed")  # the next save overwrites it
    assert fetch(signed, storage) == "recomputed"


def test_an_unsigned_large_file_is_refused_without_reading_its_payload(
    signed: Store, storage: LocalStorage
) -> None:
    signed.large_result_bytes = 0
    save(signed, storage, "genuine")
    # A header that claims a huge payload: refused on its header alone, so fast.
    storage.write(LOCATION, forged(KEY, b"x" * (8 << 20)))
    assert signed.fetch(KEY, NOW, storage) is None


def test_a_large_file_others_may_write_is_loaded_from_a_private_copy(
    signed: Store, storage: LocalStorage
) -> None:
    signed.large_result_bytes = 0
    save(signed, storage, "genuine")
    path = storage.path(LOCATION)
    os.chmod(path, 0o666)  # anyone could rewrite it between the check and the load
    fetched = signed.fetch(KEY, NOW, storage)
    assert fetched is not None
    with open(path, "r+b") as file:  # ... and someone does
        file.seek(-8, os.SEEK_END)
        file.write(b"tampered")
    assert load_value(resolve_serializer("pickle"), fetched[0]) == "genuine"


def test_a_signed_large_result_on_an_fsspec_storage(signed: Store, tmp_path: Path) -> None:
    signed.large_result_bytes = 0
    storage = resolve_storage(f"memory://taskstash-signing/{tmp_path.name}", tmp_path)
    save(signed, storage, list(range(1000)))
    assert fetch(signed, storage) == list(range(1000))
    storage.delete(LOCATION)


# --- through tasks ------------------------------------------------------------------------


def test_tasks_sign_with_the_setting_and_recompute_forged_results(
    monkeypatch: pytest.MonkeyPatch, taskstash_home: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKSTASH_SIGNING_KEY", "team secret")
    settings.reload()
    runs: list[int] = []

    @task(cache_policy=INPUTS, cache_result_in_memory=False)
    def double(x: int) -> object:
        runs.append(x)
        return x * 2

    assert double(21) == 42
    assert double(21) == 42
    assert runs == [21]
    (path,) = [p for p in (taskstash_home / "storage").rglob("*") if p.is_file()]
    assert b'"signature":"' in path.read_bytes()
    record_key = path.name
    marker = tmp_path / "unpickled"
    path.write_bytes(forged(record_key, Boobytrap(marker)))
    assert double(21) == 42  # recomputed, the forgery never loaded
    assert not marker.exists()
    assert runs == [21, 21]
    assert double(21) == 42  # the forgery was overwritten by a signed result
    assert runs == [21, 21]
