"""
Scrub: the elected job ("scrub") that checks, now and then, that every copy
of every object is on its backend as recorded.

Every C{balancer.scrub_period} seconds (0: never) a pass walks the objects
of every bucket in id order, at most C{balancer.scrub_rate} objects a
second, and asks each location's backend (HEAD) for the copy's size and
ETag; with C{balancer.scrub_read} it also reads the bytes back and hashes
them (an object written in one PUT has the MD5 of its bytes as its ETag;
a multipart object's bytes are counted).  A copy that is missing (404), of
another size or (when both are MD5s) of another ETag, or whose bytes do not
hash to the ETag, is bad:

  - with another copy left, the bad one is taken off the object and queued
    for deletion (C{store.drop_location}: ONE transaction, never the last
    copy, only while the object is still the version checked), and the
    object is given its copies back from a good one (L{ReplicaMaker});
  - a last copy found bad is reported (log, metric), never dropped.

A backend that cannot be asked (down, an error other than 404) is passed
over: a copy is bad only on the backend's own word.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Optional

import attr
from twisted.internet.task import deferLater
from twisted.logger import Logger

from s3balance.backends.backend import BackendError
from s3balance.backends.streaming import relay_body
from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics
from s3balance.ops.jobs import GatewayJob
from s3balance.ops.move import bare_etag, is_md5_etag
from s3balance.ops.replicate import BAD, GOOD, UNKNOWN, ReplicaError, ReplicaMaker, ReplicaMetrics, check_copy
from s3balance.store.interfaces import Location, ObjectRecord

if TYPE_CHECKING:
    from s3balance.s3.handler_types import GatewayLike

log = Logger()


# Objects per page of a pass (every object of a page, whatever its copies).
PAGE = 256
EVERY_OBJECT = 1 << 30  # (under_replicated with this many copies wanted: every object)


class Scrubber(GatewayJob):
    """The elected scrub job; see the module's docstring."""

    def __init__(
        self,
        gateway: GatewayLike,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
        replica_metrics: Optional[ReplicaMetrics] = None,
    ) -> None:
        period = gateway.config.balancer.scrub_period
        super().__init__("scrub", gateway, period or 86400.0, clock, metrics, holder, lease_seconds)
        self.maker = ReplicaMaker(gateway, replica_metrics)
        self.replica_metrics = replica_metrics
        # What the last passes found, for /status and tests.
        self.checked = 0
        self.bad = 0
        self.dropped = 0
        self.lost = 0
        self.passes = 0

    def should_run(self) -> bool:
        period = self.gateway.config.balancer.scrub_period
        if period:
            self.period = period  # (a reload's new period, from the next run on)
        return bool(period) and super().should_run()

    async def run(self) -> None:
        names = {bucket.name for bucket in self.gateway.config.virtual_buckets}
        names.update(bucket.name for bucket in await self.store.list_buckets())
        for bucket in sorted(names):
            if not self.keep_going():
                return
            await self.scrub_bucket(bucket)
        self.passes += 1

    async def scrub_bucket(self, bucket: str) -> None:
        after = 0
        while self.keep_going():
            records, cursor = await self.store.under_replicated(bucket, EVERY_OBJECT, after, PAGE)
            for record in records:
                if not self.keep_going():
                    return
                await self.scrub_object(record)
                await self._pace()
            if cursor == after:
                return
            after = cursor

    async def _pace(self) -> None:
        rate = self.gateway.config.balancer.scrub_rate
        if rate > 0:
            await deferLater(self.clock, 1.0 / rate, lambda: None)

    async def scrub_object(self, record: ObjectRecord) -> None:
        """Check every copy of C{record}; drop the bad ones that are not the last good one, then complete it."""
        verdicts = []
        for location in record.locations:
            verdict = await self.check(record, location)
            verdicts.append((location, verdict))
            self.checked += 1
            if self.replica_metrics is not None:
                self.replica_metrics.checked.labels(verdict).inc()
        bad = [location for location, verdict in verdicts if verdict == BAD]
        if not bad:
            return
        self.bad += len(bad)
        good = [location for location, verdict in verdicts if verdict == GOOD]
        for location in bad:
            if not good:
                self.lost += 1
                if self.replica_metrics is not None:
                    self.replica_metrics.lost.inc()
                log.error(
                    "scrub: the copy of {bucket}/{key} on {backend} ({real_key}) is bad and no good copy is known; kept",
                    bucket=record.bucket,
                    key=record.key,
                    backend=location.backend,
                    real_key=location.real_key,
                )
                continue
            if await self.store.drop_location(record, location):
                self.dropped += 1
                if self.replica_metrics is not None:
                    self.replica_metrics.dropped.inc()
                record = _without(record, location)
                log.warn(
                    "scrub: the copy of {bucket}/{key} on {backend} ({real_key}) was bad; dropped",
                    bucket=record.bucket,
                    key=record.key,
                    backend=location.backend,
                    real_key=location.real_key,
                )
                self.gateway.kick_deleter()
        if good:
            try:
                await self.maker.complete(record)
            except (ReplicaError, BackendError) as error:
                log.warn("scrub: {bucket}/{key} not given its copies back yet: {error}",
                         bucket=record.bucket, key=record.key, error=str(error))

    async def check(self, record: ObjectRecord, location: Location) -> str:
        verdict = await check_copy(self.gateway, record, location)
        if verdict == GOOD and self.gateway.config.balancer.scrub_read:
            return await self.read_back(record, location)
        return verdict

    async def read_back(self, record: ObjectRecord, location: Location) -> str:
        """Read the copy's bytes: their count, and their MD5 when the object's ETag is one."""
        backend = self.gateway.pool.get(location.backend)
        assert backend is not None
        if record.size == 0:
            return GOOD
        try:
            response = await backend.get_object(location.real_key, None)
        except BackendError as error:
            return BAD if error.status == 404 else UNKNOWN
        digest = hashlib.md5(usedforsecurity=False)
        done, stop = relay_body(
            response,
            digest.update,
            lambda producer: None,
            None,
            idle_timeout=self.gateway.config.balancer.backend_timeout,
            clock=self.clock,
        )
        try:
            received = await done
        except Exception:
            stop()
            return UNKNOWN
        if received != record.size:
            return BAD
        if is_md5_etag(record.etag) and digest.hexdigest() != bare_etag(record.etag).lower():
            return BAD
        return GOOD


def _without(record: ObjectRecord, location: Location) -> ObjectRecord:
    return attr.evolve(record, locations=tuple(loc for loc in record.locations if loc != location))

