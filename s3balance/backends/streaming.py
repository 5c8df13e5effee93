"""
Moving bodies between the client connection and a backend connection.

Both directions are push streams with backpressure:

  - upload: L{PipeProducer} is the L{IBodyProducer} of the backend request.
    The gateway writes decoded client bytes into it; when the backend's socket
    buffer fills, Twisted pauses the pipe and the pipe pauses the client's
    transport, so the client stops sending.  Nothing waits in memory beyond
    the socket buffers and one TCP read.

  - download: L{relay_body} delivers a backend response body to a client
    request, registering the backend connection as the request's producer, so
    a slow client pauses the backend socket.  L{start_relay} does the same and
    hands out a L{Relay}, which also tells how many bytes were delivered (a
    GET that continues from another copy after its backend died mid-body,
    L{s3balance.s3.objects}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer


class BodyAborted(Exception):
    """The upload was abandoned before its last byte; the backend must not keep it."""


# Bytes written before the backend connection is open are kept here; above
# this (by default; see PipeProducer.pending_limit) the client is paused.
_PENDING_LIMIT = 1 << 20


@implementer(IBodyProducer)
class PipeProducer:
    """
    An L{IBodyProducer} of known length fed by C{write}.

    @ivar upstream: the producer to pause when the backend is slower than the
        client (the client connection's transport), or L{None}.
    """

    def __init__(self, length: int, upstream: Optional[IPushProducer] = None) -> None:
        self.length = length
        self.upstream = upstream
        # Stall detection: when the backend keeps us paused for stall_timeout
        # seconds, on_stall() is called (the caller cuts the backend off).
        self.stall_timeout: Optional[float] = None
        self.on_stall: Optional[Callable[[], None]] = None
        self.clock = None
        self._stall_call = None
        self.started: Deferred[None] = Deferred()
        # Fires once the last byte was handed to the backend connection: from
        # then on the backend owes an answer (Backend's answer timeout).
        self.delivered: Deferred[None] = Deferred()
        self._consumer: Optional[IConsumer] = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._written = 0
        self._done: Optional[Deferred[None]] = None
        self._finished = False
        self._paused_upstream = False
        self.stopped = False
        # Bytes held before the backend is ready; beyond them the client is paused.
        self.pending_limit = _PENDING_LIMIT

    @property
    def written(self) -> int:
        return self._written

    @property
    def replayable(self) -> bool:
        """All bytes are written and none handed to a backend yet: L{replica} can copy them."""
        return self._finished and self._consumer is None and not self.stopped

    def replica(self) -> PipeProducer:
        """
        A new finished pipe with this one's bytes (the same objects, not
        copies) and stall settings, for sending the same body to another
        backend.  Only while L{replayable}: a small body that was all in
        before the backend request opened.  No upstream: the client has
        nothing more to send, and must not be paused by a spare copy.
        """
        if not self.replayable:
            raise RuntimeError("only a finished body not yet handed to a backend can be replayed")
        copy = PipeProducer(self.length)
        copy.stall_timeout, copy.on_stall, copy.clock = self.stall_timeout, self.on_stall, self.clock
        for data in self._pending:
            copy.write(data)
        copy.finish()
        return copy

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._consumer = consumer
        self._done = Deferred()
        pending, self._pending, self._pending_size = self._pending, [], 0
        for data in pending:
            consumer.write(data)
        self._resume_upstream()
        done = self._done
        if self._finished:
            done.callback(None)
        started, self.started = self.started, succeed(None)
        started.callback(None)
        if self._finished:
            self._delivered()
        return done

    def write(self, data: bytes) -> None:
        if self.stopped or not data:
            return
        self._written += len(data)
        if self._written > self.length:
            self.abort(BodyAborted("more bytes than the declared length"))
            return
        if self._consumer is None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > self.pending_limit:
                self._pause_upstream()
        else:
            self._consumer.write(data)

    def finish(self) -> None:
        """All bytes were written; the backend may now complete the object."""
        if self._written != self.length:
            self.abort(BodyAborted(f"{self._written} of {self.length} bytes"))
            return
        self._finished = True
        if self._done is not None and not self._done.called:
            self._done.callback(None)
            self._delivered()

    def _delivered(self) -> None:
        if not self.delivered.called and not self.stopped:
            self.delivered.callback(None)

    def abort(self, reason: Exception) -> None:
        """Fail the backend request so the backend never completes the object."""
        self._cancel_stall()
        self.stopped = True
        self._pending = []
        self._resume_upstream()
        if self._done is not None and not self._done.called:
            self._done.errback(Failure(reason))

    # IPushProducer, called by the backend connection
    def pauseProducing(self) -> None:
        self._pause_upstream()
        if self.stall_timeout and self.clock is not None and self._stall_call is None and self._consumer is not None:
            self._stall_call = self.clock.callLater(self.stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        self._cancel_stall()
        self._resume_upstream()

    def stopProducing(self) -> None:
        # The backend request was cancelled or its connection lost.
        self._cancel_stall()
        self.stopped = True
        self._resume_upstream()

    def _cancel_stall(self) -> None:
        if self._stall_call is not None:
            if self._stall_call.active():
                self._stall_call.cancel()
            self._stall_call = None

    def _stalled(self) -> None:
        self._stall_call = None
        if self.on_stall is not None and not self.stopped:
            self.on_stall()

    def _pause_upstream(self) -> None:
        if self.upstream is not None and not self._paused_upstream:
            self._paused_upstream = True
            self.upstream.pauseProducing()

    def _resume_upstream(self) -> None:
        if self.upstream is not None and self._paused_upstream:
            self._paused_upstream = False
            self.upstream.resumeProducing()


class _Relay(Protocol):
    def __init__(
        self,
        write: Callable[[bytes], None],
        register: Callable[[IPushProducer], None],
        expected: Optional[int],
        done: Deferred[int],
    ) -> None:
        self._write = write
        self._register = register
        self._expected = expected
        self._done = done
        self.received = 0

    def connectionMade(self) -> None:
        # self.transport is the backend connection as an IPushProducer.
        self._register(cast(IPushProducer, self.transport))

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self._write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._done.called:
            return
        clean = reason is None or reason.check(ResponseDone, PotentialDataLoss)
        if clean and (self._expected is None or self.received == self._expected):
            self._done.callback(self.received)
        else:
            self._done.errback(
                reason
                if not clean
                else Failure(
                    BodyAborted(f"backend sent {self.received} of {self._expected} bytes")
                )
            )


@implementer(IPushProducer)
class _WatchedProducer:
    """
    The backend connection as the client's producer, remembering whether the
    client paused it, so a slow client is never mistaken for a stalled backend.
    """

    def __init__(self, producer: IPushProducer) -> None:
        self._producer = producer
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._producer.resumeProducing()

    def stopProducing(self) -> None:
        self._producer.stopProducing()


class _IdleWatch:
    """
    Cuts a backend that sends nothing for C{timeout} seconds while the
    client is ready for more.  (A class, not a nested function scheduling
    itself: that would be a reference cycle holding the whole request until
    the garbage collector's next full pass.)
    """

    def __init__(
        self,
        relay: _Relay,
        watched: list[_WatchedProducer],
        done: Deferred,
        stop: Callable[[], None],
        timeout: float,
        clock: IReactorTime,
    ) -> None:
        self.relay = relay
        self.watched = watched
        self.done = done
        self.stop = stop
        self.timeout = timeout
        self.clock = clock
        self.seen = -1
        self.since = clock.seconds()
        self.call: Optional[IDelayedCall] = None
        done.addBoth(self._finished)

    def _finished(self, result: Any) -> Any:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
        return result

    def schedule(self) -> None:
        # Not once the body is done (it may be already, when deliverBody
        # delivered it all); from then on _finished cancels a pending check.
        if not self.done.called:
            self.call = self.clock.callLater(min(self.timeout, 1.0), self.check)

    def check(self) -> None:
        self.call = None
        now = self.clock.seconds()
        if self.relay.received != self.seen or (self.watched and self.watched[0].paused):
            self.seen, self.since = self.relay.received, now
        elif now - self.since >= self.timeout:
            self.stop()
            if not self.done.called:
                self.done.errback(Failure(BodyAborted(f"backend sent nothing for {self.timeout:g}s")))
            return
        self.schedule()


def _drop(data: bytes) -> None:
    """Where a relay's bytes go once it was L{closed<Relay.close>}."""


class Relay:
    """
    A backend response body on its way to C{write} (L{start_relay}).

    @ivar done: fires with the byte count when the whole body arrived, and
        fails when it was cut short or had another length than expected.
    """

    __slots__ = ("done", "_protocol")

    def __init__(self, protocol: _Relay, done: Deferred[int]) -> None:
        self._protocol = protocol
        self.done = done

    @property
    def received(self) -> int:
        """The bytes handed to C{write} so far."""
        return self._protocol.received

    def stop(self) -> None:
        """Stop the transfer (drop the backend connection), for a client that went away."""
        transport = cast(Optional[IPushProducer], self._protocol.transport)
        if transport is not None:
            transport.stopProducing()

    def close(self) -> None:
        """
        L{stop}, and let no byte that still arrives reach C{write}: for a
        body given up on in favour of another one written to the same place.
        """
        self._protocol._write = _drop
        self.stop()


def start_relay(
    response: IResponse,
    write: Callable[[bytes], None],
    register: Callable[[IPushProducer], None],
    expected: Optional[int],
    idle_timeout: Optional[float] = None,
    clock: Optional[IReactorTime] = None,
) -> Relay:
    """
    Stream C{response}'s body into C{write}, as L{relay_body} does.

    @return: the L{Relay}: its Deferred, its byte count so far and its stop.
    """
    done: Deferred[int] = Deferred()
    watched: list[_WatchedProducer] = []

    def register_watched(producer: IPushProducer) -> None:
        watched.append(_WatchedProducer(producer))
        register(watched[0])

    protocol = _Relay(write, register_watched, expected, done)
    relay = Relay(protocol, done)
    response.deliverBody(protocol)
    if idle_timeout and clock is not None:
        _IdleWatch(protocol, watched, done, relay.stop, idle_timeout, clock).schedule()
    return relay


def relay_body(
    response: IResponse,
    write: Callable[[bytes], None],
    register: Callable[[IPushProducer], None],
    expected: Optional[int],
    idle_timeout: Optional[float] = None,
    clock: Optional[IReactorTime] = None,
) -> tuple[Deferred[int], Callable[[], None]]:
    """
    Stream C{response}'s body into C{write}.

    With C{idle_timeout}, a backend that sends nothing for that long while
    the client is ready for more is cut off (the transfer fails).

    @return: a Deferred that fires with the byte count when the whole body
        arrived (and fails when it was cut short or had another length than
        C{expected}), and a function that stops the transfer (drops the
        backend connection), for a client that went away.
    """
    relay = start_relay(response, write, register, expected, idle_timeout, clock)
    return relay.done, relay.stop
