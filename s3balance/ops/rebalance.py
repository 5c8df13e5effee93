"""
Rebalancing: objects moved from the fullest backends to the emptiest until
every backend's used fraction is within a margin of the others', online,
resumable, pausable and rate-limited, once per cluster.

What takes part: the backends that take new objects (enabled, not disabled
at run time, not drained, up, writable, under their class A limit).  How
full each one is (L{Balance}):

  - when every one of them has a C{max_size}: its used fraction,
    C{used_bytes / max_size}, against the fraction of the whole
    (C{sum used / sum max_size});
  - otherwise: its share of the bytes they hold, against its share of
    their weights (C{weight / sum of weights}).

A backend's I{level} is its fraction less its target; the cluster is
balanced when the highest level less the lowest is at most the margin.

The state is the row of C{rebalances} (L{s3balance.store.rebalance}), so
every daemon sees it and a restart resumes it.  L{RebalanceMover}
("rebalance", an L{ElectedRepeater}: once per cluster) measures the exact
usage (C{store.backend_usage}), then, a page at a time, takes the locations
of the fullest backend (C{store.drain_candidates}) and plans each object's
move to the lowest backend below its target that holds no copy of it, has
room, and stays at or below the source's level after the move; it stops
taking from a source once another is fuller, and finishes when the spread
is within the margin (or when no object of the fullest backend can move).
Each move is the drain's (L{s3balance.ops.drain}): a write intent for a
fresh key on the target, the bytes streamed by L{ObjectCopier} through one
L{Throttle} (the rebalance's rate, else C{balancer.drain_rate}), then ONE
transaction (C{store.rebalance_switch}) that switches the location only if
the object still has it, queues the old copy for deletion after
C{balancer.deletion_grace} and counts the move.  Clients read and write
meanwhile; an object overwritten or deleted during its copy keeps its new
state.

Over 500 lines: the balance model (L{Balance}), the document, the watcher,
the metrics and the mover are one feature's parts that share its record and
its state names; the copy itself is L{s3balance.ops.move}'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

import attr
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
from s3balance.ops.move import MoveError, ObjectCopier, Throttle, copy_under_intent
from s3balance.s3.intent_lease import INTENT_LEASE
from s3balance.store.interfaces import BackendFull, Location, MoveCandidate, RebalanceRecord, StoreUnavailable
from s3balance.store.moves import EXPIRED, MOVED, STALE
from s3balance.store.rebalance import CANCELLED, DONE, PAUSED, RUNNING, STATES

if TYPE_CHECKING:
    from s3balance.backends.pool import BackendPool
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.store.interfaces import BackendUsage, IMetadataStore

log = Logger()

DEFAULT_MARGIN = 0.05
CAPACITY = "capacity"
WEIGHTS = "weights"
SKIPPED = "skipped"

__all__ = [
    "CANCELLED",
    "DEFAULT_MARGIN",
    "DONE",
    "PAUSED",
    "RUNNING",
    "Balance",
    "RebalanceMetrics",
    "RebalanceMover",
    "RebalanceWatcher",
    "members_of",
    "parse_margin",
    "rebalance_document",
]


def parse_margin(value: object) -> float:
    """A margin: a fraction in (0, 1), e.g. 0.05, or a percentage string, e.g. "5%"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a fraction: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            margin = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"cannot parse {value!r} as a fraction (0.05 or 5%)") from None
    elif isinstance(value, (int, float)):
        margin = float(value)
    else:
        raise ValueError(f"not a fraction: {value!r}")
    if not 0 < margin < 1:
        raise ValueError(f"{margin:g} is not between 0 and 1 (0.05: the fractions within 5 points)")
    return margin


# -- how full each backend is -------------------------------------------------------


@attr.s(frozen=True, auto_attribs=True)
class Member:
    """A backend that takes part: its used bytes, C{max_size} (None: unlimited) and weight."""

    name: str
    used: int
    max_size: Optional[int]
    weight: int


