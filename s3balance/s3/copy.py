"""
CopyObject and UploadPartCopy.

When the source's bytes already live on the backend the copy goes to, the
backend copies them itself (no object byte passes through the daemon);
otherwise they are streamed from one backend to the other through a pipe
with backpressure both ways.  A CopyObject prefers the source's backend when
it is usable and has room, so most copies are server-side.

The destination is written like a PutObject: intent, fresh real key, commit
in one transaction that queues the replaced version's copy for deletion.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Optional, cast
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends import retention
from s3balance.backends.backend import Backend, BackendError, PutResult
from s3balance.backends.streaming import BodyAborted, PipeProducer, relay_body
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import acl, lifecycle, object_lock, storage_class, tagging, versioning
from s3balance.s3.conditional import check_conditional_headers
from s3balance.s3.deferreds import uncancelled
from s3balance.s3.intent_lease import INTENT_LEASE, IntentLease, give_up_write
from s3balance.s3.writes import (
    MAX_SINGLE_PUT,
    backend_error_to_s3,
    backend_headers,
    complete_replicas,
    object_headers,
    part_number,
    quota_error,
)
from s3balance.s3.xmldoc import document, iso8601
from s3balance.store.interfaces import (
    BackendFull,
    Location,
    ObjectRecord,
    PreconditionFailedError,
    QuotaExceeded,
)
from s3balance.store.versions import NULL_VERSION, is_version_id

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request

log = Logger()

_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
COPY_PART_SIZE = 512 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024


def parse_copy_source(value: Optional[str]) -> tuple[str, str, Optional[str]]:
    """C{x-amz-copy-source}: C{[/]bucket/key[?versionId=...]}, URL-encoded. -> (bucket, key, version or None)."""
    if not value:
        raise S3Error("InvalidArgument", "x-amz-copy-source is empty.", ArgumentName="x-amz-copy-source")
    path, _, query = value.partition("?")
    version: Optional[str] = None
    if query:
        name, equals, version = query.partition("=")
        version = unquote(version)
        if name != "versionId" or not equals or not is_version_id(version):
            raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName="x-amz-copy-source",
                          ArgumentValue=value)
    path = unquote(path).lstrip("/")
    bucket, slash, key = path.partition("/")
    if not bucket or not slash or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                      ArgumentName="x-amz-copy-source")
    return bucket, key, version


async def _source(gateway: GatewayLike, call: S3Call) -> tuple[ObjectRecord, Optional[str]]:
    """
    The copy's source version, read as a GetObject of it is (its bucket's
    owner, or a grant of its ACL), and the version the request named.
    """
    bucket, key, version = parse_copy_source(call.header("x-amz-copy-source"))
    if not gateway.may_see_bucket(call.credential, bucket):
        raise S3Error("AccessDenied")
    source_bucket = await gateway.require_bucket(call, bucket, "GetObject", key)
    try:
        record = await versioning.read_version(gateway, source_bucket, key, "GetObject", version)
    except S3Error as error:
        if error.code == "MethodNotAllowed":
            raise S3Error("InvalidRequest", "The source of a copy request may not specifically refer to a delete "
                          "marker by version id.") from None
        raise
    check_conditional_headers(call.headers, record.etag, record.last_modified, prefix="x-amz-copy-source-")
    return record, version


def _source_headers(source: ObjectRecord, named: bool) -> dict[str, str]:
    """C{x-amz-copy-source-version-id}: the source version copied, when it has an id or the request named it."""
    if source.version_id is None and not named:
        return {}
    return {"x-amz-copy-source-version-id": source.version_id or NULL_VERSION}


def _readable_location(gateway: GatewayLike, record: ObjectRecord) -> Location:
    for location in record.locations:
        if gateway.pool.readable(location.backend):
            return location
    raise S3Error("ServiceUnavailable", "The backend holding the source object is unavailable; try again later.")


async def stream_between(
    gateway: GatewayLike,
    location: Location,
    byte_range: Optional[tuple[int, int]],
    length: int,
    send: Callable[[PipeProducer], Deferred[PutResult]],
) -> PutResult:
    """
    Stream C{length} bytes of C{location} (optionally a range) into the
    request that C{send(pipe)} starts on another backend.  -> its result.

    Every wait is bounded by C{balancer.backend_timeout}, as for a GetObject
    and a PutObject: the source's answer (L{Backend.get_object}), a silent
    source body (the relay's idle timeout), a destination that stops taking
    bytes (the pipe's stall timeout) and the destination's answer once it
    has every byte (L{Backend.put_object}).  A source or destination that
    fails or stalls ends the copy with 503 ServiceUnavailable (clients retry
    it; SlowDown would say "you are sending too fast", which is not what
    happened), both backend connections cut.
    """
    timeout = gateway.config.balancer.backend_timeout
    source = cast(Backend, gateway.pool.get(location.backend))  # readable: in the pool
    response = await source.get_object(location.real_key, byte_range)
    pipe = PipeProducer(length)
    pipe.stall_timeout = timeout
    pipe.clock = gateway.reactor
    stalled: list[bool] = []

    def destination_stalled() -> None:
        stalled.append(True)
        pipe.abort(BodyAborted(f"the destination took no data for {timeout:g}s"))

    pipe.on_stall = destination_stalled
    sending = send(pipe)

    def register(producer: IPushProducer) -> None:
        pipe.upstream = producer

    received, stop = relay_body(response, pipe.write, register, length, idle_timeout=timeout, clock=gateway.reactor)

    def destination_failed(failure: Failure) -> Failure:
        # Nothing more to read for: drop the source's connection too.
        stop()
        return failure

    sending.addErrback(destination_failed)
    try:
        await received
    except Exception as error:
        pipe.abort(error if isinstance(error, BodyAborted) else BodyAborted(str(error)))
        stop()
        sending.cancel()
        try:
            await sending
        except BackendError:
            raise
        except Exception:
            pass
        if stalled:
            raise S3Error("ServiceUnavailable", "The destination backend stopped taking data; nothing was stored.") from None
        log.warn("copy: reading {backend}/{key} failed: {error}", backend=location.backend, key=location.real_key,
                 error=str(error))
        raise S3Error("ServiceUnavailable", "Reading the source object failed; nothing was stored.") from None
    pipe.finish()
    try:
        return await sending
    except BackendError:
        raise
    except Exception:
        if stalled:
            raise S3Error("ServiceUnavailable", "The destination backend stopped taking data; nothing was stored.") from None
        raise


async def copy_in_parts(
    gateway: GatewayLike,
    target: Backend,
    location: Location,
    real_key: str,
    size: int,
    headers: Mapping[str, str],
    threshold: int,
) -> str:
    """
    Copy a large object as a multipart upload on the target backend: each
    part server-side when source and target are one backend, streamed
    otherwise.  An interrupted copy aborts its upload.
    """
    part_size = max(MIN_PART_SIZE, min(threshold, COPY_PART_SIZE))
    upload_id = await target.create_multipart(real_key, headers)
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), 1):
            end = min(start + part_size, size) - 1
            if target.name == location.backend:
                etag = await target.upload_part_copy(real_key, upload_id, number, location.real_key, (start, end))
            else:

                def send(pipe: PipeProducer, number: int = number) -> Deferred[PutResult]:
                    return target.upload_part(real_key, upload_id, number, pipe)

                etag = (await stream_between(gateway, location, (start, end), end - start + 1, send)).etag
            parts.append((number, etag))
        return await target.complete_multipart(real_key, upload_id, parts)
    except BaseException:
        target.abort_multipart(real_key, upload_id).addErrback(
            lambda failure: log.warn("could not abort the copy's upload on {backend}", backend=target.name)
        )
        raise


async def copy_object(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    destination = await gateway.require_bucket(call)
    source, source_version = await _source(gateway, call)
    directive = (call.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive")
    if directive == "COPY":
        # The storage class is not metadata: a copy has the class it asks
        # for, STANDARD when it names none (as on S3).
        new_class = storage_class.requested(call)
        # (A named version copied over its key is a restore, as on S3.)
        if (source.bucket, source.key) == (call.bucket, call.key) and new_class is None and source_version is None:
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without "
                "changing the object's metadata, storage class, website redirect location or encryption attributes.",
            )
        content_type, headers = source.content_type, dict(source.headers)
        storage_class.apply(headers, new_class or storage_class.STANDARD)
    else:
        content_type, headers = object_headers(call)
    # The source's tags, or with REPLACE the header's (none without it).
    if tagging.copy_directive(call.header("x-amz-tagging-directive")) == "COPY":
        tags = source.tags
    else:
        tags = tagging.requested(call.header("x-amz-tagging"))
    # Never the source's ACL (as on S3): the one the request asks for, or private.
    new_acl = acl.requested(call.headers, destination.owner, gateway.config.s3api)
    # Nor its Object Lock: the request's, or the destination bucket's default.
    lock = object_lock.requested(call, destination, datetime.datetime.now(datetime.UTC))
    location = _readable_location(gateway, source)
    pool = gateway.pool
    reservation: Optional[Reservation]
    if location.backend in {view.name for view in pool.candidates(source.size)}:
        reservation = pool.reserve(location.backend, source.size)
    else:
        reservation = pool.place(gateway.strategy, PlacementContext(call.bucket, call.key, source.size))
        if reservation is None:
            raise S3Error("ServiceUnavailable", "No storage backend can take the copy; try again later.")
    store = gateway.store
    try:
        target = cast(Backend, pool.get(reservation.backend))  # just placed there: in the pool
        real_key = gateway.new_real_key(call.bucket)
        # The copy reserves its size and one object in its bucket (its quota
        # checked), and its size on the target backend.
        try:
            intent = await store.begin_write(target.name, real_key, INTENT_LEASE, source.size, None, call.bucket, 1)
        except QuotaExceeded as exceeded:
            raise quota_error(gateway, exceeded) from None
        outgoing = backend_headers(call.bucket, call.key, content_type, headers)
        # A copy may run for long (gigabytes streamed between backends).
        lease = IntentLease(store, intent.id, INTENT_LEASE, gateway.reactor).start()
        try:
            threshold = min(gateway.config.s3api.multipart_copy_threshold or MAX_SINGLE_PUT, MAX_SINGLE_PUT)
            if source.size > threshold:
                etag = await copy_in_parts(gateway, target, location, real_key, source.size, outgoing, threshold)
            elif target.name == location.backend:
                etag = await target.copy_object(real_key, location.real_key, outgoing)
            else:
                result = await stream_between(
                    gateway, location, None, source.size, lambda pipe: target.put_object(real_key, pipe, outgoing)
                )
                etag = result.etag
            lease.stop()
            record = ObjectRecord(
                bucket=call.bucket,
                key=call.key,
                size=source.size,
                etag=etag,
                last_modified=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
                content_type=content_type,
                headers=headers,
                checksums=dict(source.checksums),
                locations=(Location(target.name, real_key),),
                tags=tags,
                acl=new_acl,
                lock_mode=lock.mode,
                lock_until=lock.until,
                legal_hold=lock.legal_hold,
            )
            await retention.protect(pool, record.locations, lock.mode, lock.until, lock.legal_hold)
            # Not cut short when the client leaves: see deferreds.uncancelled.
            record = await uncancelled(store.commit_object(
                intent.id, record, if_match=call.header("if-match"), if_none_match=call.header("if-none-match")
            ))
        except Exception as error:
            lease.stop()
            await give_up_write(gateway, intent.id, error, True)
            if isinstance(error, BackendError):
                log.warn("copy to {backend} failed: {error}", backend=target.name, error=str(error))
                raise backend_error_to_s3(error) from None
            if isinstance(error, PreconditionFailedError):
                raise S3Error("PreconditionFailed") from None
            raise
    finally:
        reservation.release()
    pool.add_usage(target.name, source.size, 1)
    gateway.kick_deleter(replaced=True)
    await complete_replicas(gateway, record)
    body = document("CopyObjectResult", [("LastModified", iso8601(record.last_modified)), ("ETag", etag)])
    # As a PUT's, the copy's answer says when a lifecycle rule expires it.
    expiration = await lifecycle.expiration_header(gateway, record)
    answered = {**_source_headers(source, source_version is not None), **versioning.version_headers(destination, record)}
    if expiration is not None:
        answered["x-amz-expiration"] = expiration
    for name, value in answered.items() if answered and not request.gone else ():
        request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    gateway.answer_xml(request, body)


def _copy_range(call: S3Call, size: int) -> Optional[tuple[int, int]]:
    raw = call.header("x-amz-copy-source-range")
    if raw is None:
        return None
    match = _RANGE.match(raw.strip())
    if match is None:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last.",
                      ArgumentName="x-amz-copy-source-range")
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=raw)
    return first, last


async def upload_part_copy(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    number = part_number(call)
    upload_id = call.query.get("uploadId", "")
    await gateway.require_bucket(call)
    upload = await gateway.store.get_multipart(upload_id)
    if upload is None or upload.bucket != call.bucket or upload.key != call.key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    source, source_version = await _source(gateway, call)
    byte_range = _copy_range(call, source.size)
    length = source.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    if length > MAX_SINGLE_PUT:
        raise S3Error("EntityTooLarge")
    location = _readable_location(gateway, source)
    target = gateway.pool.get(upload.backend)
    if target is None or not gateway.pool.is_up(upload.backend):
        raise S3Error("ServiceUnavailable", "The backend holding this upload is unavailable; try again later.")
    store = gateway.store
    # As an UploadPart: the part's bytes are reserved on the upload's backend
    # and in its bucket (checked against max_size and the quota), by an
    # intent while the copy runs, then by the upload until it ends.
    try:
        intent = await store.begin_write(
            upload.backend, upload.real_key, INTENT_LEASE, length, target.config.max_size, upload.bucket
        )
    except QuotaExceeded as exceeded:
        raise quota_error(gateway, exceeded) from None
    except BackendFull:
        raise S3Error(
            "InsufficientStorage", "The backend holding this upload has no room for this part.", status=507
        ) from None
    lease = IntentLease(store, intent.id, INTENT_LEASE, gateway.reactor).start()
    try:
        if target.name == location.backend:
            etag = await target.upload_part_copy(
                upload.real_key, upload.backend_upload_id, number, location.real_key, byte_range
            )
        else:
            result = await stream_between(
                gateway,
                location,
                byte_range,
                length,
                lambda pipe: target.upload_part(upload.real_key, upload.backend_upload_id, number, pipe),
            )
            etag = result.etag
    except BaseException as error:
        lease.stop()
        # A part cut short is no object of its own (the upload's abort
        # discards it): only the reservation goes.
        store.abandon_write(intent.id, False).addErrback(
            lambda f: log.warn("could not abandon write intent {id}: {error}", id=intent.id, error=f.getErrorMessage())
        )
        if isinstance(error, BackendError):
            log.warn("UploadPartCopy to {backend} failed: {error}", backend=target.name, error=str(error))
            raise backend_error_to_s3(error) from None
        raise
    lease.stop()
    # The bytes stay reserved with the upload, which is not idle now
    # (balancer.multipart_max_age counts from its last part).
    await uncancelled(store.record_part(intent.id, upload.upload_id, length))
    now = datetime.datetime.now(datetime.UTC)
    answered = _source_headers(source, source_version is not None)
    for name, value in answered.items() if answered and not request.gone else ():
        request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    gateway.answer_xml(request, document("CopyPartResult", [("LastModified", iso8601(now)), ("ETag", etag)]))


HANDLERS: dict[str, Handler] = {
    "CopyObject": copy_object,
    "UploadPartCopy": upload_part_copy,
}
