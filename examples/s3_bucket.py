"""The seed's "Cache in a distributed environment" sample, with taskstash's imports: results in
an S3 bucket, saved as a named storage, shared by two machines (here two processes, each with
its own TASKSTASH_HOME and index; the second finds the bucket by its name alone).

Needs `pip install taskstash[s3]` and a bucket "my-bucket" (the AWS variables choose the server:
AWS_ENDPOINT_URL=http://127.0.0.1:5000 for a local one such as moto's).

Run: python examples/s3_bucket.py
"""

import os
import subprocess
import sys
import tempfile

from taskstash import task
from taskstash.aws import AwsCredentials, S3Bucket
from taskstash.cache_policies import INPUTS

if "--second-machine" not in sys.argv:
    # The seed's sample, as printed.
    s3_bucket = S3Bucket(
        credentials=AwsCredentials(
            aws_access_key_id="my-access-key-id",
            aws_secret_access_key="my-secret-access-key",
        ),
        bucket_name="my-bucket",
    )
    # save the block to ensure it is available across machines
    s3_bucket.save("my-cache-bucket")

    @task(cache_policy=INPUTS, result_storage=s3_bucket)
    def my_cached_task(x: int) -> int:
        print("computing on the first machine")
        return x + 42

else:
    # Another machine, given the settings file: the storage by name, no credentials in code.
    @task(cache_policy=INPUTS, result_storage="my-cache-bucket")
    def my_cached_task(x: int) -> int:
        print("computing on the second machine")
        return x + 42


if __name__ == "__main__":
    print("result:", my_cached_task(1))
    if "--second-machine" not in sys.argv:
        from taskstash import settings

        env = {
            **os.environ,
            "TASKSTASH_HOME": tempfile.mkdtemp(),  # its own index
            "TASKSTASH_CONFIG": str(settings.current().config_path),  # the same settings file
        }
        subprocess.run([sys.executable, __file__, "--second-machine"], check=True, env=env)
