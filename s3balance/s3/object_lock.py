"""
Object Lock: a bucket's configuration (Put/GetObjectLockConfiguration,
CreateBucket's C{x-amz-bucket-object-lock-enabled}), a version's retention
and legal hold (the C{x-amz-object-lock-*} headers of PUT, POST, copy and
CreateMultipartUpload; Put/GetObjectRetention, Put/GetObjectLegalHold), and
the headers GET and HEAD answer.

What a lock forbids is decided in the store, in one place
(L{s3balance.store.versions.check_unlocked}): every path that would remove
a version or its bytes asks it.  A bucket with Object Lock has versioning
Enabled for good (PutBucketVersioning Suspended is refused), so a write
never replaces a version.  GOVERNANCE retention gives way to a request with
C{x-amz-bypass-governance-retention: true} from a credential allowed to
(C{bypass_governance_retention: true}, or an admin); COMPLIANCE retention
to nothing: no API, admin call or tool of s3balance removes it early.

A bucket of the configuration has no Object Lock (its configuration has no
key for it): the operations answer InvalidRequest naming why.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import TYPE_CHECKING, Optional

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from s3balance.backends import retention
from s3balance.backends.backend import BackendError
from s3balance.errors import S3Error
from s3balance.s3 import versioning
from s3balance.s3.bodies import small_body
from s3balance.s3.xmldoc import Node, child_text, document, iso8601, parse
from s3balance.store.interfaces import ObjectLocked
from s3balance.store.versions import COMPLIANCE, GOVERNANCE, weakens

if TYPE_CHECKING:
    from s3balance.s3.access import BucketAccess
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike, Handler
    from s3balance.s3.request import S3Request
    from s3balance.store.interfaces import ObjectRecord

log = Logger()

MODES = (GOVERNANCE, COMPLIANCE)
DAY = datetime.timedelta(days=1)
MISSING_CONFIGURATION = "Bucket is missing Object Lock Configuration"


@attrs.frozen
class Configuration:
    """A bucket's Object Lock configuration: enabled, and maybe a default retention (days or years)."""

    mode: Optional[str] = None
    days: Optional[int] = None
    years: Optional[int] = None

    def dump(self) -> str:
        return json.dumps({"mode": self.mode, "days": self.days, "years": self.years}, sort_keys=True)

    def default_until(self, now: datetime.datetime) -> Optional[datetime.datetime]:
        """When the default retention of a version written C{now} ends (None: no default)."""
        if self.days is not None:
            return now + self.days * DAY
        if self.years is not None:
            try:
                return now.replace(year=now.year + self.years)
            except ValueError:  # 29 February
                return now.replace(year=now.year + self.years, day=28)
        return None


@functools.lru_cache(maxsize=1024)
def load(text: str) -> Configuration:
    return Configuration(**json.loads(text))


def configuration_of(bucket: BucketAccess) -> Optional[Configuration]:
    return load(bucket.object_lock) if bucket.object_lock is not None else None


def _positive(text: Optional[str]) -> int:
    try:
        value = int(text or "")
    except ValueError:
        raise S3Error("MalformedXML") from None
    if value <= 0:
        raise S3Error("InvalidArgument", "Default retention period must be a positive integer value.")
    return value


