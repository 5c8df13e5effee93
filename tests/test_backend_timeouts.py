"""
The answer timeout of a backend upload, and replaying a small body: pure
logic on a controlled clock and a fake HTTP client (the daemon-level tests
are in tests/test_faults.py).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.backend import Backend, BackendError
from s3balance.backends.streaming import PipeProducer
from s3balance.config import BackendConfig


class Consumer:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def registerProducer(self, producer, streaming) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


class HeldHTTPClient:
    """Takes every request's body and never answers; records cancellations (a cut connection)."""

    def __init__(self) -> None:
        self.consumer = Consumer()
        self.cancelled = 0
        self.body: Optional[PipeProducer] = None

    def request(self, key, head: bytes, body=None, method_is_head: bool = False) -> Deferred:
        def cancel(d: Deferred) -> None:
            self.cancelled += 1
            d.errback(Failure(CancelledError()))

        self.body = body
        if body is not None:
            body.startProducing(self.consumer)
        return Deferred(cancel)


class AnswerTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.http = HeldHTTPClient()
        self.backend = Backend(BackendConfig(name="b1", endpoint="http://127.0.0.1:9"), self.http, self.clock)  # type: ignore[arg-type]
        self.backend.timeout = 5.0

    def test_no_answer_after_the_whole_body_is_a_timeout(self) -> None:
        body = PipeProducer(3)
        body.write(b"abc")
        body.finish()
        d = self.backend.put_object("vb/1", body, {})
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        error = self.failureResultOf(d, BackendError).value
        self.assertTrue(error.timed_out)
        self.assertEqual((error.status, error.retryable), (0, False))
        self.assertEqual(self.http.cancelled, 1)

    def test_the_answer_timeout_starts_with_the_last_byte(self) -> None:
        body = PipeProducer(6)
        d = self.backend.put_object("vb/1", body, {})
        body.write(b"abc")
        self.clock.advance(60)  # a slow client: the backend owes nothing yet
        self.assertNoResult(d)
        body.write(b"def")
        body.finish()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertTrue(self.failureResultOf(d, BackendError).value.timed_out)


class ReplayTests(SynchronousTestCase):
    def test_a_small_finished_body_is_replayed_whole(self) -> None:
        pipe = PipeProducer(6)
        pipe.write(b"abc")
        pipe.write(b"def")
        pipe.finish()
        self.assertTrue(pipe.replayable)
        copy = pipe.replica()
        first, second = Consumer(), Consumer()
        pipe.startProducing(first)
        self.assertFalse(pipe.replayable)
        self.assertTrue(copy.replayable)
        copy.startProducing(second)
        self.assertEqual((b"".join(first.data), b"".join(second.data)), (b"abcdef", b"abcdef"))
        self.assertTrue(copy.delivered.called)

    def test_a_body_still_arriving_is_not_replayable(self) -> None:
        pipe = PipeProducer(6)
        pipe.write(b"abc")
        self.assertFalse(pipe.replayable)
        self.assertRaises(RuntimeError, pipe.replica)


class TricklingProducer:
    stopped = False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


class StallingAnswer:
    """An answer whose head came and whose body sends what the test says, when it says."""

    code = 200

    def __init__(self) -> None:
        from s3balance.backends.response import ResponseHeaders

        self.headers = ResponseHeaders({})
        self.producer = TricklingProducer()
        self.protocol = None

    def deliverBody(self, protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.producer)


class AnsweringHTTPClient:
    def __init__(self, response) -> None:
        self.response = response

    def request(self, key, head: bytes, body=None, method_is_head: bool = False) -> Deferred:
        d: Deferred = Deferred()
        d.callback(self.response)
        return d


class AnswerBodyTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.answer = StallingAnswer()
        self.backend = Backend(
            BackendConfig(name="b1", endpoint="http://127.0.0.1:9"), AnsweringHTTPClient(self.answer), self.clock  # type: ignore[arg-type]
        )
        self.backend.timeout = 5.0

    def test_an_answer_body_that_stops_is_cut_off(self) -> None:
        d = self.backend.list_parts("vb/1", "u1")
        self.answer.protocol.dataReceived(b"<ListPartsResult>")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertTrue(self.failureResultOf(d, BackendError).value.timed_out)
        self.assertTrue(self.answer.producer.stopped)

    def test_a_trickling_answer_body_is_read_whole(self) -> None:
        from twisted.web.client import ResponseDone

        d = self.backend.list_parts("vb/1", "u1")
        for piece in (b"<ListPartsResult>", b" ", b"</ListPartsResult>"):
            self.clock.advance(4)
            self.answer.protocol.dataReceived(piece)
        self.answer.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(self.successResultOf(d), b"<ListPartsResult> </ListPartsResult>")
        self.assertFalse(self.answer.producer.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
