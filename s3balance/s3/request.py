"""
The HTTP request object of the S3 face.

C{twisted.web.server.Request} collects the whole body (into a temporary file
above 100 kB) and only then renders.  For an S3 gateway that doubles latency
and disk I/O and caps object size by disk, so L{S3Request} acts as soon as the
headers are complete (C{gotLength}): it authenticates and routes the request
there, and for operations whose body is object data it hands every body chunk
(C{handleContentChunk}) to a streaming upload instead of a file.  Other bodies
(small XML documents) are kept in memory up to L{MAX_SMALL_BODY}.

A request that is rejected before its body was read is answered at once when
the client waits for C{100 Continue} (the body is then never sent), and
otherwise after the body was read and dropped.  Requests to our own paths
(C{/health}, C{/metrics}, C{/status}, C{/admin/}) are refused at their
headers (a missing token, a body over a few KiB) and answered at once.

L{S3Channel} enforces the server's timeouts and L{S3Site} its connection
caps (see those classes).
"""

from __future__ import annotations

import functools
import io
import os
from http import HTTPStatus
from typing import Any, Optional

from twisted.internet import interfaces, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http_headers import Headers

from s3balance.backends.http import send_together, tune_connection
from s3balance.errors import S3Error
from s3balance.s3 import cors
from s3balance.s3.resource import body_limit

log = Logger()

MAX_SMALL_BODY = 4 * 1024 * 1024
# Seconds a connection we answered early (before its request body was read)
# stays open, reading and dropping what the client still sends, so that the
# kernel does not reset the connection under the answer before the client
# read it.
LINGER = 5.0


class S3ResponseHeaders(Headers):
    """
    Response headers with S3's spelling: Twisted title-cases every name, but
    SDKs take user metadata names from the C{x-amz-meta-*} headers as they
    arrive, and S3 sends all C{x-amz-*} names in lower case.
    """

    def getAllRawHeaders(self):
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(b"X-Amz-") else name), values


def new_request_id() -> str:
    return os.urandom(8).hex().upper()


