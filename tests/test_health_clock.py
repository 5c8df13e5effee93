"""
Health rise and fall on a controlled clock: L{HealthMonitor}'s probes every
C{period}, each bounded by C{timeout}, and L{HealthState}'s hysteresis, with
no real time passing (the real-server behaviour is in test_gateway_health).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.health import HealthMonitor, HealthState

PERIOD = 10.0
TIMEOUT = 3.0


class ScriptedBackend:
    """A backend whose HEAD bucket answers as told: "ok", "error" or "hang"."""

    def __init__(self) -> None:
        self.answer = "ok"
        self.heads = 0
        self.pending: list[Deferred[None]] = []

    def head_bucket(self) -> Deferred[None]:
        self.heads += 1
        if self.answer == "ok":
            return succeed(None)
        if self.answer == "error":
            return fail(ConnectionRefusedError("refused"))
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d


class OnePool:
    def __init__(self, clock: Clock) -> None:
        self.backend = ScriptedBackend()
        self.state = HealthState(unhealthy_threshold=3, healthy_threshold=2, now=clock.seconds)

    def names(self) -> list[str]:
        return ["b1"]

    def get(self, name: str) -> Optional[ScriptedBackend]:
        return self.backend if name == "b1" else None

    def health(self, name: str) -> HealthState:
        return self.state


class HealthOnAClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = OnePool(self.clock)
        self.monitor = HealthMonitor(self.pool, period=PERIOD, timeout=TIMEOUT, clock=self.clock)
        self.monitor.startService()
        self.addCleanup(self.monitor.stopService)

    def advance_periods(self, count: int) -> None:
        # One second at a time: a timer set while the clock jumps counts from
        # the end of the jump (Clock.advance), not from when it was due.
        self.clock.pump([1.0] * int(count * PERIOD))

    def test_probes_once_per_period_from_the_start(self) -> None:
        self.assertEqual(self.pool.backend.heads, 1)  # at once
        self.clock.advance(PERIOD - 0.1)
        self.assertEqual(self.pool.backend.heads, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.pool.backend.heads, 2)

    def test_down_after_three_failures_up_after_two_successes(self) -> None:
        state = self.pool.state
        self.pool.backend.answer = "error"
        self.advance_periods(2)
        self.assertTrue(state.up, "two failures are not enough")
        self.advance_periods(1)
        self.assertFalse(state.up)
        self.assertEqual(state.last_change, 3 * PERIOD)
        self.assertIn("refused", state.last_error or "")
        self.pool.backend.answer = "ok"
        self.advance_periods(1)
        self.assertFalse(state.up, "one success is not enough")
        self.advance_periods(1)
        self.assertTrue(state.up)
        self.assertEqual(state.last_change, 5 * PERIOD)

    def test_a_success_breaks_a_streak_of_failures(self) -> None:
        state = self.pool.state
        for answer in ["error", "error", "ok", "error", "error"]:
            self.pool.backend.answer = answer
            self.advance_periods(1)
        self.assertTrue(state.up)
        self.assertEqual(state.failures, 2)

    def test_a_probe_that_never_answers_fails_after_the_timeout(self) -> None:
        state = self.pool.state
        self.pool.backend.answer = "hang"
        self.advance_periods(1)
        self.assertEqual(state.failures, 0)
        self.clock.pump([1.0] * int(TIMEOUT))
        self.assertEqual(state.failures, 1)
        self.assertTrue(self.pool.backend.pending[0].called, "the hung probe was cancelled")
        # The next probes do the same; the backend goes down by the third.
        self.advance_periods(2)
        self.assertFalse(state.up)

    def test_a_hung_probe_does_not_overlap_the_next(self) -> None:
        self.pool.backend.answer = "hang"
        self.advance_periods(1)
        heads = self.pool.backend.heads
        # Period < timeout here: the loop waits for the probe in flight.
        monitor = HealthMonitor(self.pool, period=1.0, timeout=TIMEOUT, clock=self.clock)
        self.monitor.stopService()
        monitor.startService()
        self.addCleanup(monitor.stopService)
        started = self.pool.backend.heads
        self.assertEqual(started, heads + 1)
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual(self.pool.backend.heads, started, "a second probe started while one was in flight")
        self.clock.advance(1.0)  # the timeout ends the first one
        self.clock.advance(1.0)
        self.assertGreater(self.pool.backend.heads, started)

    def test_stop_leaves_no_timer(self) -> None:
        self.monitor.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
