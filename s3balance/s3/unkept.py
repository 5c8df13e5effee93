"""
Request headers that ask for something s3balance does not keep.

S3 clients can set website redirects on a write.  s3balance does not keep
them, and a client answered 200 believes its object redirects when it does
not.  So a write that asks for one is refused before anything is stored,
with the error S3 itself gives when the feature is unavailable, instead of
being accepted and dropped.  (Tags, ACLs and Object Lock are kept:
L{s3balance.s3.tagging}, L{s3balance.s3.acl}, L{s3balance.s3.object_lock}.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})

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
    if call.header("x-amz-website-redirect-location") is not None:
        raise _not_implemented("Website redirects", "x-amz-website-redirect-location")
