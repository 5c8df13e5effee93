"""
Multipart uploads, pinned to the backend chosen at CreateMultipartUpload.

The store keeps one row per upload (our upload id, the backend, the real key
and the backend's upload id, the object's headers).  Parts live only on the
backend; ListParts asks it.  The object row appears only when
CompleteMultipartUpload succeeded on the backend, in the same transaction
that removes the upload row and queues the replaced version's copy for
deletion, so an abort or a failed complete leaves the previous object whole.

Upload ids handed to clients are our own random ids: a backend's id never
leaves the daemon.  UploadPart itself is streamed like PutObject
(L{s3balance.s3.upload.PartUpload}).

Over 500 lines: the five multipart operations share the upload record, its
backend and the Complete keepalive; the streamed part is elsewhere.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional
from xml.etree import ElementTree

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from s3balance.backends import retention
from s3balance.backends.backend import Backend, BackendError
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import (
    access,
    acl,
    checksum_parts,
    lifecycle,
    object_lock,
    storage_class,
    tagging,
    versioning,
)
from s3balance.s3.bodies import small_body
from s3balance.s3.writes import (
    backend_error_to_s3,
    backend_headers,
    complete_replicas,
    object_headers,
    place_write,
)
from s3balance.s3.xmldoc import Node, child_text, document, iso8601, listed_key, parse
from s3balance.store.conditions import check_preconditions
from s3balance.store.interfaces import (
    CompletedUpload,
    Location,
    MultipartRecord,
    NoSuchBucketError,
    NoSuchUploadError,
    ObjectRecord,
    PreconditionFailedError,
)

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request

log = Logger()

# While a complete runs longer than this, S3 starts its 200 answer and sends
# whitespace so that clients and proxies don't time out.
KEEPALIVE_AFTER = 5.0
MIN_PART_SIZE = 5 * 1024 * 1024


def new_upload_id() -> str:
    return os.urandom(24).hex()


async def _upload_of(gateway: GatewayLike, call: S3Call) -> tuple[MultipartRecord, str]:
    """The upload C{call} names and its bucket's owner (the upload's Initiator and Owner)."""
    upload_id = call.query.get("uploadId", "")
    bucket = await gateway.require_bucket(call)
    record = await gateway.store.get_multipart(upload_id) if upload_id else None
    if record is None or record.bucket != call.bucket or record.key != call.key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    return record, bucket.owner


def _owner(gateway: GatewayLike, owner: str) -> list[Node]:
    return access.owner_elements(gateway.config.s3api, owner)


def _backend_of(gateway: GatewayLike, record: MultipartRecord) -> Backend:
    backend = gateway.pool.get(record.backend)
    if backend is None or not gateway.pool.is_up(record.backend):
        raise S3Error("ServiceUnavailable", "The backend holding this upload is unavailable; try again later.")
    return backend


# Seconds the backend may take to open an upload before the cleaner may abort it
# (at least twice balancer.backend_timeout).
CREATE_LEASE = 300.0


async def create_multipart_upload(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket = await gateway.require_bucket(call)
    content_type, headers = object_headers(call)
    checksum_algorithm, checksum_type = checksum_parts.requested(call)
    # Checked before anything is opened; the bucket's default retention is the object's at Complete.
    lock = object_lock.requested(call, bucket, datetime.datetime.now(datetime.UTC))
    if lock.mode is not None and call.header("x-amz-object-lock-mode") is None:
        lock = object_lock.Lock(legal_hold=lock.legal_hold)
    # A write intent first: if we die between the backend opening the upload
    # and our row for it, its lease runs out and the cleaner aborts every
    # upload of this (unique) real key.  It reserves nothing (each part
    # reserves its own bytes), but a backend already full is passed over.
    lease = max(CREATE_LEASE, 2 * gateway.config.balancer.backend_timeout)
    reservation, backend, real_key, intent = await place_write(
        gateway, PlacementContext(call.bucket, call.key, None), 0, lease
    )
    reservation.release()
    try:
        backend_upload_id = await backend.create_multipart(
            real_key, backend_headers(call.bucket, call.key, content_type, headers)
        )
    except BackendError as error:
        log.warn("CreateMultipartUpload on {backend} failed: {error}", backend=backend.name, error=str(error))
        # The backend may have opened it and lost the answer: let the cleaner look.
        gateway.store.abandon_write(intent.id, error.status == 0 or error.status >= 500).addErrback(
            lambda f: log.warn("could not settle the write intent of {key}", key=real_key)
        )
        raise backend_error_to_s3(error) from None
    # Kept with the upload only (the backend had its headers; the object's drop them).
    checksum_parts.remember(headers, checksum_algorithm, checksum_type)
    record = MultipartRecord(
        upload_id=new_upload_id(),
        bucket=call.bucket,
        key=call.key,
        backend=backend.name,
        real_key=real_key,
        backend_upload_id=backend_upload_id,
        initiated=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
        content_type=content_type,
        headers=headers,
        # Checked before anything was opened (Gateway.prepare); the object's at Complete.
        tags=tagging.requested(call.header("x-amz-tagging")),
        acl=acl.requested(call.headers, bucket.owner, gateway.config.s3api),
        lock_mode=lock.mode,
        lock_until=lock.until,
        legal_hold=lock.legal_hold,
    )
    try:
        await gateway.store.create_multipart(record, intent.id)
    except Exception as error:
        # Not recorded: don't leave the backend's upload open (and should
        # this abort fail, the intent's expiry makes the cleaner do it).
        backend.abort_multipart(real_key, backend_upload_id).addErrback(
            lambda f: log.warn("could not abort orphan upload on {backend}", backend=backend.name)
        )
        if isinstance(error, NoSuchBucketError):
            # The bucket was deleted while the upload was being opened.
            raise S3Error("NoSuchBucket", BucketName=call.bucket) from None
        raise
    body = document(
        "InitiateMultipartUploadResult",
        [("Bucket", call.bucket), ("Key", call.key), ("UploadId", record.upload_id)],
    )
    for name, value in checksum_parts.create_answer_headers(headers).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    # When a lifecycle rule will abort it, as S3 says.
    for name, value in (await lifecycle.abort_headers(gateway, call.bucket, call.key, record.initiated)).items():
        request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    gateway.answer_xml(request, body)


def _parse_parts(body: bytes) -> list[tuple[int, str]]:
    root = parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise S3Error("MalformedXML")
    parts: list[tuple[int, str]] = []
    for element in root.findall("Part"):
        number_text = child_text(element, "PartNumber")
        etag = child_text(element, "ETag")
        if number_text is None or etag is None:
            raise S3Error("MalformedXML")
        try:
            number = int(number_text)
        except ValueError:
            raise S3Error("MalformedXML") from None
        etag = etag.strip()
        if not etag.startswith('"'):
            etag = f'"{etag}"'
        parts.append((number, etag))
    if not parts:
        raise S3Error("MalformedXML", "The XML you provided did not list any part.")
    numbers = [number for number, _ in parts]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise S3Error("InvalidPartOrder")
    return parts


async def complete_multipart_upload(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    upload_id = call.query.get("uploadId", "")
    bucket = await gateway.require_bucket(call)
    record = await gateway.store.get_multipart(upload_id) if upload_id else None
    if record is None or record.bucket != call.bucket or record.key != call.key:
        # A Complete sent again after its answer was lost: the same answer.
        done = await _completed(gateway, upload_id, call.bucket, call.key)
        if done is None:
            raise S3Error("NoSuchUpload", UploadId=upload_id)
        gateway.answer_xml(request, _complete_result(done.bucket, done.key, done.etag, done.checksums))
        return
    # Its checksum headers are the object's (checksum_parts.object_checksums).
    body = small_body(request, call, object_checksums=True)
    parts = _parse_parts(body)
    if_match, if_none_match = call.header("if-match"), call.header("if-none-match")
    if if_match is not None or if_none_match is not None:
        # Checked before the backend assembles anything; again at the commit.
        current = await gateway.store.get_object(record.bucket, record.key)
        try:
            check_preconditions(current.etag if current is not None else None, if_match, if_none_match)
        except PreconditionFailedError:
            raise S3Error("PreconditionFailed") from None
    received = {part.number: part for part in await gateway.store.multipart_parts(record.upload_id)}
    checksum_args = (
        call,
        record.headers,
        parts,
        checksum_parts.listed_checksums(body),
        {number: (part.size, part.etag, part.checksums) for number, part in received.items()},
    )
    checksum_parts.check_object_size(call, parts, checksum_args[4])
    if len(parts) > checksum_parts.INLINE_PARTS:
        reactor = gateway.reactor
        checksums = await deferToThreadPool(
            reactor, reactor.getThreadPool(), checksum_parts.object_checksums, *checksum_args
        )
    else:
        checksums = checksum_parts.object_checksums(*checksum_args)
    # An object with checksums keeps its parts' (GetObjectAttributes).
    object_parts = [received[number] for number, _ in parts] if checksums else []
    backend = _backend_of(gateway, record)
    keepalive = _Keepalive(gateway, request)
    try:
        try:
            etag, size = await _complete_on_backend(backend, record, parts)
        except BackendError as error:
            log.warn("CompleteMultipartUpload on {backend} failed: {error}", backend=backend.name, error=str(error))
            raise backend_error_to_s3(error) from None
        obj = ObjectRecord(
            bucket=record.bucket,
            key=record.key,
            size=size,
            etag=etag,
            last_modified=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            content_type=record.content_type,
            headers=checksum_parts.object_headers(record.headers),
            checksums=checksums,
            locations=(Location(record.backend, record.real_key),),
            tags=record.tags,
            acl=record.acl,
            **_lock_at_complete(bucket, record),
        )
        # A retry of the Complete finds the backend's object and locks it again.
        try:
            await retention.protect(gateway.pool, obj.locations, obj.lock_mode, obj.lock_until, obj.legal_hold)
        except BackendError as error:
            log.warn("locking {key} on {backend} failed: {error}", key=record.real_key, backend=backend.name,
                     error=str(error))
            raise backend_error_to_s3(error) from None
        try:
            stored = await gateway.store.complete_multipart(record.upload_id, obj, if_match, if_none_match, object_parts)
        except NoSuchUploadError:
            done = await _completed(gateway, record.upload_id, record.bucket, record.key)
            if done is not None:
                # A concurrent Complete of the same upload committed it: this
                # is the same object (one real key per upload), not an orphan.
                keepalive.finish(_complete_result(done.bucket, done.key, done.etag, done.checksums))
                return
            # Aborted while we completed: the object on the backend is an orphan.
            await _discard_backend_object(gateway, record)
            raise S3Error("NoSuchUpload", UploadId=record.upload_id) from None
        except PreconditionFailedError:
            # Another write took the key since the check above: the
            # assembled object is not wanted, and the upload is spent.
            await gateway.store.abort_multipart(record.upload_id, False)
            await _discard_backend_object(gateway, record)
            raise S3Error("PreconditionFailed") from None
        gateway.pool.add_usage(record.backend, size, 1)
        gateway.kick_deleter(replaced=True)
        # A bucket with replicas: the copies (the keepalive covers a long one).
        await complete_replicas(gateway, stored)
        expiration = await lifecycle.expiration_header(gateway, stored)
        headers = versioning.version_headers(bucket, stored)
        if expiration is not None:
            headers["x-amz-expiration"] = expiration
        keepalive.finish(_complete_result(record.bucket, record.key, etag, checksums), headers)
    except S3Error as error:
        if not keepalive.started:
            keepalive.cancel()
            raise
        keepalive.finish(error.to_xml(f"/{record.bucket}/{record.key}", request.request_id))


def _lock_at_complete(bucket: access.BucketAccess, record: MultipartRecord) -> dict:
    """The object's Object Lock: CreateMultipartUpload's, or its bucket's default retention from now."""
    mode, until = record.lock_mode, record.lock_until
    config = object_lock.configuration_of(bucket)
    if mode is None and config is not None and config.mode is not None:
        mode, until = config.mode, config.default_until(datetime.datetime.now(datetime.UTC))
    return {"lock_mode": mode, "lock_until": until, "legal_hold": record.legal_hold}


