"""
Request headers that ask for something s3balance does not keep.

S3 clients can set Object Lock retention and website redirects on a write.
s3balance keeps neither, and a client answered 200 believes its object is
locked or redirects when it does not.  So a write that asks for one is
refused before anything is stored, with the error S3 itself gives when the
feature is unavailable, instead of being accepted and dropped.  (Tags and
ACLs are kept: L{s3balance.s3.tagging}, L{s3balance.s3.acl}.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "CreateBucket"})

OBJECT_LOCK_HEADERS = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)


def _not_implemented(what: str, header: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        f"{what} are not supported by s3balance; the request asked for them with {header}.",
        Header=header,
    )


def refuse_unkept(call: S3Call) -> None:
    """Raise the S3 error for a write that asks for a feature s3balance would drop."""
    if call.operation not in WRITES:
        return
    if call.operation == "CreateBucket":
        if (call.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true":
            raise _not_implemented("Object Lock and versioning", "x-amz-bucket-object-lock-enabled")
        return
    for name in OBJECT_LOCK_HEADERS:
        if call.header(name) is not None:
            # S3's answer for a bucket without an Object Lock configuration.
            raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    if call.header("x-amz-website-redirect-location") is not None:
        raise _not_implemented("Website redirects", "x-amz-website-redirect-location")
