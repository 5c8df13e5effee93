"""
What every write of object data shares (PutObject, UploadPart, CopyObject,
UploadPartCopy, CreateMultipartUpload): the headers stored with an object
and sent to its backend, the placement of a new object with its write
intent, the part number of a request, and what a client hears of a backend
failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional, cast
from urllib.parse import quote

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from s3balance.backends.backend import Backend, BackendError
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import storage_class
from s3balance.store.interfaces import BackendFull, ObjectRecord, QuotaExceeded, WriteIntent

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike

log = Logger()

STORED_HEADERS = ("content-disposition", "cache-control", "expires", "content-language")
MAX_SINGLE_PUT = 5 * 1024**3  # 5 GiB, S3's limit for one PUT
MAX_METADATA = 2048


def object_headers(call: S3Call) -> tuple[Optional[str], dict[str, str]]:
    """The content type and the headers stored with an object (and sent to the backend)."""
    headers: dict[str, str] = {}
    content_type = call.header("content-type") or "binary/octet-stream"
    encoding = call.header("content-encoding")
    if encoding:
        tokens = [t.strip() for t in encoding.split(",") if t.strip() and t.strip().lower() != "aws-chunked"]
        if tokens:
            headers["content-encoding"] = ", ".join(tokens)
    for name in STORED_HEADERS:
        value = call.header(name)
        if value is not None:
            headers[name] = value
    metadata_size = 0
    for name, values in call.headers.items():
        if name.startswith("x-amz-meta-"):
            headers[name] = ",".join(values)
            metadata_size += len(name) - len("x-amz-meta-") + len(headers[name])
    if metadata_size > MAX_METADATA:
        raise S3Error("MetadataTooLarge")
    storage_class.apply(headers, storage_class.requested(call))
    return content_type, headers


def backend_headers(bucket: str, key: str, content_type: Optional[str], headers: dict[str, str]) -> dict[str, str]:
    """What the backend receives with the bytes (see s3balance.backends.backend)."""
    out = {"Content-Type": content_type or "binary/octet-stream"}
    out.update(headers)
    out.pop(storage_class.HEADER, None)  # a label of ours, not the backend's
    quoted = quote(key, safe="/")
    out["x-amz-meta-s3balance-bucket"] = bucket
    if len(quoted) <= 512:
        out["x-amz-meta-s3balance-key"] = quoted
    return out


async def place_write(
    gateway: GatewayLike,
    context: PlacementContext,
    size: int,
    lease: float,
    exclude: Iterable[str] = (),
    quota: bool = True,
) -> tuple[Reservation, Backend, str, WriteIntent]:
    """
    Place a new object: a backend chosen by the strategy among those with
    room by this process's view (the pool's pre-filter), and a write intent
    for a fresh real key there reserving C{size} bytes, which the store
    grants only when they fit with every daemon's reservations.  A backend
    the store finds full is skipped for the next candidate.

    The intent also reserves C{size} bytes and one object in the virtual
    bucket (C{context.bucket}), checked against its quota by the store;
    not with C{quota=False} (the other copies of an object: a bucket's
    usage counts each object once).

    -> (local reservation, backend, real key, intent).  Raises
    InsufficientStorage (507) when no usable backend has room,
    ServiceUnavailable when none is usable, QuotaExceeded (403) when the
    bucket's quota does not allow the write.
    """
    pool = gateway.pool
    skipped = list(exclude)
    refused = False
    counted: tuple[Optional[str], int] = (context.bucket, 1) if quota else (None, 0)
    while True:
        reservation = pool.place(gateway.strategy, context, skipped, reserve=size)
        if reservation is None:
            if refused or pool.all_full(context.size, skipped):
                raise S3Error("InsufficientStorage", "No backend has room for this object.", status=507)
            raise S3Error("ServiceUnavailable", "No storage backend is available; try again later.")
        backend = cast(Backend, pool.get(reservation.backend))  # just placed there: in the pool
        real_key = gateway.new_real_key(context.bucket)
        try:
            intent = await gateway.store.begin_write(
                backend.name, real_key, lease, size, backend.config.max_size, *counted
            )
        except QuotaExceeded as exceeded:
            reservation.release()
            raise quota_error(gateway, exceeded) from None
        except BackendFull as full:
            reservation.release()
            log.info("backend {backend} is full ({error}); placing elsewhere", backend=backend.name, error=str(full))
            skipped.append(backend.name)
            refused = True
            continue
        except BaseException:
            reservation.release()
            raise
        return reservation, backend, real_key, intent


async def complete_replicas(gateway: GatewayLike, record: Optional[ObjectRecord]) -> None:
    """
    After a commit: give C{record} the copies its bucket wants that it was
    not written with (s3balance.ops.replicate).  A C{replication: sync}
    bucket's copies are made before the write answers; when they cannot be,
    the write answers 503 (the object stays stored, and the replica repair
    makes its copies).  An async bucket's are made in the background.
    Without the daemon's replica service (C{gateway.replicas}: unit tests'
    gateways) nothing is made.
    """
    if record is None:
        return
    want, mode = gateway.config.replication_of(record.bucket)
    if want <= len(record.locations):
        return
    replicas = getattr(gateway, "replicas", None)
    if replicas is None:
        return
    if mode != "sync":
        replicas.soon(record)
        return
    try:
        await replicas.complete(record)
    except CancelledError:
        raise
    except Exception as error:
        log.warn(
            "{bucket}/{key} stored with {have} of {want} copies: {error}",
            bucket=record.bucket,
            key=record.key,
            have=len(record.locations),
            want=want,
            error=str(error),
        )
        raise S3Error(
            "ServiceUnavailable",
            f"The object was stored, with fewer copies than the bucket's {want}; the rest will be made in the background.",
        ) from None


def quota_error(gateway: GatewayLike, exceeded: QuotaExceeded) -> S3Error:
    """What the client hears of a write its bucket's quota refused (Ceph RGW's answer); counted in the metrics."""
    metrics = getattr(gateway, "metrics", None)
    if metrics is not None:
        metrics.quota_rejection(exceeded.bucket)
    log.info("quota of bucket {bucket} refused a write: {error}", bucket=exceeded.bucket, error=str(exceeded))
    if exceeded.limit == "max_size":
        limit = f"{exceeded.maximum} bytes ({exceeded.used} stored, {exceeded.reserved} reserved by uploads in progress)"
    else:
        limit = f"{exceeded.maximum} objects ({exceeded.used} stored, {exceeded.reserved} reserved by uploads in progress)"
    return S3Error(
        "QuotaExceeded",
        f"The quota of bucket {exceeded.bucket} ({exceeded.limit}) allows at most {limit}.",
        BucketName=exceeded.bucket,
    )


def part_number(call: S3Call) -> int:
    try:
        number = int(call.query.get("partNumber", ""))
    except ValueError:
        number = 0
    if not 1 <= number <= 10000:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber")
    return number


def backend_error_to_s3(error: BackendError) -> S3Error:
    """What the client hears of a backend failure: its own 4xx codes pass, the rest is 503."""
    if 400 <= error.status < 500 and error.code in PASSED_BACKEND_CODES:
        return S3Error(error.code)
    return S3Error("ServiceUnavailable", "The storage backend failed; the data was not stored.")


PASSED_BACKEND_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload", "EntityTooLarge"})
