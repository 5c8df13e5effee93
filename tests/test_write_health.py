"""
Read-only backends: write errors answered by a working server make a backend
refuse new objects but keep serving reads; the health monitor's write probe
makes it writable again.  Pure logic on fakes; the daemon-level test is in
tests/test_gateway_health.py.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.backend import BackendError, PutResult
from s3balance.backends.health import PROBE_BODY, PROBE_KEY, HealthMonitor, HealthState
from s3balance.backends.pool import BackendPool
from s3balance.config import BackendConfig


class FakeResponse:
    def __init__(self, code: int) -> None:
        self.code = code


class FakeBackend:
    """Answers the health monitor's requests from preset results and records them."""

    def __init__(self, name: str) -> None:
        self.config = BackendConfig(name=name)
        self.name = name
        self.observers: list = []
        self.calls: list[tuple[str, Optional[str]]] = []
        self.bodies: list[bytes] = []
        self.head: Optional[Exception] = None
        self.put: Optional[Exception] = None
        self.put_hangs = False
        self.delete: Optional[Exception] = None

    def head_bucket(self) -> Deferred:
        self.calls.append(("HEAD", None))
        return fail(self.head) if self.head else succeed(None)

    def put_object(self, real_key, body, headers) -> Deferred:
        self.calls.append(("PUT", real_key))
        # The probe hands over a finished body: collect what it would send.
        sent: list[bytes] = []

        class Consumer:
            def write(self, data: bytes) -> None:
                sent.append(data)

        body.startProducing(Consumer())
        self.bodies.append(b"".join(sent))
        if self.put_hangs:
            return Deferred()
        return fail(self.put) if self.put else succeed(PutResult(etag='"x"'))

    def delete_object(self, real_key) -> Deferred:
        self.calls.append(("DELETE", real_key))
        return fail(self.delete) if self.delete else succeed(None)


def make_pool(*names: str, unhealthy: int = 3, healthy: int = 2) -> tuple[BackendPool, dict[str, FakeBackend]]:
    backends = {name: FakeBackend(name) for name in names}
    return BackendPool(list(backends.values()), unhealthy, healthy), backends  # type: ignore[arg-type]


def observe(pool: BackendPool, backend: FakeBackend, method: str, result) -> None:
    for observer in backend.observers:
        observer(backend, method, result, 0.01)


def server_error(name: str = "full", status: int = 500) -> BackendError:
    return BackendError(name, status, "InternalError", "No writable volumes")


class HealthStateWriteTests(SynchronousTestCase):
    def test_read_only_after_consecutive_write_failures_and_still_up(self) -> None:
        state = HealthState(unhealthy_threshold=3, healthy_threshold=2)
        self.assertFalse(state.record_write_failure("HTTP 500 on PUT"))
        self.assertFalse(state.record_write_failure("HTTP 500 on PUT"))
        self.assertTrue(state.record_write_failure("HTTP 500 on PUT"))
        self.assertFalse(state.writable)
        self.assertTrue(state.up)
        self.assertEqual(state.failures, 0)
        # Only the transition reports a change.
        self.assertFalse(state.record_write_failure("HTTP 500 on PUT"))

    def test_a_successful_write_clears_the_streak(self) -> None:
        state = HealthState(unhealthy_threshold=2)
        state.record_write_failure("HTTP 500 on PUT")
        state.record_write_success()
        self.assertFalse(state.record_write_failure("HTTP 500 on PUT"))
        self.assertTrue(state.writable)

    def test_writable_again_after_consecutive_write_successes(self) -> None:
        state = HealthState(unhealthy_threshold=1, healthy_threshold=2)
        state.record_write_failure("HTTP 500 on PUT")
        self.assertFalse(state.record_write_success())
        state.record_write_failure("HTTP 500 on PUT")  # breaks the streak
        self.assertFalse(state.record_write_success())
        self.assertTrue(state.record_write_success())
        self.assertTrue(state.writable)

    def test_up_down_and_writability_are_independent(self) -> None:
        state = HealthState(unhealthy_threshold=1, healthy_threshold=1)
        state.record_write_failure("HTTP 500 on PUT")
        state.record_failure("refused")
        state.record_success()
        self.assertTrue(state.up)
        self.assertFalse(state.writable)

    def test_as_dict_keeps_its_keys_and_adds_writability(self) -> None:
        state = HealthState(unhealthy_threshold=1)
        state.record_write_failure("HTTP 507 on POST")
        document = state.as_dict()
        for key in ("up", "consecutive_failures", "consecutive_successes", "last_error", "last_check"):
            self.assertIn(key, document)
        self.assertEqual(document["writable"], False)
        self.assertEqual(document["consecutive_write_failures"], 1)
        self.assertEqual(document["consecutive_write_successes"], 0)
        self.assertEqual(document["last_write_error"], "HTTP 507 on POST")


class PassiveWriteHealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pool, self.backends = make_pool("full", "steady", unhealthy=3, healthy=2)
        self.full = self.backends["full"]

    def test_write_5xx_make_the_backend_read_only_not_down(self) -> None:
        with capturedLogs() as events:
            for method in ("PUT", "POST", "PUT", "PUT"):
                observe(self.pool, self.full, method, FakeResponse(500))
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["backend full is read-only after write errors: HTTP 500 on PUT"],
        )
        self.assertFalse(self.pool.writable("full"))
        self.assertTrue(self.pool.readable("full"))
        self.assertTrue(self.pool.is_up("full"))
        self.assertEqual([view.name for view in self.pool.candidates(1)], ["steady"])
        state = self.pool.health("full")
        self.assertEqual(state.failures, 0)
        self.assertEqual(state.last_write_error, "HTTP 500 on PUT")

    def test_a_successful_write_in_between_keeps_it_writable(self) -> None:
        for code in (500, 507, 200, 500, 500):
            observe(self.pool, self.full, "PUT", FakeResponse(code))
        self.assertTrue(self.pool.writable("full"))

    def test_throttling_and_client_errors_do_not_count(self) -> None:
        for code in (503, 503, 503, 403, 404, 503):
            observe(self.pool, self.full, "PUT", FakeResponse(code))
        self.assertTrue(self.pool.writable("full"))
        self.assertTrue(self.pool.is_up("full"))
        self.assertEqual(self.pool.health("full").write_failures, 0)

    def test_client_errors_do_not_clear_the_streak(self) -> None:
        for code in (500, 500, 400, 500):
            observe(self.pool, self.full, "PUT", FakeResponse(code))
        self.assertFalse(self.pool.writable("full"))

    def test_failed_connections_of_writes_still_mean_down(self) -> None:
        for _ in range(3):
            observe(self.pool, self.full, "PUT", Failure(ConnectionRefusedError()))
        self.assertFalse(self.pool.is_up("full"))
        self.assertFalse(self.pool.readable("full"))
        self.assertFalse(self.pool.writable("full"))
        self.assertTrue(self.pool.health("full").writable)

    def test_read_5xx_still_mean_down(self) -> None:
        for method in ("GET", "HEAD", "DELETE"):
            observe(self.pool, self.full, method, FakeResponse(500))
        self.assertFalse(self.pool.readable("full"))
        self.assertEqual(self.pool.health("full").write_failures, 0)

    def test_writes_to_a_read_only_backend_are_left_to_the_probe(self) -> None:
        state = self.pool.health("full")
        for _ in range(3):
            observe(self.pool, self.full, "PUT", FakeResponse(500))
        for _ in range(3):
            observe(self.pool, self.full, "PUT", FakeResponse(200))
        self.assertFalse(self.pool.writable("full"))
        self.assertEqual(state.write_successes, 0)
        self.assertEqual(state.write_failures, 3)


class WriteProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pool, self.backends = make_pool("full", unhealthy=1, healthy=2)
        self.full = self.backends["full"]
        self.clock = Clock()
        self.monitor = HealthMonitor(self.pool, period=10.0, timeout=2.0, clock=self.clock)
        self.state = self.pool.health("full")

    def probe(self) -> None:
        self.assertIsNone(self.successResultOf(self.monitor.probe("full")))

    def make_read_only(self) -> None:
        observe(self.pool, self.full, "PUT", FakeResponse(500))
        self.assertFalse(self.pool.writable("full"))

    def test_writable_backend_gets_only_head_bucket(self) -> None:
        self.probe()
        self.assertEqual(self.full.calls, [("HEAD", None)])

    def test_write_probes_make_it_writable_again(self) -> None:
        self.make_read_only()
        self.probe()
        self.assertEqual(self.full.calls, [("HEAD", None), ("PUT", PROBE_KEY), ("DELETE", PROBE_KEY)])
        self.assertEqual(self.full.bodies, [PROBE_BODY])
        self.assertFalse(self.pool.writable("full"))
        with capturedLogs() as events:
            self.probe()
        self.assertEqual([formatEvent(event) for event in events], ["backend full takes writes again"])
        self.assertTrue(self.pool.writable("full"))
        self.assertTrue(self.state.as_dict()["writable"])
        self.probe()
        self.assertEqual(self.full.calls[-1], ("HEAD", None))

    def test_failing_write_probe_keeps_it_read_only(self) -> None:
        self.make_read_only()
        self.full.put = server_error()
        self.probe()
        self.probe()
        self.assertFalse(self.pool.writable("full"))
        self.assertTrue(self.pool.readable("full"))
        self.assertIn("No writable volumes", self.state.last_write_error or "")
        self.assertNotIn(("DELETE", PROBE_KEY), self.full.calls)

    def test_write_probe_that_never_answers_times_out(self) -> None:
        self.make_read_only()
        self.full.put_hangs = True
        d = self.monitor.probe("full")
        self.assertNoResult(d)
        self.clock.advance(2.5)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.state.write_failures, 2)

    def test_failed_delete_is_logged_and_does_not_fail_the_probe(self) -> None:
        self.make_read_only()
        self.full.delete = server_error(status=500)
        with capturedLogs() as events:
            self.probe()
        self.assertEqual(len(events), 1)
        self.assertIn(f"could not delete the write probe object {PROBE_KEY} on full", formatEvent(events[0]))
        self.probe()
        self.assertTrue(self.pool.writable("full"))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_no_write_probe_when_head_bucket_fails(self) -> None:
        self.make_read_only()
        self.full.head = BackendError("full", 0, "Unreachable", "refused")
        self.probe()
        self.assertEqual(self.full.calls, [("HEAD", None)])
        self.assertFalse(self.pool.is_up("full"))