async def _completed(
    gateway: GatewayLike, upload_id: str, bucket: str, key: str
) -> Optional[CompletedUpload]:
    """The lately completed upload C{upload_id} of bucket/key, or None."""
    if not upload_id:
        return None
    done = await gateway.store.completed_upload(upload_id)
    if done is None or done.bucket != bucket or done.key != key:
        return None
    return done


async def _complete_on_backend(
    backend: Backend, record: MultipartRecord, parts: list[tuple[int, str]]
) -> tuple[str, int]:
    """
    Complete the upload on its backend. -> (ETag, size).  An upload the
    backend no longer knows whose real key holds an object was completed by
    an earlier attempt whose answer or follow-up (the HEAD) failed: the real
    key is this upload's alone, so that object is its outcome.
    """
    try:
        etag = await backend.complete_multipart(record.real_key, record.backend_upload_id, parts)
    except BackendError as error:
        if error.code != "NoSuchUpload":
            raise
        try:
            size, etag = await backend.head_object(record.real_key)
        except BackendError:
            raise error from None
        log.info("upload {id} was already complete on {backend}", id=record.upload_id, backend=backend.name)
        return etag, size
    size, _ = await backend.head_object(record.real_key)
    return etag, size


async def _discard_backend_object(gateway: GatewayLike, record: MultipartRecord) -> None:
    """Queue the deletion of an assembled object nothing refers to."""
    await gateway.store.abandon_write((await gateway.store.begin_write(record.backend, record.real_key, 60)).id, True)
    gateway.kick_deleter()


