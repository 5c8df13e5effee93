"""
A lean HTTP/1.1 client for backend traffic, with persistent connections.

C{twisted.web.client.Agent} was a third of the daemon's CPU per small GET:
for every request it builds an endpoint (parsing and IDNA-checking the host
again), a C{Request}, a C{Headers} whose every value is sanitised, a state
machine per message, and it parses the answer line by line through
C{LineReceiver}.  A backend request here is one preformatted head (the
caller signs it and formats it once) and the answer's head is split in one
pass.  What it keeps from Agent is the contract the rest of the daemon
relies on:

  - L{HTTPClient.request} returns a Deferred that fires with an L{IResponse}
    as soon as the answer's head arrived; the body is delivered with
    C{deliverBody}, with the connection as the protocol's L{IPushProducer}
    (pause, resume, stop), and ends with L{ResponseDone} (or
    L{PotentialDataLoss} for a body delimited by the connection's end).
  - a request body is an L{IBodyProducer} registered as the connection's
    streaming producer, so a full socket pauses it; a body that fails
    (L{BodyAborted}) fails the request with L{RequestGenerationFailed} and
    drops the connection, so the backend never completes the object.
  - connection failures are Twisted's (L{ConnectError} and its children,
    L{DNSLookupError}, L{TimeoutError}); anything after the connection was
    made is L{ResponseNeverReceived} or L{ResponseFailed}.
  - cancelling the Deferred drops the connection.

A connection goes back to the pool only when both messages were complete
and the backend did not ask to close it; an idle connection is closed after
C{idle_timeout} seconds.  A request without a body that fails on a reused
connection before any byte of an answer (the backend closed it while idle)
is sent once more on a new connection; a body can't be replayed.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web._newclient import (
    RequestGenerationFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.client import BrowserLikePolicyForHTTPS, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from s3balance.http.transport import send_together, tune_connection

# An answer's head larger than this is refused (S3 heads are a few hundred bytes).
MAX_HEAD = 64 * 1024
# Body bytes kept for a response nobody has asked to read yet; above this the
# connection is paused until deliverBody.
_UNCLAIMED_LIMIT = 256 * 1024
_NO_BODY_STATUS = frozenset((204, 304))


class BadResponse(Exception):
    """The backend's answer is not HTTP/1.x we can read."""


EndpointKey = tuple[str, str, int]  # scheme, host, port




def _lower(name: str | bytes) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


class ResponseHeaders(Headers):
    """
    An answer's headers as parsed, names lower-cased: L{Headers}' interface
    without re-encoding and re-sanitising every value of every answer.
    """

    def __init__(self, raw: Optional[dict[bytes, list[bytes]]] = None) -> None:
        self._raw: dict[bytes, list[bytes]] = raw if raw is not None else {}

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._raw!r})"

    def copy(self) -> ResponseHeaders:
        return ResponseHeaders({name: list(values) for name, values in self._raw.items()})

    def hasHeader(self, name) -> bool:
        return _lower(name) in self._raw

    def removeHeader(self, name) -> None:
        self._raw.pop(_lower(name), None)

    def setRawHeaders(self, name, values) -> None:
        self._raw[_lower(name)] = [v.encode("utf-8") if isinstance(v, str) else v for v in values]

    def addRawHeader(self, name, value) -> None:
        self._raw.setdefault(_lower(name), []).append(value.encode("utf-8") if isinstance(value, str) else value)

    def getRawHeaders(self, name, default=None):
        values = self._raw.get(_lower(name))
        if not values:
            return default
        if isinstance(name, str):
            return [v.decode("utf-8", "replace") for v in values]
        return values

    def getAllRawHeaders(self):
        return iter(self._raw.items())


