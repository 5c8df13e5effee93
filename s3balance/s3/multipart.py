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
"""

from __future__ import annotations

import datetime
import os
from xml.etree import ElementTree

from twisted.logger import Logger

from s3balance.backends.backend import BackendError
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import storage_class
from s3balance.s3.bodies import small_body
from s3balance.s3.upload import backend_error_to_s3, backend_headers, object_headers
from s3balance.s3.xmldoc import child_text, document, encode_key, iso8601, parse
from s3balance.store.interfaces import Location, MultipartRecord, NoSuchUploadError, ObjectRecord

log = Logger()

# While a complete runs longer than this, S3 starts its 200 answer and sends
# whitespace so that clients and proxies don't time out.
KEEPALIVE_AFTER = 5.0
MIN_PART_SIZE = 5 * 1024 * 1024


def new_upload_id() -> str:
    return os.urandom(24).hex()


async def _upload_of(gateway, call) -> MultipartRecord:
    upload_id = call.query.get("uploadId", "")
    await gateway.require_bucket(call.bucket)
    record = await gateway.store.get_multipart(upload_id) if upload_id else None
    if record is None or record.bucket != call.bucket or record.key != call.key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    return record


def _backend_of(gateway, record: MultipartRecord):
    backend = gateway.pool.get(record.backend)
    if backend is None or not gateway.pool.is_up(record.backend):
        raise S3Error("ServiceUnavailable", "The backend holding this upload is unavailable; try again later.")
    return backend


# Seconds the backend may take to open an upload before the cleaner may abort it
# (at least twice balancer.backend_timeout).
CREATE_LEASE = 300.0


async def create_multipart_upload(gateway, request, call) -> None:
    await gateway.require_bucket(call.bucket)
    content_type, headers = object_headers(call)
    reservation = gateway.pool.place(gateway.strategy, PlacementContext(call.bucket, call.key, None))
    if reservation is None:
        if gateway.pool.all_full(0):
            raise S3Error("InsufficientStorage", "No backend has room for this object.", status=507)
        raise S3Error("ServiceUnavailable", "No storage backend is available; try again later.")
    reservation.release()
    backend = gateway.pool.get(reservation.backend)
    real_key = gateway.new_real_key(call.bucket)
    # A write intent first: if we die between the backend opening the upload
    # and our row for it, its lease runs out and the cleaner aborts every
    # upload of this (unique) real key.
    lease = max(CREATE_LEASE, 2 * gateway.config.balancer.backend_timeout)
    intent = await gateway.store.begin_write(backend.name, real_key, lease)
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
    )
    try:
        await gateway.store.create_multipart(record, intent.id)
    except Exception:
        # Not recorded: don't leave the backend's upload open (and should
        # this abort fail, the intent's expiry makes the cleaner do it).
        backend.abort_multipart(real_key, backend_upload_id).addErrback(
            lambda f: log.warn("could not abort orphan upload on {backend}", backend=backend.name)
        )
        raise
    body = document(
        "InitiateMultipartUploadResult",
        [("Bucket", call.bucket), ("Key", call.key), ("UploadId", record.upload_id)],
    )
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


async def complete_multipart_upload(gateway, request, call) -> None:
    record = await _upload_of(gateway, call)
    parts = _parse_parts(small_body(request, call))
    backend = _backend_of(gateway, record)
    keepalive = _Keepalive(gateway, request)
    try:
        try:
            etag = await backend.complete_multipart(record.real_key, record.backend_upload_id, parts)
            size, _ = await backend.head_object(record.real_key)
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
            headers=record.headers,
            checksums={},
            locations=(Location(record.backend, record.real_key),),
        )
        try:
            await gateway.store.complete_multipart(record.upload_id, obj)
        except NoSuchUploadError:
            # Aborted while we completed: the object on the backend is an orphan.
            await gateway.store.abandon_write(
                (await gateway.store.begin_write(record.backend, record.real_key, 60)).id, True
            )
            gateway.kick_deleter()
            raise S3Error("NoSuchUpload", UploadId=record.upload_id) from None
        gateway.pool.add_usage(record.backend, size, 1)
        gateway.kick_deleter(replaced=True)
        body = document(
            "CompleteMultipartUploadResult",
            [
                ("Location", f"/{record.bucket}/{record.key}"),
                ("Bucket", record.bucket),
                ("Key", record.key),
                ("ETag", etag),
            ],
        )
        keepalive.finish(body)
    except S3Error as error:
        if not keepalive.started:
            keepalive.cancel()
            raise
        keepalive.finish(error.to_xml(f"/{record.bucket}/{record.key}", request.request_id))


class _Keepalive:
    """
    The S3 convention for a long CompleteMultipartUpload: after a few seconds
    answer 200, send whitespace now and then, and put either the result or an
    <Error> document in the body at the end.
    """

    def __init__(self, gateway, request) -> None:
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

    def finish(self, body: bytes) -> None:
        self.cancel()
        if self.request.gone:
            return
        if not self.started:
            self.gateway.answer_xml(self.request, body)
            return
        # The XML declaration is already out.
        self.request.write(body.split(b"?>", 1)[1] if body.startswith(b"<?xml") else body)
        self.request.finish()


async def abort_multipart_upload(gateway, request, call) -> None:
    record = await _upload_of(gateway, call)
    await gateway.store.abort_multipart(record.upload_id, True)
    gateway.kick_deleter()
    gateway.answer_empty(request, 204)


def _int_query(call, name: str, default: int, low: int, high: int) -> int:
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


async def list_parts(gateway, request, call) -> None:
    record = await _upload_of(gateway, call)
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
    parts = []
    for part in root.findall(f"{ns}Part"):
        parts.append(
            (
                "Part",
                [
                    ("PartNumber", part.findtext(f"{ns}PartNumber")),
                    ("LastModified", part.findtext(f"{ns}LastModified")),
                    ("ETag", part.findtext(f"{ns}ETag")),
                    ("Size", part.findtext(f"{ns}Size")),
                ],
            )
        )
    truncated = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
    children: list = [
        ("Bucket", record.bucket),
        ("Key", record.key),
        ("UploadId", record.upload_id),
        ("Initiator", [("ID", "s3balance"), ("DisplayName", "s3balance")]),
        ("Owner", [("ID", "s3balance"), ("DisplayName", "s3balance")]),
        ("StorageClass", storage_class.of(record.headers)),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", root.findtext(f"{ns}NextPartNumberMarker") or (parts[-1][1][0][1] if parts else 0)),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    gateway.answer_xml(request, document("ListPartsResult", children + parts))


async def list_multipart_uploads(gateway, request, call) -> None:
    await gateway.require_bucket(call.bucket)
    query = call.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = _int_query(call, "max-uploads", 1000, 0, 1000)
    url = query.get("encoding-type") == "url"
    # Walk the uploads in key order, folding keys into common prefixes and
    # skipping past a prefix once it is listed, until the page is full.
    uploads: list = []
    prefixes: list[str] = []
    truncated = False
    last_marker: tuple[str, str] = (key_marker, upload_id_marker)
    marker, id_marker = key_marker, upload_id_marker
    done = False
    while not done and not truncated:
        batch = await gateway.store.list_multipart(call.bucket, prefix, marker, id_marker, 1000)
        done = len(batch) < 1000
        for record in batch:
            marker, id_marker = record.key, record.upload_id
            common = None
            if delimiter:
                cut = record.key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = record.key[: cut + len(delimiter)]
            if common is not None and (common in prefixes or common == key_marker):
                marker, id_marker, done = common + "\U0010ffff", "", False
                break
            if len(uploads) + len(prefixes) >= max_uploads:
                truncated = True
                break
            if common is not None:
                prefixes.append(common)
                last_marker = (common, "")
                # Everything else under this prefix folds into it: skip past it.
                marker, id_marker = common + "\U0010ffff", ""
                done = False
                break
            uploads.append(
                (
                    "Upload",
                    [
                        ("Key", encode_key(record.key, url)),
                        ("UploadId", record.upload_id),
                        ("Initiator", [("ID", "s3balance"), ("DisplayName", "s3balance")]),
                        ("Owner", [("ID", "s3balance"), ("DisplayName", "s3balance")]),
                        ("StorageClass", storage_class.of(record.headers)),
                        ("Initiated", iso8601(record.initiated)),
                    ],
                )
            )
            last_marker = (record.key, record.upload_id)
    children: list = [
        ("Bucket", call.bucket),
        ("KeyMarker", encode_key(key_marker, url)),
        ("UploadIdMarker", upload_id_marker),
    ]
    if truncated:
        children.append(("NextKeyMarker", encode_key(last_marker[0], url)))
        children.append(("NextUploadIdMarker", last_marker[1]))
    children += [("MaxUploads", max_uploads), ("IsTruncated", truncated)]
    if prefix:
        children.append(("Prefix", encode_key(prefix, url)))
    if delimiter:
        children.append(("Delimiter", encode_key(delimiter, url)))
    children += uploads
    children += [("CommonPrefixes", [("Prefix", encode_key(p, url))]) for p in prefixes]
    gateway.answer_xml(request, document("ListMultipartUploadsResult", children))


HANDLERS = {
    "CreateMultipartUpload": create_multipart_upload,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