class Balance:
    """
    The levels of the backends that take part (see the module's docstring),
    and what a move of C{size} bytes from one to another does to them.
    """

    def __init__(self, members: Iterable[Member]) -> None:
        self.members = {member.name: member for member in members}
        self.used = {name: member.used for name, member in self.members.items()}
        limited = [member.max_size for member in self.members.values()]
        self.mode = CAPACITY if limited and all(size for size in limited) else WEIGHTS
        self._total = sum(self.used.values())
        self._weights = sum(max(0, member.weight) for member in self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    def _scale(self, name: str) -> float:
        if self.mode == CAPACITY:
            return float(self.members[name].max_size or 1)
        return float(self._total or 1)

    def fraction(self, name: str) -> float:
        """Used fraction (capacity) or share of the stored bytes (weights)."""
        return self.used[name] / self._scale(name)

    def target(self, name: str) -> float:
        """The fraction this backend has when the cluster is perfectly balanced."""
        if self.mode == CAPACITY:
            capacity = sum(member.max_size or 0 for member in self.members.values())
            return self._total / capacity if capacity else 0.0
        return max(0, self.members[name].weight) / self._weights if self._weights else 0.0

    def level(self, name: str) -> float:
        return self.fraction(name) - self.target(name)

    def levels(self) -> dict[str, float]:
        return {name: self.level(name) for name in self.members}

    def spread(self) -> float:
        levels = self.levels().values()
        return max(levels) - min(levels) if len(self.members) > 1 and self._total else 0.0

    def balanced(self, margin: float) -> bool:
        return self.spread() <= margin + 1e-9

    def fullest(self) -> Optional[str]:
        levels = self.levels()
        return max(sorted(levels), key=levels.__getitem__) if levels else None

    def after(self, source: str, target: str, size: int) -> tuple[float, float]:
        """(source's level, target's level) once C{size} bytes moved from C{source} to C{target}."""
        return (
            (self.used[source] - size) / self._scale(source) - self.target(source),
            (self.used[target] + size) / self._scale(target) - self.target(target),
        )

    def improves(self, source: str, target: str, size: int) -> bool:
        """The target below its own target now, and no higher than the source after the move."""
        if source == target or self.level(target) >= 0 or size <= 0:
            return False
        source_after, target_after = self.after(source, target, size)
        return target_after <= source_after + 1e-12

    def choose(self, source: str, size: int, holders: Iterable[str], room: Iterable[str]) -> Optional[str]:
        """Of C{room} (backends with space for the object), the lowest that no copy is on and that the move improves."""
        excluded = set(holders)
        fitting = [
            name for name in sorted(room)
            if name in self.members and name not in excluded and self.improves(source, name, size)
        ]
        return min(fitting, key=self.level) if fitting else None

    def move(self, source: str, target: str, size: int) -> None:
        self.used[source] -= size
        self.used[target] += size

    def excess_bytes(self, margin: float) -> int:
        """Roughly what is still to move: the bytes above each backend's target plus half the margin."""
        excess = 0.0
        for name in self.members:
            over = self.level(name) - margin / 2
            if over > 0:
                excess += over * self._scale(name)
        return round(excess)

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "backend": name,
                "used_bytes": self.used[name],
                "max_size": member.max_size,
                "weight": member.weight,
                "fraction": round(self.fraction(name), 6),
                "target": round(self.target(name), 6),
                "level": round(self.level(name), 6),
            }
            for name, member in sorted(self.members.items())
        ]


def members_of(pool: BackendPool, used: Optional[dict[str, int]] = None) -> list[Member]:
    """The backends that take part (those that take new objects), with C{used} bytes (default: the pool's usage)."""
    found = []
    for name in pool.names():
        backend = pool.get(name)
        if backend is None or not pool.writable(name):
            continue
        bytes_used = used.get(name, 0) if used is not None else pool.usage(name)[0]
        found.append(Member(name, bytes_used, backend.config.max_size, backend.config.weight))
    return found


# -- what the admin API and the CLI show -----------------------------------------------


