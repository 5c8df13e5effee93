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

The connection itself is L{s3balance.backends.connection.Connection}; the
answer it reads is a L{s3balance.backends.response.Response}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse

from s3balance.backends.connection import Connection, ConnectionFactory, EndpointKey


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

    def _connected(self, connection: Connection) -> None:
        if self.cancelled:
            connection.abort()
            return
        self._send(connection, reused=False)

    def _send(self, connection: Connection, reused: bool) -> None:
        self.inner = sent = connection.send(self.head, self.method_is_head, self.body)
        sent.addCallbacks(self._deliver, self._failed, errbackArgs=(connection if reused else None,))

    def _deliver(self, response: IResponse) -> None:
        self.inner = None
        outer, self.outer = self.outer, None
        if outer is not None and not outer.called:
            outer.callback(response)

    def _failed(self, failure: Failure, reused: Optional[Connection]) -> None:
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
        reactor: Any,
        max_idle: int = 64,
        idle_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        tls_policy: Optional[IPolicyForHTTPS] = None,
    ) -> None:
        self._reactor = reactor
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._tls_policy = tls_policy or BrowserLikePolicyForHTTPS()
        self._idle: dict[EndpointKey, list[Connection]] = {}

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

    def _take(self, key: EndpointKey) -> Optional[Connection]:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        return None

    def _connect(self, key: EndpointKey) -> Deferred[Connection]:
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
        return endpoint.connect(ConnectionFactory(self, key))

    def _release(self, connection: Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle:
            connection.close()
            return
        idle.append(connection)
        connection.start_idle(self.idle_timeout)

    def _forget(self, connection: Connection) -> None:
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


__all__ = ["HTTPClient"]