@implementer(IPushProducer)
class _BodyProducer:
    """
    The connection as seen by a response body's protocol: pausing it pauses
    the socket while the body is being read; once the body ended it does
    nothing, because the connection may already carry another request.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection: Optional[_Connection] = connection
        self.paused = False

    def pauseProducing(self) -> None:
        if self._connection is not None and not self.paused:
            self.paused = True
            self._connection.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._connection is not None and self.paused:
            self.paused = False
            self._connection.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.abort()

    def detach(self) -> None:
        """The body ended: leave the connection as we found it."""
        if self._connection is not None:
            if self.paused:
                self.paused = False
                self._connection.transport.resumeProducing()
            self._connection = None


@implementer(IResponse)
class Response:
    """An answer whose head arrived; the body follows through C{deliverBody}."""

    version: tuple[bytes, int, int]
    previousResponse = None
    request = None

    def __init__(
        self, connection: _Connection, version: tuple[bytes, int, int], code: int, phrase: bytes, headers: Headers, length
    ) -> None:
        self._connection = connection
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self._protocol: Optional[Protocol] = None
        self._producer: Optional[_BodyProducer] = None
        self._unclaimed: list[bytes] = []
        self._unclaimed_size = 0
        self._paused_unclaimed = False
        self._end: Optional[Failure] = None

    def setPreviousResponse(self, response) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: Protocol) -> None:
        if self._protocol is not None:
            raise RuntimeError("the body of this response is already being delivered")
        self._protocol = protocol
        producer = _BodyProducer(self._connection)
        if self._end is not None:
            producer.detach()
        self._producer = producer
        protocol.makeConnection(producer)
        unclaimed, self._unclaimed = self._unclaimed, []
        for data in unclaimed:
            protocol.dataReceived(data)
        if self._paused_unclaimed:
            self._paused_unclaimed = False
            if self._end is None:
                self._connection.transport.resumeProducing()
        if self._end is not None:
            protocol.connectionLost(self._end)

    # called by the connection
    def _data(self, data: bytes) -> None:
        if self._protocol is not None:
            self._protocol.dataReceived(data)
            return
        self._unclaimed.append(data)
        self._unclaimed_size += len(data)
        if self._unclaimed_size > _UNCLAIMED_LIMIT and not self._paused_unclaimed:
            self._paused_unclaimed = True
            self._connection.transport.pauseProducing()

    def _detach(self) -> None:
        """The body ended: leave the connection unpaused, and let go of it."""
        if self._producer is not None:
            self._producer.detach()
        elif self._paused_unclaimed:
            self._paused_unclaimed = False
            self._connection.transport.resumeProducing()

    def _finish(self, reason: Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        self._detach()
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


def _parse_head(block: bytes, method_is_head: bool):
    """-> (version, code, phrase, Headers, framing, length, keep_alive)."""
    lines = block.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or len(status[1]) != 3 or not status[1].isdigit():
        raise BadResponse(f"bad status line {lines[0][:100]!r}")
    version = (b"HTTP", 1, 1 if status[0] == b"HTTP/1.1" else 0)
    code = int(status[1])
    phrase = status[2] if len(status) > 2 else b""
    raw: dict[bytes, list[bytes]] = {}
    last: Optional[list[bytes]] = None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            if last is None:
                raise BadResponse("continuation line before any header")
            last[-1] = last[-1] + b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadResponse(f"bad header line {line[:100]!r}")
        last = raw.setdefault(name.lower(), [])
        last.append(value.strip())
    headers = ResponseHeaders(raw)

    keep_alive = version[2] == 1
    for token in b",".join(raw.get(b"connection", ())).split(b","):
        token = token.strip().lower()
        if token == b"close":
            keep_alive = False
        elif token == b"keep-alive" and version[2] == 0:
            keep_alive = True
    if method_is_head or code in _NO_BODY_STATUS or code < 200:
        return version, code, phrase, headers, "length", 0, keep_alive
    encodings = raw.get(b"transfer-encoding")
    if encodings:
        if b",".join(encodings).split(b",")[-1].strip().lower() != b"chunked":
            return version, code, phrase, headers, "close", UNKNOWN_LENGTH, False
        # A Content-Length beside chunked is ignored, and the connection not reused.
        return version, code, phrase, headers, "chunked", UNKNOWN_LENGTH, keep_alive and b"content-length" not in raw
    lengths = raw.get(b"content-length")
    if lengths:
        values = {value.strip() for joined in lengths for value in joined.split(b",")}
        if len(values) != 1:
            raise BadResponse("conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit():
            raise BadResponse(f"bad Content-Length {value[:40]!r}")
        return version, code, phrase, headers, "length", int(value), keep_alive
    return version, code, phrase, headers, "close", UNKNOWN_LENGTH, False


class _Connection(Protocol):
    """One connection to a backend, carrying one request at a time."""

    # A TCP or TLS transport: also an IConsumer, IPushProducer and abortable.
    transport: Any

    def __init__(self, client: HTTPClient, key: EndpointKey) -> None:
        self.client = client
        self.key = key
        self.usable = False
        self.requests = 0  # sent on this connection, this one included
        self._idle_call: Any = None
        self.lost: list[Deferred] = []  # fired when the connection is gone
        self._reset()

    def _reset(self) -> None:
        self._waiting: Optional[Deferred] = None  # fires with the Response
        self._response: Optional[Response] = None
        self._method_is_head = False
        self._buffer = b""
        self._state = "idle"  # idle, head, body, done
        self._framing = ""
        self._remaining = 0
        self._chunk_state = ""
        self._keep_alive = False
        self._body: Optional[IBodyProducer] = None
        self._body_done = True
        self._received_any = False

    # -- Protocol -------------------------------------------------------------

    def connectionMade(self) -> None:
        self.usable = True
        tune_connection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self._state == "idle" or self._state == "done":
            # Nothing was asked: a backend talking out of turn can't be trusted.
            self.abort()
            return
        self._received_any = True
        if self._state == "head":
            self._buffer += data
            self._read_head()
        elif self._state == "body":
            self._read_body(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.usable = False
        self.client._forget(self)
        self._cancel_idle()
        lost, self.lost = self.lost, []
        for waiter in lost:
            waiter.callback(None)
        body, self._body = self._body, None
        if body is not None and not self._body_done:
            body.stopProducing()
        if self._state == "head" and self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if not waiting.called:
                waiting.errback(Failure(ResponseNeverReceived([reason])))
        elif self._state == "body" and self._response is not None:
            if self._framing == "close":
                self._end_body(Failure(PotentialDataLoss()), reusable=False)
            else:
                self._end_body(Failure(ResponseFailed([reason])), reusable=False)
        self._state = "done"

    # -- requests -------------------------------------------------------------

    def send(self, head: bytes, method_is_head: bool, body: Optional[IBodyProducer]) -> Deferred:
        self._cancel_idle()
        self._reset()
        self.requests += 1
        self._state = "head"
        self._method_is_head = method_is_head
        waiting: Deferred = Deferred(lambda _: self.abort())
        self._waiting = waiting
        transport = self.transport
        if body is None:
            transport.write(head)
            return waiting

        def write_head_and_start_body() -> Deferred:
            transport.write(head)
            self._body, self._body_done = body, False
            transport.registerProducer(body, True)
            try:
                return body.startProducing(transport)
            except BaseException:
                failed: Deferred = Deferred()
                failed.errback()
                return failed

        # The head and what of the body is at hand already (all of a small
        # object's) go out in one send.
        produced = send_together(transport, write_head_and_start_body)
        produced.addCallbacks(self._body_sent, self._body_failed, callbackArgs=(body,), errbackArgs=(body,))
        return waiting

    def _body_sent(self, _, body: IBodyProducer) -> None:
        if self._body is not body:
            return
        self._body_done = True
        self._body = None
        if self.usable:
            self.transport.unregisterProducer()
        if self._state == "done":
            self._maybe_release()

    def _body_failed(self, failure: Failure, body: IBodyProducer) -> None:
        if self._body is not body or self._body_done:
            return
        self._body_done = True
        self._body = None
        waiting, self._waiting = self._waiting, None
        if self.usable:
            self.transport.unregisterProducer()
        self.abort()
        if waiting is not None and not waiting.called:
            waiting.errback(Failure(RequestGenerationFailed([failure])))

    def abort(self) -> None:
        if self.usable and self.transport is not None:
            self.usable = False
            self.transport.abortConnection()

    def close(self) -> None:
        if self.usable and self.transport is not None:
            self.usable = False
            self.transport.loseConnection()

    # -- the answer -----------------------------------------------------------

    def _read_head(self) -> None:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self._bad(BadResponse("answer head too large"))
                return
            block, rest = self._buffer[:end], self._buffer[end + 4 :]
            try:
                version, code, phrase, headers, framing, length, keep_alive = _parse_head(block, self._method_is_head)
            except BadResponse as error:
                self._bad(error)
                return
            if 100 <= code < 200:
                self._buffer = rest  # 100 Continue and friends: the real answer follows
                continue
            break
        self._buffer = b""
        self._framing = framing
        self._keep_alive = keep_alive
        self._state = "body"
        response = Response(self, version, code, phrase, headers, length)
        self._response = response
        if framing == "length":
            self._remaining = length
        elif framing == "chunked":
            self._chunk_state = "size"
        waiting, self._waiting = self._waiting, None
        if framing == "length" and length == 0:
            # Complete already: give the connection back before anyone hears
            # of the answer, so a caller that sends its next request (or
            # closes the pool) right away finds it idle.  (Bytes after a
            # complete answer: the connection can't be trusted.)
            self._end_body(Failure(ResponseDone()), reusable=not rest)
            if waiting is not None:
                waiting.callback(response)
            return
        if waiting is not None:
            waiting.callback(response)
        if self._state != "body" or self._response is not response:
            return  # the caller dropped the connection
        if rest:
            self._read_body(rest)

    def _read_body(self, data: bytes) -> None:
        framing = self._framing
        response = self._response
        assert response is not None
        if framing == "length":
            remaining = self._remaining
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                response._data(data)
                return
            extra = data[remaining:]
            self._remaining = 0
            if remaining:
                response._data(data[:remaining] if extra else data)
            if self._state == "body" and self._response is response:
                self._end_body(Failure(ResponseDone()), reusable=not extra)
        elif framing == "chunked":
            self._read_chunked(data)
        else:
            response._data(data)

    def _read_chunked(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        response = self._response
        assert response is not None
        while buffer and self._state == "body" and self._response is response:
            state = self._chunk_state
            if state == "data":
                piece = buffer[: self._remaining]
                buffer = buffer[len(piece) :]
                self._remaining -= len(piece)
                response._data(piece)
                if self._remaining == 0:
                    self._chunk_state = "crlf"
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 4096:
                    self._bad(BadResponse("chunk line too long"))
                    return
                self._buffer = buffer
                return
            line, buffer = buffer[:end], buffer[end + 2 :]
            if state == "crlf":
                if line:
                    self._bad(BadResponse("chunk data longer than its size"))
                    return
                self._chunk_state = "size"
            elif state == "size":
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                    if size < 0 or not size_text:
                        raise ValueError
                except ValueError:
                    self._bad(BadResponse(f"bad chunk size {line[:40]!r}"))
                    return
                if size == 0:
                    self._chunk_state = "trailer"
                else:
                    self._remaining = size
                    self._chunk_state = "data"
            elif state == "trailer":
                if not line:
                    self._end_body(Failure(ResponseDone()), reusable=not buffer)
                    return

    def _bad(self, error: Exception) -> None:
        failure = Failure(error)
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.called:
            waiting.errback(Failure(ResponseNeverReceived([failure])))
        elif self._response is not None:
            self._end_body(Failure(ResponseFailed([failure])), reusable=False)
        self._state = "done"
        self.abort()

    def _end_body(self, reason: Failure, reusable: bool) -> None:
        """
        The answer is complete (or cut): give the connection back (or close
        it), then tell the body's reader.  Nothing may touch the connection
        after this: it may already carry the reader's next request.
        """
        response, self._response = self._response, None
        self._state = "done"
        if not reusable:
            self._keep_alive = False
        if response is not None:
            response._detach()
        self._maybe_release()
        if response is not None:
            response._finish(reason)

    def _maybe_release(self) -> None:
        if self._state != "done" or not self.usable:
            return
        if not self._body_done:
            # The answer came before the whole body was sent (an error):
            # the backend won't read the rest; the connection can't be reused.
            body, self._body = self._body, None
            self._body_done = True
            self.transport.unregisterProducer()
            if body is not None:
                body.stopProducing()
            self.abort()
            return
        if self._keep_alive:
            self._state = "idle"
            self.client._release(self)
        else:
            self.close()

    def start_idle(self, timeout: float) -> None:
        self._idle_call = self.client._reactor.callLater(timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_call = None
        self.client._forget(self)
        self.close()

    def _cancel_idle(self) -> None:
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, client: HTTPClient, key: EndpointKey) -> None:
        self.client = client
        self.key = key

    def buildProtocol(self, addr) -> _Connection:
        return _Connection(self.client, self.key)


class _Exchange:
    """
    One request through the pool, and its retry.

    Written without closures that refer to each other: a cycle would keep
    the request's whole graph (response, relay, the client's request) alive
    until the garbage collector's next full pass, instead of freeing it when
    the answer is done.
    """

    def __init__(
        self, client: HTTPClient, key: EndpointKey, head: bytes, body: Optional[IBodyProducer], method_is_head: bool
    ) -> None:
        self.client = client
        self.key = key
        self.head = head
        self.body = body
        self.method_is_head = method_is_head
        self.cancelled = False
        self.inner: Optional[Deferred] = None
        self.outer: Optional[Deferred[IResponse]] = Deferred(self._cancel)

    def _cancel(self, _: Deferred) -> None:
        self.cancelled = True
        if self.inner is not None:
            self.inner.cancel()

    def start(self) -> None:
        connection = self.client._take(self.key)
        if connection is not None:
            self._send(connection, reused=True)
            return
        self.inner = self.client._connect(self.key)
        self.inner.addCallbacks(self._connected, self._fail)

    def _connected(self, connection: _Connection) -> None:
        if self.cancelled:
            connection.abort()
            return
        self._send(connection, reused=False)

    def _send(self, connection: _Connection, reused: bool) -> None:
        self.inner = sent = connection.send(self.head, self.method_is_head, self.body)
        sent.addCallbacks(self._deliver, self._failed, errbackArgs=(connection if reused else None,))

    def _deliver(self, response: IResponse) -> None:
        self.inner = None
        outer, self.outer = self.outer, None
        if outer is not None and not outer.called:
            outer.callback(response)

    def _failed(self, failure: Failure, reused: Optional[_Connection]) -> None:
        self.inner = None
        # A reused connection the backend had closed while idle: nothing of
        # this request reached it.  Try again (on another idle connection or
        # a new one); a body can't be replayed.
        if (
            reused is not None
            and self.body is None
            and not self.cancelled
            and reused.requests > 1
            and failure.check(ResponseNeverReceived)
            and not reused._received_any
        ):
            self.start()
            return
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        self.inner = None
        outer, self.outer = self.outer, None
        if outer is not None and not outer.called:
            if self.cancelled and not failure.check(CancelledError):
                # What the cancelled step failed with (ConnectingCancelledError
                # while connecting) is of our own making: the caller, who
                # cancelled, gets CancelledError, which it does not count
                # against the backend's health.
                failure = Failure(CancelledError(failure.getErrorMessage()))
            outer.errback(failure)


class HTTPClient:
    """
    Backend requests over persistent connections, at most C{max_idle} idle
    ones kept per endpoint.
    """

    def __init__(
        self,
        reactor,
        max_idle: int = 64,
        idle_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        tls_policy=None,
    ) -> None:
        self._reactor = reactor
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._tls_policy = tls_policy or BrowserLikePolicyForHTTPS()
        self._idle: dict[EndpointKey, list[_Connection]] = {}

    def request(
        self, key: EndpointKey, head: bytes, body: Optional[IBodyProducer] = None, method_is_head: bool = False
    ) -> Deferred[IResponse]:
        """
        Send C{head} (request line and header lines, ending with an empty
        line, Host and Content-Length included) and C{body}; fire with the
        L{IResponse} when the answer's head arrived.
        """
        exchange = _Exchange(self, key, head, body, method_is_head)
        outer = exchange.outer
        assert outer is not None
        exchange.start()
        return outer

    def _take(self, key: EndpointKey) -> Optional[_Connection]:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        return None

    def _connect(self, key: EndpointKey) -> Deferred[_Connection]:
        scheme, host, port = key
        endpoint: Any
        # An address needs no name resolution: HostnameEndpoint would still send
        # it through getaddrinfo on the reactor's thread pool, one more hop per
        # connection and one more way to fail ("DNS lookup failed" for 127.0.0.1
        # when that call errs under load).
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, port, timeout=self.connect_timeout)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, port, timeout=self.connect_timeout)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self.connect_timeout)
        if scheme == "https":
            endpoint = wrapClientTLS(self._tls_policy.creatorForNetloc(host.encode("idna"), port), endpoint)
        # wrapClientTLS hands back our protocol itself (the TLS layer wraps its transport).
        return endpoint.connect(_ConnectionFactory(self, key))

    def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle:
            connection.close()
            return
        idle.append(connection)
        connection.start_idle(self.idle_timeout)

    def _forget(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def closeCachedConnections(self) -> Deferred:
        """Close every idle connection; fires when they are closed."""
        waits = []
        for idle in list(self._idle.values()):
            while idle:
                connection = idle.pop()
                connection._cancel_idle()
                if connection.usable:
                    lost: Deferred = Deferred()
                    connection.lost.append(lost)
                    waits.append(lost)
                    connection.close()
        return DeferredList(waits, consumeErrors=True)


__all__ = ["HTTPClient", "Response", "BadResponse", "EndpointKey"]