def _iso(moment: Optional[datetime.datetime]) -> Optional[str]:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def rebalance_document(record: Optional[RebalanceRecord], balance: Balance, default_rate: int) -> dict[str, Any]:
    """
    The rebalance as JSON: its state (None: never started), margin, rate
    limit and achieved rate, what moved, the mover's last measure of the
    spread and of the bytes left, the progress (0..1) and an ETA; and
    C{backends}: each one's fraction, target and level by this daemon's
    usage counters (C{spread}, C{balanced}: from those too).
    """
    document: dict[str, Any] = {
        "mode": balance.mode,
        "backends": balance.report(),
        "spread": round(balance.spread(), 6),
    }
    if record is None:
        return {
            **document,
            "state": None,
            "margin": DEFAULT_MARGIN,
            "balanced": balance.balanced(DEFAULT_MARGIN),
        }
    rate_limit = record.rate if record.rate is not None else default_rate
    rate = record.moved_bytes / record.active_seconds if record.active_seconds > 0 else None
    left = 0 if record.state == DONE else record.remaining_bytes
    seen = record.moved_bytes + left
    progress = 1.0 if record.state == DONE else (record.moved_bytes / seen if seen else 0.0)
    eta: Optional[float] = None
    if record.state == DONE:
        eta = 0.0
    elif left and rate:
        eta = left / rate
    elif left and rate_limit:
        eta = left / rate_limit
    return {
        **document,
        "state": record.state,
        "margin": record.margin,
        "balanced": balance.balanced(record.margin),
        "measured_spread": record.spread,
        "started": _iso(record.started),
        "updated": _iso(record.updated),
        "finished": _iso(record.finished),
        "objects": {"moved": record.moved_objects, "failed": record.failed_objects},
        "bytes": {"moved": record.moved_bytes, "remaining": left},
        "rate_limit": rate_limit,
        "rate_limit_from": "config" if record.rate is None else "rebalance",
        "rate": round(rate) if rate is not None else None,
        "eta_seconds": round(eta) if eta is not None else None,
        "progress": round(progress, 4),
        "last_error": record.last_error,
    }


# -- every daemon: the row as the store has it ----------------------------------------


