"""
GetObjectAttributes (C{GET /bucket/key?attributes}): an object's ETag,
checksum, parts, storage class and size, as many as the
C{x-amz-object-attributes} header names, from the store alone.

ObjectParts answers the number of parts of a multipart object (its ETag's
C{-N}); the parts themselves (size and checksum of each, paged with
C{x-amz-max-parts} and C{x-amz-part-number-marker}) are listed, as S3 lists
them, for an object uploaded with checksums, whose parts the Complete kept
(L{s3balance.store.parts}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from s3balance.errors import S3Error
from s3balance.s3 import checksum_parts, storage_class, versioning
from s3balance.s3.objects import http_date
from s3balance.s3.xmldoc import Node, document

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import ObjectRecord

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def _wanted(call: S3Call) -> set[str]:
    raw = call.header("x-amz-object-attributes")
    names = {name.strip() for name in (raw or "").split(",") if name.strip()}
    if not names:
        raise S3Error(
            "InvalidRequest", "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
        )
    if not names <= set(ATTRIBUTES):
        raise S3Error("InvalidArgument", "Invalid attribute name specified", ArgumentName="x-amz-object-attributes")
    return names


def _int_header(call: S3Call, name: str, default: int, high: Optional[int] = None) -> int:
    raw = call.header(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer.", ArgumentName=name) from None
    if value < 0:
        raise S3Error("InvalidArgument", f"{name} must not be negative.", ArgumentName=name)
    return value if high is None else min(value, high)


def parts_count(etag: str) -> Optional[int]:
    """The number of parts of a multipart object, from its ETag (C{"...-N"}); None for one PUT."""
    tail = etag.strip('"').rpartition("-")[2]
    if "-" not in etag or not tail.isdigit():
        return None
    return int(tail)


async def get_object_attributes(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    version = versioning.requested_version(call)
    bucket = await gateway.require_bucket(call)
    wanted = _wanted(call)
    max_parts = _int_header(call, "x-amz-max-parts", MAX_PARTS, MAX_PARTS)
    marker = _int_header(call, "x-amz-part-number-marker", 0)
    record = await versioning.read_version(gateway, bucket, call.key, call.operation, version)
    versioning.set_version_headers(request, bucket, record)
    checksums = dict(record.checksums)
    children: list = []
    if "ETag" in wanted:
        children.append(("ETag", record.etag.strip('"')))
    if "Checksum" in wanted:
        elements = checksum_parts.result_elements(checksums)
        if elements and checksum_parts.TYPE not in checksums:
            elements.append(("ChecksumType", checksum_parts.FULL_OBJECT))  # a PutObject's checksum
        if elements:
            children.append(("Checksum", elements))
    count = parts_count(record.etag)
    if "ObjectParts" in wanted and count is not None:
        children.append(("ObjectParts", await _object_parts(gateway, record, count, marker, max_parts)))
    if "StorageClass" in wanted:
        children.append(("StorageClass", storage_class.of(record.headers)))
    if "ObjectSize" in wanted:
        children.append(("ObjectSize", record.size))
    request.setHeader(b"last-modified", http_date(record.last_modified).encode("ascii"))
    gateway.answer_xml(request, document("GetObjectAttributesResponse", children))


async def _object_parts(
    gateway: GatewayLike, record: ObjectRecord, count: int, marker: int, max_parts: int
) -> list[Node]:
    elements: list = [("PartsCount", count)]
    if not checksum_parts.result_elements(record.checksums) or not record.locations:
        return elements  # parts kept only for objects with checksums, as S3 lists them
    parts, truncated = await gateway.store.object_parts_page(record.locations[0].real_key, marker, max_parts)
    elements += [
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", parts[-1].number if parts else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    for part in parts:
        checksums = {name: value for name, value in part.checksums.items() if name in record.checksums}
        elements.append(
            ("Part", [("PartNumber", part.number), ("Size", part.size)] + checksum_parts.result_elements(checksums))
        )
    return elements


HANDLERS: dict[str, Handler] = {"GetObjectAttributes": get_object_attributes}
