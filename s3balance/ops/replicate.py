"""
Replicas: the copies an object of a bucket with C{replicas: N} keeps on N
distinct backends (C{balancer.replicas}, a virtual bucket's C{replicas}).

A PutObject of known length writes all N copies at once
(L{s3balance.s3.upload}).  Everything else that leaves an object short of
copies is made up for here, by L{ReplicaMaker}: a copy streamed from a
readable location to a backend the strategy places (never one holding a
copy), under a write intent, then C{store.add_location} (ONE transaction:
the location is added only when the object is still the version copied).

  - In C{replication: sync} buckets a CompleteMultipartUpload, a
    CopyObject and a PutObject of unknown length make the missing copies
    before they answer (L{ReplicaMaker.complete}); when that fails the
    client gets 503 and the object stays, to be completed by the repair.
  - In C{replication: async} buckets a write answers after the first copy
    and L{ReplicaRepair.soon} makes the rest in the background.
  - L{ReplicaRepair}, elected once per cluster, walks every bucket that
    wants more than one copy every C{balancer.replicate_period} seconds and
    completes the objects short of copies.  A location on a backend that
    left the configuration or has been down for C{replica_repair_after}
    seconds does not count: its objects get a copy elsewhere (the old
    location stays, so the backend's copy serves again, or is dropped by
    the operator's drain, when it returns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attr
from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger

from s3balance.backends.backend import Backend, BackendError
from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics
from s3balance.ops.jobs import GatewayJob
from s3balance.ops.move import MoveError, ObjectCopier, bare_etag, copy_under_intent, is_md5_etag, place_copy
from s3balance.store.interfaces import Location, ObjectRecord, StoreUnavailable
from s3balance.store.replicas import ADDED, STALE

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation
    from s3balance.s3.handler_types import GatewayLike

log = Logger()


# What a check of one copy found (L{check_copy}).
GOOD = "good"
BAD = "bad"
UNKNOWN = "unknown"  # its backend could not be asked


async def check_copy(gateway: GatewayLike, record: ObjectRecord, location: Location) -> str:
    """
    Whether the copy at C{location} is C{record}'s, by its backend's HEAD:
    BAD when the backend says it is missing (404), has another size or
    (both being MD5s) another ETag; UNKNOWN when the backend cannot be asked
    (down, another error): a copy is bad only on its backend's word.
    """
    pool = gateway.pool
    backend = pool.get(location.backend)
    if backend is None or not pool.readable(location.backend):
        return UNKNOWN
    try:
        size, etag = await backend.head_object(location.real_key)
    except BackendError as error:
        return BAD if error.status == 404 else UNKNOWN
    if size != record.size:
        return BAD
    if is_md5_etag(etag) and is_md5_etag(record.etag) and bare_etag(etag) != bare_etag(record.etag):
        return BAD
    return GOOD


class ReplicaError(Exception):
    """An object could not be given the copies its bucket wants (yet)."""


class ReplicaMetrics:
    """The replicas' and the scrub's series, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.made = Counter(
            "s3balance_replica_copies_made", "Copies added to objects after their write (sync, async, repair).",
            registry=registry,
        )
        self.failed = Counter(
            "s3balance_replica_copies_failed", "Copies that could not be added (tried again by the repair).",
            registry=registry,
        )
        self.checked = Counter(
            "s3balance_scrub_copies_checked", "Copies the scrub checked, by verdict (good, bad, unknown).",
            ["verdict"], registry=registry,
        )
        self.dropped = Counter(
            "s3balance_scrub_copies_dropped", "Bad copies the scrub took off their object (another copy was good).",
            registry=registry,
        )
        self.lost = Counter(
            "s3balance_scrub_last_copies_bad", "Bad copies the scrub kept: no good copy of the object was known.",
            registry=registry,
        )