def _complete_result(bucket: str, key: str, etag: str, checksums: Mapping[str, str]) -> bytes:
    return document(
        "CompleteMultipartUploadResult",
        [("Location", f"/{bucket}/{key}"), ("Bucket", bucket), ("Key", key), ("ETag", etag)]
        + checksum_parts.result_elements(checksums),
    )


class _Keepalive:
    """
    The S3 convention for a long CompleteMultipartUpload: after a few seconds
    answer 200, send whitespace now and then, and put either the result or an
    <Error> document in the body at the end.
    """

    def __init__(self, gateway: GatewayLike, request: S3Request) -> None:
        self.gateway = gateway
        self.request = request
        self.started = False
        self._call = gateway.reactor.callLater(KEEPALIVE_AFTER, self._tick)

    def _tick(self) -> None:
        request = self.request
        if request.gone:
            return
        if not self.started:
            self.started = True
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"application/xml")
            request.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
        else:
            request.write(b" ")
        self._call = self.gateway.reactor.callLater(KEEPALIVE_AFTER, self._tick)

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()

    def finish(self, body: bytes, headers: Optional[Mapping[str, str]] = None) -> None:
        """
        Answer C{body}, with C{headers} unless the keepalive has started
        (the headers went out with its 200; such informational headers as
        C{x-amz-expiration} are then left out).
        """
        self.cancel()
        if self.request.gone:
            return
        if not self.started:
            for name, value in (headers or {}).items():
                self.request.setHeader(name.encode("latin-1"), value.encode("utf-8"))
            self.gateway.answer_xml(self.request, body)
            return
        # The XML declaration is already out.
        self.request.write(body.split(b"?>", 1)[1] if body.startswith(b"<?xml") else body)
        self.request.finish()


