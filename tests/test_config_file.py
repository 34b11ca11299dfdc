"""The settings file: settings by their lower-case names, named storages, the environment wins."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from s3_support import MotoServer

from taskstash import settings, task
from taskstash.aws import AwsCredentials, S3Bucket
from taskstash.cache_policies import INPUTS
from taskstash.store import LocalStorage, resolve_storage


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    settings.reload()


def test_the_file_holds_settings_and_the_environment_wins(
    taskstash_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(taskstash_home, 'max_size = "2KiB"\nrecord_parameters = false\n')
    assert (settings.current().max_size, settings.current().record_parameters) == (2048, False)
    monkeypatch.setenv("TASKSTASH_MAX_SIZE", "1KB")
    assert settings.current().max_size == 1000


def test_taskstash_config_names_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('logging_level = "ERROR"\n')
    monkeypatch.setenv("TASKSTASH_CONFIG", str(other))
    assert settings.current().logging_level == "ERROR"


def test_a_name_resolves_to_its_storage_with_options_from_the_environment(
    taskstash_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        taskstash_home,
        f'[storages.team]\nurl = "{tmp_path / "team"}"\n'
        '[storages.bucket]\nurl = "memory://cache"\nsecret = { env = "CACHE_SECRET" }\n',
    )
    current = settings.current()
    storage = resolve_storage("team", current.local_storage_path, current.storages)
    assert isinstance(storage, LocalStorage)
    assert storage.root == str(tmp_path / "team")
    assert "CACHE_SECRET" not in repr(current)
    with pytest.raises(KeyError, match="CACHE_SECRET, which is not set"):
        current.storages["bucket"].resolved_options()
    monkeypatch.setenv("CACHE_SECRET", "s3cr3t")
    assert current.storages["bucket"].resolved_options() == {"secret": "s3cr3t"}


def test_a_saved_bucket_is_used_by_name_and_its_file_is_private(
    s3: MotoServer, taskstash_home: Path
) -> None:
    bucket = S3Bucket(
        bucket_name="taskstash-test",
        bucket_folder="named",
        credentials=AwsCredentials("id", "very-secret-key"),
    )
    assert "very-secret-key" not in repr(bucket)
    bucket.save("team-bucket")
    config = taskstash_home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    calls = []

    @task(cache_policy=INPUTS, result_storage="team-bucket")
    def add(x: int) -> int:
        calls.append(x)
        return x + 1

    assert add(1) == add(1) == 2
    assert calls == [1]
    assert [name.split("/")[0] for name in s3.objects("taskstash-test")] == ["named"]
    bucket.save("second")  # the file is rewritten with both tables
    assert set(settings.current().storages) == {"team-bucket", "second"}
