"""
Draining a backend: every object moved to the others, online, resumable,
rate-limited, then the backend can be removed from the configuration.

The state lives in the store (L{s3balance.store.moves}: the C{backend_drains}
table), so every daemon sees it and a restart picks it up:

  - L{DrainWatcher} (every daemon, every 2 s) reads the drains; a backend
    with one (draining, paused or done) is left out of placement
    (C{BackendPool.drains}), and the admin API, C{/status} and the
    metrics show the progress from this snapshot.
  - L{DrainMover} ("drain", once per cluster: an L{ElectedRepeater}) walks
    the locations of each backend in state C{draining}, a page at a time, a
    few objects at once (C{balancer.drain_concurrency}).  For each object:
    a target chosen by the placement strategy among the writable backends
    (drained, down, read-only, full ones and those at their class A limit
    are not candidates), a write intent for a fresh real key there, the
    bytes streamed from the source with the headers a PUT sends (a
    multipart object part by part, with the source's part layout where the
    source tells it, so its ETag comes out the same), the size checked (and
    the ETag, when the object's is an MD5), then L{switch_location}: ONE
    transaction that points the location at the copy only if the object
    still has the source location (an object overwritten or deleted
    meanwhile keeps its newer state; the copy goes to the deletion queue)
    and queues the old copy for deletion after C{balancer.deletion_grace}.
    A crash mid-copy leaves an intent whose lease runs out: the deleter
    removes the copy.  The source is read only while it is up and under its
    class B limit; every request counts in the operation counters.
  - The copies' bytes go through one L{Throttle} per drain: the drain's
    rate (bytes/s; the admin API's, else C{balancer.drain_rate}; 0 is
    unlimited), enforced by pausing the source connections.

A pass ends when the backend has no location left after the last page; the
drain is done when nothing refers to the backend any more (no location,
write in flight, open multipart upload or queued deletion): it may then be
removed from the configuration.

An object that no other backend can hold another copy of (every configured,
enabled backend that is not drained holds one already: C{replicas: 2} on two
backends) is never dropped from the drained backend, as that would lower its
redundancy silently: the pass skips it before any request (no intent, no
copy) and counts it as I{blocked}.  A pass that leaves nothing but blocked
objects makes the drain C{blocked} (not done); the mover passes over a
blocked drain again when the set of backends that could take a copy
changes (a backend added by a reload, a drain cancelled) or every
L{DrainMover.BLOCKED_RECHECK} seconds (objects deleted meanwhile), each
such pass costing database reads only.

Over 500 lines: the drain's record, its mover and its blocked state share
one state machine; the copy itself is L{s3balance.ops.move}'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, cast

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import Backend, BackendError
from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics, Repeater
from s3balance.ops.cleanup import OUTAGES
from s3balance.ops.jobs import GatewayJob
from s3balance.ops.move import MoveError, ObjectCopier, Throttle, copy_under_intent, place_copy
from s3balance.store.interfaces import DrainRecord, Location, MoveCandidate, StoreUnavailable
from s3balance.store.moves import (
    BLOCKED,
    BLOCKED_REASON,
    DONE,
    DRAINING,
    EXPIRED,
    MOVED,
    MOVING,
    PAUSED,
    STALE,
)

if TYPE_CHECKING:
    from s3balance.backends.pool import BackendPool, Reservation
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.store.interfaces import IMetadataStore

log = Logger()

STATES = (DRAINING, PAUSED, BLOCKED, DONE)
# An object a pause or a stop left alone (not a failure).
SKIPPED = "skipped"


# -- what the admin API, the CLI and /status show -------------------------------


def _iso(moment: Optional[datetime.datetime]) -> Optional[str]:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def drain_document(drain: DrainRecord, default_rate: int) -> dict[str, Any]:
    """
    A drain as JSON: state (draining, paused, blocked, done), totals at the
    start, what moved, what remains (C{objects.blocked}: left by the last
    pass because no other backend can hold another copy, C{blocked_reason})
    and what else still refers to the backend, the rate limit in force
    (C{rate_limit}, bytes/s, 0 unlimited), the rate achieved while moving
    (C{rate}: moved bytes over the time spent moving), the progress (0..1)
    and an estimate of the time left (C{eta_seconds}).
    """
    rate_limit = drain.rate if drain.rate is not None else default_rate
    rate = drain.moved_bytes / drain.active_seconds if drain.active_seconds > 0 else None
    seen_bytes = drain.moved_bytes + drain.remaining_bytes
    seen_objects = drain.moved_objects + drain.remaining_objects
    if drain.state == DONE:
        progress = 1.0
    elif seen_bytes:
        progress = drain.moved_bytes / seen_bytes
    elif seen_objects:
        progress = drain.moved_objects / seen_objects
    else:
        progress = 0.0
    eta: Optional[float] = None
    if drain.state in (DONE, BLOCKED) or not drain.remaining_objects:
        eta = 0.0 if drain.state == DONE else None
    elif rate:
        eta = drain.remaining_bytes / rate
    elif rate_limit:
        eta = drain.remaining_bytes / rate_limit
    return {
        "backend": drain.backend,
        "state": drain.state,
        "started": _iso(drain.started),
        "updated": _iso(drain.updated),
        "finished": _iso(drain.finished),
        "objects": {
            "total": drain.total_objects,
            "moved": drain.moved_objects,
            "remaining": drain.remaining_objects,
            "failed": drain.failed_objects,
            "blocked": drain.blocked_objects,
        },
        # Why the blocked objects stay (None: none is).
        "blocked_reason": BLOCKED_REASON if drain.blocked_objects else None,
        "bytes": {"total": drain.total_bytes, "moved": drain.moved_bytes, "remaining": drain.remaining_bytes},
        "pending": {
            "writes": drain.pending_writes,
            "uploads": drain.pending_uploads,
            "deletions": drain.pending_deletions,
        },
        "rate_limit": rate_limit,
        "rate_limit_from": "config" if drain.rate is None else "drain",
        "rate": round(rate) if rate is not None else None,
        "eta_seconds": round(eta) if eta is not None else None,
        "progress": round(progress, 4),
        "last_error": drain.last_error,
        # Nothing refers to the backend any more: it may leave the configuration.
        "removable": drain.state == DONE,
    }


# -- every daemon: the drains as the store has them ------------------------------


class DrainWatcher(Repeater):
    """
    Reads the drains every C{period} seconds (and on L{learn} from this
    daemon's admin API at once): the pool leaves their backends out of
    placement; L{drains} is what the admin API, C{/status} and the metrics show.
    """

    def __init__(
        self,
        store: IMetadataStore,
        pool: BackendPool,
        period: float = 2.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
    ) -> None:
        super().__init__("drain-state", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.store = store
        self.pool = pool
        self.drains: dict[str, DrainRecord] = {}
        # Called with each new snapshot (the metrics learn the backends' labels).
        self.observers: list[Callable[[dict[str, DrainRecord]], object]] = []

    async def run(self) -> None:
        self.apply(await self.store.drains())

    def apply(self, drains: list[DrainRecord]) -> None:
        self.drains = {drain.backend: drain for drain in drains}
        self.pool.drains = self.drains
        for observer in self.observers:
            observer(self.drains)

    def learn(self, drain: DrainRecord) -> None:
        """A drain this daemon just changed (started, paused, resumed)."""
        self.apply([*(d for d in self.drains.values() if d.backend != drain.backend), drain])

    def forget(self, backend: str) -> None:
        """A drain this daemon just cancelled."""
        self.apply([d for d in self.drains.values() if d.backend != backend])

    def state(self, backend: str) -> Optional[str]:
        drain = self.drains.get(backend)
        return drain.state if drain is not None else None


# -- metrics ---------------------------------------------------------------------


class DrainMetrics:
    """
    C{s3balance_drain_objects_moved_total} / C{_bytes_moved_total} (this
    daemon's moves: the mover's), and from the watcher's snapshot (the same
    in every daemon) C{s3balance_drain_remaining_objects},
    C{s3balance_drain_remaining_bytes}, C{s3balance_drain_blocked_objects}
    and C{s3balance_drain_state}.
    """

    def __init__(self, registry: CollectorRegistry, watcher: DrainWatcher) -> None:
        self.watcher = watcher
        self.moved_objects = Counter(
            "s3balance_drain_objects_moved", "Objects this daemon moved off a draining backend.", ["backend"],
            registry=registry,
        )
        self.moved_bytes = Counter(
            "s3balance_drain_bytes_moved", "Bytes this daemon moved off a draining backend.", ["backend"],
            registry=registry,
        )
        registry.register(self)  # a custom collector (collect, describe)
        watcher.observers.append(self._known)

    def _known(self, drains: dict[str, DrainRecord]) -> None:
        # The counters exist (at 0) for every drained backend, so rate() works from the start.
        for backend in drains:
            self.moved_objects.labels(backend)
            self.moved_bytes.labels(backend)

    def moved(self, backend: str, size: int) -> None:
        self.moved_objects.labels(backend).inc()
        self.moved_bytes.labels(backend).inc(size)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        objects = GaugeMetricFamily(
            "s3balance_drain_remaining_objects",
            "Objects still on a drained backend (counted at each pass, less those moved since).",
            labels=["backend"],
        )
        size = GaugeMetricFamily(
            "s3balance_drain_remaining_bytes", "Bytes still on a drained backend.", labels=["backend"]
        )
        state = GaugeMetricFamily(
            "s3balance_drain_state", "1 for the drain's state (draining, paused, blocked, done).", labels=["backend", "state"]
        )
        blocked = GaugeMetricFamily(
            "s3balance_drain_blocked_objects",
            "Objects a drain's last pass left because no other backend can hold another copy of them.",
            labels=["backend"],
        )
        for backend, drain in sorted(self.watcher.drains.items()):
            objects.add_metric([backend], float(drain.remaining_objects))
            size.add_metric([backend], float(drain.remaining_bytes))
            blocked.add_metric([backend], float(drain.blocked_objects))
            for name in STATES:
                state.add_metric([backend, name], 1.0 if drain.state == name else 0.0)
        return [objects, size, blocked, state]


# -- once per cluster: moving the objects --------------------------------------------


class DrainMover(GatewayJob):
    """
    The elected job ("drain") that moves the objects of every backend whose
    drain is in state C{draining}; see the module's docstring.

    @param gateway: the daemon's gateway (its config, store, pool, strategy
        and reactor, read at each step, so a reload or a strategy change applies).
    @param watcher: this daemon's L{DrainWatcher}: a pause or a cancel stops
        the moves that have not begun.
    """

    PAGE = 64
    # A backend whose last pass moved nothing and failed is passed over this long.
    FAILED_PASS_PAUSE = 30.0
    # A blocked drain is passed over again this often, the backends unchanged.
    BLOCKED_RECHECK = 60.0

    def __init__(
        self,
        gateway: GatewayLike,
        watcher: DrainWatcher,
        period: float = 2.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        drain_metrics: Optional[DrainMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__("drain", gateway, period, clock, metrics, holder, lease_seconds)
        self.watcher = watcher
        self.drain_metrics = drain_metrics
        self.copier = ObjectCopier(gateway)
        self._throttles: dict[str, Throttle] = {}
        # backend -> when its next pass may start (after a pass that only failed)
        self._not_before: dict[str, float] = {}
        # backend -> (the possible targets, when) at its last blocked pass
        self._blocked_at: dict[str, tuple[tuple[str, ...], float]] = {}

    # -- a run: every draining backend, a pass each ------------------------------------

    async def run(self) -> None:
        for drain in await self.store.drains():
            if not self.keep_going():
                break
            if drain.state == DRAINING or (drain.state == BLOCKED and self._recheck(drain.backend)):
                await self.drain_pass(drain)

    def possible_targets(self) -> tuple[str, ...]:
        """The backends that could hold a copy, health aside: configured, enabled, not drained."""
        pool = self.gateway.pool
        return tuple(
            name
            for name in pool.names()
            if name not in pool.drains and (backend := pool.get(name)) is not None and backend.config.enabled
        )

    def _recheck(self, backend: str) -> bool:
        """A blocked drain's next pass: when the possible targets changed, or BLOCKED_RECHECK after its last."""
        last = self._blocked_at.get(backend)
        if last is None:
            return True  # (a restart, another daemon's pass)
        targets, when = last
        return targets != self.possible_targets() or self.clock.seconds() - when >= self.BLOCKED_RECHECK

    def _draining(self, backend: str) -> bool:
        # The watcher's view when it has one (a pause or a cancel made in any
        # daemon shows within its period); a mover without a running watcher
        # (tests, one-off runs) asks nobody.
        if not self.watcher.running:
            return True
        return self.watcher.state(backend) in MOVING

    def throttle(self, drain: DrainRecord) -> Throttle:
        rate = drain.rate if drain.rate is not None else self.gateway.config.balancer.drain_rate
        throttle = self._throttles.get(drain.backend)
        if throttle is None:
            throttle = self._throttles[drain.backend] = Throttle(rate, self.clock)
        throttle.rate = rate
        return throttle

    async def drain_pass(self, drain: DrainRecord) -> None:
        """One pass over the locations of C{drain}'s backend, then a recount (done when nothing is left)."""
        backend = drain.backend
        store, pool = self.store, self.gateway.pool
        if self.clock.seconds() < self._not_before.get(backend, 0.0):
            return
        if pool.get(backend) is None:
            await self._wait(drain, f"{backend} is not in the configuration: its objects cannot be read")
            return
        if not pool.readable(backend):
            await self._wait(drain, f"{backend} is down or at its class B (read) limit; waiting")
            return
        targets = self.possible_targets()
        recounted = await store.recount_drain(backend)
        if recounted is None or recounted.state not in MOVING:
            self._pass_finished(recounted)
            return
        after = 0
        complete = False
        moved_in_pass = failed_in_pass = blocked_in_pass = 0
        while self.keep_going() and self._draining(backend):
            if not pool.readable(backend):
                await self._wait(drain, f"{backend} is down or at its class B (read) limit; waiting")
                return
            page = await store.drain_candidates(backend, after, self.PAGE)
            if not page:
                complete = True
                break
            after = page[-1].cursor
            current = self.watcher.drains.get(backend, drain) if self.watcher.running else drain
            throttle = self.throttle(current)
            started = self.clock.seconds()
            limit = DeferredSemaphore(self.gateway.config.balancer.drain_concurrency)
            outcomes = await DeferredList(
                [limit.run(self._move_deferred, candidate, throttle) for candidate in page],
                consumeErrors=True,
            )
            failed, error, outage = 0, None, None
            for ok, result in outcomes:
                if ok:
                    continue
                failure = cast(Failure, result)
                if failure.check(StoreUnavailable):
                    outage = failure
                failed += 1
                error = failure.getErrorMessage()
                if not failure.check(MoveError, BackendError):
                    error = f"{failure.type.__name__}: {error}"
            moved = sum(1 for ok, result in outcomes if ok and result == MOVED)
            moved_in_pass += moved
            blocked_in_pass += sum(1 for ok, result in outcomes if ok and result == BLOCKED)
            failed_in_pass += failed
            await store.note_drain_progress(
                backend, self.clock.seconds() - started, failed, error if failed else ("" if moved else None)
            )
            if outage is not None:
                outage.raiseException()
        if failed_in_pass and not moved_in_pass:
            self._not_before[backend] = self.clock.seconds() + self.FAILED_PASS_PAUSE
        if complete:
            finished = await store.recount_drain(backend, blocked_in_pass)
            if finished is not None and finished.state == BLOCKED:
                self._blocked_at[backend] = (targets, self.clock.seconds())
                if drain.state != BLOCKED:
                    log.warn(
                        "drain of {backend} blocked: {objects} object(s) left: {reason}; add a backend to move them",
                        backend=backend,
                        objects=finished.blocked_objects,
                        reason=BLOCKED_REASON,
                    )
            else:
                self._blocked_at.pop(backend, None)
            self._pass_finished(finished)

    async def _wait(self, drain: DrainRecord, reason: str) -> None:
        """No pass now: C{reason} becomes the drain's last error (written once), the next try a few runs later."""
        self._not_before[drain.backend] = self.clock.seconds() + 5 * self.period
        if drain.last_error != reason:
            await self.store.note_drain_progress(drain.backend, 0.0, 0, reason)

    def _pass_finished(self, drain: Optional[DrainRecord]) -> None:
        if drain is None:
            return
        if drain.state == DONE:
            log.info(
                "drain of {backend} done: {objects} object(s), {bytes} bytes moved; it may be removed from the "
                "configuration",
                backend=drain.backend,
                objects=drain.moved_objects,
                bytes=drain.moved_bytes,
            )
        if self.watcher.running:
            self.watcher.kick()

    # -- one object --------------------------------------------------------------------

    def _move_deferred(self, candidate: MoveCandidate, throttle: Optional[Throttle]) -> Deferred[str]:
        return ensureDeferred(self.move(candidate, throttle))

    async def move(self, candidate: MoveCandidate, throttle: Optional[Throttle] = None) -> str:
        """
        Move one object off its draining backend; -> MOVED, STALE, EXPIRED,
        SKIPPED or BLOCKED (no other backend can hold another copy: nothing
        was tried); MoveError when it failed.
        """
        source_location = candidate.source
        if not self.keep_going() or not self._draining(source_location.backend):
            return SKIPPED
        gateway, store, pool = self.gateway, self.store, self.gateway.pool
        record = candidate.record
        holders = {source_location.backend, *(location.backend for location in record.locations)}
        if not set(self.possible_targets()) - holders:
            return BLOCKED
        source = pool.get(source_location.backend)
        if source is None or not pool.readable(source.name):
            raise MoveError(f"{source_location.backend} cannot be read now")
        reservation, target, real_key, intent_id = await self._place(candidate)
        try:
            await copy_under_intent(
                gateway, self.copier, record, source, source_location.real_key, target, real_key, intent_id, throttle
            )
            outcome = await store.switch_location(intent_id, candidate, Location(target.name, real_key))
        finally:
            reservation.release()
        if outcome == MOVED:
            pool.add_usage(source.name, -record.size, -1)
            pool.add_usage(target.name, record.size, 1)
            await self.copier.catch_up(record, Location(target.name, real_key))
            if self.drain_metrics is not None:
                self.drain_metrics.moved(source.name, record.size)
            gateway.kick_deleter(replaced=True)
        elif outcome == STALE:
            log.info(
                "drain: {bucket}/{key} changed while it was copied; the copy on {target} is dropped",
                bucket=record.bucket,
                key=record.key,
                target=target.name,
            )
            gateway.kick_deleter()
        elif outcome == EXPIRED:
            log.warn("drain: the write intent of {bucket}/{key} ran out; not moved", bucket=record.bucket, key=record.key)
        return outcome

    async def _place(self, candidate: MoveCandidate) -> tuple[Reservation, Backend, str, int]:
        """A target by the strategy (never a backend that holds a copy already) and an intent there."""
        record = candidate.record
        skipped = {candidate.source.backend, *(location.backend for location in record.locations)}
        return await place_copy(self.gateway, record, sorted(skipped))
