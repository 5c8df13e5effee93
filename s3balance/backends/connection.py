"""
One persistent HTTP/1.1 connection to a backend (see
L{s3balance.backends.client} for the contract it keeps): it sends a request's
head and body, reads the answer's head and body (Content-Length, chunked, or
up to the connection's end), and goes back to its L{HTTPClient}'s idle pool
when both messages were complete.
"""

from __future__ import annotations

import typing
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web._newclient import (
    RequestGenerationFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer

from s3balance.backends.response import BadResponse, Response, parse_head
from s3balance.http.transport import send_together, tune_connection

EndpointKey = tuple[str, str, int]  # scheme, host, port

# An answer's head larger than this is refused (S3 heads are a few hundred bytes).
MAX_HEAD = 64 * 1024


class Pool(typing.Protocol):
    """What a connection needs of its L{s3balance.backends.client.HTTPClient}."""

    _reactor: Any

    def _release(self, connection: Connection) -> None: ...

    def _forget(self, connection: Connection) -> None: ...


class Connection(Protocol):
    """One connection to a backend, carrying one request at a time."""

    # A TCP or TLS transport: also an IConsumer, IPushProducer and abortable.
    transport: Any

    def __init__(self, client: Pool, key: EndpointKey) -> None:
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

    def _body_sent(self, _: object, body: IBodyProducer) -> None:
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
                version, code, phrase, headers, framing, length, keep_alive = parse_head(block, self._method_is_head)
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
            self._remaining = cast(int, length)  # a number when the framing is by length
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


class ConnectionFactory(Factory):
    noisy = False

    def __init__(self, client: Pool, key: EndpointKey) -> None:
        self.client = client
        self.key = key

    def buildProtocol(self, addr: Optional[IAddress]) -> Connection:
        return Connection(self.client, self.key)


__all__ = ["Connection", "ConnectionFactory", "EndpointKey", "Pool"]
