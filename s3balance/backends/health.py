"""
Backend health: a small state machine per backend, fed by active probes (a
LoopingCall per backend that never overlaps itself) and by passive outcomes of
real requests (connection failures and 5xx answers).

Two things can be wrong with a backend, and they are tracked apart:

  - it is I{down}: unreachable, or failing reads.  Nothing goes to it.
  - it is I{read-only}: it answers, and serves reads, but its server fails
    writes (a full disk: SeaweedFS answers 500 "No writable volumes" to every
    PUT and still serves GETs).  It gets no new objects, but the objects it
    holds stay readable; marking it down would refuse those reads for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional, Protocol, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.streaming import PipeProducer

if TYPE_CHECKING:
    from s3balance.backends.backend import Backend

log = Logger()

# What the write probe puts (and deletes again) on a read-only backend.  Always
# the same key: a delete that fails leaves this one small object behind, which
# the next probe overwrites.
PROBE_KEY = ".s3balance-health/probe"
PROBE_BODY = b"s3balance write probe\n"


class HealthState:
    """
    Up/down with hysteresis: down after C{unhealthy_threshold} consecutive
    failures, up again after C{healthy_threshold} consecutive successes.
    A backend starts up, so the daemon serves as soon as it starts.

    Writability has the same hysteresis on a streak of its own: read-only
    after C{unhealthy_threshold} consecutive write failures, writable again
    after C{healthy_threshold} consecutive write successes.  It is
    independent of up/down (a backend can be down and read-only; it comes
    back read-only until a write probe succeeds).
    """

    def __init__(
        self,
        unhealthy_threshold: int = 3,
        healthy_threshold: int = 2,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.unhealthy_threshold = max(1, unhealthy_threshold)
        self.healthy_threshold = max(1, healthy_threshold)
        self._now = now
        self.up = True
        self.failures = 0
        self.successes = 0
        self.last_error: Optional[str] = None
        self.last_check: Optional[float] = None
        self.last_change: float = now()
        self.writable = True
        self.write_failures = 0
        self.write_successes = 0
        self.last_write_error: Optional[str] = None

    def record_success(self) -> bool:
        """Returns True when the state changed."""
        self.last_check = self._now()
        self.failures = 0
        self.successes += 1
        if not self.up and self.successes >= self.healthy_threshold:
            self.up = True
            self.last_change = self._now()
            return True
        return False

    def record_failure(self, error: str) -> bool:
        self.last_check = self._now()
        self.last_error = error
        self.successes = 0
        self.failures += 1
        if self.up and self.failures >= self.unhealthy_threshold:
            self.up = False
            self.last_change = self._now()
            return True
        return False

    def record_write_success(self) -> bool:
        """Returns True when the backend takes writes again."""
        self.write_failures = 0
        self.write_successes += 1
        if not self.writable and self.write_successes >= self.healthy_threshold:
            self.writable = True
            self.last_change = self._now()
            return True
        return False

    def record_write_failure(self, error: str) -> bool:
        """Returns True when the backend just became read-only."""
        self.last_write_error = error
        self.write_successes = 0
        self.write_failures += 1
        if self.writable and self.write_failures >= self.unhealthy_threshold:
            self.writable = False
            self.last_change = self._now()
            return True
        return False

    def as_dict(self) -> dict:
        return {
            "up": self.up,
            "consecutive_failures": self.failures,
            "consecutive_successes": self.successes,
            "last_error": self.last_error,
            "last_check": self.last_check,
            "writable": self.writable,
            "consecutive_write_failures": self.write_failures,
            "consecutive_write_successes": self.write_successes,
            "last_write_error": self.last_write_error,
        }


class ProbedPool(Protocol):
    """What the monitor needs of its L{s3balance.backends.pool.BackendPool}."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Optional[Backend]: ...

    def health(self, name: str) -> HealthState: ...


class HealthMonitor(Service):
    """
    Probes every backend of a pool every C{period} seconds with HEAD bucket,
    each probe bounded by C{timeout}.  A read-only backend gets no writes, so
    no passive outcome could ever make it writable again: while it is
    read-only, a successful HEAD is followed by a write probe (PUT then DELETE
    of L{PROBE_KEY}).
    """

    def __init__(self, pool: ProbedPool, period: float, timeout: float, clock: Optional[IReactorTime] = None) -> None:
        self.pool = pool
        self.period = period
        self.timeout = timeout
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
        self._loops: dict[str, LoopingCall] = {}

    def startService(self) -> None:
        super().startService()
        self.sync()

    def sync(self) -> None:
        """Start loops for new backends and stop those of removed ones (after a reload)."""
        if not self.running:
            return
        names = set(self.pool.names())
        for name in list(self._loops):
            if name not in names:
                loop = self._loops.pop(name)
                if loop.running:
                    loop.stop()
        for name in names:
            if name not in self._loops:
                loop = LoopingCall(self.probe, name)
                loop.clock = self.clock
                self._loops[name] = loop
                loop.start(self.period, now=True).addErrback(self._loop_died, name)

    def _loop_died(self, failure: Failure, name: str) -> None:
        log.failure("health loop of {backend} died", failure, backend=name)

    def stopService(self) -> Deferred:
        super().stopService()
        for loop in self._loops.values():
            if loop.running:
                loop.stop()
        self._loops.clear()
        return DeferredList([])

    def probe(self, name: str) -> Deferred:
        backend = self.pool.get(name)
        if backend is None:
            return maybeDeferred(lambda: None)
        state = self.pool.health(name)
        d = backend.head_bucket()
        d.addTimeout(self.timeout, self.clock)

        def ok(_: object) -> Optional[Deferred]:
            if state.record_success():
                log.info("backend {backend} is up again", backend=name)
            if not state.writable:
                return self._probe_write(name, backend, state)
            return None

        def failed(failure: Failure) -> None:
            if state.record_failure(failure.getErrorMessage()):
                log.warn(
                    "backend {backend} is down: {error}", backend=name, error=failure.getErrorMessage()
                )

        return d.addCallbacks(ok, failed)

    def _probe_write(self, name: str, backend: Backend, state: HealthState) -> Deferred:
        """
        PUT a few bytes to L{PROBE_KEY} and DELETE them again; never fails
        (the LoopingCall would stop).  The pool's passive observer leaves
        writes to a read-only backend to this probe, so its PUT is counted
        once, here.  It does count against the backend's class A limit: the
        provider bills it like any PUT.
        """
        body = PipeProducer(len(PROBE_BODY))
        body.write(PROBE_BODY)
        body.finish()
        d = maybeDeferred(backend.put_object, PROBE_KEY, body, {"Content-Type": "text/plain"})
        d.addTimeout(self.timeout, self.clock)

        def written(_: object) -> Deferred:
            if state.record_write_success():
                log.info("backend {backend} takes writes again", backend=name)
            removed = maybeDeferred(backend.delete_object, PROBE_KEY)
            removed.addTimeout(self.timeout, self.clock)
            return removed.addErrback(
                lambda failure: log.warn(
                    "could not delete the write probe object {key} on {backend} (the next probe overwrites it): "
                    "{error}",
                    key=PROBE_KEY,
                    backend=name,
                    error=failure.getErrorMessage(),
                )
            )

        def refused(failure: Failure) -> None:
            # Already read-only: a failure only breaks the streak of successes.
            state.record_write_failure(failure.getErrorMessage()[:300])

        return d.addCallbacks(written, refused).addCallback(lambda _: None)
