"""Result files on a real S3-compatible server (moto's, on loopback)."""

from __future__ import annotations

from pathlib import Path

from s3_support import MotoServer

from taskstash.store import resolve_storage


def test_a_result_file_round_trips_through_the_local_s3_server(
    s3: MotoServer, tmp_path: Path
) -> None:
    storage = resolve_storage("s3://taskstash-test/cache", tmp_path)
    storage.write("ab/abc", [b"hello ", b"world"])
    assert storage.read("ab/abc") == b"hello world"
    assert list(storage.locations()) == ["ab/abc"]
    assert s3.objects("taskstash-test") == {"cache/ab/abc": b"hello world"}