def parse_configuration(body: bytes) -> Configuration:
    """An ObjectLockConfiguration document, checked as S3 checks it."""
    root = parse(body)
    if root.tag != "ObjectLockConfiguration" or child_text(root, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    rule = root.find("Rule")
    if rule is None:
        return Configuration()
    retention = rule.find("DefaultRetention")
    if retention is None:
        raise S3Error("MalformedXML")
    mode = child_text(retention, "Mode")
    if mode not in MODES:
        raise S3Error("MalformedXML")
    days, years = child_text(retention, "Days"), child_text(retention, "Years")
    if (days is None) == (years is None):
        raise S3Error("MalformedXML")
    if days is not None:
        return Configuration(mode, days=_positive(days))
    return Configuration(mode, years=_positive(years))


def render_configuration(config: Configuration) -> bytes:
    children: list[Node] = [("ObjectLockEnabled", "Enabled")]
    if config.mode is not None:
        period: Node = ("Days", config.days) if config.days is not None else ("Years", config.years)
        children.append(("Rule", [("DefaultRetention", [("Mode", config.mode), period])]))
    return document("ObjectLockConfiguration", children)


@attrs.frozen
class Lock:
    """What a new version is locked with."""

    mode: Optional[str] = None
    until: Optional[datetime.datetime] = None
    legal_hold: bool = False


NO_LOCK = Lock()


def _date(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise S3Error("InvalidArgument", "The retain until date must be provided in ISO 8601 format") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def _future(when: datetime.datetime, now: datetime.datetime) -> datetime.datetime:
    if when <= now:
        raise S3Error("InvalidArgument", "The retain until date must be in the future!")
    return when


def _hold(text: Optional[str]) -> bool:
    if text not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'")
    return text == "ON"


def requested(call: S3Call, bucket: BucketAccess, now: datetime.datetime) -> Lock:
    """
    The lock a write asks for with its C{x-amz-object-lock-*} headers, or
    its bucket's default retention; InvalidRequest in a bucket without Object
    Lock, InvalidArgument for headers S3 refuses.
    """
    mode = call.header("x-amz-object-lock-mode")
    until = call.header("x-amz-object-lock-retain-until-date")
    hold = call.header("x-amz-object-lock-legal-hold")
    config = configuration_of(bucket)
    if config is None:
        if mode is not None or until is not None or hold is not None:
            raise S3Error("InvalidRequest", MISSING_CONFIGURATION)
        return NO_LOCK
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must "
                      "both be supplied")
    if mode is not None and mode not in MODES:
        raise S3Error("InvalidArgument", "Unknown wormMode directive.")
    legal_hold = _hold(hold) if hold is not None else False
    if mode is not None and until is not None:
        return Lock(mode, _future(_date(until), now), legal_hold)
    return Lock(config.mode, config.default_until(now), legal_hold)


def require_integrity(call: S3Call, bucket: BucketAccess) -> None:
    """A PutObject or UploadPart to a bucket with Object Lock carries Content-MD5 or a checksum (as S3 requires)."""
    if bucket.object_lock is None:
        return
    headers = call.headers
    if "content-md5" in headers or "x-amz-sdk-checksum-algorithm" in headers:
        return
    if any(name.startswith("x-amz-checksum-") for name in headers):
        return
    if (call.header("x-amz-trailer") or "").lower().startswith("x-amz-checksum-"):
        return
    raise S3Error("InvalidRequest", "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object "
                  "requests with Object Lock parameters")


def headers(bucket: BucketAccess, record: ObjectRecord) -> dict[str, str]:
    """The C{x-amz-object-lock-*} headers GET and HEAD answer for a version."""
    answer = {}
    if record.lock_mode is not None and record.lock_until is not None:
        answer["x-amz-object-lock-mode"] = record.lock_mode
        answer["x-amz-object-lock-retain-until-date"] = iso8601(record.lock_until)
    if record.legal_hold or bucket.object_lock is not None:
        answer["x-amz-object-lock-legal-hold"] = "ON" if record.legal_hold else "OFF"
    return answer


def set_headers(request: S3Request, bucket: BucketAccess, record: ObjectRecord) -> None:
    for name, value in headers(bucket, record).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))


def may_bypass(gateway: GatewayLike, call: S3Call) -> bool:
    """
    Whether the request asks to bypass GOVERNANCE retention and its
    credential may (C{bypass_governance_retention}, or an admin).
    """
    if (call.header("x-amz-bypass-governance-retention") or "").lower() != "true":
        return False
    credential = call.credential
    return credential is not None and (credential.admin or credential.bypass_governance_retention)


LOCKED = "Access Denied because object protected by object lock."


def locked_error() -> S3Error:
    return S3Error("AccessDenied", LOCKED)


def _refuse_configured(gateway: GatewayLike, bucket: str) -> None:
    if gateway.config.virtual_bucket(bucket) is not None:
        raise S3Error("InvalidRequest", f"Object Lock is not available on bucket {bucket}, a bucket of the "
                      "s3balance configuration; use a bucket made by CreateBucket.")


async def put_object_lock_configuration(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    await gateway.require_bucket(call)
    _refuse_configured(gateway, call.bucket)
    config = parse_configuration(small_body(request, call))
    refused = await gateway.store.set_object_lock(call.bucket, config.dump())
    if refused == "NoSuchBucket":
        raise S3Error("NoSuchBucket", BucketName=call.bucket)
    if refused == "InvalidBucketState":
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                      "configuration", status=409)
    gateway.answer_empty(request, 200)


