"""
Periodic background work as services.

  - L{Repeater} runs a job every C{period} seconds and on demand
    (L{Repeater.kick}), never two runs at once.  A run that fails is logged
    with the job's name and counted (C{s3balance_background_errors_total});
    the next run comes as usual.  Stopping waits for the run in progress, and
    cancels it when it takes longer than C{stop_timeout}.
  - L{ElectedRepeater} is a repeater for work the cluster must do once, not
    once per daemon (deletions, cleaners, the usage reconcile): it runs only
    while this daemon holds the job's lease, a row in the database whose
    expiry is set by the database's clock (L{s3balance.store.leases}).  A
    second repeater renews the lease every third of its length; a daemon
    that stops renewing (killed, cut off from the database) loses it when it
    expires, and the next daemon that asks takes it over.  Stopping gives it
    up at once.  An operator may pause it for the whole cluster
    (L{s3balance.ops.pauses}): no run starts and a run under way stops
    between steps; the lease is kept.

Models: buildbot's C{util/deferwaiter.py} repeaters and its
C{ClusteredBuildbotService}.
"""

from __future__ import annotations

import inspect
import os
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from s3balance.store.interfaces import IMetadataStore

log = Logger()

# Seconds a cluster-wide job's lease lasts unless renewed; a daemon that dies
# holding one delays its job this long at most (see holder_id for restarts).
# The daemon's is balancer.job_lease, whose default this is.
LEASE_SECONDS = 30.0


