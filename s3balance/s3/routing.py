"""
From an HTTP request line and Host header to an S3 operation.

Two steps, both pure functions:

  - L{resolve_target}: which bucket and key the request names, path style
    (C{/bucket/key}) or virtual-host style (C{bucket.s3.example.com/key}).
  - L{route}: which S3 operation the method, target level and sub-resource
    query parameters select, by looking it up in L{ROUTES} — a table, so the
    whole API surface can be read in one place.

Every sub-resource S3 defines is listed: the ones we do not implement are
routed to C{NotImplemented} explicitly, so that for example C{PUT
/b/k?tagging} can never be mistaken for a PutObject that would overwrite the
object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional
from urllib.parse import parse_qsl, unquote_to_bytes

import attr

from s3balance.errors import S3Error

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"

# Query parameters that select a sub-resource (they change the operation).
SUBRESOURCES = frozenset(
    """accelerate acl analytics attributes cors delete encryption
    intelligent-tiering inventory legal-hold lifecycle location logging
    metadataConfiguration metadataTable metrics notification object-lock
    ownershipControls partNumber policy policyStatus publicAccessBlock
    replication requestPayment restore retention select session tagging
    torrent uploadId uploads versionId versioning versions website
    renameObject""".split()
)


@attr.s(frozen=True, auto_attribs=True)
class Target:
    bucket: Optional[str]
    key: Optional[str]
    virtual_host: bool = False

    @property
    def level(self) -> str:
        if self.bucket is None:
            return SERVICE
        if self.key is None:
            return BUCKET
        return OBJECT


def _decode(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", status=400) from None


def bucket_from_host(host: str, domains: Sequence[str]) -> Optional[str]:
    """The bucket named by a virtual-host style Host header, if it is one."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower().rstrip(".")
    for domain in domains:
        domain = domain.lower().rstrip(".")
        if hostname.endswith("." + domain):
            return hostname[: -len(domain) - 1]
    return None


def resolve_target(raw_path: bytes, host: str, domains: Sequence[str]) -> Target:
    """
    @param raw_path: the request path as received, without the query.
    @param domains: the configured virtual-host domains (empty: path style only).
    """
    if not raw_path.startswith(b"/"):
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", status=400)
    bucket = bucket_from_host(host, domains) if domains else None
    if bucket is not None:
        rest = raw_path[1:]
        return Target(bucket, _decode(rest) if rest else None, virtual_host=True)
    rest = raw_path[1:]
    if not rest:
        return Target(None, None)
    raw_bucket, slash, raw_key = rest.partition(b"/")
    bucket_name = _decode(raw_bucket)
    if not slash or not raw_key:
        return Target(bucket_name, None)
    return Target(bucket_name, _decode(raw_key))


