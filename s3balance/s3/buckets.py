"""
Bucket-level operations: ListBuckets, HeadBucket, GetBucketLocation,
Get/Put/DeleteBucketTagging, ListObjects
(v1 and v2), CreateBucket and DeleteBucket.  Listings come from the metadata store, never from backends.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

import attr

from s3balance.errors import S3Error
from s3balance.s3 import access, acl, object_lock, storage_class, tagging
from s3balance.s3.bodies import small_body
from s3balance.s3.xmldoc import Node, document, iso8601, listed_key
from s3balance.store.interfaces import BucketExists, BucketNotEmpty, NoSuchBucketError

if TYPE_CHECKING:
    from s3balance.config.schema import Config, Credential
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import TagSet

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def valid_bucket_name(name: str) -> bool:
    return bool(
        _BUCKET_NAME.match(name)
        and ".." not in name
        and ".-" not in name
        and "-." not in name
        and not _IP_LIKE.match(name)
        and not name.startswith("xn--")
        and not name.endswith("-s3alias")
    )


def _owner(gateway: GatewayLike, owner: str) -> list[Node]:
    return access.owner_elements(gateway.config.s3api, owner)


async def _visible_buckets(
    gateway: GatewayLike, credential: Optional[Credential], caller: access.Caller
) -> list[tuple[str, datetime.datetime]]:
    """The caller's buckets (an admin's: every bucket) that its credential may see, by name."""
    config = gateway.config
    buckets = {b.name: (_EPOCH, access.bucket_owner(config, b.name, None)) for b in config.virtual_buckets}
    for record in await gateway.store.list_buckets():
        buckets[record.name] = (record.created, access.bucket_owner(config, record.name, record.owner))
    return sorted(
        (name, created)
        for name, (created, owner) in buckets.items()
        if access.may_list(caller, owner) and gateway.may_see_bucket(credential, name)
    )


async def list_buckets(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The caller's buckets; an anonymous request is refused (AccessDenied), as by S3."""
    caller = access.caller_of(gateway.config.s3api, call.credential)
    if caller.account is None:
        raise S3Error("AccessDenied")
    buckets = await _visible_buckets(gateway, call.credential, caller)
    body = document(
        "ListAllMyBucketsResult",
        [
            ("Owner", _owner(gateway, caller.account)),
            (
                "Buckets",
                [("Bucket", [("Name", name), ("CreationDate", iso8601(created))]) for name, created in buckets],
            ),
        ],
    )
    gateway.answer_xml(request, body)


