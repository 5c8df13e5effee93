"""
Put/Get/DeleteBucketLifecycleConfiguration (C{PUT/GET/DELETE /bucket?lifecycle}).

The document is read and checked by L{lifecycle_rules}; the store keeps the
checked configuration (as text) in the bucket's row, and the elected
expirer (L{s3balance.ops.lifecycle}) applies it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from s3balance.errors import S3Error
from s3balance.s3 import lifecycle_rules
from s3balance.s3.bodies import CHECKSUM_PREFIX, small_body

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import IMetadataStore, ObjectRecord

log = Logger()

# How long a daemon answers x-amz-expiration from a bucket's configuration
# as it last read it (a change through another daemon shows within this).
CACHE_SECONDS = 10.0


class LifecycleCache:
    """
    The buckets' configurations as this daemon last read them (or their
    absence), for the C{x-amz-expiration} header of GET, HEAD and PUT: at
    most one read of the store per bucket every L{CACHE_SECONDS}.  A change
    through this daemon is seen at once (L{forget}).
    """

    def __init__(self, clock: Callable[[], float], seconds: float = CACHE_SECONDS) -> None:
        self.clock = clock
        self.seconds = seconds
        self._known: dict[str, tuple[float, Optional[lifecycle_rules.Configuration]]] = {}

    async def of(self, store: IMetadataStore, bucket: str) -> Optional[lifecycle_rules.Configuration]:
        now = self.clock()
        known = self._known.get(bucket)
        if known is not None and now - known[0] < self.seconds:
            return known[1]
        text = await store.get_bucket_lifecycle(bucket)
        config = lifecycle_rules.load(text) if text is not None else None
        if len(self._known) > 10000:
            self._known.clear()  # (buckets come and go: never more than this many remembered)
        self._known[bucket] = (now, config)
        return config

    def forget(self, bucket: str) -> None:
        self._known.pop(bucket, None)


async def _configuration(gateway: GatewayLike, bucket: str, what: str) -> Optional[lifecycle_rules.Configuration]:
    """
    The bucket's lifecycle configuration for an informational header
    (C{what}): when it cannot be read (the database at fault) the answer
    goes without the header, never fails for it (a PUT's object is stored
    by then).
    """
    cache: Optional[LifecycleCache] = getattr(gateway, "lifecycles", None)
    if cache is None:
        return None
    try:
        return await cache.of(gateway.store, bucket)
    except CancelledError:
        raise
    except Exception as error:
        log.warn("{what} of {bucket} left out: {error}", what=what, bucket=bucket, error=repr(error))
        return None


async def expiration_header(gateway: GatewayLike, record: ObjectRecord) -> Optional[str]:
    """The C{x-amz-expiration} value S3 answers for C{record} (None: no enabled rule expires it)."""
    config = await _configuration(gateway, record.bucket, "x-amz-expiration")
    return lifecycle_rules.expiration_header(config, record) if config is not None else None


async def abort_headers(gateway: GatewayLike, bucket: str, key: str, initiated: datetime.datetime) -> dict[str, str]:
    """
    The C{x-amz-abort-date} and C{x-amz-abort-rule-id} of a multipart upload
    (CreateMultipartUpload, ListParts): when a rule will abort it.
    """
    config = await _configuration(gateway, bucket, "x-amz-abort-date")
    return lifecycle_rules.abort_headers(config, key, initiated) if config is not None else {}


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


async def _set(gateway: GatewayLike, call: S3Call, text: Optional[str]) -> None:
    await gateway.require_bucket(call)
    # Every bucket clients see has a row (configured ones: sync_config_buckets).
    if not await gateway.store.set_bucket_lifecycle(call.bucket, text):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    cache: Optional[LifecycleCache] = getattr(gateway, "lifecycles", None)
    if cache is not None:
        cache.forget(call.bucket)


async def put_bucket_lifecycle(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Replace the bucket's configuration: 200, no body, as S3."""
    _require_integrity_header(call)
    config = lifecycle_rules.parse_document(small_body(request, call))
    await _set(gateway, call, lifecycle_rules.dump(config))
    gateway.answer_empty(request, 200)


async def get_bucket_lifecycle(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The bucket's configuration; NoSuchLifecycleConfiguration (404) without one, as S3."""
    await gateway.require_bucket(call)
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