class ReplicaMaker:
    """Adds copies to objects, one at a time, from one of their readable copies."""

    def __init__(self, gateway: GatewayLike, metrics: Optional[ReplicaMetrics] = None) -> None:
        self.gateway = gateway
        self.copier = ObjectCopier(gateway)
        self.metrics = metrics

    def wanted(self, bucket: str) -> int:
        return self.gateway.config.replication_of(bucket)[0]

    def counts(self, location: Location) -> bool:
        """
        Whether a location counts as a copy: its backend is configured and
        has not been down for C{balancer.replica_repair_after} seconds.
        """
        pool = self.gateway.pool
        if pool.get(location.backend) is None:
            return False
        state = pool.health(location.backend)
        if state.up:
            return True
        return self.gateway.clock() - state.last_change < self.gateway.config.balancer.replica_repair_after

    def missing(self, record: ObjectRecord, want: Optional[int] = None) -> int:
        """How many copies C{record} lacks."""
        want = self.wanted(record.bucket) if want is None else want
        return max(0, want - sum(1 for location in record.locations if self.counts(location)))

    async def complete(self, record: ObjectRecord, want: Optional[int] = None) -> ObjectRecord:
        """
        Add copies to C{record} until it has C{want} (its bucket's replicas);
        -> the record with its locations.  ReplicaError when a copy could not
        be made or the object changed meanwhile (a newer version has its own).
        """
        while self.missing(record, want):
            try:
                record = await self.add_copy(record)
            except (ReplicaError, BackendError, MoveError):
                if self.metrics is not None:
                    self.metrics.failed.inc()
                raise
            if self.metrics is not None:
                self.metrics.made.inc()
        return record

    async def add_copy(self, record: ObjectRecord) -> ObjectRecord:
        """One more copy of C{record}; -> the record with the new location (ReplicaError otherwise)."""
        gateway, pool, store = self.gateway, self.gateway.pool, self.gateway.store
        source_location = next((loc for loc in record.locations if pool.readable(loc.backend)), None)
        if source_location is None:
            raise ReplicaError(f"no copy of {record.bucket}/{record.key} can be read now")
        source = pool.get(source_location.backend)
        assert source is not None  # readable: in the pool
        reservation, target, real_key, intent_id = await self._place(record)
        try:
            try:
                await copy_under_intent(
                    gateway, self.copier, record, source, source_location.real_key, target, real_key, intent_id
                )
            except (MoveError, BackendError) as error:
                raise ReplicaError(f"copying {record.bucket}/{record.key} to {target.name}: {error}") from error
            target_location = Location(target.name, real_key)
            outcome = await store.add_location(intent_id, record, source_location, target_location)
        finally:
            reservation.release()
        if outcome != ADDED:
            if outcome == STALE:
                gateway.kick_deleter()
            raise ReplicaError(f"{record.bucket}/{record.key} changed while it was copied ({outcome})")
        pool.add_usage(target.name, record.size, 1)
        await self.copier.catch_up(record, target_location)
        log.info(
            "replica of {bucket}/{key} made on {target} (from {source})",
            bucket=record.bucket,
            key=record.key,
            target=target.name,
            source=source.name,
        )
        return _with_location(record, target_location)

    async def _place(self, record: ObjectRecord) -> tuple[Reservation, Backend, str, int]:
        """A backend by the strategy that holds no copy of C{record} yet, and a write intent there."""
        try:
            return await place_copy(self.gateway, record, {location.backend for location in record.locations})
        except MoveError as error:
            raise ReplicaError(str(error)) from None


def _with_location(record: ObjectRecord, location: Location) -> ObjectRecord:
    return attr.evolve(record, locations=(*record.locations, location))


