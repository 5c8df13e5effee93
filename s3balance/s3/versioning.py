"""
Bucket versioning: Put/GetBucketVersioning, ListObjectVersions, and what
the object operations share about versions (the C{versionId} a request
names, the C{x-amz-version-id} and C{x-amz-delete-marker} headers).

The versions themselves live in the store (L{s3balance.store.versions}).
A bucket of the configuration takes its status from C{buckets[].versioning}
(PutBucketVersioning on it is refused), as its ACL and policy.
"""

from __future__ import annotations

import email.utils
from typing import TYPE_CHECKING, Optional

from s3balance.errors import S3Error
from s3balance.s3 import storage_class
from s3balance.s3.bodies import small_body
from s3balance.s3.xmldoc import Node, child_text, document, iso8601, listed_key, parse
from s3balance.store.interfaces import ObjectLocked
from s3balance.store.versions import ENABLED, NULL_VERSION, SUSPENDED, is_version_id

if TYPE_CHECKING:
    from s3balance.s3.access import BucketAccess
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import ObjectRecord

STATUSES = (ENABLED, SUSPENDED)


def requested_version(call: S3Call, parameter: str = "versionId") -> Optional[str]:
    """The version a request names (None: none; "null": the null version); InvalidArgument for what names none."""
    version = call.query.get(parameter)
    if version is None:
        return None
    if not is_version_id(version):
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName=parameter, ArgumentValue=version)
    return version


def version_headers(bucket: BucketAccess, record: ObjectRecord) -> dict[str, str]:
    """
    C{x-amz-version-id} (in a bucket with versioning configured, or of a
    version with an id) and C{x-amz-delete-marker} (of a delete marker) for
    an answer about C{record}.
    """
    headers = {}
    if record.version_id is not None or bucket.versioning is not None:
        headers["x-amz-version-id"] = record.version_id or NULL_VERSION
    if record.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


def set_version_headers(request: S3Request, bucket: BucketAccess, record: ObjectRecord) -> None:
    for name, value in version_headers(bucket, record).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))


def marker_error(record: ObjectRecord, named: bool) -> S3Error:
    """
    The answer to a read of a delete marker: 405 MethodNotAllowed when the
    request named its version, 404 NoSuchKey when it is the key's latest.
    Both carry the marker's headers, as on S3.
    """
    headers = {
        "x-amz-delete-marker": "true",
        "x-amz-version-id": record.version_id or NULL_VERSION,
        "last-modified": email.utils.format_datetime(record.last_modified, usegmt=True),
    }
    if named:
        error = S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.",
                        status=405, Method="GET", ResourceType="DeleteMarker")
        headers["allow"] = "DELETE"
    else:
        error = S3Error("NoSuchKey", Key=record.key)
    error.headers = tuple(headers.items())
    return error


