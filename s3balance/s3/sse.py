"""
Server-side encryption: s3balance has none, and says so.

The bytes of an object go to the backend as the client sent them.  A client
that asks for SSE-S3, SSE-KMS or SSE-C and is answered 200 believes its object
is encrypted (with SSE-C: that nobody can read it without its key) when it is
not, so every request that asks for encryption is refused, on every
operation, before anything is stored:

  - the request headers C{x-amz-server-side-encryption*} (SSE-S3/SSE-KMS:
    the algorithm, C{-aws-kms-key-id}, C{-context}, C{-bucket-key-enabled};
    SSE-C: C{-customer-algorithm}, C{-customer-key}, C{-customer-key-MD5})
    and C{x-amz-copy-source-server-side-encryption-customer-*} (the key of an
    SSE-C copy source);
  - the same names as query parameters: presigners that hoist C{x-amz-*}
    headers into the URL (aws-sdk-js v3 does) put them there, and S3 honours
    them.

The answer is C{501 NotImplemented}, the one MinIO gives for SSE when it has
no KMS configured: the request is valid S3, this server lacks the feature.

C{PUT}/C{DELETE ?encryption} (bucket default encryption) are routed to
C{NotImplemented} like every sub-resource without a handler.  GetBucketEncryption
answers what S3 answers for a bucket without a default encryption
configuration, which is the truth for every s3balance bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request

ENCRYPTION_PREFIXES = ("x-amz-server-side-encryption", "x-amz-copy-source-server-side-encryption")


def encryption_requested(headers: Iterable[str], query: Iterable[str]) -> list[str]:
    """
    The header names (lower-case) and query parameter names (as sent) that ask
    for server-side encryption, headers first.
    """
    names = [name for name in headers if name.lower().startswith(ENCRYPTION_PREFIXES)]
    names.extend(name for name in query if name.lower().startswith(ENCRYPTION_PREFIXES))
    return names


def refuse_encryption(headers: Mapping[str, object], query: Mapping[str, object]) -> None:
    """
    Raise C{NotImplemented} if the request asks for server-side encryption.

    @param headers: the request headers by lower-case name.
    @param query: the decoded query parameters by name.
    """
    names = encryption_requested(headers, query)
    if names:
        raise S3Error(
            "NotImplemented",
            "Server-side encryption is not supported by s3balance; the request asked for it with "
            + ", ".join(names)
            + ". Objects are stored as sent; encrypt on the client.",
            Header=names[0],
        )


async def get_bucket_encryption(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """S3's answer for a bucket without a default encryption configuration."""
    await gateway.require_bucket(call)
    raise S3Error(
        "ServerSideEncryptionConfigurationNotFoundError",
        "The server side encryption configuration was not found",
        status=404,
        BucketName=call.bucket,
    )


HANDLERS: dict[str, Handler] = {
    "GetBucketEncryption": get_bucket_encryption,
}