def parse_query(raw_query: bytes) -> dict[str, str]:
    """Query parameters, decoded; a parameter without '=' has the value ''."""
    try:
        pairs = parse_qsl(raw_query.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", status=400) from None
    return dict(pairs)


# (method, level, sub-resources present (sorted tuple), operation)
ROUTES: dict[tuple[str, str, tuple[str, ...]], str] = {
    ("GET", SERVICE, ()): "ListBuckets",
    ("HEAD", BUCKET, ()): "HeadBucket",
    ("GET", BUCKET, ()): "ListObjects",  # ListObjectsV2 with list-type=2
    ("PUT", BUCKET, ()): "CreateBucket",
    ("DELETE", BUCKET, ()): "DeleteBucket",
    ("GET", BUCKET, ("location",)): "GetBucketLocation",
    ("GET", BUCKET, ("versioning",)): "GetBucketVersioning",
    ("PUT", BUCKET, ("versioning",)): "PutBucketVersioning",
    ("GET", BUCKET, ("object-lock",)): "GetObjectLockConfiguration",
    ("PUT", BUCKET, ("object-lock",)): "PutObjectLockConfiguration",
    ("GET", BUCKET, ("acl",)): "GetBucketAcl",
    ("PUT", BUCKET, ("acl",)): "PutBucketAcl",
    ("GET", BUCKET, ("tagging",)): "GetBucketTagging",
    ("PUT", BUCKET, ("tagging",)): "PutBucketTagging",
    ("DELETE", BUCKET, ("tagging",)): "DeleteBucketTagging",
    ("GET", BUCKET, ("lifecycle",)): "GetBucketLifecycleConfiguration",
    ("PUT", BUCKET, ("lifecycle",)): "PutBucketLifecycleConfiguration",
    ("DELETE", BUCKET, ("lifecycle",)): "DeleteBucketLifecycle",
    ("GET", BUCKET, ("encryption",)): "GetBucketEncryption",  # s3.sse: never configured
    ("GET", BUCKET, ("policy",)): "GetBucketPolicy",
    ("PUT", BUCKET, ("policy",)): "PutBucketPolicy",
    ("DELETE", BUCKET, ("policy",)): "DeleteBucketPolicy",
    ("GET", BUCKET, ("policyStatus",)): "GetBucketPolicyStatus",
    ("GET", BUCKET, ("publicAccessBlock",)): "GetPublicAccessBlock",
    ("PUT", BUCKET, ("publicAccessBlock",)): "PutPublicAccessBlock",
    ("DELETE", BUCKET, ("publicAccessBlock",)): "DeletePublicAccessBlock",
    ("GET", BUCKET, ("uploads",)): "ListMultipartUploads",
    ("GET", BUCKET, ("versions",)): "ListObjectVersions",
    ("POST", BUCKET, ("delete",)): "DeleteObjects",
    ("POST", BUCKET, ()): "PostObject",  # a browser form's upload: s3.form_upload
    ("PUT", OBJECT, ()): "PutObject",  # CopyObject with x-amz-copy-source
    ("GET", OBJECT, ()): "GetObject",
    ("HEAD", OBJECT, ()): "HeadObject",
    ("DELETE", OBJECT, ()): "DeleteObject",
    ("GET", OBJECT, ("acl",)): "GetObjectAcl",
    ("PUT", OBJECT, ("acl",)): "PutObjectAcl",
    ("GET", OBJECT, ("tagging",)): "GetObjectTagging",
    ("PUT", OBJECT, ("tagging",)): "PutObjectTagging",
    ("DELETE", OBJECT, ("tagging",)): "DeleteObjectTagging",
    ("GET", OBJECT, ("attributes",)): "GetObjectAttributes",
    ("GET", OBJECT, ("retention",)): "GetObjectRetention",
    ("PUT", OBJECT, ("retention",)): "PutObjectRetention",
    ("GET", OBJECT, ("legal-hold",)): "GetObjectLegalHold",
    ("PUT", OBJECT, ("legal-hold",)): "PutObjectLegalHold",
    ("POST", OBJECT, ("uploads",)): "CreateMultipartUpload",
    ("PUT", OBJECT, ("partNumber", "uploadId")): "UploadPart",  # UploadPartCopy with x-amz-copy-source
    ("POST", OBJECT, ("uploadId",)): "CompleteMultipartUpload",
    ("DELETE", OBJECT, ("uploadId",)): "AbortMultipartUpload",
    ("GET", OBJECT, ("uploadId",)): "ListParts",
}

# Operations whose request body is the object data and is streamed.
STREAMING_BODY = frozenset({"PutObject", "UploadPart", "PostObject"})


def route(method: str, target: Target, query: dict[str, str]) -> str:
    """
    The operation name.  Raises S3Error for methods that make no sense on the
    target (MethodNotAllowed) and sub-resources we do not implement
    (NotImplemented).
    """
    subresources = tuple(sorted(name for name in query if name in SUBRESOURCES))
    if method == "GET" and target.level == OBJECT and subresources == ("partNumber",):
        subresources = ()  # GetObject of one part: served as a plain GET
    if method == "HEAD" and target.level == OBJECT and subresources == ("partNumber",):
        subresources = ()
    if "versionId" in subresources and target.level == OBJECT and (
        method in ("GET", "HEAD", "DELETE")
        or subresources in (("tagging", "versionId"), ("acl", "versionId"), ("retention", "versionId"),
                            ("legal-hold", "versionId"))
    ):
        # The handlers read the version (s3.versioning.requested_version).
        subresources = tuple(s for s in subresources if s != "versionId")
    operation = ROUTES.get((method, target.level, subresources))
    if operation is not None:
        if operation == "ListObjects" and query.get("list-type") == "2":
            return "ListObjectsV2"
        return operation
    if subresources:
        raise S3Error(
            "NotImplemented",
            f"{method} with the sub-resource '{'&'.join(subresources)}' is not implemented by s3balance.",
        )
    raise S3Error("MethodNotAllowed", status=405)
