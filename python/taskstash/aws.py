"""S3 storage in the shape of Prefect's `prefect_aws` blocks, without a Prefect server.

    from taskstash.aws import AwsCredentials, S3Bucket

    s3_bucket = S3Bucket(
        credentials=AwsCredentials(
            aws_access_key_id="my-access-key-id",
            aws_secret_access_key="my-secret-access-key",
        ),
        bucket_name="my-bucket",
    )
    s3_bucket.save("my-cache-bucket")  # a named storage in the settings file

    @task(cache_policy=INPUTS, result_storage=s3_bucket)  # or result_storage="my-cache-bucket"
    def my_cached_task(x: int): ...

An `S3Bucket` is a `result_storage` (through s3fs: `pip install taskstash[s3]`). `save` records it
as `[storages.NAME]` in the settings file (see `taskstash.config_file`), owner-only, so every
machine given that file resolves the name without code carrying credentials. Credentials left
unset come from the usual AWS chain (environment, `~/.aws`, instance roles). Secrets are kept out
of `repr`, and never reach the index, a result header or a log line: a record names its
storage by URL (`s3://my-bucket/folder`) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskstash import config_file, settings

__all__ = ["AwsClientParameters", "AwsCredentials", "S3Bucket"]


@dataclass(frozen=True)
class AwsClientParameters:
    """How the S3 client connects.

    Attributes:
        endpoint_url: Another S3-compatible server (MinIO, a local test server), or None.
        verify: Check the server's TLS certificate.
        use_ssl: Connect with TLS.
    """

    endpoint_url: str | None = None
    verify: bool = True
    use_ssl: bool = True


@dataclass(frozen=True)
class AwsCredentials:
    """AWS credentials; any left unset come from the environment or AWS's own files.

    Attributes:
        aws_access_key_id: The access key id.
        aws_secret_access_key: The secret key (not shown by `repr`).
        aws_session_token: A session token (not shown by `repr`).
        profile_name: A profile of `~/.aws/credentials`.
        region_name: The bucket's region.
        aws_client_parameters: How the client connects.
    """

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    profile_name: str | None = None
    region_name: str | None = None
    aws_client_parameters: AwsClientParameters = field(default_factory=AwsClientParameters)

    def s3fs_options(self) -> dict[str, Any]:
        """The options of `s3fs.S3FileSystem` these credentials amount to."""
        options: dict[str, Any] = {}
        for name, value in (
            ("key", self.aws_access_key_id),
            ("secret", self.aws_secret_access_key),
            ("token", self.aws_session_token),
            ("profile", self.profile_name),
        ):
            if value is not None:
                options[name] = value
        client = self.aws_client_parameters
        client_kwargs: dict[str, Any] = {}
        if self.region_name is not None:
            client_kwargs["region_name"] = self.region_name
        if client.endpoint_url is not None:
            client_kwargs["endpoint_url"] = client.endpoint_url
        if not client.verify:
            client_kwargs["verify"] = False
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        if not client.use_ssl:
            options["use_ssl"] = False
        return options


@dataclass(frozen=True)
class S3Bucket:
    """A bucket (and folder in it) for results, usable as a task's `result_storage`.

    Attributes:
        bucket_name: The bucket.
        credentials: How to reach it.
        bucket_folder: A folder in the bucket for the results ("" for the bucket's root).
    """

    bucket_name: str
    credentials: AwsCredentials = field(default_factory=AwsCredentials)
    bucket_folder: str = ""

    @property
    def url(self) -> str:
        """`s3://bucket/folder`: the storage's identity in index rows, with no secret in it."""
        folder = self.bucket_folder.strip("/")
        return f"s3://{self.bucket_name}/{folder}" if folder else f"s3://{self.bucket_name}"

    def resolved_options(self) -> dict[str, Any]:
        """The options of `s3fs.S3FileSystem` (see `AwsCredentials.s3fs_options`)."""
        return self.credentials.s3fs_options()

    def save(self, name: str, overwrite: bool = True) -> None:
        """Records this bucket as the named storage `name` in the settings file.

        The file (`$TASKSTASH_HOME/config.toml`, or `TASKSTASH_CONFIG`) is created owner-only
        (0o600); the settings are read again, so `result_storage=name` resolves at once.

        Raises:
            ValueError: `overwrite` is false and a storage of that name exists, or the settings
                file cannot be parsed.
            OSError: The file cannot be written.
        """
        current = settings.current()
        if not overwrite and name in current.storages:
            raise ValueError(f"a storage named {name!r} exists in {current.config_path}")
        assert current.config_path is not None
        config_file.save_storage(current.config_path, name, self.url, self.resolved_options())
        settings.reload()
