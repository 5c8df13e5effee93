"""
GetObject, HeadObject, DeleteObject(s) and Get/Put/DeleteObjectTagging.

Reads are answered from the metadata record (headers, preconditions, ranges)
and the bytes are streamed from a backend that holds them.  HEAD (and a
listing) never asks a backend.

An object may have several locations (replicas, on distinct backends): a
GET fails over between them (L{s3balance.s3.failover}), before the body
and mid-body.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional, cast
from urllib.parse import quote

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from s3balance.backends.streaming import start_relay
from s3balance.errors import S3Error
from s3balance.s3 import access, lifecycle, object_lock, redirects, tagging, versioning
from s3balance.s3.bodies import small_body
from s3balance.s3.conditional import check_conditional_headers, parse_range
from s3balance.s3.failover import (
    Discard,
    Replaced,
    count_failover,
    cut_connection,
    first_answer,
    read_order,
    rest_of_body,
)
from s3balance.s3.xmldoc import Node, child_text, document, parse
from s3balance.store.interfaces import ObjectLocked
from s3balance.store.versions import is_version_id

if TYPE_CHECKING:
    from twisted.internet.interfaces import IPushProducer
    from twisted.web.iweb import IResponse

    from s3balance.backends.backend import Backend
    from s3balance.s3.access import BucketAccess
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import Deletion, ObjectRecord, TagSet

log = Logger()

# Query parameters that override response headers on GetObject.
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


@functools.lru_cache(maxsize=4096)
def http_date(when: datetime.datetime) -> str:
    """An RFC 7231 date; remembered, as objects read often are read again (email.utils is slow)."""
    return email.utils.format_datetime(when, usegmt=True)


async def _lookup(gateway: GatewayLike, call: S3Call) -> tuple[BucketAccess, ObjectRecord]:
    """
    The object version C{call} names (its C{versionId}, or the latest), if
    the caller may do the call's operation on it: the bucket's owner, or a
    grant of the object's ACL (read with the row, L{access.require_object}).
    """
    version = versioning.requested_version(call)
    bucket = await gateway.require_bucket(call)
    record = await versioning.read_version(gateway, bucket, call.key, call.operation, version)
    part = call.query.get("partNumber")
    if part is not None and part != "1":
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable", status=416)
    return bucket, record


def _version_headers(request: S3Request, bucket: BucketAccess, record: ObjectRecord) -> None:
    """What GET and HEAD answer about the version: its id, and its Object Lock."""
    versioning.set_version_headers(request, bucket, record)
    object_lock.set_headers(request, bucket, record)


def _object_headers(
    request: S3Request,
    call: S3Call,
    record: ObjectRecord,
    byte_range: Optional[tuple[int, int]],
    expiration: Optional[str] = None,
) -> None:
    set_header = request.setHeader
    if expiration is not None:
        set_header(b"x-amz-expiration", expiration.encode("utf-8"))
    set_header(b"content-type", (record.content_type or "binary/octet-stream").encode("latin-1"))
    for name, value in record.headers.items():
        # Stored as received (a str of the header's bytes as latin-1): the
        # client gets back the bytes it sent, UTF-8 or not.
        set_header(name.encode("latin-1"), value.encode("latin-1"))
    for parameter, header in RESPONSE_OVERRIDES.items():
        override = call.query.get(parameter)
        if override is not None:
            set_header(header.encode(), override.encode("utf-8"))
    set_header(b"etag", record.etag.encode("latin-1"))
    set_header(b"last-modified", http_date(record.last_modified).encode("ascii"))
    set_header(b"accept-ranges", b"bytes")
    if record.tags:
        set_header(b"x-amz-tagging-count", str(len(record.tags)).encode())
    if (call.header("x-amz-checksum-mode") or "").upper() == "ENABLED" and byte_range is None:
        for algorithm, value in record.checksums.items():
            set_header(f"x-amz-checksum-{algorithm}".encode(), value.encode("latin-1"))
    if byte_range is None:
        set_header(b"content-length", str(record.size).encode())
    else:
        start, end = byte_range
        set_header(b"content-length", str(end - start + 1).encode())
        set_header(b"content-range", f"bytes {start}-{end}/{record.size}".encode())


def _not_modified(gateway: GatewayLike, request: S3Request, record: ObjectRecord) -> None:
    request.setResponseCode(304)
    request.setHeader(b"etag", record.etag.encode("latin-1"))
    request.setHeader(b"last-modified", http_date(record.last_modified).encode("ascii"))
    request.finish()


async def head_object(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket, record = await _lookup(gateway, call)
    _version_headers(request, bucket, record)
    if check_conditional_headers(call.headers, record.etag, record.last_modified) == 304:
        _not_modified(gateway, request, record)
        return
    byte_range = parse_range(call.header("range"), record.size)
    expiration = await lifecycle.expiration_header(gateway, record)
    request.setResponseCode(206 if byte_range else 200)
    _object_headers(request, call, record, byte_range, expiration)
    request.finish()


async def get_object(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket, record = await _lookup(gateway, call)
    try:
        _version_headers(request, bucket, record)
        await _get_object(gateway, request, call, record)
    except Replaced:
        # The version we found was replaced or deleted while we asked its
        # backend: serve what is there now.
        bucket, record = await _lookup(gateway, call)
        _version_headers(request, bucket, record)
        await _get_object(gateway, request, call, record)


async def _get_object(gateway: GatewayLike, request: S3Request, call: S3Call, record: ObjectRecord) -> None:
    if check_conditional_headers(call.headers, record.etag, record.last_modified) == 304:
        _not_modified(gateway, request, record)
        return
    byte_range = parse_range(call.header("range"), record.size)
    expiration = await lifecycle.expiration_header(gateway, record)
    if record.size == 0:
        request.setResponseCode(200)
        _object_headers(request, call, record, None, expiration)
        request.finish()
        return
    candidates = read_order(gateway.pool, record.locations)
    if not candidates:
        raise S3Error("ServiceUnavailable", "The backend holding this object is unavailable; try again later.")
    if wants_redirect(gateway, call):
        location = candidates[0]
        redirect(gateway, request, call, cast("Backend", gateway.pool.get(location.backend)), location.real_key)
        return
    expected = record.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    index, response = await first_answer(gateway, request, call, record, candidates, byte_range, expected)
    if request.gone:
        response.deliverBody(Discard())
        return
    request.setResponseCode(206 if byte_range else 200)
    _object_headers(request, call, record, byte_range, expiration)

    def write(data: bytes) -> None:
        if not request.gone:
            request.write(data)

    def register(producer: IPushProducer) -> None:
        request.registerProducer(producer, True)

    timeout = gateway.config.balancer.backend_timeout
    relay = start_relay(response, write, register, expected, idle_timeout=timeout, clock=gateway.reactor)
    # The relay under way, for a client that leaves (it changes on a failover).
    current = [relay]
    request.notifyFinish().addErrback(lambda _: current[0].stop())
    # The object's bytes first..last are owed to the client.
    first, last = (0, record.size - 1) if byte_range is None else byte_range
    while True:
        try:
            await relay.done
            break
        except CancelledError:
            # The client left (Gateway.handle cancelled us): let go of the backend.
            relay.stop()
            raise
        except Exception as error:
            relay.close()
            if request.gone:
                return
            request.unregisterProducer()
            first += relay.received
            found: Optional[tuple[int, IResponse]] = None
            if first <= last and index + 1 < len(candidates):
                log.warn(
                    "GET {bucket}/{key}: {backend} broke off at byte {offset} ({error}); the rest from another copy",
                    bucket=call.bucket,
                    key=call.key,
                    backend=candidates[index].backend,
                    offset=first,
                    error=str(error),
                )
                count_failover(gateway, candidates[index].backend, "mid_body", True)
                found = await rest_of_body(gateway, request, call, record, candidates, index + 1, first, last)
            if found is None:
                log.warn("GET {bucket}/{key} cut short: {error}", bucket=call.bucket, key=call.key, error=str(error))
                cut_connection(request)
                return
            index, response = found
            relay = current[0] = start_relay(
                response, write, register, last - first + 1, idle_timeout=timeout, clock=gateway.reactor
            )
    if not request.gone:
        request.unregisterProducer()
        request.finish()


def wants_redirect(gateway: GatewayLike, call: S3Call) -> bool:
    """
    Redirect mode (C{s3api.proxy_mode: false}) sends a GET to the backend
    when its client follows redirects (L{redirects.follows_redirects}:
    presigned, anonymous, or configured as able to); the rest are proxied.
    Any client may still ask for the bytes through us with the header
    C{x-s3balance-proxy: true} or the query C{s3balance-proxy=true}.
    """
    s3api = gateway.config.s3api
    if s3api.proxy_mode or redirects.proxy_forced(call):
        return False
    return redirects.follows_redirects(s3api, call)


def redirect(
    gateway: GatewayLike, request: S3Request, call: S3Call, backend: Backend, real_key: str
) -> None:
    """302 to the backend object: a presigned URL, or the backend's public custom_host."""
    overrides = sorted((name, value) for name, value in call.query.items() if name in RESPONSE_OVERRIDES)
    query = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in overrides)
    config = backend.config
    if config.custom_host:
        base = config.custom_host.rstrip("/")
        if "://" not in base:
            base = "https://" + base
        path = quote(real_key, safe="/~") if config.remove_bucket else f"{quote(backend.name, safe='')}/{quote(real_key, safe='/~')}"
        url = f"{base}/{path}" + (f"?{query}" if query else "")
    else:
        expires = redirects.expiry(gateway.config.s3api.redirect_expiry, call, gateway.clock())
        url = backend.presign_get(real_key, expires, query, redirects.signed_headers(call))
    request.setResponseCode(302)
    request.setHeader(b"location", url.encode("ascii"))
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", b"0")
    request.finish()


