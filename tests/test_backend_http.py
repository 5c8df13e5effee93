"""
The backend HTTP client (s3balance/backends/client.py) against a scripted
HTTP server on 127.0.0.1: framing (length, chunked, close), persistent
connections and their reuse, 1xx answers, broken answers, request bodies
with backpressure and aborts, cancellation, and the stale-connection retry.
The S3 behaviour through real backends is covered by the gateway suites.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Optional

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web._newclient import RequestGenerationFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from s3balance.backends.client import HTTPClient
from s3balance.backends.response import BadResponse, ResponseHeaders
from s3balance.backends.streaming import BodyAborted, PipeProducer, relay_body


class _ServerConnection(Protocol):
    """Reads requests (head + Content-Length body) and lets the test script answer."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.buffer = b""
        self.requests: list[tuple[bytes, bytes]] = []

    def connectionMade(self) -> None:
        self.server.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if self.server.on_head is not None:
                self.server.on_head(self, head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.requests.append((head, body))
            self.server.answer(self, head, body)

    def connectionLost(self, reason=None) -> None:
        self.server.lost.append(self)


class ScriptedServer(Factory):
    def __init__(self, answer: Callable[[_ServerConnection, bytes, bytes], None]) -> None:
        self.answer = answer
        self.on_head: Optional[Callable[[_ServerConnection, bytes], None]] = None
        self.connections: list[_ServerConnection] = []
        self.lost: list[_ServerConnection] = []

    def buildProtocol(self, addr) -> _ServerConnection:
        return _ServerConnection(self)


def head(method: str = "GET", path: str = "/b/k", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


def answer_once_then_close(connection: _ServerConnection, head: bytes, body: bytes) -> None:
    """The first request on a connection is answered; the next finds it closed (a backend's idle timeout)."""
    if len(connection.requests) == 1:
        connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    else:
        connection.transport.loseConnection()


class _Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.done.callback([reason])  # (a Failure passed to callback would become an errback)


class HTTPClientTests(TestCase):
    def setUp(self) -> None:
        self.client = HTTPClient(reactor, idle_timeout=30.0, connect_timeout=5.0)
        self.addCleanup(self.client.closeCachedConnections)

    def serve(self, answer) -> ScriptedServer:
        server = ScriptedServer(answer)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.loseConnection() for c in server.connections])
        self.key = ("http", "127.0.0.1", port.getHost().port)
        return server

    @inlineCallbacks
    def fetch(self, request: bytes = b"", body=None, method_is_head: bool = False):
        response = yield self.client.request(self.key, request or head(), body, method_is_head)
        collect = _Collect()
        response.deliverBody(collect)
        (reason,) = yield collect.done
        return response, collect.data, reason

    @inlineCallbacks
    def test_content_length_and_reuse(self) -> None:
        server = self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\nhello"))
        for _ in range(3):
            response, data, reason = yield self.fetch()
            self.assertEqual((response.code, data, response.length), (200, b"hello", 5))
            self.assertTrue(reason.check(ResponseDone))
            self.assertEqual(response.headers.getRawHeaders(b"ETag"), [b'"x"'])
            self.assertEqual(response.headers.getRawHeaders("etag"), ['"x"'])
        self.assertEqual(len(server.connections), 1)
        self.assertEqual(len(server.connections[0].requests), 3)
        self.assertEqual(self.client.idle_connections(), 1)

    @inlineCallbacks
    def test_an_address_is_connected_to_without_name_resolution(self) -> None:
        """Seen in CI: getaddrinfo("127.0.0.1") failed under load, and a backend was marked down for it."""

        class Unresolvable:
            def resolveHostName(self, *args, **kwargs):
                raise AssertionError("an IP address went to the resolver")

        self.patch(reactor, "_nameResolver", Unresolvable())
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        response, data, _ = yield self.fetch()
        self.assertEqual((response.code, data), (200, b"ok"))

    @inlineCallbacks
    def test_connections_send_without_waiting_for_acks(self) -> None:
        """TCP_NODELAY both ways: a body written after its head must not wait for the peer's delayed ACK (40 ms)."""
        import socket

        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        from s3balance.http.channel import S3Channel

        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        yield self.fetch()
        (backend,) = self.client._idle[self.key]
        self.assertEqual(backend.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)

        accepted: list = []

        class Channel(S3Channel):
            def connectionMade(self) -> None:
                super().connectionMade()
                accepted.append(self.transport)

        port = reactor.listenTCP(0, Factory.forProtocol(Channel), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Protocol())
        self.addCleanup(client.transport.loseConnection)
        while not accepted:
            yield deferLater(reactor, 0.01, lambda: None)
        self.addCleanup(accepted[0].loseConnection)
        self.assertEqual(accepted[0].getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)

    def test_cancelled_while_connecting_fails_with_cancelled_error(self) -> None:
        """Seen in CI: an upload aborted for a bad digest before its backend connection was up
        failed with ConnectingCancelledError, which was counted against the backend."""
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        d = self.client.request(self.key, head())
        d.cancel()
        self.failureResultOf(d, CancelledError)

    @inlineCallbacks
    def test_empty_answer_frees_the_connection_before_it_is_delivered(self) -> None:
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n"))
        seen = []
        yield self.client.request(self.key, head("DELETE")).addCallback(
            lambda response: seen.append((response.code, self.client.idle_connections()))
        )
        self.assertEqual(seen, [(204, 1)])

    @inlineCallbacks
    def test_chunked_byte_by_byte(self) -> None:
        answer = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"
        )

        def drip(c, h, b):
            for i in range(len(answer)):
                c.transport.write(answer[i : i + 1])

        server = self.serve(drip)
        response, data, reason = yield self.fetch()
        self.assertEqual(data, b"hello 0123456789")
        self.assertTrue(reason.check(ResponseDone))
        yield self.fetch()
        self.assertEqual(len(server.connections), 1)

    @inlineCallbacks
    def test_body_until_close(self) -> None:
        def answer(c, h, b):
            c.transport.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
            c.transport.loseConnection()

        self.serve(answer)
        response, data, reason = yield self.fetch()
        self.assertEqual(data, b"all of it")
        self.assertTrue(reason.check(PotentialDataLoss))
        self.assertEqual(self.client.idle_connections(), 0)

    @inlineCallbacks
    def test_head_has_no_body_and_continue_is_skipped(self) -> None:
        server = self.serve(
            lambda c, h, b: c.transport.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
            )
        )
        response, data, reason = yield self.fetch(head("HEAD"), method_is_head=True)
        self.assertEqual((response.code, data, response.length), (200, b"", 0))
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [b"1234"])
        yield self.fetch(head("HEAD"), method_is_head=True)
        self.assertEqual(len(server.connections), 1)

    @inlineCallbacks
    def test_connection_close_is_honoured(self) -> None:
        server = self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
        yield self.fetch()
        yield self.fetch()
        self.assertEqual(len(server.connections), 2)

    @inlineCallbacks
    def test_cut_mid_body_fails_the_body(self) -> None:
        def answer(c, h, b):
            c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            c.transport.loseConnection()

        self.serve(answer)
        response, data, reason = yield self.fetch()
        self.assertEqual(data, b"partial")
        self.assertTrue(reason.check(ResponseFailed))

    @inlineCallbacks
    def test_garbage_answer(self) -> None:
        self.serve(lambda c, h, b: c.transport.write(b"SMTP ready\r\n\r\n"))
        failure = yield self.assertFailure(self.client.request(self.key, head()), ResponseNeverReceived)
        self.assertTrue(failure.reasons[0].check(BadResponse))

    @inlineCallbacks
    def test_conflicting_lengths_are_refused(self) -> None:
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"))
        yield self.assertFailure(self.client.request(self.key, head()), ResponseNeverReceived)

    @inlineCallbacks
    def test_body_is_delivered_when_asked_late(self) -> None:
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
        response = yield self.client.request(self.key, head())
        yield deferLater(reactor, 0.05, lambda: None)
        collect = _Collect()
        response.deliverBody(collect)
        (reason,) = yield collect.done
        self.assertEqual(collect.data, b"abc")
        self.assertTrue(reason.check(ResponseDone))

    @inlineCallbacks
    def test_stale_connection_is_retried_without_a_body(self) -> None:
        server = self.serve(answer_once_then_close)
        yield self.fetch()
        response, data, _ = yield self.fetch()
        self.assertEqual(data, b"ok")
        self.assertEqual(len(server.connections), 2)

    @inlineCallbacks
    def test_stale_connection_with_a_body_fails(self) -> None:
        self.serve(answer_once_then_close)
        yield self.fetch()
        body = PipeProducer(3)
        body.write(b"abc")
        body.finish()
        yield self.assertFailure(
            self.client.request(self.key, head("PUT", extra="Content-Length: 3\r\n"), body), ResponseNeverReceived
        )

    @inlineCallbacks
    def test_streamed_body(self) -> None:
        server = self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n"))
        size = 8 * 1024 * 1024
        body = PipeProducer(size)
        d = self.client.request(self.key, head("PUT", extra=f"Content-Length: {size}\r\n"), body)
        chunk = b"z" * 65536
        for _ in range(size // len(chunk)):
            body.write(chunk)
            yield deferLater(reactor, 0, lambda: None)
        body.finish()
        response = yield d
        self.assertEqual(response.code, 200)
        self.assertEqual(len(server.connections[0].requests[0][1]), size)
        yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(self.client.idle_connections(), 1)

    @inlineCallbacks
    def test_aborted_body_fails_and_drops_the_connection(self) -> None:
        server = self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        body = PipeProducer(100)
        d = self.client.request(self.key, head("PUT", extra="Content-Length: 100\r\n"), body)
        body.write(b"x" * 10)
        yield deferLater(reactor, 0.05, lambda: None)
        body.abort(BodyAborted("client went away"))
        failure = yield self.assertFailure(d, RequestGenerationFailed)
        self.assertTrue(failure.reasons[0].check(BodyAborted))
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(server.lost), 1)
        self.assertEqual(server.connections[0].requests, [])

    @inlineCallbacks
    def test_early_error_answer_stops_the_body(self) -> None:
        server = self.serve(lambda c, h, b: None)
        server.on_head = lambda c, h: c.transport.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nnope!!!"
        ) if not c.requests else None
        body = PipeProducer(1000)
        d = self.client.request(self.key, head("PUT", extra="Content-Length: 1000\r\n"), body)
        body.write(b"x" * 10)
        response = yield d
        self.assertEqual(response.code, 403)
        collect = _Collect()
        response.deliverBody(collect)
        yield collect.done
        self.assertEqual(collect.data, b"nope!!!")
        self.assertTrue(body.stopped)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.client.idle_connections(), 0)
        self.assertEqual(len(server.lost), 1)

    @inlineCallbacks
    def test_cancel_drops_the_connection(self) -> None:
        server = self.serve(lambda c, h, b: None)  # never answers
        d = self.client.request(self.key, head())
        yield deferLater(reactor, 0.05, lambda: None)
        d.cancel()
        yield self.assertFailure(d, CancelledError)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(server.lost), 1)

    @inlineCallbacks
    def test_refused(self) -> None:
        server = self.serve(lambda c, h, b: None)
        del server
        port = self.key[2]
        # A port nobody listens on: the one we had, once closed.
        listening = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        port = listening.getHost().port
        yield listening.stopListening()
        yield self.assertFailure(self.client.request(("http", "127.0.0.1", port), head()), ConnectError)

    @inlineCallbacks
    def test_idle_connections_expire(self) -> None:
        self.client.idle_timeout = 0.1
        server = self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        yield self.fetch()
        self.assertEqual(self.client.idle_connections(), 1)
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(self.client.idle_connections(), 0)
        self.assertEqual(len(server.lost), 1)

    @inlineCallbacks
    def test_pausing_the_body_pauses_the_socket(self) -> None:
        size = 4 * 1024 * 1024
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size))
        response = yield self.client.request(self.key, head())

        class Slow(_Collect):
            def connectionMade(self) -> None:
                self.transport.pauseProducing()

        slow = Slow()
        response.deliverBody(slow)
        yield deferLater(reactor, 0.2, lambda: None)
        held = len(slow.data)
        self.assertLess(held, size)
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(slow.data), held)  # nothing more while paused
        slow.transport.resumeProducing()
        (reason,) = yield slow.done
        self.assertEqual(len(slow.data), size)
        self.assertTrue(reason.check(ResponseDone))


    @inlineCallbacks
    def test_request_and_relay_leave_no_cycles(self) -> None:
        """
        A finished exchange is freed by reference counting alone: a cycle would
        keep each request's objects (response, relay, the client's request) until
        the collector's next full pass, which costs CPU and stalls the reactor.
        """
        self.serve(lambda c, h, b: c.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndata"))
        yield self.fetch()  # warm: one connection

        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        response = yield self.client.request(self.key, head())
        received: list[bytes] = []
        done, _ = relay_body(response, received.append, lambda producer: None, 4, idle_timeout=5.0, clock=reactor)
        yield done
        watched = weakref.ref(response)
        del response, done
        yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(received, [b"data"])
        self.assertIsNone(watched(), "the response (and what it holds) outlived the exchange")


class EagerWriteTests(TestCase):
    """tune_connection's eager writes: straight to the socket when nothing is queued, else Twisted's queue."""

    @inlineCallbacks
    def connected_pair(self):
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        from s3balance.http.transport import tune_connection

        received: list[bytes] = []
        done: Deferred = Deferred()

        class Sink(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason) -> None:
                done.callback(b"".join(received))

        port = reactor.listenTCP(0, Factory.forProtocol(Sink), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sender = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Protocol())
        tune_connection(sender.transport)
        return sender.transport, done

    @inlineCallbacks
    def test_a_small_write_goes_out_without_the_reactor(self) -> None:
        transport, done = yield self.connected_pair()
        transport.write(b"GET / HTTP/1.1\r\n\r\n")
        self.assertNotIn(transport, reactor.getWriters())  # sent, nothing queued
        transport.writeSequence([b"a", b"b", b"c"])
        self.assertNotIn(transport, reactor.getWriters())
        transport.loseConnection()
        self.assertEqual((yield done), b"GET / HTTP/1.1\r\n\r\nabc")

    @inlineCallbacks
    def test_what_the_kernel_does_not_take_is_queued_in_order(self) -> None:
        transport, done = yield self.connected_pair()
        import socket

        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        pieces = [bytes([65 + i % 26]) * 300_000 for i in range(8)]
        for piece in pieces:
            transport.write(piece)
        self.assertIn(transport, reactor.getWriters())  # the rest waits for the socket
        transport.write(b"end")
        transport.loseConnection()
        self.assertEqual((yield done), b"".join(pieces) + b"end")

    @inlineCallbacks
    def test_corked_writes_go_out_together_and_before_a_close(self) -> None:
        transport, done = yield self.connected_pair()
        sends: list = []
        original = transport.writeSomeData
        transport.writeSomeData = lambda data: sends.append(bytes(data)) or original(data)
        transport.cork()
        transport.write(b"head;")
        transport.writeSequence([b"body", b";"])
        self.assertEqual(sends, [])
        transport.uncork()
        self.assertEqual(sends, [b"head;body;"])
        transport.cork()
        transport.write(b"last")
        transport.loseConnection()  # uncorks first
        self.assertEqual((yield done), b"head;body;last")

    @inlineCallbacks
    def test_nothing_written_after_an_abort_is_sent(self) -> None:
        """An aborted upload's remaining bytes must never reach the backend (it would complete the object)."""
        transport, done = yield self.connected_pair()
        transport.write(b"before")
        transport.abortConnection()
        transport.write(b"after")
        transport.cork()
        transport.write(b"corked")
        transport.uncork()
        self.assertEqual((yield done), b"before")

    @inlineCallbacks
    def test_a_pull_producer_is_still_resumed(self) -> None:
        """A pull producer is asked for more only when a queued write drains: no eager writes for it."""
        from twisted.internet.interfaces import IPullProducer

        transport, done = yield self.connected_pair()

        @implementer(IPullProducer)
        class Counter:
            sent = 0

            def resumeProducing(self) -> None:
                self.sent += 1
                transport.write(b"x" * 1000)
                if self.sent == 5:
                    transport.unregisterProducer()
                    transport.loseConnection()

            def stopProducing(self) -> None:
                pass

        transport.registerProducer(Counter(), False)
        self.assertEqual((yield done), b"x" * 5000)


class ResponseHeadersTests(TestCase):
    def test_lookups(self) -> None:
        headers = ResponseHeaders({b"etag": [b'"a"'], b"x-amz-meta-k": [b"v1", b"v2"]})
        self.assertTrue(headers.hasHeader(b"ETag"))
        self.assertTrue(headers.hasHeader("etag"))
        self.assertEqual(headers.getRawHeaders(b"X-Amz-Meta-K"), [b"v1", b"v2"])
        self.assertEqual(headers.getRawHeaders("missing", ["d"]), ["d"])
        headers.addRawHeader("New", "x")
        self.assertEqual(headers.getRawHeaders(b"new"), [b"x"])
        headers.removeHeader(b"ETAG")
        self.assertFalse(headers.hasHeader("etag"))
        self.assertEqual(dict(headers.getAllRawHeaders())[b"new"], [b"x"])


class RequestHeadTests(TestCase):
    """What Backend._request hands the client: one head, no header smuggled in by a value."""

    def test_line_breaks_in_values_are_folded(self) -> None:
        from s3balance.backends.backend import Backend
        from s3balance.config import BackendConfig

        heads: list[bytes] = []

        class Recorder:
            def request(self, key, head, body, method_is_head):
                heads.append(head)
                return Deferred()

        config = BackendConfig(
            name="bk", endpoint="http://127.0.0.1:9", access_key_id="a", secret_access_key="s", path_style=True
        )
        backend = Backend(config, Recorder(), reactor)  # type: ignore[arg-type]
        backend._request("PUT", "dir/k ey", headers={"x-amz-meta-a": "x\ry", "x-amz-meta-b": "p\nq: r"}, length=3)
        (sent,) = heads
        lines = sent.split(b"\r\n")
        self.assertEqual(lines[0], b"PUT /bk/dir/k%20ey HTTP/1.1")
        self.assertIn(b"Host: 127.0.0.1:9", lines)
        self.assertIn(b"x-amz-meta-a: x y", lines)
        self.assertIn(b"x-amz-meta-b: p q: r", lines)
        self.assertIn(b"Content-Length: 3", lines)
        self.assertTrue(sent.endswith(b"\r\n\r\n"))
        self.assertEqual(sent.count(b"\n"), sent.count(b"\r\n"))
