"""
The retries of a PutObject, on a controlled clock.

A backend failure that is retryable (the connection was refused before any
body byte went out, or an outage while a small body is still replayable from
memory) gives up that attempt's write intent, releases its reservation,
excludes the backend, waits C{balancer.retry_delay} on the gateway's reactor
and places the write again, up to C{balancer.retry_attempts} placements
(L{s3balance.s3.upload.PutObjectUpload._run}).

Everything here runs on a L{Clock}: no real time passes.  The backends are
real L{Backend}s (so a refused connection is classified by the code that
does it in production) over a scripted HTTP client; the store, pool and
request are fakes (adapted from L{tests.test_cancellation}, whose fakes have
one backend only).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from s3balance.backends.backend import Backend
from s3balance.config.schema import BackendConfig, S3APIConfig
from s3balance.s3.call import S3Call
from s3balance.s3.gateway import Gateway
from s3balance.s3.routing import Target
from s3balance.s3.upload import PutObjectUpload
from s3balance.store.interfaces import WriteIntent

BODY = b"0123456789" * 100
ETAG = '"5d41402abc4b2a76b9719d911017c592"'


# -- backends: real Backend objects over a scripted HTTP client ----------------


class FakeResponse:
    """What L{Backend} reads of an answer: its status, headers and (small) body."""

    def __init__(self, code: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.code = code
        self.headers = Headers({name: [value] for name, value in headers.items()})
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(None)
        if self._body:
            protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class Exchange:
    """One request a backend sent; the test plays the network's part."""

    def __init__(self, head: bytes, body: Optional[IBodyProducer]) -> None:
        self.head = head
        self.body = body
        self.received = b""
        self.cancelled = False
        self.connected = False
        self.outcome: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[Any]) -> None:
        # What the real client does: the connection is cut, the body stopped.
        self.cancelled = True
        if self.connected and self.body is not None:
            self.body.stopProducing()

    # the consumer of the body, once connected
    def write(self, data: bytes) -> None:
        self.received += data

    def refuse(self) -> None:
        """The connection is refused: not one byte of the body was taken."""
        self.outcome.errback(Failure(ConnectionRefusedError("Connection refused")))

    def connect(self) -> None:
        """The connection is made: the body flows to the backend."""
        self.connected = True
        if self.body is not None:
            self.body.startProducing(self).addErrback(lambda _: None)

    def drop(self) -> None:
        """The connection is lost after the body began to flow."""
        self.outcome.errback(Failure(ConnectionLost("Connection to the other side was lost")))

    def answer(self, code: int, headers: Optional[dict[bytes, bytes]] = None, body: bytes = b"") -> None:
        self.outcome.callback(FakeResponse(code, headers or {}, body))

    def stored(self) -> None:
        self.answer(200, {b"etag": ETAG.encode()})


class ScriptedHTTP:
    """Stands for L{s3balance.backends.client.HTTPClient}: every request waits for the test."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def request(
        self, key: Any, head: bytes, body: Optional[IBodyProducer] = None, method_is_head: bool = False
    ) -> Deferred[Any]:
        exchange = Exchange(head, body)
        self.exchanges.append(exchange)
        return exchange.outcome


def make_backend(name: str, clock: Clock) -> tuple[Backend, ScriptedHTTP]:
    http = ScriptedHTTP()
    config = BackendConfig(name=name, endpoint=f"http://{name}.invalid:9000", path_style=True)
    return Backend(config, cast(Any, http), clock), http


# -- pool, store, request ------------------------------------------------------


class FakeReservation:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.released = 0

    def release(self) -> None:
        self.released += 1


class FakePool:
    """Places on the first backend not excluded, and remembers when and with what exclusions."""

    def __init__(self, clock: Clock, backends: list[Backend]) -> None:
        self.clock = clock
        self.backends = {backend.name: backend for backend in backends}
        self.placements: list[tuple[float, str, tuple[str, ...]]] = []
        self.reservations: list[FakeReservation] = []
        self.usage: list[tuple[str, int, int]] = []

    def place(
        self, strategy: Any, context: Any, exclude: Iterable[str] = (), reserve: int = 0
    ) -> Optional[FakeReservation]:
        excluded = tuple(exclude)
        for name in self.backends:
            if name not in excluded:
                self.placements.append((self.clock.seconds(), name, excluded))
                reservation = FakeReservation(name)
                self.reservations.append(reservation)
                return reservation
        return None

    def get(self, name: str) -> Optional[Backend]:
        return self.backends.get(name)

    def all_full(self, size: Optional[int], exclude: Iterable[str] = ()) -> bool:
        return False

    def add_usage(self, backend: str, size: int, count: int) -> None:
        self.usage.append((backend, size, count))


class FakeStore:
    """
    The bucket lookup waits for the test (so the body is in before the
    upload places its write); every write intent is granted at once.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.bucket: Deferred[Any] = Deferred()
        self._next_intent = 0

    def get_bucket(self, name: str) -> Deferred[Any]:
        self.calls.append(("get_bucket", name))
        return self.bucket

    def begin_write(self, backend: str, real_key: str, lease: float, *reserved: Any) -> Deferred[WriteIntent]:
        self._next_intent += 1
        self.calls.append(("begin_write", self._next_intent, backend))
        return succeed(WriteIntent(self._next_intent, backend, real_key))

    def renew_write(self, intent_id: int, lease: float) -> Deferred[None]:
        return succeed(None)

    def commit_object(
        self, intent_id: int, record: Any, if_match: Any = None, if_none_match: Any = None, also: Any = ()
    ) -> Deferred[None]:
        self.calls.append(("commit_object", intent_id, record.locations[0].backend))
        return succeed(None)

    def abandon_write(self, intent_id: int, backend_object_may_exist: bool) -> Deferred[None]:
        self.calls.append(("abandon_write", intent_id, backend_object_may_exist))
        return succeed(None)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


