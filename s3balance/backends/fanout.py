"""
One client body to several backends at once (a PutObject in a bucket with
C{replicas: N}, s3balance.s3.upload): N L{PipeProducer}s, one per backend
request, fed the same bytes.

  - L{UpstreamGate} is the pipes' common upstream: the client's transport
    is paused while any pipe wants it paused and resumed only when none
    does, so the slowest backend sets the pace and no pipe buffers more than
    its own pending limit.
  - L{TeePipe} is the primary pipe (the one the upload writes to); it
    forwards every write, finish and abort to the other pipes.
  - L{all_stored} waits for every backend's answer: the first failure
    cancels the others and is the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from s3balance.backends.backend import PutResult
from s3balance.backends.streaming import PipeProducer


@implementer(IPushProducer)
class UpstreamGate:
    """Pauses C{upstream} while any of its pipes has it paused (each pauses and resumes it at most once in turn)."""

    def __init__(self, upstream: Optional[IPushProducer]) -> None:
        self.upstream = upstream
        self._pausers = 0

    def pauseProducing(self) -> None:
        self._pausers += 1
        if self._pausers == 1 and self.upstream is not None:
            self.upstream.pauseProducing()

    def resumeProducing(self) -> None:
        if self._pausers == 0:
            return
        self._pausers -= 1
        if self._pausers == 0 and self.upstream is not None:
            self.upstream.resumeProducing()

    def stopProducing(self) -> None:
        if self.upstream is not None:
            self.upstream.stopProducing()


class TeePipe(PipeProducer):
    """
    A L{PipeProducer} whose bytes, end and abort also go to C{followers}
    (one pipe per other backend).  Not replayable: its bytes are in flight
    to several backends.
    """

    def __init__(self, length: int, followers: Sequence[PipeProducer], upstream: Optional[IPushProducer] = None) -> None:
        super().__init__(length, upstream)
        self.followers = list(followers)

    @property
    def replayable(self) -> bool:
        return False

    @property
    def pipes(self) -> list[PipeProducer]:
        return [self, *self.followers]

    def any_started(self) -> bool:
        return any(pipe.started.called for pipe in self.pipes)

    def write(self, data: bytes) -> None:
        super().write(data)
        for follower in self.followers:
            follower.write(data)

    def finish(self) -> None:
        super().finish()
        for follower in self.followers:
            follower.finish()

    def abort(self, reason: Exception) -> None:
        super().abort(reason)
        for follower in self.followers:
            follower.abort(reason)


def fan_out(length: int, copies: int, upstream: Optional[IPushProducer]) -> TeePipe:
    """A L{TeePipe} and its C{copies - 1} followers, all paced by the slowest through one L{UpstreamGate}."""
    gate = UpstreamGate(upstream)
    followers = [PipeProducer(length, upstream=gate) for _ in range(copies - 1)]
    return TeePipe(length, followers, upstream=gate)


def all_stored(requests: Sequence[Deferred[PutResult]]) -> Deferred[list[PutResult]]:
    """
    Every request's result, in order, once all succeeded; the first failure
    instead (the other requests are cancelled).  Cancelling the result
    cancels every request.
    """
    results: list[Optional[PutResult]] = [None] * len(requests)
    left = [len(requests)]

    def cancel_all(_: Any) -> None:
        for request in requests:
            if not request.called:
                request.cancel()

    done: Deferred[list[PutResult]] = Deferred(cancel_all)

    def succeeded(result: PutResult, index: int) -> None:
        results[index] = result
        left[0] -= 1
        if left[0] == 0 and not done.called:
            done.callback([r for r in results if r is not None])

    def failed(failure: Failure) -> None:
        if not done.called:
            done.errback(failure)
            cancel_all(None)

    for index, request in enumerate(requests):
        request.addCallbacks(succeeded, failed, callbackArgs=(index,))
        request.addErrback(lambda _: None)  # (consumed above; a cancel's CancelledError included)
    return done