async def get_bucket_versioning(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The bucket's status; none for a bucket never versioned."""
    bucket = await gateway.require_bucket(call)
    children: list[Node] = [("Status", bucket.versioning)] if bucket.versioning else []
    gateway.answer_xml(request, document("VersioningConfiguration", children))


def _parse_configuration(body: bytes) -> str:
    root = parse(body)
    if root.tag != "VersioningConfiguration":
        raise S3Error("MalformedXML")
    status = child_text(root, "Status")
    mfa_delete = child_text(root, "MfaDelete")
    if mfa_delete not in (None, "Enabled", "Disabled"):
        raise S3Error("MalformedXML")
    if mfa_delete == "Enabled":
        raise S3Error("NotImplemented", "MFA Delete is not supported by s3balance.")
    if status not in STATUSES:
        # Status is an enumeration of S3's schema: a document with another does not validate.
        raise S3Error("MalformedXML")
    return status


async def put_bucket_versioning(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Enabled or Suspended; a bucket never returns to unversioned (S3 has no such status)."""
    await gateway.require_bucket(call)
    status = _parse_configuration(small_body(request, call))
    configured = gateway.config.virtual_bucket(call.bucket)
    if configured is not None:
        raise S3Error(
            "AccessDenied",
            f"The versioning of bucket {call.bucket} is set by the s3balance configuration "
            f"({configured.key}.versioning); change it there.",
        )
    try:
        found = await gateway.store.set_bucket_versioning(call.bucket, status)
    except ObjectLocked:
        raise S3Error("InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                      "versioning state cannot be changed.", status=409) from None
    if not found:
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    gateway.answer_empty(request, 200)


async def list_object_versions(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    ListObjectVersions (C{GET /bucket?versions}): every version and delete
    marker, key by key, each key's newest first (C{IsLatest}), folded by
    the delimiter, from C{key-marker} and C{version-id-marker}.
    """
    from s3balance.s3 import access

    bucket = await gateway.require_bucket(call)
    query = call.query
    encoding = query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", ArgumentName="encoding-type")
    url = encoding == "url"
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    version_marker = query.get("version-id-marker")
    if version_marker is not None:
        if not key_marker:
            raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                          ArgumentName="version-id-marker", ArgumentValue=version_marker)
        if not is_version_id(version_marker):
            raise S3Error("InvalidArgument", "Invalid version id specified",
                          ArgumentName="version-id-marker", ArgumentValue=version_marker)
    max_keys = call.max_keys()
    page = await gateway.store.list_versions(call.bucket, prefix, delimiter, key_marker, version_marker or None,
                                             max_keys)
    owner = access.owner_elements(gateway.config.s3api, bucket.owner)
    entries: list[Node] = []
    for record, latest in page.versions:
        common: list[Node] = [
            ("Key", listed_key(record.key, url)),
            ("VersionId", record.version_id or NULL_VERSION),
            ("IsLatest", latest),
            ("LastModified", iso8601(record.last_modified)),
        ]
        if record.delete_marker:
            entries.append(("DeleteMarker", [*common, ("Owner", owner)]))
        else:
            entries.append(("Version", [
                *common,
                ("ETag", record.etag),
                ("Size", record.size),
                ("StorageClass", storage_class.of(record.headers)),
                ("Owner", owner),
            ]))
    children: list[Node] = [
        ("Name", call.bucket),
        ("Prefix", listed_key(prefix, url)),
        ("KeyMarker", listed_key(key_marker, url)),
        ("VersionIdMarker", version_marker or ""),
    ]
    if page.truncated:
        children.append(("NextKeyMarker", listed_key(page.next_key_marker, url)))
        if page.next_version_id_marker is not None:
            children.append(("NextVersionIdMarker", page.next_version_id_marker))
    children.append(("MaxKeys", max_keys))
    if delimiter:
        children.append(("Delimiter", listed_key(delimiter, url)))
    if url:
        children.append(("EncodingType", "url"))
    children.append(("IsTruncated", page.truncated))
    children.extend(entries)
    children.extend(("CommonPrefixes", [("Prefix", listed_key(common, url))]) for common in page.common_prefixes)
    gateway.answer_xml(request, document("ListVersionsResult", children))


HANDLERS: dict[str, Handler] = {
    "GetBucketVersioning": get_bucket_versioning,
    "PutBucketVersioning": put_bucket_versioning,
    "ListObjectVersions": list_object_versions,
}


async def read_version(
    gateway: GatewayLike, bucket: BucketAccess, key: str, action: str, version: Optional[str]
) -> ObjectRecord:
    """
    The version of C{key} a request names (C{version} None: the latest), if
    the caller may do C{action} on it (L{access.read_object}'s rules).  A
    key whose newest version is a delete marker answers 404 with the
    marker's headers; a delete marker named by its id, 405; a version that
    does not exist, NoSuchVersion (AccessDenied to a caller who may not
    list the bucket, as for a missing key).
    """
    from s3balance.s3 import access

    store = gateway.store
    if version is None:
        record = await store.get_object(bucket.name, key)
        if record is not None:
            access.require_object(bucket, action, record.acl)
            return record
        missing = access.missing_object(bucket, key)
        if bucket.versioning is not None and missing.code == "NoSuchKey":
            newest = await store.get_version(bucket.name, key, None)
            if newest is not None and newest.delete_marker:
                raise marker_error(newest, named=False)
        raise missing
    record = await store.get_version(bucket.name, key, version)
    if record is None:
        missing = access.missing_object(bucket, key)
        if missing.code == "NoSuchKey":
            missing = S3Error("NoSuchVersion", Key=key, VersionId=version)
        raise missing
    access.require_object(bucket, action, record.acl)
    if record.delete_marker:
        raise marker_error(record, named=True)
    return record