class FakeTransport:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def abortConnection(self) -> None:
        pass


class FakeRequest:
    """What the gateway and the upload use of an S3Request; it keeps what it was answered."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(transport=FakeTransport())
        self.request_id = "TEST"
        self.body_received: Deferred[bool] = Deferred()
        self.whole_body = False
        self.expects_continue = False
        self.continue_sent = False
        self.answered_early = False
        self.early_error: Any = None
        self.startedWriting = False
        self.disconnected = False
        self.finished = False
        self.method = b"PUT"
        self.uri = b"/vb/key"
        self.call: Optional[S3Call] = None
        self.body_sink: Any = None
        self.answers: list[int] = []
        self.written = b""
        self.responseHeaders = Headers()
        self._finish_waiters: list[Deferred[None]] = []

    @property
    def gone(self) -> bool:
        return self.disconnected or self.finished

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._finish_waiters.append(d)
        return d

    def send_continue(self) -> None:
        pass

    def discard_body(self) -> None:
        pass

    def setResponseCode(self, code: int) -> None:
        self.answers.append(code)

    def setHeader(self, name: bytes, value: bytes) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += data

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


# -- the tests ---------------------------------------------------------------------


class RetryTestCase(SynchronousTestCase):
    """A gateway on a L{Clock} with backends C{names}, and one PutObject of L{BODY}."""

    def make(self, attempts: int, delay: float, names: tuple[str, ...] = ("b1", "b2")) -> None:
        self.clock = Clock()
        self.http: dict[str, ScriptedHTTP] = {}
        backends = []
        for name in names:
            backend, self.http[name] = make_backend(name, self.clock)
            backends.append(backend)
        self.pool = FakePool(self.clock, backends)
        self.store = FakeStore()
        config = SimpleNamespace(
            balancer=SimpleNamespace(backend_timeout=30.0, retry_attempts=attempts, retry_delay=delay),
            virtual_bucket=lambda name: None,
            s3api=S3APIConfig(auth_required=False),
            replication_of=lambda bucket: (1, "sync"),
        )
        self.gateway = Gateway(
            cast(Any, config), cast(Any, self.store), cast(Any, self.pool), cast(Any, None), self.clock
        )
        self.request = FakeRequest()
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
        self.request.call = call
        self.upload = PutObjectUpload(self.gateway, cast(Any, self.request), call, len(BODY))
        self.request.body_sink = self.upload
        self.upload.start()
        self.failures: list[LogEvent] = []

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_failure") is not None or event.get("isError"):
                self.failures.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def small_body_in(self) -> None:
        """The whole (small) body arrives before the bucket is looked up, then the write is placed."""
        self.upload.data_received(BODY)
        self.request.body_in()
        self.gateway.handle(cast(Any, self.request))
        self.store.bucket.callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))

    def exchanges(self, name: str) -> list[Exchange]:
        return self.http[name].exchanges

    def placed_on(self) -> list[str]:
        return [name for _, name, _ in self.pool.placements]

    def assertAnsweredError(self, status: int, code: str, message: Optional[str] = None) -> None:
        self.assertEqual(self.request.answers, [status])
        self.assertIn(f"<Code>{code}</Code>".encode(), self.request.written)
        if message is not None:
            self.assertIn(message.encode(), self.request.written)
        self.assertTrue(self.request.finished)

    def assertSettled(self) -> None:
        """The upload is over and left nothing running: reservations, backend requests, timers."""
        self.assertTrue(self.upload.finished.called)
        # The coroutine itself ran to its end (StreamedBody._ended), not just
        # the Deferred the gateway waits on (which it cancels when the client leaves).
        self.assertIsNone(self.upload.request)
        self.assertEqual([r.released for r in self.pool.reservations], [1] * len(self.pool.reservations))
        for http in self.http.values():
            for exchange in http.exchanges:
                self.assertTrue(exchange.outcome.called)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.failures, [])


class RetryAfterRefusedConnectionTests(RetryTestCase):
    def test_second_backend_gets_the_write_only_after_the_retry_delay(self) -> None:
        """
        The first backend refuses the connection: its intent is abandoned (no
        object can exist there), its reservation released at once, and the
        second backend is asked only once C{retry_delay} has passed on the
        clock; the object is committed there and the client hears 200 once.
        """
        self.make(attempts=3, delay=2.0)
        self.small_body_in()
        self.assertEqual(self.pool.placements, [(0.0, "b1", ())])
        [first] = self.exchanges("b1")
        first.refuse()

        self.assertEqual(self.store.named("abandon_write"), [("abandon_write", 1, False)])
        self.assertEqual(self.pool.reservations[0].released, 1)
        self.assertEqual(self.request.answers, [])

        self.clock.advance(1.75)
        self.assertEqual(len(self.pool.placements), 1)
        self.assertEqual(self.exchanges("b2"), [])
        self.assertEqual(len(self.store.named("begin_write")), 1)

        self.clock.advance(0.25)
        self.assertEqual(self.pool.placements, [(0.0, "b1", ()), (2.0, "b2", ("b1",))])
        self.assertEqual(len(self.exchanges("b1")), 1)
        [second] = self.exchanges("b2")
        second.connect()
        self.assertEqual(second.received, BODY)
        self.assertEqual(self.request.answers, [])
        second.stored()

        self.assertEqual(
            self.store.calls,
            [
                ("get_bucket", "vb"),
                ("begin_write", 1, "b1"),
                ("abandon_write", 1, False),
                ("begin_write", 2, "b2"),
                ("commit_object", 2, "b2"),
            ],
        )
        self.assertEqual(self.pool.usage, [("b2", len(BODY), 1)])
        self.assertEqual(self.request.answers, [200])
        self.assertTrue(self.request.finished)
        self.assertSettled()


class NoRetryTests(RetryTestCase):
    def test_one_attempt_answers_the_backend_error(self) -> None:
        """
        With C{retry_attempts} 1 a refused connection is the client's answer at
        once: the 503 that backend_error_to_s3 makes of a status-0 backend
        failure.  The intent is abandoned and nothing is placed again, ever.
        """
        self.make(attempts=1, delay=2.0)
        self.small_body_in()
        [first] = self.exchanges("b1")
        first.refuse()

        self.assertAnsweredError(
            503, "ServiceUnavailable", "The storage backend failed; the data was not stored."
        )
        self.assertEqual(self.store.named("abandon_write"), [("abandon_write", 1, False)])
        self.clock.advance(3600)
        self.assertEqual(self.placed_on(), ["b1"])
        self.assertEqual(self.exchanges("b2"), [])
        self.assertEqual(self.store.named("commit_object"), [])
        self.assertEqual(self.request.answers, [503])
        self.assertSettled()

    def test_backend_rejecting_the_body_is_not_retried(self) -> None:
        """
        A backend that took the whole (replayable) body and answered 403 is
        no outage: the write is not placed again at any time, and the object
        it may hold is queued for deletion.
        """
        self.make(attempts=3, delay=2.0)
        self.small_body_in()
        [first] = self.exchanges("b1")
        first.connect()
        self.assertEqual(first.received, BODY)
        first.answer(403, body=b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>")

        self.assertAnsweredError(503, "ServiceUnavailable")
        self.assertEqual(self.store.named("abandon_write"), [("abandon_write", 1, True)])
        for _ in range(10):
            self.clock.advance(1.0)
        self.assertEqual(self.placed_on(), ["b1"])
        self.assertEqual(self.exchanges("b2"), [])
        self.assertSettled()

    def test_connection_lost_while_the_body_streams_is_not_retried(self) -> None:
        """
        The body was still arriving when the backend request opened (nothing
        replayable is kept), and the connection is lost after body bytes
        went out: the backend error is not retryable, and the write is not
        placed again at any time.
        """
        self.make(attempts=3, delay=2.0)
        self.upload.data_received(BODY[:400])
        self.upload.data_received(BODY[400:800])
        self.store.bucket.callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        [first] = self.exchanges("b1")
        first.connect()
        self.assertEqual(first.received, BODY[:400])
        first.drop()
        self.assertEqual(self.store.named("abandon_write"), [("abandon_write", 1, True)])

        # The rest of the body is drained, then the client hears the failure.
        self.upload.data_received(BODY[800:])
        self.request.body_in()
        self.gateway.handle(cast(Any, self.request))
        self.assertAnsweredError(503, "ServiceUnavailable")
        for _ in range(10):
            self.clock.advance(1.0)
        self.assertEqual(self.placed_on(), ["b1"])
        self.assertEqual(self.exchanges("b2"), [])
        self.assertEqual(self.store.named("commit_object"), [])
        self.assertSettled()

    def test_outage_after_a_replayable_body_went_out_is_retried(self) -> None:
        """
        The counterpart of the two tests above: the same lost connection
        after a small body that was all in (and so kept for replay) is
        retried, after C{retry_delay}, with the whole body sent again.
        """
        self.make(attempts=3, delay=2.0)
        self.small_body_in()
        [first] = self.exchanges("b1")
        first.connect()
        self.assertEqual(first.received, BODY)
        first.drop()
        self.assertEqual(self.store.named("abandon_write"), [("abandon_write", 1, True)])
        self.clock.advance(1.75)
        self.assertEqual(self.exchanges("b2"), [])
        self.clock.advance(0.25)
        [second] = self.exchanges("b2")
        second.connect()
        self.assertEqual(second.received, BODY)
        second.stored()
        self.assertEqual(self.store.named("commit_object"), [("commit_object", 2, "b2")])
        self.assertEqual(self.request.answers, [200])
        self.assertSettled()


class EveryBackendFailsTests(RetryTestCase):
    def test_exactly_retry_attempts_placements_spaced_by_retry_delay(self) -> None:
        """
        Three backends refuse in turn: three placements (C{retry_attempts}),
        each C{retry_delay} after the previous failure and none sooner, then
        the last backend's error at once, and no timer left.
        """
        self.make(attempts=3, delay=0.5, names=("b1", "b2", "b3"))
        self.small_body_in()
        for number, name in enumerate(("b1", "b2", "b3")):
            self.assertEqual(len(self.pool.placements), number + 1)
            [exchange] = self.exchanges(name)
            exchange.refuse()
            if name != "b3":
                self.clock.advance(0.25)
                self.assertEqual(len(self.pool.placements), number + 1)
                self.assertEqual(self.request.answers, [])
                self.clock.advance(0.25)

        self.assertEqual(
            self.pool.placements,
            [(0.0, "b1", ()), (0.5, "b2", ("b1",)), (1.0, "b3", ("b1", "b2"))],
        )
        self.assertAnsweredError(
            503, "ServiceUnavailable", "The storage backend failed; the data was not stored."
        )
        self.assertEqual(self.clock.seconds(), 1.0)
        self.assertEqual(
            self.store.named("abandon_write"),
            [("abandon_write", 1, False), ("abandon_write", 2, False), ("abandon_write", 3, False)],
        )
        self.assertEqual(self.store.named("commit_object"), [])
        self.assertSettled()
        self.clock.advance(3600)
        self.assertEqual(len(self.pool.placements), 3)

    def test_fewer_backends_than_attempts(self) -> None:
        """
        Failed backends stay excluded for the rest of the upload: with two
        backends and three attempts, the third placement (after one more
        C{retry_delay}) finds none and the client hears that none is available.
        """
        self.make(attempts=3, delay=0.5, names=("b1", "b2"))
        self.small_body_in()
        self.exchanges("b1")[0].refuse()
        self.clock.advance(0.5)
        self.exchanges("b2")[0].refuse()
        self.assertEqual(self.request.answers, [])
        self.clock.advance(0.5)
        self.assertEqual(self.placed_on(), ["b1", "b2"])
        self.assertAnsweredError(
            503, "ServiceUnavailable", "No storage backend is available; try again later."
        )
        self.assertSettled()


class ClientLeavesDuringTheDelayTests(RetryTestCase):
    def leave_during_the_delay(self) -> None:
        self.make(attempts=3, delay=2.0)
        self.small_body_in()
        self.exchanges("b1")[0].refuse()
        self.clock.advance(1.0)
        self.request.connection_lost()

    def test_nothing_is_left_behind(self) -> None:
        """
        The client leaves while the upload waits out C{retry_delay}: once the
        delay is over nothing is committed, every intent taken is abandoned,
        every reservation released, every backend request settled, no timer
        is left and nobody is answered.
        """
        self.leave_during_the_delay()
        self.clock.advance(1.0)
        self.clock.advance(3600)
        self.assertEqual(self.store.named("commit_object"), [])
        intents = [call[1] for call in self.store.named("begin_write")]
        self.assertEqual([call[1] for call in self.store.named("abandon_write")], intents)
        self.assertEqual(self.request.answers, [])
        self.assertSettled()

    def test_no_second_placement(self) -> None:
        """
        The client leaves while the upload waits out C{retry_delay}: the
        upload places nothing more, records no second intent and opens no
        request to another backend.
        """
        self.leave_during_the_delay()
        self.clock.advance(1.0)
        self.assertEqual(self.placed_on(), ["b1"])
        self.assertEqual(len(self.store.named("begin_write")), 1)
        self.assertEqual(self.exchanges("b2"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
