"""
What the metadata store can hold, checked before anything is uploaded.

A value a column cannot hold must be refused with an S3 error while the
request is still at its headers: later, PostgreSQL refuses it with a 500
after the body went to the backend, and MariaDB outside strict mode cuts it
short and acknowledges the write (a key cut short is an object nobody can
read back).  L{check_request} runs in L{s3balance.s3.gateway.Gateway.prepare}
on every operation that writes an object's key or stored headers.

Reads of a key that is too long are not refused: no such object can exist,
and the lookup answers NoSuchKey (404) as SeaweedFS and S3 do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from s3balance.errors import S3Error
from s3balance.s3.writes import object_headers
from s3balance.store.records import dump_mapping

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

# S3's limit, and what tables.KeyBytes holds (VARBINARY(1024) on MariaDB).
MAX_KEY_BYTES = 1024
# objects.content_type and multipart_uploads.content_type: VARCHAR(255), in characters.
MAX_CONTENT_TYPE = 255
# objects.headers and multipart_uploads.headers: TEXT, whose smallest kind
# (MariaDB/MySQL) holds 65535 bytes; the JSON is ASCII (escaped).
MAX_STORED_HEADERS = 65535

# The operations that name a key to be written (the destination of a copy);
# UploadPart, UploadPartCopy and CompleteMultipartUpload write the key of an
# upload CreateMultipartUpload checked.
_WRITES_KEY = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})


def check_request(call: S3Call) -> None:
    """
    Refuse (L{S3Error}) a write whose key or stored headers the metadata
    store could not hold: C{KeyTooLongError} for a key over 1024 bytes of
    UTF-8, C{MetadataTooLarge} for user metadata over 2 KB,
    C{InvalidArgument} for a Content-Type over 255 characters,
    C{RequestHeaderSectionTooLarge} for stored headers over what the column
    holds.  Anything else passes.
    """
    if call.operation not in _WRITES_KEY or call.target.key is None:
        return
    check_key(call.key)
    if call.operation == "CopyObject" and (call.header("x-amz-metadata-directive") or "COPY").upper() != "REPLACE":
        return  # the source's headers are copied: they fit already
    content_type, headers = object_headers(call)  # MetadataTooLarge
    check_stored_headers(content_type, headers)


def check_key(key: str) -> None:
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", Size=str(size), MaxSizeAllowed=str(MAX_KEY_BYTES))


def check_stored_headers(content_type: Optional[str], headers: dict[str, str]) -> None:
    if content_type is not None and len(content_type) > MAX_CONTENT_TYPE:
        raise S3Error(
            "InvalidArgument",
            f"Content-Type is longer than {MAX_CONTENT_TYPE} characters.",
            ArgumentName="Content-Type",
        )
    if len(dump_mapping(headers)) > MAX_STORED_HEADERS:
        raise S3Error(
            "RequestHeaderSectionTooLarge",
            "Your request header section exceeds the maximum allowed size.",
            status=400,
        )


__all__ = [
    "MAX_CONTENT_TYPE",
    "MAX_KEY_BYTES",
    "MAX_STORED_HEADERS",
    "check_key",
    "check_request",
    "check_stored_headers",
]
