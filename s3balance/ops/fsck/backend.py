"""
Talking to the backends: a botocore client for each, and what their errors say.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from s3balance.config import BackendConfig

PAGE = 1000  # rows / keys per page, everywhere in the operator commands

# What the metadata check of a listed key says when the key is gone meanwhile.
GONE = "gone meanwhile"


class Unreadable(Exception):
    """A backend object's metadata could not be read (the message says why)."""


_session: Any = None
_session_lock = threading.Lock()


def backend_client(config: BackendConfig, concurrency: int = 8) -> Any:
    """A botocore S3 client for one configured backend (thread-safe).

    The clients of one process come from one botocore session: a session
    reads botocore's endpoint and S3 model files when it makes its first
    client (90 ms of CPU, then 3 ms a client), and a command makes a client
    per backend.  A session is not thread-safe, so clients are made under a
    lock; the clients themselves are.
    """
    import botocore.config

    client_config = botocore.config.Config(
        s3={"addressing_style": "path" if config.path_style else "virtual"},
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    global _session
    with _session_lock:
        if _session is None:
            import botocore.session

            _session = botocore.session.Session()
            # Only the configured keys count, never ~/.aws of whoever runs the command.
            _session.set_config_variable("config_file", "/dev/null")
            _session.set_config_variable("credentials_file", "/dev/null")
        return _session.create_client(
            "s3",
            region_name=config.region or "us-east-1",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=client_config,
        )


def delete_key(client: Any, config: BackendConfig, key: str) -> None:
    """
    Delete C{key} from C{config}'s real bucket; on a backend with
    C{object_lock} (a versioned real bucket) every version and delete
    marker of it, as the deletion worker does
    (L{s3balance.backends.retention.delete_every_version}).
    """
    if not config.object_lock:
        client.delete_object(Bucket=config.name, Key=key)
        return
    answer = client.list_object_versions(Bucket=config.name, Prefix=key, MaxKeys=PAGE)
    for entry in answer.get("Versions", []) + answer.get("DeleteMarkers", []):
        if entry["Key"] == key:
            client.delete_object(
                Bucket=config.name, Key=key, VersionId=entry["VersionId"], BypassGovernanceRetention=True
            )


def error_status(error: Exception) -> tuple[int, str]:
    """The HTTP status (0 without an answer) and S3 error code of a failed request."""
    response = getattr(error, "response", None) or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    code = str(response.get("Error", {}).get("Code", "")) or type(error).__name__
    return status, code


def bare_etag(etag: Optional[str]) -> str:
    etag = (etag or "").strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def probe_key() -> str:
    """The key the daemon's health probe writes (never an orphan)."""
    from s3balance.backends.health import PROBE_KEY

    return PROBE_KEY

def list_pages(client: Any, backend: str, prefix: str = "") -> Iterator[list[dict[str, Any]]]:
    """The keys of C{backend}'s real bucket (under C{prefix}), a page at a time."""
    paginator = client.get_paginator("list_objects_v2")
    arguments: dict[str, Any] = {"Bucket": backend, "PaginationConfig": {"PageSize": PAGE}}
    if prefix:
        arguments["Prefix"] = prefix
    for page in paginator.paginate(**arguments):
        yield list(page.get("Contents", []))