class BackgroundMetrics:
    """The background jobs' series, on the daemon's registry (L{s3balance.metrics.Metrics.registry})."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "s3balance_background_runs", "Runs of a background job that ended, well or not.", ["job"], registry=registry
        )
        self.errors = Counter(
            "s3balance_background_errors", "Runs of a background job that failed.", ["job"], registry=registry
        )
        self.leader = Gauge(
            "s3balance_background_leader",
            "1 while this daemon holds the lease of a cluster-wide job (runs it for the cluster).",
            ["job"],
            registry=registry,
        )
        self.paused = Gauge(
            "s3balance_background_paused",
            "1 while a cluster-wide job is paused (s3balance.ops.pauses), as this daemon last read it.",
            ["job"],
            registry=registry,
        )

    def ran(self, job: str, ok: bool) -> None:
        self.runs.labels(job).inc()
        if not ok:
            self.errors.labels(job).inc()

    def leading(self, job: str, held: bool) -> None:
        self.leader.labels(job).set(1 if held else 0)

    def pausing(self, job: str, paused: bool) -> None:
        self.paused.labels(job).set(1 if paused else 0)


class PauseSource(Protocol):
    """What tells an L{ElectedRepeater} that its job is paused (L{s3balance.ops.pauses.PauseWatcher})."""

    def is_paused(self, job: str) -> bool: ...


def holder_id(seat: Optional[str] = None) -> str:
    """
    This daemon's name in the lease table.  With a C{seat} (the listening
    address and worker index: what no other live process on this host can
    have), a daemon restarted after a crash is the same holder and takes its
    leases back at once instead of waiting for them to expire; without one
    (port 0, tests), a fresh random name.
    """
    host = socket.gethostname()
    if seat:
        return f"{host}/{seat}"[:255]
    return f"{host}/pid{os.getpid()}/{uuid.uuid4().hex[:12]}"


class Repeater(Service):
    """
    Runs C{work()} (or the subclass's L{run}) now, then every C{period}
    seconds from the start of the last run, never overlapping itself.

    @param name: the job's name in logs and metrics (also the service's name).
    @param work: a function returning a Deferred, a coroutine or a plain
        value; None when a subclass overrides L{run}.
    @param quiet_errors: exception types that are expected in an outage
        (the database or a backend unreachable): logged as one line, not a
        traceback.  Counted as errors all the same.
    @param stop_timeout: seconds L{stopService} waits for a run in progress
        before it cancels it.
    """

    def __init__(
        self,
        name: str,
        period: float,
        work: Optional[Callable[[], Any]] = None,
        clock: Any = None,  # IReactorTime (default: the global reactor)
        metrics: Optional[BackgroundMetrics] = None,
        quiet_errors: tuple[type[BaseException], ...] = (),
        stop_timeout: float = 30.0,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.job = name
        self.period = period
        self.clock = clock
        self.metrics = metrics
        self.quiet_errors = quiet_errors
        self.stop_timeout = stop_timeout
        self._work = work
        self._next: Any = None  # IDelayedCall of the next run
        self._current: Optional[Deferred] = None
        self._again = False
        self._idle_waiters: list[Deferred] = []

    # -- what runs ------------------------------------------------------------------

    def run(self) -> Any:
        """One run of the job; a Deferred, a coroutine or a plain value."""
        if self._work is None:
            raise NotImplementedError(f"{type(self).__name__} has neither work nor run()")
        return self._work()

    def should_run(self) -> bool:
        """Whether a run that is due goes ahead (L{ElectedRepeater}: only while holding the lease)."""
        return True

    def keep_going(self) -> bool:
        """For long runs, asked between steps: False once the repeater stops (or lost its lease)."""
        return bool(self.running)

    @property
    def busy(self) -> bool:
        """Whether a run is under way."""
        return self._current is not None

    # -- scheduling -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.kick()

    def kick(self) -> None:
        """Run now, or once more right after the run in progress."""
        if not self.running:
            return
        if self._current is not None:
            self._again = True
            return
        self._cancel_next()
        self._start_run()

    def _cancel_next(self) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None

    def _start_run(self) -> None:
        self._next = None
        if not self.should_run():
            self._schedule(self.period)
            return
        started = self.clock.seconds()

        def call() -> Any:
            result = self.run()
            return ensureDeferred(result) if inspect.iscoroutine(result) else result

        current = maybeDeferred(call)
        self._current = current
        current.addCallbacks(self._succeeded, self._failed)
        current.addBoth(self._finished, started)

    def _succeeded(self, _: object) -> None:
        if self.metrics is not None:
            self.metrics.ran(self.job, True)

    def _failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and not self.running:
            log.info("{job}: run cancelled at stop", job=self.job)
            return
        if self.metrics is not None:
            self.metrics.ran(self.job, False)
        if self.quiet_errors and failure.check(*self.quiet_errors):
            log.warn("{job}: {error}; will retry", job=self.job, error=failure.getErrorMessage())
        else:
            log.failure("{job} failed", failure, job=self.job)

    def _finished(self, _: object, started: float) -> None:
        self._current = None
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if not self.running:
            return
        if self._again:
            self._again = False
            self._schedule(0)
        else:
            self._schedule(max(0.0, self.period - (self.clock.seconds() - started)))

    def _schedule(self, delay: float) -> None:
        self._cancel_next()
        if self.running:
            self._next = self.clock.callLater(delay, self._start_run)

    def _when_idle(self) -> Deferred:
        if self._current is None:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    # -- stopping -------------------------------------------------------------------

    def stopService(self) -> Deferred:
        super().stopService()
        self._cancel_next()
        self._again = False
        current = self._current
        idle = self._when_idle()
        if current is not None and self.stop_timeout is not None:
            cutoff = self.clock.callLater(self.stop_timeout, current.cancel)

            def settled(result: object) -> object:
                if cutoff.active():
                    cutoff.cancel()
                return result

            idle.addBoth(settled)
        return idle


class ElectedRepeater(Repeater):
    """
    A L{Repeater} whose runs happen only in the daemon holding the job's
    lease (C{store.acquire_lease(name, holder, lease_seconds)}): once per
    cluster.  The lease is taken and renewed by a second repeater every
    C{lease_seconds / 3}; when this daemon gets it, the job runs at once.

    This daemon counts itself the holder until C{lease_seconds} after it
    last I{asked} (a little before the database's expiry, which counts from
    when the database answered), and a long run asks L{keep_going} between
    steps, so two daemons never run the job at once for longer than a step.
    """

    def __init__(
        self,
        name: str,
        period: float,
        work: Optional[Callable[[], Any]] = None,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        quiet_errors: tuple[type[BaseException], ...] = (),
        stop_timeout: float = 30.0,
        *,
        store: IMetadataStore,
        holder: str,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(name, period, work, clock, metrics, quiet_errors, stop_timeout)
        self.store = store
        self.holder = holder
        self.lease_seconds = lease_seconds
        self._held_until: Optional[float] = None
        self._asked = False  # whether the lease was ever asked for (and so may be held)
        # Whether an operator paused the job (s3balance.ops.pauses.PauseWatcher sets it).
        self.pauses: Optional[PauseSource] = None
        self.lease = Repeater(
            f"{name}-lease", lease_seconds / 3, self._renew, self.clock, metrics, quiet_errors, stop_timeout
        )

    @property
    def holding(self) -> bool:
        return self._held_until is not None and self.clock.seconds() < self._held_until

    @property
    def paused(self) -> bool:
        """Whether an operator paused this job (the lease is kept meanwhile: see L{s3balance.ops.pauses})."""
        return self.pauses is not None and self.pauses.is_paused(self.job)

    def should_run(self) -> bool:
        return self.holding and not self.paused

    def keep_going(self) -> bool:
        # A run called directly (the lease repeater not started: tests, a
        # one-off from the admin CLI) is not bound to the lease.
        return bool(self.running) and not self.paused and (self.holding or not self.lease.running)

    async def _renew(self) -> None:
        asked = self.clock.seconds()
        was_holding = self.holding
        self._asked = True
        try:
            held = await self.store.acquire_lease(self.job, self.holder, self.lease_seconds)
        except BaseException:
            # Unknown: maybe renewed, maybe not.  Counting it lost is the
            # safe side (the job pauses; nobody runs it twice).
            held = False
            raise
        finally:
            if not held:
                self._held_until = None
                if was_holding:
                    log.info("{job}: lease lost; another daemon may run it now", job=self.job)
                    self._report(False)
        if not held or not self.running:
            return
        self._held_until = asked + self.lease_seconds
        if not was_holding:
            log.info("{job}: this daemon ({holder}) runs it for the cluster", job=self.job, holder=self.holder)
            self._report(True)
            self.kick()

    def _report(self, held: bool) -> None:
        if self.metrics is not None:
            self.metrics.leading(self.job, held)

    def startService(self) -> None:
        Service.startService(self)
        # The first run waits for the lease (the lease repeater kicks it).
        self._schedule(self.period)
        self.lease.startService()

    def stopService(self) -> Deferred:
        job_idle = Repeater.stopService(self)
        lease_idle = self.lease.stopService()
        return ensureDeferred(self._give_up(job_idle, lease_idle))

    async def _give_up(self, job_idle: Deferred, lease_idle: Deferred) -> None:
        await lease_idle
        await job_idle
        if self.holding:
            self._report(False)
        self._held_until = None
        if not self._asked:
            return
        try:
            # Always asked: a renewal answered during the stop may have taken it.
            await self.store.release_lease(self.job, self.holder)
        except Exception as error:
            # It expires by itself; a restart of this daemon takes it back anyway.
            log.warn("{job}: could not give up the lease ({error})", job=self.job, error=str(error))