async def abort_multipart_upload(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    record, _ = await _upload_of(gateway, call)
    await gateway.store.abort_multipart(record.upload_id, True)
    gateway.kick_deleter()
    gateway.answer_empty(request, 204)


def _int_query(call: S3Call, name: str, default: int, low: int, high: int) -> int:
    raw = call.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer.", ArgumentName=name) from None
    if value < low:
        raise S3Error("InvalidArgument", f"{name} must be at least {low}.", ArgumentName=name)
    return min(value, high)


async def list_parts(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    record, owner_id = await _upload_of(gateway, call)
    owner = _owner(gateway, owner_id)
    backend = _backend_of(gateway, record)
    marker = _int_query(call, "part-number-marker", 0, 0, 10000)
    max_parts = _int_query(call, "max-parts", 1000, 0, 1000)
    try:
        raw = await backend.list_parts(record.real_key, record.backend_upload_id, marker, max_parts)
    except BackendError as error:
        raise backend_error_to_s3(error) from None
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError:
        raise S3Error("InternalError", "The backend's part list could not be read.") from None
    ns = root.tag.split("}", 1)[0] + "}" if root.tag.startswith("{") else ""
    received = {part.number: part for part in await gateway.store.multipart_parts(record.upload_id)}
    parts = []
    for element in checksum_parts.latest_parts(root.findall(f"{ns}Part"), ns, received):
        number = element.findtext(f"{ns}PartNumber")
        etag = element.findtext(f"{ns}ETag")
        children_of_part = [
            ("PartNumber", number),
            ("LastModified", element.findtext(f"{ns}LastModified")),
            ("ETag", etag),
            ("Size", element.findtext(f"{ns}Size")),
        ]
        mine = received.get(int(number or 0))
        if mine is not None and mine.etag == etag:
            children_of_part += checksum_parts.result_elements(mine.checksums)
        parts.append(("Part", children_of_part))
    truncated = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
    children: list = [
        ("Bucket", record.bucket),
        ("Key", record.key),
        ("UploadId", record.upload_id),
        ("Initiator", owner),
        ("Owner", owner),
        ("StorageClass", storage_class.of(record.headers)),
        *checksum_parts.upload_elements(record.headers),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", root.findtext(f"{ns}NextPartNumberMarker") or (parts[-1][1][0][1] if parts else 0)),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    for name, value in (await lifecycle.abort_headers(gateway, record.bucket, record.key, record.initiated)).items():
        request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    gateway.answer_xml(request, document("ListPartsResult", children + parts))


async def list_multipart_uploads(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    owner = _owner(gateway, (await gateway.require_bucket(call)).owner)
    query = call.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = _int_query(call, "max-uploads", 1000, 0, 1000)
    url = query.get("encoding-type") == "url"
    # The store folds keys into common prefixes on their UTF-8 bytes.
    page = await gateway.store.list_multipart_page(
        call.bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads
    )
    uploads: list = []
    prefixes: list[str] = []
    last_marker: tuple[str, str] = (key_marker, upload_id_marker)
    for entry in page.entries:
        if isinstance(entry, str):
            prefixes.append(entry)
            last_marker = (entry, "")
            continue
        uploads.append(
            (
                "Upload",
                [
                    ("Key", listed_key(entry.key, url)),
                    ("UploadId", entry.upload_id),
                    ("Initiator", owner),
                    ("Owner", owner),
                    ("StorageClass", storage_class.of(entry.headers)),
                    ("Initiated", iso8601(entry.initiated)),
                ],
            )
        )
        last_marker = (entry.key, entry.upload_id)
    truncated = page.is_truncated
    children: list = [
        ("Bucket", call.bucket),
        ("KeyMarker", listed_key(key_marker, url)),
        ("UploadIdMarker", upload_id_marker),
    ]
    if truncated:
        children.append(("NextKeyMarker", listed_key(last_marker[0], url)))
        children.append(("NextUploadIdMarker", last_marker[1]))
    children += [("MaxUploads", max_uploads), ("IsTruncated", truncated)]
    if prefix:
        children.append(("Prefix", listed_key(prefix, url)))
    if delimiter:
        children.append(("Delimiter", listed_key(delimiter, url)))
    children += uploads
    children += [("CommonPrefixes", [("Prefix", listed_key(p, url))]) for p in prefixes]
    gateway.answer_xml(request, document("ListMultipartUploadsResult", children))


HANDLERS: dict[str, Handler] = {
    "CreateMultipartUpload": create_multipart_upload,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
