"""
GetBucketAcl, PutBucketAcl, GetObjectAcl and PutObjectAcl: the ACLs of
buckets and objects as S3 clients read and replace them (the model, the
documents and the headers: L{s3balance.s3.acl}; what a grant allows:
L{s3balance.s3.access}).

A bucket defined in the configuration has the ACL its C{acl} key names
(private without one): PutBucketAcl cannot change it, as it cannot change
its owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.errors import S3Error
from s3balance.s3 import access, acl, versioning
from s3balance.s3.bodies import small_body

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.s3.xmldoc import Node
    from s3balance.store.interfaces import ObjectRecord


def _render(gateway: GatewayLike, grants: acl.ACL, owner: str) -> bytes:
    s3api = gateway.config.s3api

    def names(account_id: str) -> list[Node]:
        return access.owner_elements(s3api, account_id)

    return acl.render(grants, owner, names)


def _new_acl(gateway: GatewayLike, request: S3Request, call: S3Call, owner: str, bucket: bool) -> acl.ACL:
    """
    The ACL a Put*Acl request sets: from its headers (a canned ACL or
    grants) or from its body (an AccessControlPolicy), never both, as S3:
    both is UnexpectedContent, neither MissingSecurityHeader.
    """
    body = small_body(request, call)
    is_account = acl.is_account_of(gateway.config.s3api)
    from_headers = acl.from_headers(call.headers, owner, is_account, bucket, replacing=True)
    if from_headers is not None:
        if body.strip():
            raise S3Error("UnexpectedContent")
        return from_headers
    if not body.strip():
        raise S3Error("MissingSecurityHeader", MissingHeaderName="x-amz-acl")
    return acl.parse_document(body, owner, is_account)


async def get_bucket_acl(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket = await gateway.require_bucket(call)
    gateway.answer_xml(request, _render(gateway, bucket.acl, bucket.owner))


async def put_bucket_acl(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Replace the bucket's ACL: 200, no body, as S3."""
    bucket = await gateway.require_bucket(call)
    configured = gateway.config.virtual_bucket(call.bucket)
    if configured is not None:
        raise S3Error(
            "AccessDenied",
            f"The ACL of a bucket defined in the configuration is set there ({configured.key or 'buckets'}.acl).",
        )
    grants = _new_acl(gateway, request, call, bucket.owner, bucket=True)
    access.refuse_public_acl(bucket, grants)
    if not await gateway.store.set_bucket_acl(call.bucket, acl.dump(grants, bucket.owner)):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    gateway.answer_empty(request, 200)


async def _object(gateway: GatewayLike, call: S3Call) -> tuple[access.BucketAccess, ObjectRecord]:
    """The object C{call} names, if the caller may do the call's operation on it."""
    version = versioning.requested_version(call)
    bucket = await gateway.require_bucket(call)
    return bucket, await versioning.read_version(gateway, bucket, call.key, call.operation, version)


async def get_object_acl(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket, record = await _object(gateway, call)
    versioning.set_version_headers(request, bucket, record)
    gateway.answer_xml(request, _render(gateway, acl.load(record.acl, bucket.owner), bucket.owner))


async def put_object_acl(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    Replace the object's ACL: 200, no body.  Only the acl column changes:
    not the bytes, ETag or Last-Modified.
    """
    bucket, record = await _object(gateway, call)
    grants = _new_acl(gateway, request, call, bucket.owner, bucket=False)
    access.refuse_public_acl(bucket, grants)
    text = acl.dump(grants, bucket.owner)
    version = versioning.requested_version(call)
    if version is None:
        if not await gateway.store.set_object_acl(call.bucket, call.key, text):
            raise S3Error("NoSuchKey", Key=call.key)
    elif not await gateway.store.set_version_acl(call.bucket, call.key, version, text):
        raise S3Error("NoSuchVersion", Key=call.key, VersionId=version)
    versioning.set_version_headers(request, bucket, record)
    gateway.answer_empty(request, 200)


HANDLERS: dict[str, Handler] = {
    "GetBucketAcl": get_bucket_acl,
    "PutBucketAcl": put_bucket_acl,
    "GetObjectAcl": get_object_acl,
    "PutObjectAcl": put_object_acl,
}
