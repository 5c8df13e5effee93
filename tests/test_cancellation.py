"""
A handler's work ends with its client: when the connection is lost, the
handler's Deferred is cancelled (L{s3balance.s3.gateway.Gateway.handle}), and
the write path stays whole wherever that happens.

The write path is checked here with fakes (store, pool, backend, request) on
a L{Clock}: a PutObject is stopped at each of its await points and what it
leaves behind is examined.  The read path is checked against a real daemon
whose backend is stalled behind L{tests.faultproxy.FaultProxy}.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from s3balance.backends.backend import PutResult
from s3balance.config.schema import S3APIConfig
from s3balance.s3.call import S3Call
from s3balance.s3.gateway import Gateway
from s3balance.s3.routing import Target
from s3balance.s3.upload import PutObjectUpload
from s3balance.store.interfaces import WriteIntent

BODY = b"0123456789" * 100


class FakeStore:
    """Every write is a Deferred the test fires (the database thread at work)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.pending: dict[str, Deferred] = {}

    def _call(self, name: str, *args: Any) -> Deferred:
        self.calls.append((name, *args))
        d: Deferred = Deferred()
        self.pending[name] = d
        return d

    def get_bucket(self, name: str) -> Deferred:
        return self._call("get_bucket", name)

    def begin_write(self, backend: str, real_key: str, lease: float, *reserved: Any) -> Deferred:
        return self._call("begin_write", backend, real_key)

    def renew_write(self, intent_id: int, lease: float) -> Deferred:
        return succeed(None)

    def commit_object(self, intent_id: int, record, if_match=None, if_none_match=None, also=()) -> Deferred:
        return self._call("commit_object", intent_id, record.key)

    def abandon_write(self, intent_id: int, backend_object_may_exist: bool) -> Deferred:
        self.calls.append(("abandon_write", intent_id, backend_object_may_exist))
        return succeed(None)

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


class FakeReservation:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.released = False

    def release(self) -> None:
        self.released = True


class FakeBackend:
    name = "b1"
    config = SimpleNamespace(max_size=None)

    def __init__(self) -> None:
        self.requests: list[Deferred] = []
        self.cancelled = 0
        self.received = 0

    def put_object(self, real_key: str, pipe, headers) -> Deferred:
        def cancel(d: Deferred) -> None:
            self.cancelled += 1
            pipe.stopProducing()

        d: Deferred = Deferred(cancel)
        self.requests.append(d)
        # The connection is open: the body flows to the backend.
        pipe.startProducing(self).addErrback(lambda _: None)
        return d

    def write(self, data: bytes) -> None:
        self.received += len(data)


class FakePool:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.reservations: list[FakeReservation] = []
        self.usage: list[tuple] = []

    def place(self, strategy, context, exclude=(), **reserve: Any) -> FakeReservation:
        reservation = FakeReservation(self.backend.name)
        self.reservations.append(reservation)
        return reservation

    def get(self, name: str) -> FakeBackend:
        return self.backend

    def all_full(self, size, exclude=()) -> bool:
        return False

    def add_usage(self, backend: str, size: int, count: int) -> None:
        self.usage.append((backend, size, count))


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def abortConnection(self) -> None:
        self.aborted = True