async def delete_object(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    DeleteObject: the version named (C{versionId}), or, in a versioned
    bucket, a delete marker on top; in a bucket never versioned, the object.
    """
    version = versioning.requested_version(call)
    bucket = await gateway.require_bucket(call)
    try:
        done = await gateway.store.delete_object(
            call.bucket, call.key, version_id=version, bypass_governance=object_lock.may_bypass(gateway, call)
        )
    except ObjectLocked:
        raise object_lock.locked_error() from None
    _forget_bytes(gateway, [done])
    headers: dict[str, str] = {}
    if done.marker is not None:
        headers = versioning.version_headers(bucket, done.marker)
    elif version is not None:
        headers["x-amz-version-id"] = version
        if done.removed is not None and done.removed.delete_marker:
            headers["x-amz-delete-marker"] = "true"
    gateway.answer_empty(request, 204, headers)


def _forget_bytes(gateway: GatewayLike, done: Iterable[Deletion]) -> None:
    """Take removed versions off their backends' usage and wake the deletion worker."""
    removed = [deletion.removed for deletion in done if deletion.removed is not None]
    for record in removed:
        for location in record.locations:
            gateway.pool.add_usage(location.backend, -record.size, -1)
    if any(record.locations for record in removed):
        gateway.kick_deleter(replaced=True)


MAX_DELETE_KEYS = 1000


def _delete_request(body: bytes) -> tuple[bool, list[tuple[str, Optional[str]]]]:
    """-> (quiet, [(key, version id or None)])."""
    root = parse(body)
    if root.tag != "Delete":
        raise S3Error("MalformedXML")
    quiet = (child_text(root, "Quiet") or "false").strip().lower() == "true"
    keys = []
    for element in root.findall("Object"):
        key = child_text(element, "Key")
        if not key:
            raise S3Error("MalformedXML", "Every Object needs a Key.")
        keys.append((key, child_text(element, "VersionId")))
    if not keys or len(keys) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML", f"A DeleteObjects request names 1 to {MAX_DELETE_KEYS} keys.")
    return quiet, keys


async def delete_objects(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """POST /bucket?delete: per-key results in one 200 answer."""
    if "content-md5" not in call.headers and not any(name.startswith("x-amz-checksum-") for name in call.headers) \
            and "x-amz-sdk-checksum-algorithm" not in call.headers:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")
    quiet, keys = _delete_request(small_body(request, call))
    bucket = await gateway.require_bucket(call)
    # Each key as its own DeleteObject would be decided (a bucket policy may
    # allow or deny some keys only); a denied key is an Error entry.
    denied = {key for key, _ in keys if not access.may_delete_key(bucket, key)}
    valid = {(key, version) for key, version in keys if version is None or is_version_id(version)}
    # Every key in one transaction (one commit, not one per key).
    done = await gateway.store.delete_objects(
        call.bucket, [item for item in keys if item in valid and item[0] not in denied],
        object_lock.may_bypass(gateway, call),
    )
    results: list[Node] = []
    for key, version in keys:
        named = [("VersionId", version)] if version is not None else []
        if key in denied:
            results.append(("Error", [("Key", key), *named, ("Code", "AccessDenied"), ("Message", "Access Denied")]))
        elif (key, version) not in valid:
            results.append(("Error", [("Key", key), *named, ("Code", "NoSuchVersion"),
                                      ("Message", "The specified version does not exist.")]))
        elif done[(key, version)].locked:
            results.append(("Error", [("Key", key), *named, ("Code", "AccessDenied"),
                                      ("Message", object_lock.LOCKED)]))
        elif not quiet:
            deletion = done[(key, version)]
            entry: list[Node] = [("Key", key), *named]
            if deletion.marker is not None:
                entry += [("DeleteMarker", True), ("DeleteMarkerVersionId", deletion.marker.version_id or "null")]
            elif deletion.removed is not None and deletion.removed.delete_marker:
                entry += [("DeleteMarker", True), ("DeleteMarkerVersionId", version or "null")]
            results.append(("Deleted", entry))
    _forget_bytes(gateway, done.values())
    gateway.answer_xml(request, document("DeleteResult", results))


async def get_object_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The tag set of the object's version (the latest without C{versionId}; empty without tags)."""
    bucket, record = await _lookup(gateway, call)
    versioning.set_version_headers(request, bucket, record)
    gateway.answer_xml(request, tagging.render(record.tags))


async def put_object_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    Replace the tag set of the object's version (an empty one removes it):
    200, no body.  Only the tags column changes: not the bytes, ETag or
    Last-Modified.
    """
    tags = tagging.parse_document(small_body(request, call), tagging.OBJECT)
    gateway.answer_empty(request, 200, await _set_tags(gateway, call, tags))


async def delete_object_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    gateway.answer_empty(request, 204, await _set_tags(gateway, call, ()))


async def _set_tags(gateway: GatewayLike, call: S3Call, tags: TagSet) -> dict[str, str]:
    """Set the tags of the version C{call} names (or the latest). -> the answer's version headers."""
    bucket, record = await _lookup(gateway, call)
    if record.version_id is None and bucket.versioning is None:
        done: Optional[bool] = await gateway.store.set_object_tags(call.bucket, call.key, tags)
    else:
        done = await gateway.store.set_version_tags(call.bucket, call.key, record.version_id or "null", tags)
    if not done:
        # Deleted (or overwritten, in a bucket never versioned) since it was read.
        raise S3Error("NoSuchKey", Key=call.key)
    return versioning.version_headers(bucket, record)


HANDLERS: dict[str, Handler] = {
    "GetObject": get_object,
    "GetObjectTagging": get_object_tagging,
    "PutObjectTagging": put_object_tagging,
    "DeleteObjectTagging": delete_object_tagging,
    "HeadObject": head_object,
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
}
