"""
Request headers that ask for something s3balance does not keep.

S3 clients can set ACLs, Object Lock retention and website redirects on a
write.  s3balance keeps none of them yet, and a client answered 200
believes its object is public or locked when it is not.  So a write that
asks for one is refused before anything is stored, with the error S3 itself
gives when the feature is unavailable, instead of being accepted and
dropped.  What costs nothing to honour stays accepted: the canned ACLs that
mean "only the owner" (every object here has one owner) and the copy
directives that keep nothing.  (Tags are kept: L{s3balance.s3.tagging}.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

# Canned ACLs that grant nothing beyond the owner: what every object has.
OWNER_ONLY_ACLS = frozenset({"private", "bucket-owner-read", "bucket-owner-full-control"})

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
    acl = call.header("x-amz-acl")
    if acl is not None and acl not in OWNER_ONLY_ACLS:
        raise _not_implemented("ACLs other than private", "x-amz-acl")
    for name in call.headers:
        if name.startswith("x-amz-grant-"):
            raise _not_implemented("ACL grants", name)
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