async def get_object_lock_configuration(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket = await gateway.require_bucket(call)
    config = configuration_of(bucket)
    if config is None:
        raise S3Error("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this "
                      "bucket", status=404, BucketName=call.bucket)
    gateway.answer_xml(request, render_configuration(config))


async def _version(gateway: GatewayLike, call: S3Call) -> tuple[BucketAccess, ObjectRecord]:
    version = versioning.requested_version(call)
    bucket = await gateway.require_bucket(call)
    if bucket.object_lock is None:
        raise S3Error("InvalidRequest", MISSING_CONFIGURATION)
    return bucket, await versioning.read_version(gateway, bucket, call.key, call.operation, version)


async def get_object_retention(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket, record = await _version(gateway, call)
    if record.lock_mode is None or record.lock_until is None:
        raise S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock "
                      "configuration", status=404)
    versioning.set_version_headers(request, bucket, record)
    gateway.answer_xml(request, document("Retention", [
        ("Mode", record.lock_mode), ("RetainUntilDate", iso8601(record.lock_until)),
    ]))


async def put_object_retention(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    """
    Set a version's retention (an empty Retention removes it): lengthening
    is always allowed, weakening a running retention only for GOVERNANCE
    with the bypass (L{may_bypass}).
    """
    root = parse(small_body(request, call))
    if root.tag != "Retention":
        raise S3Error("MalformedXML")
    mode, until_text = child_text(root, "Mode"), child_text(root, "RetainUntilDate")
    if (mode is None) != (until_text is None) or (mode is not None and mode not in MODES):
        raise S3Error("MalformedXML")
    bucket, record = await _version(gateway, call)
    now = datetime.datetime.fromtimestamp(gateway.clock(), datetime.UTC)
    until = _future(_date(until_text), now) if until_text is not None else None
    try:
        found = await gateway.store.set_retention(
            call.bucket, call.key, record.version_id or "null", mode, until, may_bypass(gateway, call)
        )
    except ObjectLocked:
        raise locked_error() from None
    if found is None:
        raise S3Error("NoSuchKey", Key=call.key)
    weakened = weakens(found.lock_mode, found.lock_until, mode, until)
    # The copies as the change found them (a copy recorded since catches up itself: ops.move).
    await _mirrored(
        retention.mirror_retention(gateway.pool, found.locations, mode, until, weakened), call, strengthened=not weakened
    )
    gateway.answer_empty(request, 200, versioning.version_headers(bucket, record))


async def _mirrored(change: Deferred[object], call: S3Call, strengthened: bool) -> None:
    """
    A lock change sent to the backends' copies (L{retention}).  When one
    fails: a lock made stronger answers 503 (the database has it; a retry
    sends it again), one made weaker is logged (the copy stays locked
    longer, and s3balance deletes it once the backend lets it).
    """
    try:
        await change
    except BackendError as error:
        log.warn("{operation} of {bucket}/{key} on {backend} failed: {error}", operation=call.operation,
                 bucket=call.bucket, key=call.key, backend=error.backend, error=str(error))
        if strengthened:
            raise S3Error("ServiceUnavailable", "The lock was set; a backend copy could not be locked: retry.") from None


async def get_object_legal_hold(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    bucket, record = await _version(gateway, call)
    versioning.set_version_headers(request, bucket, record)
    gateway.answer_xml(request, document("LegalHold", [("Status", "ON" if record.legal_hold else "OFF")]))


async def put_object_legal_hold(gateway: GatewayLike, request: S3Request, call: S3Call) -> None:
    root = parse(small_body(request, call))
    if root.tag != "LegalHold":
        raise S3Error("MalformedXML")
    status = child_text(root, "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    bucket, record = await _version(gateway, call)
    found = await gateway.store.set_legal_hold(call.bucket, call.key, record.version_id or "null", status == "ON")
    if found is None:
        raise S3Error("NoSuchKey", Key=call.key)
    on = status == "ON"
    await _mirrored(retention.mirror_legal_hold(gateway.pool, found.locations, on), call, strengthened=on)
    gateway.answer_empty(request, 200, versioning.version_headers(bucket, record))


HANDLERS: dict[str, Handler] = {
    "PutObjectLockConfiguration": put_object_lock_configuration,
    "GetObjectLockConfiguration": get_object_lock_configuration,
    "GetObjectRetention": get_object_retention,
    "PutObjectRetention": put_object_retention,
    "GetObjectLegalHold": get_object_legal_hold,
    "PutObjectLegalHold": put_object_legal_hold,
}