class FakeRequest:
    """What the gateway and the upload use of an S3Request."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(transport=FakeTransport())
        self.request_id = "TEST"
        self.body_received: Deferred[bool] = Deferred()
        self.whole_body = False
        self.expects_continue = False
        self.continue_sent = False
        self.answered_early = False
        self.early_error = None
        self.startedWriting = False
        self.disconnected = False
        self.finished = False
        self.method = b"PUT"
        self.uri = b"/vb/key"
        self.call: Optional[S3Call] = None
        self.body_sink: Any = None
        self.answers: list = []
        self.responseHeaders = Headers()
        self._finish_waiters: list[Deferred] = []

    @property
    def gone(self) -> bool:
        return self.disconnected or self.finished

    def notifyFinish(self) -> Deferred:
        d: Deferred = Deferred()
        self._finish_waiters.append(d)
        return d

    def send_continue(self) -> None:
        pass

    def discard_body(self) -> None:
        pass

    def setResponseCode(self, code: int) -> None:
        self.answers.append(code)

    def setHeader(self, name, value) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def finish(self) -> None:
        self.finished = True

    def body_in(self) -> None:
        """The whole body arrived (S3Request.process)."""
        self.whole_body = True
        self.body_received.callback(True)

    def connection_lost(self) -> None:
        """What S3Request.connectionLost does: notifyFinish fails, then the body sink hears it."""
        self.disconnected = True
        waiters, self._finish_waiters = self._finish_waiters, []
        for d in waiters:
            d.errback(ConnectionError("lost"))
        if not self.body_received.called:
            self.body_received.callback(False)
        if self.body_sink is not None:
            self.body_sink.client_gone(None)
            self.body_sink = None


def make_gateway() -> tuple[Gateway, FakeStore, FakePool, FakeBackend, Clock]:
    store = FakeStore()
    backend = FakeBackend()
    pool = FakePool(backend)
    clock = Clock()
    config = SimpleNamespace(
        balancer=SimpleNamespace(backend_timeout=30.0, retry_attempts=1, retry_delay=0.1),
        virtual_bucket=lambda name: None,
        s3api=S3APIConfig(auth_required=False),
        replication_of=lambda bucket: (1, "sync"),
    )
    gateway = Gateway(config, store, pool, None, clock)
    return gateway, store, pool, backend, clock


def make_upload(gateway: Gateway) -> tuple[PutObjectUpload, FakeRequest]:
    request = FakeRequest()
    call = S3Call(
        method="PUT",
        target=Target(bucket="vb", key="key"),
        operation="PutObject",
        query={},
        headers={"content-length": [str(len(BODY))]},
        credential=None,
        auth=None,
        raw_path=b"/vb/key",
    )
    request.call = call
    upload = PutObjectUpload(gateway, request, call, len(BODY))
    request.body_sink = upload
    upload.start()
    return upload, request


class PutCancelledAtEachAwaitTests(SynchronousTestCase):
    """
    A PutObject whose client leaves at any await point: nothing is recorded
    unless its commit had started (then the commit's own outcome stands), the
    write intent is abandoned, the reservation released, the backend request
    cut, and nothing is logged as a failure or answered.
    """

    def setUp(self) -> None:
        self.gateway, self.store, self.pool, self.backend, self.clock = make_gateway()
        self.upload, self.request = make_upload(self.gateway)
        self.errors: list = []
        from twisted.logger import globalLogPublisher

        def observe(event) -> None:
            if event.get("log_failure") is not None or event.get("isError"):
                self.errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def body_arrives(self) -> None:
        self.upload.data_received(BODY)
        self.request.body_in()
        self.gateway.handle(self.request)

    def assertLeftNothing(self, intent_abandoned: bool, backend_may_exist: bool = False) -> None:
        self.assertNotIn("commit_object", self.store.names())
        abandons = [call for call in self.store.calls if call[0] == "abandon_write"]
        if intent_abandoned:
            self.assertEqual(abandons, [("abandon_write", 7, backend_may_exist)])
        else:
            self.assertEqual(abandons, [])
        self.assertTrue(all(r.released for r in self.pool.reservations))
        for request in self.backend.requests:
            self.assertTrue(request.called)
        self.assertEqual(self.backend.cancelled, len([r for r in self.backend.requests]))
        self.assertEqual(self.request.answers, [])
        self.assertEqual(self.errors, [])
        self.assertTrue(self.upload.finished.called)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_while_the_bucket_is_looked_up(self) -> None:
        self.body_arrives()
        self.assertEqual(self.store.names(), ["get_bucket"])
        self.request.connection_lost()
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        # The upload stops at its next step: the intent it took is given back
        # at once, no backend request is opened.
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.assertLeftNothing(intent_abandoned=True)

    def test_cancelled_while_the_intent_is_recorded(self) -> None:
        self.body_arrives()
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        self.assertEqual(self.store.names(), ["get_bucket", "begin_write"])
        self.request.connection_lost()
        # The intent's transaction ran on in the database thread.
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.assertEqual(self.backend.requests, [])
        self.assertLeftNothing(intent_abandoned=True, backend_may_exist=False)

    def test_cancelled_while_the_intent_is_recorded_before_the_body_is_in(self) -> None:
        self.upload.data_received(BODY[:100])
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        self.request.connection_lost()
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        # The backend request opened on the aborted body is cut, never left waiting.
        self.assertLess(self.backend.received, len(BODY))
        self.assertLeftNothing(intent_abandoned=True, backend_may_exist=True)

    def test_cancelled_while_the_backend_stores_the_body(self) -> None:
        self.body_arrives()
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.assertEqual(len(self.backend.requests), 1)
        self.request.connection_lost()
        self.assertLeftNothing(intent_abandoned=True, backend_may_exist=True)

    def test_cancelled_while_the_commit_runs_keeps_a_commit_that_succeeds(self) -> None:
        self.body_arrives()
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.backend.requests[0].callback(PutResult('"etag"'))
        self.assertEqual(self.store.names()[-1], "commit_object")
        self.request.connection_lost()
        self.assertFalse(self.store.pending["commit_object"].called)
        # The commit ran on in the database thread and succeeded: the object
        # is whole (row and bytes), it is counted, and its intent is not abandoned.
        self.store.pending["commit_object"].callback(None)
        self.assertNotIn("abandon_write", self.store.names())
        self.assertEqual(self.pool.usage, [("b1", len(BODY), 1)])
        self.assertTrue(all(r.released for r in self.pool.reservations))
        self.assertEqual(self.request.answers, [])
        self.assertEqual(self.errors, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_while_the_commit_runs_abandons_a_commit_that_fails(self) -> None:
        self.body_arrives()
        self.store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        self.store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.backend.requests[0].callback(PutResult('"etag"'))
        self.request.connection_lost()
        from s3balance.store.interfaces import StoreUnavailable

        self.store.pending["commit_object"].errback(StoreUnavailable("connection lost"))
        self.assertEqual(self.store.calls[-1], ("abandon_write", 7, True))
        self.assertEqual(self.pool.usage, [])
        self.assertTrue(all(r.released for r in self.pool.reservations))
        self.assertEqual(self.request.answers, [])

    def test_handler_cancellation_is_not_logged_or_answered(self) -> None:
        """Gateway.handle cancels a handler whose client left; the CancelledError is nobody's failure."""
        request = FakeRequest()
        waiting: Deferred = Deferred()

        async def stalled(gateway, request, call) -> None:
            await waiting

        self.gateway.handlers["GetObject"] = stalled
        request.call = SimpleNamespace(operation="GetObject")  # type: ignore[assignment]
        self.gateway.handle(request)
        self.assertFalse(waiting.called)
        request.connection_lost()
        self.assertTrue(waiting.called)
        self.assertEqual(request.answers, [])
        self.assertEqual(self.errors, [])


def established_to(port: int) -> int:
    """How many TCP connections on this host are established towards 127.0.0.1:C{port} (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[2] == wanted and fields[3] == "01":
                count += 1
    return count


class HandlerStopsWithItsClientTests(SynchronousTestCase):
    """
    A real daemon whose backend is behind a L{FaultProxy}: a GET waiting for a
    stalled backend stops when its client leaves, long before the backend
    timeout would have cut it.
    """

    BACKEND_TIMEOUT = 120.0

    def setUp(self) -> None:
        from tests.daemon import Daemon, backend_entry, base_config
        from tests.faultproxy import FaultProxy
        from tests.harness import harness_dir, shared_seaweedfs, unique_bucket_name

        server = shared_seaweedfs()
        self.proxy = FaultProxy("127.0.0.1", server.port).start()
        self.addCleanup(self.proxy.close)
        real = unique_bucket_name("real")
        server.create_bucket(real)
        entry = backend_entry(server, real)
        entry["endpoint"] = f"http://{self.proxy.address}"
        workdir = harness_dir() / unique_bucket_name("cancel")
        workdir.mkdir(parents=True)
        # No health probes after the first: their connections would blur the count.
        balancer = {"backend_timeout": f"{self.BACKEND_TIMEOUT}s", "health_check_period": "1h"}
        config = base_config([entry], ["vb-cancel"], workdir, balancer=balancer)
        self.daemon = Daemon(config, name="cancel").start()
        self.addCleanup(self.daemon.stop)

    def test_get_from_a_stalled_backend_is_cut_when_the_client_leaves(self) -> None:
        from tests.daemon import poll, sign

        s3 = self.daemon.client()
        s3.put_object(Bucket="vb-cancel", Key="obj", Body=b"x" * 4096)
        # No pooled backend connection left: the GET opens its own.
        self.proxy.cut()
        poll(lambda: established_to(self.proxy.port) == 0, timeout=15, message="pooled connections stay")
        self.proxy.stall()
        port = self.daemon.port
        url = f"{self.daemon.endpoint}/vb-cancel/obj"
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = f"GET /vb-cancel/obj HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in sign("GET", url).items() if k.lower() != "host")
        client.sendall(head.encode() + b"\r\n")
        poll(lambda: established_to(self.proxy.port) == 1, timeout=15, message="the GET never reached the backend")
        client.close()
        poll(
            lambda: established_to(self.proxy.port) == 0,
            timeout=15,
            message="the backend request of a GET whose client left is still open",
        )
        self.proxy.resume()
        self.assertEqual(s3.get_object(Bucket="vb-cancel", Key="obj")["Body"].read(), b"x" * 4096)
        log = self.daemon.log()
        self.assertNotIn("Unhandled Error", log)
        self.assertNotIn("request failed", log)
        self.assertNotIn("GET vb-cancel/obj from", log)  # no backend failure logged for it


class UncancelledTests(SynchronousTestCase):
    """L{uncancelled}: a store call under way is awaited to its end through a cancellation."""

    def test_cancellation_waits_for_the_result(self) -> None:
        from twisted.internet.defer import ensureDeferred

        from s3balance.s3.deferreds import uncancelled

        work: Deferred = Deferred()
        seen: list = []

        async def handler() -> None:
            seen.append(await uncancelled(work))

        running = ensureDeferred(handler())
        running.cancel()
        self.assertFalse(work.called)
        self.assertNoResult(running)
        work.callback("committed")
        self.assertEqual(seen, ["committed"])
        self.successResultOf(running)

    def test_failure_is_raised(self) -> None:
        from twisted.internet.defer import ensureDeferred

        from s3balance.s3.deferreds import uncancelled

        work: Deferred = Deferred()

        async def handler() -> None:
            await uncancelled(work)

        running = ensureDeferred(handler())
        running.cancel()
        work.errback(ValueError("rolled back"))
        self.failureResultOf(running, ValueError)
