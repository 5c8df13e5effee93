"""
Backend health: a small state machine per backend, fed by active probes (a
LoopingCall per backend that never overlaps itself) and by passive outcomes of
real requests (connection failures and 5xx answers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


class HealthState:
    """
    Up/down with hysteresis: down after C{unhealthy_threshold} consecutive
    failures, up again after C{healthy_threshold} consecutive successes.
    A backend starts up, so the daemon serves as soon as it starts.
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

    def as_dict(self) -> dict:
        return {
            "up": self.up,
            "consecutive_failures": self.failures,
            "consecutive_successes": self.successes,
            "last_error": self.last_error,
            "last_check": self.last_check,
        }


class HealthMonitor(Service):
    """
    Probes every backend of a pool every C{period} seconds with HEAD bucket,
    each probe bounded by C{timeout}.
    """

    def __init__(self, pool, period: float, timeout: float, clock=None) -> None:
        self.pool = pool
        self.period = period
        self.timeout = timeout
        if clock is None:
            from twisted.internet import reactor as clock
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

    def _loop_died(self, failure, name: str) -> None:
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

        def ok(_):
            if state.record_success():
                log.info("backend {backend} is up again", backend=name)

        def failed(failure):
            if state.record_failure(failure.getErrorMessage()):
                log.warn(
                    "backend {backend} is down: {error}", backend=name, error=failure.getErrorMessage()
                )

        return d.addCallbacks(ok, failed)