class ReplicaRepair(GatewayJob):
    """
    The elected job ("replicas") that completes the objects short of copies
    in every bucket that wants more than one, and this daemon's background
    copies of async writes (L{soon}).
    """

    PAGE = 256

    def __init__(
        self,
        gateway: GatewayLike,
        period: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
        replica_metrics: Optional[ReplicaMetrics] = None,
    ) -> None:
        super().__init__("replicas", gateway, period, clock, metrics, holder, lease_seconds)
        self.maker = ReplicaMaker(gateway, replica_metrics)
        self._soon: set[Deferred[Any]] = set()
        self.made = 0
        self.failed = 0

    # -- async writes ------------------------------------------------------------------

    def soon(self, record: ObjectRecord) -> None:
        """Make C{record}'s missing copies in the background (an async bucket's write); the repair is the backstop."""
        if not self.running:
            return
        d = ensureDeferred(self._complete(record))
        self._soon.add(d)
        d.addBoth(lambda _: self._soon.discard(d))

    def suspect(self, record: ObjectRecord, location: Location) -> None:
        """
        A read found no copy at C{location} (another copy served it): check it
        in the background and, when its backend confirms it is bad, take it
        off the object (never a last copy) and make the object's copies again.
        """
        if not self.running:
            return
        d = ensureDeferred(self._recheck(record, location))
        self._soon.add(d)
        d.addBoth(lambda _: self._soon.discard(d))

    async def _recheck(self, record: ObjectRecord, location: Location) -> None:
        try:
            if await check_copy(self.gateway, record, location) != BAD:
                return
            if await self.store.drop_location(record, location):
                log.warn(
                    "the copy of {bucket}/{key} on {backend} ({real_key}) is missing; dropped, copying again",
                    bucket=record.bucket,
                    key=record.key,
                    backend=location.backend,
                    real_key=location.real_key,
                )
                self.gateway.kick_deleter()
                record = attr.evolve(record, locations=tuple(loc for loc in record.locations if loc != location))
                await self._complete(record)
        except CancelledError:
            pass
        except Exception:
            log.failure("checking the copy of {bucket}/{key} on {backend}", bucket=record.bucket, key=record.key,
                        backend=location.backend)

    async def _complete(self, record: ObjectRecord) -> None:
        try:
            await self.maker.complete(record)
        except CancelledError:
            pass
        except (ReplicaError, BackendError, MoveError, StoreUnavailable) as error:
            self.failed += 1
            log.warn("replica of {bucket}/{key} not made yet: {error}", bucket=record.bucket, key=record.key,
                     error=str(error))
        except Exception:
            self.failed += 1
            log.failure("replica of {bucket}/{key}", bucket=record.bucket, key=record.key)

    async def complete(self, record: ObjectRecord) -> ObjectRecord:
        """Make C{record}'s missing copies now (a sync bucket's write); ReplicaError when they cannot be."""
        return await self.maker.complete(record)

    def stopService(self) -> Any:
        for d in list(self._soon):
            d.cancel()
        return super().stopService()

    # -- the repair pass ---------------------------------------------------------------

    async def run(self) -> None:
        config = self.gateway.config
        names = {bucket.name for bucket in config.virtual_buckets}
        if config.balancer.replicas > 1:
            names.update(bucket.name for bucket in await self.store.list_buckets())
        for bucket in sorted(names):
            want = self.maker.wanted(bucket)
            if want > 1 and self.keep_going():
                await self.repair_bucket(bucket, want)

    async def repair_bucket(self, bucket: str, want: int) -> None:
        after = 0
        while self.keep_going():
            live = [name for name in self.gateway.pool.names() if self.maker.counts(Location(name, ""))]
            records, cursor = await self.store.under_replicated(bucket, want, after, self.PAGE, live)
            for record in records:
                if not self.keep_going():
                    return
                if not self.maker.missing(record, want):
                    continue
                try:
                    await self.maker.complete(record, want)
                    self.made += 1
                except (ReplicaError, BackendError, MoveError) as error:
                    self.failed += 1
                    log.warn("replica repair: {bucket}/{key}: {error}", bucket=bucket, key=record.key, error=str(error))
            if cursor == after:
                return
            after = cursor