class RebalanceWatcher(Repeater):
    """Reads the rebalance every C{period} seconds: what the metrics show in every daemon."""

    def __init__(
        self, store: IMetadataStore, period: float = 5.0, clock: Any = None, metrics: Optional[BackgroundMetrics] = None
    ) -> None:
        super().__init__("rebalance-state", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.store = store
        self.record: Optional[RebalanceRecord] = None

    async def run(self) -> None:
        self.record = await self.store.rebalance()

    def learn(self, record: Optional[RebalanceRecord]) -> None:
        self.record = record


class RebalanceMetrics:
    """
    C{s3balance_rebalance_objects_moved_total} / C{_bytes_moved_total} (this
    daemon's moves), and from the watcher's snapshot
    C{s3balance_rebalance_state{state}}, C{s3balance_rebalance_spread} (the
    mover's last measure) and C{s3balance_rebalance_remaining_bytes}.
    """

    def __init__(self, registry: CollectorRegistry, watcher: RebalanceWatcher) -> None:
        self.watcher = watcher
        self.moved_objects = Counter(
            "s3balance_rebalance_objects_moved", "Objects this daemon moved to rebalance the backends.",
            registry=registry,
        )
        self.moved_bytes = Counter(
            "s3balance_rebalance_bytes_moved", "Bytes this daemon moved to rebalance the backends.", registry=registry
        )
        registry.register(self)  # a custom collector (collect, describe)

    def moved(self, size: int) -> None:
        self.moved_objects.inc()
        self.moved_bytes.inc(size)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        state = GaugeMetricFamily(
            "s3balance_rebalance_state", "1 for the rebalance's state (running, paused, done, cancelled).",
            labels=["state"],
        )
        spread = GaugeMetricFamily(
            "s3balance_rebalance_spread", "The highest backend level less the lowest, as the mover last measured it."
        )
        remaining = GaugeMetricFamily(
            "s3balance_rebalance_remaining_bytes", "Bytes the rebalance estimates are still to move."
        )
        record = self.watcher.record
        if record is not None:
            for name in STATES:
                state.add_metric([name], 1.0 if record.state == name else 0.0)
            if record.spread is not None:
                spread.add_metric([], record.spread)
            remaining.add_metric([], float(record.remaining_bytes if record.state != DONE else 0))
        return [state, spread, remaining]


# -- once per cluster: moving the objects ---------------------------------------------


@attr.s(auto_attribs=True)
class _Plan:
    candidate: MoveCandidate
    target: str


class RebalanceMover(GatewayJob):
    """
    The elected job ("rebalance") that moves objects while the rebalance is
    C{running}; see the module's docstring.

    @param gateway: the daemon's gateway (its config, store, pool and
        reactor, read at each step, so a reload applies).
    """

    PAGE = 32
    # The exact usage is measured again at least this often during a long run.
    MEASURE_EVERY = 60.0
    # After a round that only failed, the next run waits this long.
    FAILED_PAUSE = 30.0

    def __init__(
        self,
        gateway: GatewayLike,
        watcher: Optional[RebalanceWatcher] = None,
        period: float = 2.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        rebalance_metrics: Optional[RebalanceMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__("rebalance", gateway, period, clock, metrics, holder, lease_seconds)
        self.watcher = watcher
        self.rebalance_metrics = rebalance_metrics
        self.copier = ObjectCopier(gateway)
        self.throttle = Throttle(0, self.clock)
        self._not_before = 0.0
        # source backend -> the location id its walk has reached
        self._cursors: dict[str, int] = {}

    # -- a run ------------------------------------------------------------------------

    async def run(self) -> None:
        record = await self.store.rebalance()
        if self.watcher is not None:
            self.watcher.learn(record)
        if record is None or record.state != RUNNING or self.clock.seconds() < self._not_before:
            return
        await self.rebalance_pass(record)

    async def measure(self) -> Balance:
        """The exact usage of the backends that take part now."""
        usage: Sequence[BackendUsage] = await self.store.backend_usage()
        used = {row.backend: row.used_bytes for row in usage}
        return Balance(members_of(self.gateway.pool, used))

    def _rate(self, record: RebalanceRecord) -> int:
        return record.rate if record.rate is not None else self.gateway.config.balancer.drain_rate

    async def _note(self, record: RebalanceRecord, balance: Balance, **kw: Any) -> Optional[RebalanceRecord]:
        noted = await self.store.note_rebalance_progress(
            kw.pop("active_seconds", 0.0),
            kw.pop("failed", 0),
            kw.pop("error", None),
            balance.spread(),
            balance.excess_bytes(record.margin),
            kw.pop("finished", False),
        )
        if self.watcher is not None:
            self.watcher.learn(noted)
        return noted

    async def rebalance_pass(self, record: RebalanceRecord) -> None:
        """Rounds of moves until balanced, paused, cancelled, stuck or stopped."""
        balance = await self.measure()
        measured = self.clock.seconds()
        if len(balance) < 2:
            self._not_before = self.clock.seconds() + 5 * self.period
            error = "fewer than two backends take new objects: nothing to rebalance between; waiting"
            if record.last_error != error:
                await self._note(record, balance, error=error)
            return
        # A walk over a source's locations that planned nothing: no object of it can move.
        planned_in_walk: dict[str, int] = {}
        while self.keep_going():
            if balance.balanced(record.margin):
                done = await self._note(record, balance, error="", finished=True)
                log.info(
                    "rebalance done: the levels are {spread:.4f} apart (margin {margin:g}); {objects} object(s), "
                    "{bytes} bytes moved",
                    spread=balance.spread(), margin=record.margin,
                    objects=done.moved_objects if done else 0, bytes=done.moved_bytes if done else 0,
                )
                return
            if self.clock.seconds() - measured > self.MEASURE_EVERY:
                balance, measured = await self.measure(), self.clock.seconds()
                if len(balance) < 2:
                    return
            source = balance.fullest()
            assert source is not None
            if not self.gateway.pool.readable(source):
                await self._wait(record, balance, f"{source} is down or at its class B (read) limit; waiting")
                return
            plans, walked = await self._plan(source, balance, record.margin)
            planned_in_walk[source] = planned_in_walk.get(source, 0) + len(plans)
            if walked:
                if not planned_in_walk.pop(source):
                    error = (
                        f"no object on {source} can move to a backend below its target without passing it; "
                        f"the levels stay {balance.spread():.4f} apart"
                    )
                    log.warn("rebalance finished unbalanced: {error}", error=error)
                    await self._note(record, balance, error=error, finished=True)
                    return
            if not plans:
                continue
            current = await self.store.rebalance()
            if current is None or current.state != RUNNING:
                self._undo(balance, plans)
                return
            record = current
            self.throttle.rate = self._rate(record)
            started = self.clock.seconds()
            moved, failed, last_error, outage = await self._execute(balance, plans)
            noted = await self._note(
                record, balance, active_seconds=self.clock.seconds() - started, failed=failed,
                error=last_error if failed else ("" if moved else None),
            )
            if noted is not None:
                record = noted
            if outage is not None:
                outage.raiseException()
            if failed and not moved:
                self._not_before = self.clock.seconds() + self.FAILED_PAUSE
                return

    async def _wait(self, record: RebalanceRecord, balance: Balance, reason: str) -> None:
        self._not_before = self.clock.seconds() + 5 * self.period
        if record.last_error != reason:
            await self._note(record, balance, error=reason)

    async def _plan(self, source: str, balance: Balance, margin: float) -> tuple[list[_Plan], bool]:
        """
        The moves of the next page of C{source}'s locations (C{balance}
        updated as if they were done), and whether the walk over its
        locations came to its end (it starts again next time).
        """
        pool = self.gateway.pool
        page = await self.store.drain_candidates(source, self._cursors.get(source, 0), self.PAGE)
        plans: list[_Plan] = []
        for candidate in page:
            if balance.balanced(margin) or balance.fullest() != source:
                break
            self._cursors[source] = candidate.cursor
            record = candidate.record
            holders = [location.backend for location in record.locations]
            room = [view.name for view in pool.candidates(record.size, exclude=holders)]
            target = balance.choose(source, record.size, holders, room)
            if target is None:
                continue
            plans.append(_Plan(candidate, target))
            balance.move(source, target, record.size)
        else:
            if len(page) < self.PAGE:
                self._cursors.pop(source, None)
                return plans, True
        return plans, False

    def _undo(self, balance: Balance, plans: Iterable[_Plan]) -> None:
        for plan in plans:
            balance.move(plan.target, plan.candidate.source.backend, plan.candidate.record.size)

    async def _execute(
        self, balance: Balance, plans: list[_Plan]
    ) -> tuple[int, int, Optional[str], Optional[Failure]]:
        limit = DeferredSemaphore(self.gateway.config.balancer.drain_concurrency)
        outcomes = await DeferredList([limit.run(self._move_deferred, plan) for plan in plans], consumeErrors=True)
        moved = failed = 0
        error: Optional[str] = None
        outage: Optional[Failure] = None
        for plan, (ok, result) in zip(plans, outcomes, strict=True):
            if ok and result == MOVED:
                moved += 1
                continue
            self._undo(balance, [plan])
            if ok:
                continue
            failure = cast(Failure, result)
            if failure.check(StoreUnavailable):
                outage = failure
            failed += 1
            error = failure.getErrorMessage()
            if not failure.check(MoveError, BackendError):
                error = f"{failure.type.__name__}: {error}"
        return moved, failed, error, outage

    # -- one object -------------------------------------------------------------------

    def _move_deferred(self, plan: _Plan) -> Deferred[str]:
        return ensureDeferred(self.move(plan.candidate, plan.target))

    async def move(self, candidate: MoveCandidate, target_name: str) -> str:
        """Move one object from its source to C{target_name}; -> MOVED, STALE, EXPIRED or SKIPPED; MoveError on failure."""
        if not self.keep_going():
            return SKIPPED
        current = await self.store.rebalance()
        if current is None or current.state != RUNNING:
            return SKIPPED  # paused or cancelled meanwhile, in any daemon
        gateway, store, pool = self.gateway, self.store, self.gateway.pool
        record, source_location = candidate.record, candidate.source
        source = pool.get(source_location.backend)
        if source is None or not pool.readable(source.name):
            raise MoveError(f"{source_location.backend} cannot be read now")
        target = pool.get(target_name)
        if target is None or not pool.writable(target_name):
            raise MoveError(f"{target_name} takes no new objects now")
        reservation = pool.reserve(target.name, record.size)
        try:
            real_key = gateway.new_real_key(record.bucket)
            try:
                # No bucket: a move adds nothing to the virtual bucket's usage.
                intent = await store.begin_write(target.name, real_key, INTENT_LEASE, record.size, target.config.max_size)
            except BackendFull:
                raise MoveError(f"{target.name} has no room for {record.bucket}/{record.key} now") from None
            outcome = await self._copy_and_switch(candidate, source, target, real_key, intent.id)
        finally:
            reservation.release()
        if outcome == MOVED:
            pool.add_usage(source.name, -record.size, -1)
            pool.add_usage(target.name, record.size, 1)
            await self.copier.catch_up(record, Location(target.name, real_key))
            if self.rebalance_metrics is not None:
                self.rebalance_metrics.moved(record.size)
            gateway.kick_deleter(replaced=True)
        elif outcome == STALE:
            log.info(
                "rebalance: {bucket}/{key} changed while it was copied; the copy on {target} is dropped",
                bucket=record.bucket, key=record.key, target=target.name,
            )
            gateway.kick_deleter()
        elif outcome == EXPIRED:
            log.warn("rebalance: the write intent of {bucket}/{key} ran out; not moved", bucket=record.bucket,
                     key=record.key)
        return outcome

    async def _copy_and_switch(
        self, candidate: MoveCandidate, source: Backend, target: Backend, real_key: str, intent_id: int
    ) -> str:
        await copy_under_intent(
            self.gateway, self.copier, candidate.record, source, candidate.source.real_key, target, real_key,
            intent_id, self.throttle,
        )
        outcome: str = await self.store.rebalance_switch(intent_id, candidate, Location(target.name, real_key))
        return outcome
