"""Real S3 servers and real S3 clients for the integration tests.

- ``process``: children with logs, readiness polling, clean stop, ``free_port``.
- ``seaweedfs``: ``SeaweedFS`` (verifies SigV4) and the shared instances.
- ``moto``: ``MotoServer`` (accepts any signature) and ``shared_moto``.
- ``clients``: aws cli, s3cmd, rclone, minio and boto3 against an endpoint.
- ``naming``: ``unique_bucket_name`` so tests on a shared server never collide.

The helpers block; from a test whose server runs in the trial reactor, call
them through ``clients.in_thread`` (``deferToThread``).
"""

from .clients import (
    ClientError,
    ClientResult,
    boto3_client,
    in_thread,
    minio_client,
    run_aws,
    run_rclone,
    run_s3cmd,
)
from .moto import MotoServer, shared_moto
from .naming import unique_bucket_name
from .process import HarnessError, ManagedProcess, free_port, harness_dir, wait_for_http, wait_for_port
from .seaweedfs import (
    SHARED_ACCESS_KEY,
    SHARED_SECRET_KEY,
    SeaweedFS,
    shared_seaweedfs,
    shared_seaweedfs_pair,
)

__all__ = [
    "SHARED_ACCESS_KEY",
    "SHARED_SECRET_KEY",
    "ClientError",
    "ClientResult",
    "HarnessError",
    "ManagedProcess",
    "MotoServer",
    "SeaweedFS",
    "boto3_client",
    "free_port",
    "harness_dir",
    "in_thread",
    "minio_client",
    "run_aws",
    "run_rclone",
    "run_s3cmd",
    "shared_moto",
    "shared_seaweedfs",
    "shared_seaweedfs_pair",
    "unique_bucket_name",
    "wait_for_http",
    "wait_for_port",
]