async def head_bucket(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    await gateway.require_bucket(call)
    gateway.answer_empty(request, 200, {"x-amz-bucket-region": gateway.config.s3api.region})


async def get_bucket_location(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    await gateway.require_bucket(call)
    region = gateway.config.s3api.region
    # us-east-1 is reported as an empty LocationConstraint, as S3 does.
    body = document("LocationConstraint", []) if region == "us-east-1" else None
    if body is None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{region}</LocationConstraint>'
        ).encode()
    gateway.answer_xml(request, body)


async def get_bucket_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """The bucket's tag set; NoSuchTagSet (404) when it has none, as S3."""
    await gateway.require_bucket(call)
    record = await gateway.store.get_bucket(call.bucket)
    if record is None or not record.tags:
        raise S3Error("NoSuchTagSet", "The TagSet does not exist", status=404, BucketName=call.bucket)
    gateway.answer_xml(request, tagging.render(record.tags))


async def put_bucket_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """Replace the bucket's tag set (an empty one removes it): 204, as S3."""
    tags = tagging.parse_document(small_body(request, call), tagging.BUCKET)
    await _set_bucket_tags(gateway, call, tags)
    gateway.answer_empty(request, 204)


async def delete_bucket_tagging(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    await _set_bucket_tags(gateway, call, ())
    gateway.answer_empty(request, 204)


async def _set_bucket_tags(gateway: GatewayLike, call: S3Call, tags: TagSet) -> None:
    await gateway.require_bucket(call)
    # Every bucket clients see has a row (configured ones: sync_config_buckets).
    if not await gateway.store.set_bucket_tags(call.bucket, tags):
        raise S3Error("NoSuchBucket", BucketName=call.bucket)


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(("1:" + marker).encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error(
            "InvalidArgument", "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None
    if not raw.startswith("1:"):
        raise S3Error(
            "InvalidArgument", "The continuation token provided is incorrect", ArgumentName="continuation-token"
        )
    return raw[2:]


@attr.s(frozen=True, auto_attribs=True)
class _Listing:
    """The parameters every listing shares, and one page of the store's answer."""

    prefix: str
    delimiter: str
    url: bool  # encoding-type=url
    max_keys: int
    entries: tuple
    truncated: bool
    next_marker: Optional[str]
    owner: str  # the bucket's owner: its objects' Owner

    def prefixes(self) -> list:
        return [
            ("CommonPrefixes", [("Prefix", listed_key(entry, self.url))])
            for entry in self.entries
            if isinstance(entry, str)
        ]

    def tail(self) -> list:
        """MaxKeys, Delimiter, EncodingType and IsTruncated, in S3's order."""
        children: list = [("MaxKeys", self.max_keys)]
        if self.delimiter:
            children.append(("Delimiter", listed_key(self.delimiter, self.url)))
        if self.url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", self.truncated))
        return children


async def _list_page(
    gateway: GatewayLike, call: S3Call, after_of: Callable[[dict[str, str]], str]
) -> _Listing:
    bucket = await gateway.require_bucket(call)
    query = call.query
    encoding = query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", ArgumentName="encoding-type")
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = call.max_keys()
    after = after_of(query)
    entries: tuple = ()
    truncated, next_marker = False, None
    if max_keys > 0:
        page = await gateway.store.list_objects(call.bucket, prefix, delimiter, after, max_keys)
        entries, truncated, next_marker = page.entries, page.is_truncated, page.next_marker
    return _Listing(prefix, delimiter, encoding == "url", max_keys, entries, truncated, next_marker, bucket.owner)


def _v2_after(query: dict[str, str]) -> str:
    """
    Where a v2 page starts: after the continuation token's key, or, without a
    token, after C{start-after}.  S3 ignores C{start-after} once a token is
    given (minio-py sends both on every continued page), and takes an empty
    token as none.
    """
    token = query.get("continuation-token")
    if token:
        return decode_token(token)
    return query.get("start-after", "")


async def list_objects(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    v2 = call.operation == "ListObjectsV2"
    query = call.query
    page = await _list_page(gateway, call, _v2_after if v2 else (lambda q: q.get("marker", "")))
    url = page.url
    fetch_owner = not v2 or query.get("fetch-owner") == "true"
    owner = _owner(gateway, page.owner)
    contents: list = []
    for entry in page.entries:
        if isinstance(entry, str):
            continue
        item = [
            ("Key", listed_key(entry.key, url)),
            ("LastModified", iso8601(entry.last_modified)),
            ("ETag", entry.etag),
            ("Size", entry.size),
            ("StorageClass", storage_class.of(entry.headers)),
        ]
        if fetch_owner:
            item.append(("Owner", owner))
        contents.append(("Contents", item))
    # ListObjects v1 answers its Prefix as given, encoding-type or not (as S3
    # does: SDKs decode Marker, NextMarker, Delimiter and keys in v1, never Prefix).
    children: list = [("Name", call.bucket), ("Prefix", listed_key(page.prefix, url and v2))]
    if v2:
        if "continuation-token" in query:
            children.append(("ContinuationToken", query["continuation-token"]))
        if "start-after" in query:
            children.append(("StartAfter", listed_key(query["start-after"], url)))
        children.append(("KeyCount", len(page.entries)))
        if page.truncated and page.next_marker is not None:
            children.append(("NextContinuationToken", encode_token(page.next_marker)))
    else:
        children.append(("Marker", listed_key(query.get("marker", ""), url)))
        if page.truncated and page.next_marker is not None:
            children.append(("NextMarker", listed_key(page.next_marker, url)))
    children.extend(page.tail())
    children.extend(contents)
    children.extend(page.prefixes())
    gateway.answer_xml(request, document("ListBucketResult", children))


def _already_exists(config: Config, caller: access.Caller, name: str, recorded: Optional[str]) -> S3Error:
    """CreateBucket of a taken name: BucketAlreadyOwnedByYou for its owner, BucketAlreadyExists for anyone else."""
    if caller.account is not None and caller.account == access.bucket_owner(config, name, recorded):
        return S3Error("BucketAlreadyOwnedByYou", BucketName=name)
    return S3Error("BucketAlreadyExists", BucketName=name)


async def create_bucket(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    A new bucket owned by the caller's account (an anonymous caller owns
    none: AccessDenied), with the ACL its x-amz-acl or x-amz-grant-* headers
    ask for (checked at the headers, Gateway.prepare), private without.
    """
    name = call.bucket
    config = gateway.config
    if not valid_bucket_name(name):
        raise S3Error("InvalidBucketName", BucketName=name)
    caller = access.caller_of(config.s3api, call.credential)
    if config.virtual_bucket(name) is not None:
        raise _already_exists(config, caller, name, None)
    if caller.account is None:
        raise S3Error("AccessDenied")
    if not config.s3api.allow_create_bucket:
        raise S3Error("AccessDenied", "Creating buckets is disabled on this gateway.")
    new_acl = acl.from_headers(call.headers, caller.account, acl.is_account_of(config.s3api), bucket=True)
    # The gateway's Block Public Access (a new bucket has no flags of its own yet).
    access.refuse_public_acl(
        access.BucketAccess(name, caller.account, block_public_acls=config.s3api.block_public_access), new_acl
    )
    # With Object Lock: enabled, without a default retention, versioning Enabled (as on S3).
    locked = (call.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true"
    try:
        await gateway.store.create_bucket(
            name, caller.account, acl.dump(new_acl, caller.account),
            object_lock.Configuration().dump() if locked else None,
        )
    except BucketExists:
        existing = await gateway.store.get_bucket(name)
        raise _already_exists(config, caller, name, existing.owner if existing else None) from None
    gateway.answer_empty(request, 200, {"Location": f"/{name}"})


async def delete_bucket(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    name = call.bucket
    # Only its owner (or an admin) learns more than AccessDenied.
    await gateway.require_bucket(call)
    if gateway.config.virtual_bucket(name) is not None:
        raise S3Error(
            "AccessDenied", "Buckets defined in the configuration cannot be deleted through the API."
        )
    try:
        aborted = await gateway.store.delete_bucket(name)
    except NoSuchBucketError:
        raise S3Error("NoSuchBucket", BucketName=name) from None
    except BucketNotEmpty:
        raise S3Error("BucketNotEmpty", BucketName=name) from None
    if aborted:
        gateway.kick_deleter()
    gateway.answer_empty(request, 204)


HANDLERS: dict[str, Handler] = {
    "ListBuckets": list_buckets,
    "HeadBucket": head_bucket,
    "GetBucketLocation": get_bucket_location,
    "GetBucketTagging": get_bucket_tagging,
    "PutBucketTagging": put_bucket_tagging,
    "DeleteBucketTagging": delete_bucket_tagging,
    "ListObjects": list_objects,
    "ListObjectsV2": list_objects,
    "CreateBucket": create_bucket,
    "DeleteBucket": delete_bucket,
}
