"""
Put/Get/DeleteBucketLifecycleConfiguration (C{PUT/GET/DELETE /bucket?lifecycle}).

The document is read and checked by L{lifecycle_rules}; the store keeps the
checked configuration (as text) in the bucket's row, and the elected
expirer (L{s3balance.ops.lifecycle}) applies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3balance.errors import S3Error
from s3balance.s3 import lifecycle_rules
from s3balance.s3.bodies import CHECKSUM_PREFIX, small_body

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request


def _require_integrity_header(call: S3Call) -> None:
    """S3 refuses a PutBucketLifecycleConfiguration without Content-MD5 or an x-amz-checksum-* (its body is checked)."""
    headers = call.headers
    if "content-md5" in headers or "x-amz-sdk-checksum-algorithm" in headers:
        return
    if any(name.startswith(CHECKSUM_PREFIX) for name in headers):
        return
    trailers = (call.header("x-amz-trailer") or "").lower()
    if CHECKSUM_PREFIX in trailers:
        return
    raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")


async def _set(gateway: GatewayLike, call: S3Call, text: str | None) -> None:
    await gateway.require_bucket(call.bucket)
    # Every bucket clients see has a row (configured ones: sync_config_buckets).
    if not await gateway.store.set_bucket_lifecycle(call.bucket, text):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)


async def put_bucket_lifecycle(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Replace the bucket's configuration: 200, no body, as S3."""
    _require_integrity_header(call)
    config = lifecycle_rules.parse_document(small_body(request, call))
    await _set(gateway, call, lifecycle_rules.dump(config))
    gateway.answer_empty(request, 200)


async def get_bucket_lifecycle(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The bucket's configuration; NoSuchLifecycleConfiguration (404) without one, as S3."""
    await gateway.require_bucket(call.bucket)
    text = await gateway.store.get_bucket_lifecycle(call.bucket)
    if text is None:
        raise S3Error(
            "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", status=404,
            BucketName=call.bucket,
        )
    gateway.answer_xml(request, lifecycle_rules.render(lifecycle_rules.load(text)))


async def delete_bucket_lifecycle(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Remove the configuration (none: fine too): 204, as S3."""
    await _set(gateway, call, None)
    gateway.answer_empty(request, 204)


HANDLERS: dict[str, Handler] = {
    "PutBucketLifecycleConfiguration": put_bucket_lifecycle,
    "GetBucketLifecycleConfiguration": get_bucket_lifecycle,
    "DeleteBucketLifecycle": delete_bucket_lifecycle,
}
