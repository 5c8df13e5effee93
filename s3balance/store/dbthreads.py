"""
The metadata store's threads: blocking database calls in, results back on
the reactor.

This replaces C{twisted.python.threadpool.ThreadPool} with
C{deferToThreadPool} on the hottest path of the daemon, where every small
request makes one or two round trips to the database thread.  Twisted's pool
passes each call through a coordinator (a lock-protected worker that picks an
idle thread), a context wrapper and a C{queue.Queue} with its condition
variable, and wakes the reactor once per result; together that cost more
than the SQLite lookup it carried (about 0.04 ms of CPU per trip, measured).
Here:

 - the threads are started once and take calls from one C{SimpleQueue}
   (a C-level lock and deque);
 - results are handed to the reactor in batches: a thread that finishes
   while an earlier batch is still waiting for the reactor adds to it
   instead of waking the reactor again.

Deferreds are fired on the reactor thread only, in the order the calls
finished.  Cancelling a call's Deferred (a request's deadline, a client
gone) fails it at once with C{CancelledError}; a call cancelled before a
thread took it is never run, one already running runs to its end and its
result is dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import Any, Literal, Optional, ParamSpec, TypeVar, TypeVarTuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.python.failure import Failure

P = ParamSpec("P")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# What run_call answers: (True, the result) or (False, the Failure).
Outcome = Union[tuple[Literal[True], T], tuple[Literal[False], Failure]]

_STOP = None


def run_call(f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Outcome[T]:
    """C{(True, f(...))}, or C{(False, Failure)} when it raised."""
    try:
        return True, f(*args, **kwargs)
    except BaseException:
        return False, Failure()


def fire_all(outcomes: Iterable[tuple[Deferred[Any], bool, Any]]) -> None:
    """On the reactor: fire each C{(Deferred, ok, value)}; a cancelled one has had its answer."""
    for d, ok, value in outcomes:
        if d.called:
            continue
        if ok:
            d.callback(value)
        else:
            d.errback(value)


def _leave_unrun(d: Deferred[Any]) -> None:
    """The canceller of a queued call: the thread that takes it sees it fired and skips it."""


class DatabaseThreads:
    """
    C{size} threads running blocking calls for the reactor.

    @param reactor: delivers results (C{callFromThread}).
    @param name: the threads' name prefix (seen in py-spy and /proc).
    """

    def __init__(self, reactor: IReactorFromThreads, size: int, name: str) -> None:
        if size < 1:
            raise ValueError("at least one thread")
        self._reactor = reactor
        self._size = size
        self._name = name
        self._calls: SimpleQueue[Optional[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]]]
        self._calls = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._finished: list[tuple[Deferred[Any], bool, Any]] = []
        self._delivery_scheduled = False

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        if self._threads:
            return
        for index in range(self._size):
            # Not daemon threads: a transaction under way at shutdown is
            # finished (stop() joins), never cut off by the interpreter.
            thread = threading.Thread(target=self._work, name=f"{self._name}-{index}")
            thread.start()
            self._threads.append(thread)

    def submit(self, f: Callable[[*Ts], T], *args: *Ts) -> Deferred[T]:
        """Run C{f(*args)} on one of the threads; C{Deferred} of its result, fired on the reactor."""
        d: Deferred[T] = Deferred(_leave_unrun)
        self._calls.put((d, f, args))
        return d

    def stop(self) -> None:
        """Blocking: let queued calls finish, then end and join the threads.  Call off the reactor."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(_STOP)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    def _work(self) -> None:
        calls = self._calls
        while True:
            call = calls.get()
            if call is _STOP:
                return
            d, f, args = call
            if d.called:
                # Cancelled while queued (read off the reactor thread: at
                # worst a call cancelled this instant runs, as if it had
                # started a moment earlier).
                del call, d, f, args
                continue
            outcome = (d, *run_call(f, *args))
            with self._lock:
                self._finished.append(outcome)
                wake = not self._delivery_scheduled
                self._delivery_scheduled = True
            del call, d, f, args, outcome  # nothing of a finished call stays alive on this thread
            if wake:
                self._reactor.callFromThread(self._deliver)

    def _deliver(self) -> None:
        """On the reactor: fire the Deferreds of every call finished so far."""
        with self._lock:
            finished, self._finished = self._finished, []
            self._delivery_scheduled = False
        fire_all(finished)


class Deadlines:
    """
    Fails Deferreds that have not fired C{timeout} seconds after L{add},
    with C{make_error()}; a call of L{DatabaseThreads} failed so while still
    queued is never run (its thread sees it fired).

    One timer for all of them, not one per call: C{Deferred.addTimeout}
    costs about 17 us of CPU per call (a DelayedCall made and cancelled),
    as much as a small SQLite lookup; this costs under 1 us.  The timeout
    is the same for every call, so deadlines come in the order of L{add}.
    Reactor thread only.
    """

    def __init__(
        self, reactor: IReactorTime, timeout: float, make_error: Callable[[], BaseException]
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._make_error = make_error
        self._pending: deque[tuple[float, Deferred[Any]]] = deque()
        self._timer: Optional[IDelayedCall] = None

    def add(self, d: Deferred[T]) -> Deferred[T]:
        pending = self._pending
        # Forget the answered ones at the front (most are answered in order).
        while pending and pending[0][1].called:
            pending.popleft()
        if d.called:
            return d
        pending.append((self._reactor.seconds() + self._timeout, d))
        if self._timer is None:
            self._timer = self._reactor.callLater(self._timeout, self._expire)
        return d

    def _expire(self) -> None:
        self._timer = None
        now = self._reactor.seconds()
        pending = self._pending
        expired = []
        while pending:
            deadline, d = pending[0]
            if deadline > now and not d.called:
                self._timer = self._reactor.callLater(deadline - now, self._expire)
                break
            pending.popleft()
            if not d.called:
                expired.append(d)
        # Last: their callbacks may add calls (and so set the timer).
        for d in expired:
            if not d.called:
                d.errback(self._make_error())

    def stop(self) -> None:
        """Cancel the timer (the Deferreds still pending keep waiting)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._pending.clear()


__all__ = ["DatabaseThreads", "Deadlines", "fire_all", "run_call"]