class S3Request(server.Request):
    """
    @ivar call: the routed and authenticated S3 call (set in C{gotLength}).
    @ivar body_sink: the streaming consumer of the body, for object uploads.
    @ivar early_error: an error found before the body was read, answered when
        the request is processed.
    """

    # S3 answers without a body carry no Content-Type.
    defaultContentType = None
    content: Any

    @property
    def _transport(self) -> Any:
        return self.channel.transport

    @property
    def _channel(self) -> Any:
        return self.channel

    @property
    def _site(self) -> Any:
        return self.channel.site  # type: ignore[attr-defined]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = S3ResponseHeaders()
        self.request_id = new_request_id()
        self.call = None
        self.body_sink = None
        self.early_error: Optional[S3Error] = None
        self.expects_continue = False
        self.continue_sent = False
        self.answered_early = False
        self._discarding = False
        self._small_body_size = 0
        self._small_body_limit = MAX_SMALL_BODY
        # The resource of one of our own paths (None for S3 requests).
        self.own_resource = None
        # Fires True when the whole body is in, False when the client left first.
        self.body_received: Deferred[bool] = Deferred()
        self.whole_body = False  # True once body_received fired True

    # -- headers complete ---------------------------------------------------

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        if channel._path[:1] != b"/":
            self._absolute_form(channel)
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version
        expect = self.requestHeaders.getRawHeaders(b"expect")
        self.expects_continue = bool(
            expect and expect[0].lower() == b"100-continue" and self.clientproto == b"HTTP/1.1"
        )
        self.content = io.BytesIO()
        site = self._site
        gateway = site.gateway
        gateway.track(self)
        policy = gateway.config.s3api.cors
        if policy.enabled:
            origin = self.requestHeaders.getRawHeaders(b"origin")
            if origin:
                for name, value in cors.answer_headers(policy, origin[0].decode("latin-1")):
                    self.responseHeaders.setRawHeaders(name, [value])
        try:
            self.own_resource = site.resource.fixed_resource(self)
            if self.own_resource is not None:
                # Open to anyone: refused (or over its small limit) at the
                # headers, so no body is held for a request without a token.
                self._small_body_limit = body_limit(self.own_resource)
                if length != 0:
                    answer = site.resource.answer_before_body(self.own_resource, self, length)
                    if answer is not None:
                        self.answer_now(answer)
                return
            self.call = gateway.prepare(self, length)
            if self.call is not None and self.call.streaming:
                # We send 100 Continue ourselves once a backend is ready to
                # take the body; the channel must not send it now.
                self.requestHeaders.removeHeader(b"expect")
                self.content = None
                self.body_sink = gateway.start_upload(self, self.call, length)
            elif length is not None and length > MAX_SMALL_BODY:
                raise S3Error("EntityTooLarge", "The request body is too large for this operation.")
        except S3Error as error:
            self.reject(error)
        except Exception:
            log.failure("preparing request {id} failed", id=self.request_id)
            self.reject(S3Error("InternalError"))

    def _absolute_form(self, channel) -> None:
        """
        A request line with an absolute URI (as clients send to a proxy,
        RFC 9112 §3.2.2): its authority replaces Host and the rest is used
        as the path, so it is served like the origin-form request.
        """
        scheme, sep, rest = channel._path.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            return
        authority, slash, path = rest.partition(b"/")
        channel._path = b"/" + path
        if authority:
            self.requestHeaders.setRawHeaders(b"host", [authority])

    def reject(self, error: S3Error) -> None:
        """
        Answer C{error} without reading the body: at once when the client is
        still waiting for 100 Continue, else once the body was drained.
        """
        self.body_sink = None
        self.content = None
        self._discarding = True
        if self.expects_continue and not self.continue_sent:
            self.requestHeaders.removeHeader(b"expect")
            self.answer_raw(error)
        else:
            self.early_error = error
            self.discard_body()

    def discard_body(self) -> None:
        """Read and drop the rest of the body (to answer an error after it)."""
        self._discarding = True
        self._transport.resumeProducing()

    def answer_raw(self, error: S3Error) -> None:
        """Write a complete error response and close the connection."""
        if self.answered_early or self.finished or self.startedWriting:
            return
        self.answered_early = True
        self.setResponseCode(error.status)
        body = error.to_xml(self.uri.split(b"?")[0].decode("latin-1"), self.request_id)
        try:
            reason = HTTPStatus(error.status).phrase
        except ValueError:
            reason = "Error"
        head = (
            f"HTTP/1.1 {error.status} {reason}\r\n"
            f"Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {self.request_id}\r\n"
            f"Server: s3balance\r\n"
            f"Connection: close\r\n\r\n"
        ).encode("latin-1")
        self._transport.write(head + body)
        self._channel.close_after_answer()
        self._site.gateway.observe_early_answer(self, error)

    def answer_now(self, body: bytes) -> None:
        """
        Send the response set up on this request (its code and headers) with
        C{body} before the request body was read, and close the connection.
        For our own paths; S3 errors go through L{answer_raw}.
        """
        if self.answered_early or self.finished or self.startedWriting:
            return
        self.answered_early = True
        self.body_sink = None
        self.content = None
        self._discarding = True
        # The channel would send 100 Continue after this answer.
        self.requestHeaders.removeHeader(b"expect")
        headers = self.responseHeaders
        headers.setRawHeaders(b"content-length", [str(len(body)).encode("ascii")])
        headers.setRawHeaders(b"connection", [b"close"])
        headers.setRawHeaders(b"server", [b"s3balance"])
        try:
            reason = HTTPStatus(self.code).phrase.encode("ascii")
        except ValueError:
            reason = b"Error"
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.code, reason)]
        for name, values in headers.getAllRawHeaders():
            lines.extend(name + b": " + value + b"\r\n" for value in values)
        lines.append(b"\r\n")
        if self.method != b"HEAD":
            lines.append(body)
        self._transport.write(b"".join(lines))
        self._channel.close_after_answer()

    def send_continue(self) -> None:
        if self.expects_continue and not self.continue_sent and not self.answered_early:
            self.continue_sent = True
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- body -----------------------------------------------------------------

    def handleContentChunk(self, data: bytes) -> None:
        if self._discarding:
            return
        if self.body_sink is not None:
            self.body_sink.data_received(data)
            return
        self._small_body_size += len(data)
        if self._small_body_size > self._small_body_limit:
            if self.own_resource is not None:
                self.answer_now(self._site.resource.too_large(self))
            else:
                self.reject(S3Error("EntityTooLarge", "The request body is too large for this operation."))
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.content is None:
            self.content = io.BytesIO()
        super().requestReceived(command, path, version)

    def process(self) -> None:
        if self.answered_early:
            return
        self.setHeader(b"x-amz-request-id", self.request_id.encode("ascii"))
        if not self.body_received.called:
            self.whole_body = True
            self.body_received.callback(True)
        if self.finished or self._disconnected:
            # Answered while the body was still arriving (an upload that
            # failed early and drained the rest).
            return
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self.body_received.called:
            self.body_received.callback(False)
        sink, self.body_sink = self.body_sink, None
        if sink is not None:
            # The upload goes on to its cleanup on its own; dropping it here
            # undoes the request <-> upload cycle, so both are freed as soon
            # as the cleanup ends.
            sink.client_gone(reason)

    def write(self, data: bytes) -> None:
        """
        The first write sends the head and this data in one piece: Twisted
        writes them one after the other, and our transports send at once
        (L{s3balance.backends.http._EagerWrites}).
        """
        if self.startedWriting or not data or self.channel is None:
            super().write(data)
            return
        send_together(self.channel.transport, functools.partial(server.Request.write, self, data))

    def setHeader(self, name, value) -> None:
        # Twisted stamps its own name and version on every response.
        if name.lower() == b"server":
            value = b"s3balance"
        super().setHeader(name, value)

    @property
    def gone(self) -> bool:
        """The client connection is lost or the response is complete."""
        return bool(self._disconnected or self.finished)

    def finish(self) -> None:
        """
        Complete the response; nothing to do once the client has left (a
        client leaving is not an error: Twisted would raise C{RuntimeError}).
        """
        if self._disconnected:
            return
        super().finish()


