"""
The lifecycle expirer: the elected job ("lifecycle") that applies the
buckets' lifecycle configurations (L{s3balance.s3.lifecycle_rules}).

Every C{balancer.lifecycle_period} seconds (0: never) a pass reads every
bucket's configuration and, for each enabled rule:

  - C{Expiration} (C{Days} or C{Date}): pages through the objects under the
    rule's prefix (L{PAGE} at a time, in key order) and deletes each one the
    rule's filter (tags, size) selects and whose expiry has come, by the
    store's C{delete_object}, as DeleteObject does: the row goes and its
    copies are queued for deletion after C{balancer.deletion_grace}, in one
    transaction, and only while the object is still the version that was
    read (an object overwritten or retagged meanwhile is left to the next
    pass); in a versioned bucket that delete adds a delete marker, as on S3;
  - in a bucket that is or was versioned, C{NoncurrentVersionExpiration},
    C{ExpiredObjectDeleteMarker}, and C{Days} or C{Date} for the delete
    markers left alone: pages through the noncurrent versions and lone
    delete markers under the prefix (L{PAGE} at a time, in key and version
    order) and removes each one due (L{lifecycle_rules.version_expiry}) by
    the store's C{expire_version}: DeleteObject with its version id, the
    one path that removes a version (its copies queued for deletion after
    C{balancer.deletion_grace}), only while the version is still as read (a
    version made current again, replaced or retagged meanwhile is kept).  A
    version the store refuses to remove (an error of the store: a version
    Object Lock keeps) is skipped, counted and logged, and the pass goes on;
  - C{AbortIncompleteMultipartUpload}: aborts the uploads under the prefix
    initiated long enough ago, as AbortMultipartUpload does (the backend's
    upload is aborted by the deletion worker).

At most C{balancer.lifecycle_rate} objects, versions and uploads a second.  Before
each page the bucket's configuration is read again: a rule changed, disabled
or removed meanwhile stops there, and the next pass applies what is
configured then.  Pausing the job (admin C{/admin/jobs/lifecycle/pause})
stops a pass between two objects.  Time is the daemon's clock (the reactor's),
in UTC.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Optional

from prometheus_client import CollectorRegistry, Counter
from twisted.internet.task import deferLater
from twisted.logger import Logger

from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics
from s3balance.ops.jobs import GatewayJob
from s3balance.s3.lifecycle_rules import Configuration, Rule, abort_due, expiry_of, load, version_expiry
from s3balance.store.interfaces import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike

log = Logger()

JOB = "lifecycle"
# Objects (or uploads) read per page.
PAGE = 256


class LifecycleMetrics:
    """The expirer's series, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.expired = Counter(
            "s3balance_lifecycle_objects_expired", "Objects a lifecycle rule expired (deleted).",
            registry=registry,
        )
        self.aborted = Counter(
            "s3balance_lifecycle_uploads_aborted", "Incomplete multipart uploads a lifecycle rule aborted.",
            registry=registry,
        )
        self.versions_expired = Counter(
            "s3balance_lifecycle_versions_expired",
            "Versions a lifecycle rule removed: noncurrent versions (delete markers included) or "
            "expired object delete markers.",
            ["kind"], registry=registry,
        )
        self.versions_refused = Counter(
            "s3balance_lifecycle_versions_refused",
            "Versions a lifecycle rule would remove that the store kept (Object Lock); tried again next pass.",
            registry=registry,
        )


