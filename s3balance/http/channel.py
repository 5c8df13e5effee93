"""
The S3 face's HTTP connection and site.

L{S3Channel} is the HTTP/1.1 connection: it answers what it cannot parse in
S3 XML, enforces the server's timeouts, and closes an early-answered
connection gently (L{LINGER}).  L{S3Site} makes L{S3Request}s
(L{s3balance.s3.request}) on L{S3Channel}s and enforces the connection caps.
"""

from __future__ import annotations

from typing import Any, Optional, cast

from twisted.internet import interfaces, tcp
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from s3balance.errors import S3Error
from s3balance.http.transport import tune_connection
from s3balance.s3.request import S3Request, new_request_id

log = Logger()

# Seconds a connection we answered early (before its request body was read)
# stays open, reading and dropping what the client still sends, so that the
# kernel does not reset the connection under the answer before the client
# read it.
LINGER = 5.0


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

    _host: Optional[interfaces.IAddress] = None
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

    def getHost(self) -> interfaces.IAddress:
        # Every request asks; a connection's local address never changes, and
        # asking the kernel each time was a getsockname call per request.
        if self._host is None:
            self._host = cast(interfaces.ITransport, self.transport).getHost()
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

    def requestDone(self, request: http.Request) -> None:
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


def _socket_transport(transport: Any) -> Any:
    """The TCP connection under C{transport} (a TLS layer, if any), or None."""
    for _ in range(3):
        if isinstance(transport, tcp.Connection):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def _reading(transport: Any) -> bool:
    """Whether the reactor reads C{transport}'s socket (False while a body consumer paused it)."""
    connection = _socket_transport(transport)
    if connection is None:
        # twisted.internet.testing.StringTransport says so itself.
        return getattr(transport, "producerState", "producing") != "paused"
    return connection in connection.reactor.getReaders()


def _unsent(transport: Any) -> Optional[int]:
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
        resource: IResource,
        gateway: Any,
        timeout: float = 60.0,
        *,
        read_timeout: Optional[float] = None,
        write_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        max_connections_per_ip: Optional[int] = None,
        reactor: Any = None,
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

    def buildProtocol(self, addr: Optional[interfaces.IAddress]) -> Any:  # an S3Channel, or _Refused over a cap
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

    def log(self, request: http.Request) -> None:
        # Access logging is the gateway's (with request id and operation).
        pass
