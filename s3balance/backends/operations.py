"""
Monthly operation counting and limits per backend (C{operation_limits}).

Providers bill by operation class: class A (writes and listings: PUT, POST,
COPY, ListParts...) and class B (reads: GET, HEAD).  Deletes and aborts are
free and our own health probes are not counted.  Counts are kept per calendar
month (UTC) in the store, so they survive restarts and add up across daemons
sharing a database; each daemon adds its own deltas every few seconds and
reads back the month's totals.  A backend at its class A limit gets no new
objects; at its class B limit its reads answer 503.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

if TYPE_CHECKING:
    from s3balance.config.schema import BackendConfig

log = Logger()

CLASS_A, CLASS_B = "A", "B"


def current_month(now: Callable[[], float]) -> str:
    return datetime.datetime.fromtimestamp(now(), datetime.UTC).strftime("%Y-%m")


def _next_month_start(month: str) -> float:
    """The POSIX time at which the month after C{month} ("YYYY-MM", UTC) begins."""
    year, number = int(month[:4]), int(month[5:7])
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return datetime.datetime(year, number, 1, tzinfo=datetime.UTC).timestamp()


class OperationCounter:
    def __init__(self, store: Any, now: Callable[[], float]) -> None:
        self.store = store
        self._now = now
        self.month = current_month(now)
        self._month_ends = _next_month_start(self.month)
        self._totals: dict[str, list[int]] = {}  # this month, as last read + our own since
        self._pending: dict[str, list[int]] = {}

    def _roll(self) -> None:
        # Called for every backend request: compare a number, format a date only when needed.
        if self._now() < self._month_ends:
            return
        month = current_month(self._now)
        self._month_ends = _next_month_start(month)
        if month != self.month:
            self.month = month
            self._totals = {}
            self._pending = {}

    def record(self, backend: str, operation_class: Optional[str]) -> None:
        if operation_class is None:
            return
        self._roll()
        index = 0 if operation_class == CLASS_A else 1
        for table in (self._totals, self._pending):
            table.setdefault(backend, [0, 0])[index] += 1

    def count(self, backend: str) -> tuple[int, int]:
        self._roll()
        a, b = self._totals.get(backend, (0, 0))
        return a, b

    def over_limit(self, config: BackendConfig, operation_class: str) -> bool:
        """Whether one more operation of this class would exceed the backend's monthly limit."""
        limits = config.operation_limits
        limit = limits.type_a if operation_class == CLASS_A else limits.type_b
        if not limit:
            return False
        a, b = self.count(config.name)
        return (a if operation_class == CLASS_A else b) >= limit

    @inlineCallbacks
    def sync(self) -> Generator[Deferred[Any], Any, None]:
        """Write our deltas to the store, then read the month's totals of every daemon."""
        self._roll()
        month = self.month
        pending, self._pending = self._pending, {}
        for backend, (a, b) in pending.items():
            try:
                yield self.store.count_operations(backend, a, b)
            except Exception:
                # Keep them for the next round rather than lose them.
                kept = self._pending.setdefault(backend, [0, 0])
                kept[0] += a
                kept[1] += b
                raise
        rows = yield self.store.operation_counts(month)
        if month != self.month:
            return
        totals = {row.backend: [row.type_a, row.type_b] for row in rows}
        for backend, (a, b) in self._pending.items():
            row = totals.setdefault(backend, [0, 0])
            row[0] += a
            row[1] += b
        self._totals = totals