class LifecycleExpirer(GatewayJob):
    """The elected lifecycle job; see the module's docstring."""

    def __init__(
        self,
        gateway: GatewayLike,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
        lifecycle_metrics: Optional[LifecycleMetrics] = None,
    ) -> None:
        period = gateway.config.balancer.lifecycle_period
        super().__init__(JOB, gateway, period or 3600.0, clock, metrics, holder, lease_seconds)
        self.lifecycle_metrics = lifecycle_metrics
        # What the passes did, for tests and /status.
        self.expired = 0
        self.versions_expired = 0
        self.versions_refused = 0
        self.aborted = 0
        self.passes = 0

    def should_run(self) -> bool:
        period = self.gateway.config.balancer.lifecycle_period
        if period:
            self.period = period  # (a reload's new period, from the next run on)
        return bool(period) and super().should_run()

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)

    async def run(self) -> None:
        before = (self.expired, self.versions_expired, self.versions_refused, self.aborted)
        for bucket, text in await self.store.lifecycle_buckets():
            if not self.keep_going():
                return
            config = self._parse(bucket, text)
            if config is None:
                continue
            versioned: Optional[bool] = None  # asked once per bucket, when a rule needs it
            for rule in config.enabled_rules:
                if not self.keep_going():
                    return
                if rule.expires_objects:
                    await self.expire(bucket, rule)
                if rule.expires_versions:
                    if versioned is None:
                        versioned = await self._versioned(bucket)
                    if versioned:
                        await self.expire_versions(bucket, rule)
                if rule.abort_days is not None:
                    await self.abort_uploads(bucket, rule)
        if self.keep_going():
            self.passes += 1  # (a pass that was paused or stopped is not one)
        after = (self.expired, self.versions_expired, self.versions_refused, self.aborted)
        if after != before:
            expired, versions, refused, aborted = (now - then for now, then in zip(after, before, strict=True))
            log.info("lifecycle pass: {expired} objects expired, {versions} versions removed, {refused} versions "
                     "kept by the store, {aborted} multipart uploads aborted",
                     expired=expired, versions=versions, refused=refused, aborted=aborted)

    async def _versioned(self, bucket: str) -> bool:
        """Whether C{bucket} is or was versioned: one never versioned has no noncurrent version nor delete marker."""
        record = await self.store.get_bucket(bucket)
        return record is not None and record.versioning is not None

    def _parse(self, bucket: str, text: Optional[str]) -> Optional[Configuration]:
        if text is None:
            return None
        try:
            return load(text)
        except (ValueError, KeyError, TypeError) as error:
            log.error("lifecycle: the configuration of bucket {bucket} cannot be read ({error}); skipped",
                      bucket=bucket, error=str(error))
            return None

    async def _still(self, bucket: str, rule: Rule) -> bool:
        """Whether C{rule} is still one of C{bucket}'s enabled rules, as it was."""
        config = self._parse(bucket, await self.store.get_bucket_lifecycle(bucket))
        return config is not None and rule in config.enabled_rules

    async def _pace(self) -> None:
        rate = self.gateway.config.balancer.lifecycle_rate
        if rate > 0:
            await deferLater(self.clock, 1.0 / rate, lambda: None)

    async def expire(self, bucket: str, rule: Rule) -> int:
        """Delete the objects of C{bucket} that C{rule} expires by now. -> how many."""
        expired = 0
        after = ""
        while self.keep_going() and await self._still(bucket, rule):
            page = await self.store.lifecycle_page(bucket, rule.filter.prefix, after, PAGE)
            now = self.now()
            for record in page:
                if not self.keep_going():
                    break
                due = expiry_of(rule, record)
                if due is None or due > now:
                    continue
                # In a versioned bucket: a delete marker on top, as on S3.
                done = await self.store.delete_object(bucket, record.key, expected=record)
                if done.removed is None and done.marker is None:
                    continue  # deleted, overwritten or retagged meanwhile
                if done.removed is not None:
                    for location in done.removed.locations:
                        self.gateway.pool.add_usage(location.backend, -done.removed.size, -1)
                expired += 1
                self.expired += 1
                if self.lifecycle_metrics is not None:
                    self.lifecycle_metrics.expired.inc()
                await self._pace()
            if len(page) < PAGE:
                break
            after = page[-1].key
        if expired:
            log.info("lifecycle: rule {rule} of bucket {bucket} expired {count} objects",
                     rule=rule.id, bucket=bucket, count=expired)
            self.gateway.kick_deleter(replaced=True)
        return expired

    async def expire_versions(self, bucket: str, rule: Rule) -> int:
        """Remove the noncurrent versions and expired object delete markers of C{bucket} that C{rule} expires by now. -> how many."""
        removed = refused = 0
        after_key, after_id = "", 0
        while self.keep_going() and await self._still(bucket, rule):
            page = await self.store.lifecycle_versions_page(bucket, rule.filter.prefix, after_key, after_id, PAGE)
            now = self.now()
            for version in page:
                if not self.keep_going():
                    break
                due = version_expiry(rule, version)
                if due is None or due > now:
                    continue
                try:
                    done = await self.store.expire_version(bucket, version)
                except StoreUnavailable:
                    raise
                except StoreError as error:
                    # The store keeps this version (Object Lock): the next one.
                    refused += 1
                    self.versions_refused += 1
                    if self.lifecycle_metrics is not None:
                        self.lifecycle_metrics.versions_refused.inc()
                    log.debug("lifecycle: rule {rule} of bucket {bucket}: version {version} of {key} kept ({error})",
                              rule=rule.id, bucket=bucket, key=version.record.key,
                              version=version.record.version_id or "null", error=type(error).__name__)
                    continue
                if done.removed is None:
                    continue  # removed, made current again, replaced or retagged meanwhile
                for location in done.removed.locations:
                    self.gateway.pool.add_usage(location.backend, -done.removed.size, -1)
                removed += 1
                self.versions_expired += 1
                if self.lifecycle_metrics is not None:
                    kind = "expired_delete_marker" if version.lone_marker else "noncurrent"
                    self.lifecycle_metrics.versions_expired.labels(kind=kind).inc()
                await self._pace()
            if len(page) < PAGE:
                break
            after_key, after_id = page[-1].record.key, page[-1].record.id or 0
        if removed or refused:
            log.info("lifecycle: rule {rule} of bucket {bucket} removed {count} versions, {refused} kept by the store",
                     rule=rule.id, bucket=bucket, count=removed, refused=refused)
        if removed:
            self.gateway.kick_deleter(replaced=True)
        return removed

    async def abort_uploads(self, bucket: str, rule: Rule) -> int:
        """Abort the multipart uploads of C{bucket} that C{rule} aborts by now. -> how many."""
        aborted = 0
        key_marker = upload_marker = ""
        while self.keep_going() and await self._still(bucket, rule):
            uploads = await self.store.list_multipart(bucket, rule.filter.prefix, key_marker, upload_marker, PAGE)
            now = self.now()
            for upload in uploads:
                if not self.keep_going():
                    break
                due = abort_due(rule, upload.initiated)
                if due is None or due > now:
                    continue
                if await self.store.abort_multipart(upload.upload_id, True) is None:
                    continue  # completed or aborted meanwhile
                aborted += 1
                self.aborted += 1
                if self.lifecycle_metrics is not None:
                    self.lifecycle_metrics.aborted.inc()
                await self._pace()
            if len(uploads) < PAGE:
                break
            key_marker, upload_marker = uploads[-1].key, uploads[-1].upload_id
        if aborted:
            log.info("lifecycle: rule {rule} of bucket {bucket} aborted {count} multipart uploads",
                     rule=rule.id, bucket=bucket, count=aborted)
            self.gateway.kick_deleter()
        return aborted
