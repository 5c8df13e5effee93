"""
Whether the metadata database answers, for C{/health}.

A load balancer asks C{/health} often; each answer must come at once and
must not queue work on a database that stopped answering.  L{DatabaseProbe}
keeps the outcome of the last bounded probe (the store's C{ping}: one
C{SELECT} on the store's threads, failed by the store's request timeout),
starts a new one when that outcome is older than C{max_age}, and never runs
two at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure


class DatabaseProbe:
    """
    @param ping: starts one bounded probe; its Deferred fires (with
        anything) when the database answered, fails when it did not.
    @param clock: seconds, monotonic.
    @param max_age: how old an outcome may be before a new probe starts.
    """

    log = Logger()

    def __init__(self, ping: Callable[[], Deferred], clock: Callable[[], float] = time.monotonic, max_age: float = 1.0):
        self._ping = ping
        self._clock = clock
        self._max_age = max_age
        self._up = True  # until a probe says otherwise: the store started, so it answered
        self._error: Optional[str] = None
        self._checked: Optional[float] = None
        self._running = False

    def state(self) -> dict[str, Any]:
        """The last outcome (C{up}, C{error}); starts a probe when it is stale and none runs."""
        now = self._clock()
        if not self._running and (self._checked is None or now - self._checked >= self._max_age):
            self._start()
        return {"up": self._up, "error": self._error}

    def _start(self) -> None:
        self._running = True
        try:
            d = self._ping()
        except Exception as error:  # a store that is not started
            self._finished(False, str(error))
            return
        d.addCallbacks(lambda _: self._finished(True, None), lambda failure: self._finished(False, _reason(failure)))

    def _finished(self, up: bool, error: Optional[str]) -> None:
        if up != self._up:
            if up:
                self.log.info("the metadata database answers again")
            else:
                self.log.warn("the metadata database does not answer: {error}", error=error)
        self._running = False
        self._up, self._error, self._checked = up, error, self._clock()


def _reason(failure: Failure) -> str:
    text = str(failure.value).strip()
    return text.splitlines()[0] if text else failure.type.__name__