# What a connection is doing, for its timeouts (S3Channel._phase).
_IDLE = 0  # between requests: idle_timeout (Twisted's TimeoutMixin)
_HEADERS = 1  # a request line and headers arriving: read_timeout from the first byte
_BODY = 2  # a request body arriving: read_timeout without a byte
_HANDLING = 3  # the whole request is in; it is being answered


class S3Channel(http.HTTPChannel):
    """
    The HTTP/1.1 connection, answering requests it cannot parse with S3 XML
    too, with the server's timeouts (when its factory is an L{S3Site}):

      - C{read_timeout}: a request's line and headers must be complete
        within it of their first byte, else the connection is closed; a
        request body that sends nothing for that long is answered 400
        RequestTimeout and the connection closed (an upload then fails
        through its client-gone path).  Time during which we hold the body
        back ourselves (reading paused for a backend, a client waiting for
        our 100 Continue) does not count.
      - C{write_timeout}: an answer the client takes no byte of for that
        long (the transport's write buffer full and not draining: we are
        paused as its producer) is cut off; the request's C{connectionLost}
        stops its backend download.
      - between requests, C{idle_timeout} (Twisted's C{timeOut}).

    All are no-progress timeouts: a transfer of any size that keeps moving
    is never cut off, however long it takes.
    """

    _host = None
    _phase = _IDLE
    # When the headers began, or when the body last moved.
    _since = 0.0
    _read_call: Any = None
    _write_call: Any = None
    _linger_call: Any = None
    _write_paused = False
    _paused_at = 0.0
    _unsent_at_pause: Optional[int] = None
    _lingering = False
    _read_timeout: Optional[float] = None
    _write_timeout: Optional[float] = None
    _clock: Any = None
    # The peer address the site counts this connection under (None: not counted).
    counted_as: Optional[str] = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # As for backend connections: 256 KiB reads and buffer (a backend
        # download pauses past it), TCP_NODELAY.
        tune_connection(self.transport)
        factory = getattr(self, "factory", None)
        self._read_timeout = getattr(factory, "read_timeout", None)
        self._write_timeout = getattr(factory, "write_timeout", None)
        self._clock = getattr(factory, "reactor", None)

    def getHost(self):
        # Every request asks; a connection's local address never changes, and
        # asking the kernel each time was a getsockname call per request.
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    # -- reading: headers and body within read_timeout ---------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._lingering:
            return  # answered already; dropped until the client closes
        timeout = self._read_timeout
        if timeout:
            if self._phase == _IDLE:
                self._phase = _HEADERS
                self._since = self._clock.seconds()
            elif self._phase == _BODY:
                self._since = self._clock.seconds()
        super().dataReceived(data)
        # A request whose headers (and body) came in one read needs no timer.
        if timeout and self._read_call is None and self._phase in (_HEADERS, _BODY) and not self._lingering:
            self._read_call = self.callLater(timeout, self._check_read)

    def allHeadersReceived(self) -> None:
        self._phase = _BODY
        if self._read_timeout and self.length != 0:
            self._since = self._clock.seconds()
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._phase = _HANDLING
        super().allContentReceived()

    def requestDone(self, request) -> None:
        self._phase = _IDLE
        super().requestDone(request)

    def _check_read(self) -> None:
        self._read_call = None
        timeout = self._read_timeout
        if not timeout or self._lingering or self.transport is None:
            return
        now = self._clock.seconds()
        if self._phase == _HEADERS:
            left = self._since + timeout - now
            if left > 0:
                self._read_call = self.callLater(left, self._check_read)
                return
            self._timed_out("headers", "the request line and headers did not arrive within {timeout}s")
            self._abort()
        elif self._phase == _BODY:
            if self._body_held_back():
                # Not the client's stall; its time starts again (checked a
                # few times per period, so it gets most of one after we resume).
                self._since = now
                self._read_call = self.callLater(timeout / 4, self._check_read)
                return
            left = self._since + timeout - now
            if left > 0:
                self._read_call = self.callLater(left, self._check_read)
                return
            self._timed_out("body", "the request body sent nothing for {timeout}s")
            request = self.requests[-1] if self.requests else None
            if request is not None and not request.startedWriting and not request.answered_early:
                request.answer_raw(
                    S3Error(
                        "RequestTimeout",
                        "Your socket connection to the server was not read from or written to within the "
                        "timeout period. Idle connections will be closed.",
                    )
                )
                # A client that takes no answer either is cut off after the linger.
            else:
                self._abort()

    def _body_held_back(self) -> bool:
        """Whether we, not the client, keep the body from arriving."""
        request = self.requests[-1] if self.requests else None
        if (
            request is not None
            and request.expects_continue
            and not request.continue_sent
            and not request.requestHeaders.hasHeader(b"expect")
        ):
            return True  # the client waits for the 100 Continue we send ourselves (uploads)
        return not _reading(self.transport)

    # -- writing: the client takes the answer within write_timeout -----------------

    def pauseProducing(self) -> None:
        # The transport's write buffer is full.
        super().pauseProducing()
        timeout = self._write_timeout
        if timeout and not self._write_paused:
            self._write_paused = True
            self._paused_at = self._clock.seconds()
            self._unsent_at_pause = _unsent(self.transport)
            if self._write_call is None:
                self._write_call = self.callLater(timeout, self._check_write)

    def resumeProducing(self) -> None:
        # Its write buffer drained.  The timer, if any, finds nothing to do.
        self._write_paused = False
        super().resumeProducing()

    def _check_write(self) -> None:
        self._write_call = None
        timeout = self._write_timeout
        if not self._write_paused or not timeout or self.transport is None:
            return
        now = self._clock.seconds()
        left = self._paused_at + timeout - now
        if left <= 0:
            unsent = _unsent(self.transport)
            if unsent is not None and self._unsent_at_pause is not None and unsent < self._unsent_at_pause:
                # A slow reader, but a reader: the buffer shrinks.
                self._paused_at, self._unsent_at_pause = now, unsent
                left = timeout
        if left > 0:
            self._write_call = self.callLater(left, self._check_write)
            return
        self._timed_out("write", "the client took no byte of the answer for {timeout}s")
        self._abort()

    # -- closing ------------------------------------------------------------------

    def close_after_answer(self) -> None:
        """
        Close the connection once a complete answer (written already) is
        sent, before the request body was read: the write side is shut once
        the answer is out, and what the client still sends is read and
        dropped for up to L{LINGER} seconds.  Closing with unread data would
        reset the connection, and a client still sending its body would lose
        the answer with it.
        """
        if self._lingering:
            return
        self._lingering = True
        self._cancel_read_timer()
        transport: Any = self.transport
        if interfaces.ISSLTransport.providedBy(transport) or not hasattr(transport, "loseWriteConnection"):
            # HTTPChannel's: it stops being the transport's producer first,
            # which a TLS layer waits for before it closes.
            self.loseConnection()
        else:
            transport.loseWriteConnection()
            transport.resumeProducing()  # an upload may have paused reading
        # A client that neither closes nor (over TLS) answers our close_notify.
        self._linger_call = self.callLater(LINGER, transport.abortConnection)

    def _cancel_read_timer(self) -> None:
        if self._read_call is not None:
            if self._read_call.active():
                self._read_call.cancel()
            self._read_call = None

    def _abort(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()

    def _timed_out(self, phase: str, what: str) -> None:
        timeout = self._write_timeout if phase == "write" else self._read_timeout
        transport: Any = self.transport
        peer = getattr(transport.getPeer(), "host", "?")
        log.info("closing the connection from {peer}: " + what, peer=peer, timeout=timeout)
        observe = getattr(getattr(self, "factory", None), "client_timed_out", None)
        if observe is not None:
            observe(phase)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_read_timer()
        for name in ("_write_call", "_linger_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        self._write_paused = False
        if self.counted_as is not None:
            self.factory.connection_closed(self)
        super().connectionLost(reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        error = S3Error("BadRequest", "The request line or its headers could not be parsed.", status=400)
        request_id = new_request_id()
        body = error.to_xml("", request_id)
        transport: Any = self.transport
        transport.write(
            (
                "HTTP/1.1 400 Bad Request\r\n"
                "Content-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"x-amz-request-id: {request_id}\r\n"
                "Server: s3balance\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            + body
        )
        self.loseConnection()


def _socket_transport(transport) -> Any:
    """The TCP connection under C{transport} (a TLS layer, if any), or None."""
    for _ in range(3):
        if isinstance(transport, tcp.Connection):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def _reading(transport) -> bool:
    """Whether the reactor reads C{transport}'s socket (False while a body consumer paused it)."""
    connection = _socket_transport(transport)
    if connection is None:
        # twisted.internet.testing.StringTransport says so itself.
        return getattr(transport, "producerState", "producing") != "paused"
    return connection in connection.reactor.getReaders()


def _unsent(transport) -> Optional[int]:
    """Bytes written to C{transport} and not yet taken by the kernel, when known."""
    connection = _socket_transport(transport)
    if connection is None:
        return None
    return len(connection.dataBuffer) - connection.offset + connection._tempDataLen


class _Refused(Protocol):
    """A connection over a cap: 503 SlowDown (an S3 client backs off and retries), closed at once."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if interfaces.ISSLTransport.providedBy(transport):
            # Answering needs a TLS handshake the client may never finish.
            transport.abortConnection()
            return
        request_id = new_request_id()
        body = S3Error("SlowDown", "Too many connections; reduce your request rate.").to_xml("", request_id)
        transport.write(
            (
                "HTTP/1.1 503 Slow Down\r\n"
                "Content-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"x-amz-request-id: {request_id}\r\n"
                "Retry-After: 1\r\n"
                "Server: s3balance\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            + body
        )
        transport.loseConnection()


class S3Site(server.Site):
    """
    The daemon's HTTP site: L{S3Request}s on L{S3Channel}s, and the
    connection caps.  A connection over C{max_connections} open in all, or
    over C{max_connections_per_ip} from its address, is answered 503
    SlowDown and closed without reading anything (and counted in
    C{s3balance_connections_refused}).

    @param timeout: the idle timeout between requests (C{server.idle_timeout}).
    @param read_timeout: see L{S3Channel}; None for none.
    @param write_timeout: see L{S3Channel}; None for none.
    """

    requestFactory = S3Request
    # Plain HTTP/1.1 channels (no HTTP/2 negotiation), with S3 error documents.
    protocol = S3Channel  # type: ignore[assignment]
    noisy = False
    # Refusals are logged at most this often (a flood must not flood the log).
    REFUSAL_LOG_PERIOD = 60.0

    def __init__(
        self,
        resource,
        gateway,
        timeout: float = 60.0,
        *,
        read_timeout: Optional[float] = None,
        write_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        max_connections_per_ip: Optional[int] = None,
        reactor=None,
    ) -> None:
        super().__init__(resource, timeout=timeout, reactor=reactor)
        self.gateway = gateway
        self.displayTracebacks = False
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.open_connections = 0
        self.connections_by_ip: dict[str, int] = {}
        self._refused_since_log = 0
        self._refusal_logged_at: Optional[float] = None

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        limit = None
        if self.max_connections is not None and self.open_connections >= self.max_connections:
            limit = "total"
        elif (
            host is not None
            and self.max_connections_per_ip is not None
            and self.connections_by_ip.get(host, 0) >= self.max_connections_per_ip
        ):
            limit = "per_ip"
        if limit is not None:
            self._refuse(limit, host)
            refused = _Refused()
            refused.factory = self
            return refused
        channel = super().buildProtocol(addr)
        if host is not None:
            channel.counted_as = host
            self.open_connections += 1
            self.connections_by_ip[host] = self.connections_by_ip.get(host, 0) + 1
        return channel

    def connection_closed(self, channel: S3Channel) -> None:
        host, channel.counted_as = channel.counted_as, None
        if host is None:
            return
        self.open_connections -= 1
        count = self.connections_by_ip.get(host, 0) - 1
        if count > 0:
            self.connections_by_ip[host] = count
        else:
            self.connections_by_ip.pop(host, None)

    def _refuse(self, limit: str, host: Optional[str]) -> None:
        metrics = getattr(self.gateway, "metrics", None)
        if metrics is not None:
            metrics.connection_refused(limit)
        self._refused_since_log += 1
        now = self.reactor.seconds()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= self.REFUSAL_LOG_PERIOD:
            key = "server.max_connections" if limit == "total" else "server.max_connections_per_ip"
            log.warn(
                "refused {count} connection(s) over {key} (the last from {peer}); "
                "{open} open, {from_peer} from that address",
                count=self._refused_since_log,
                key=key,
                peer=host or "?",
                open=self.open_connections,
                from_peer=self.connections_by_ip.get(host or "", 0),
            )
            self._refused_since_log = 0
            self._refusal_logged_at = now

    def client_timed_out(self, phase: str) -> None:
        metrics = getattr(self.gateway, "metrics", None)
        if metrics is not None:
            metrics.client_timeout(phase)

    def log(self, request) -> None:
        # Access logging is the gateway's (with request id and operation).
        pass
