"""The monthly operation counter rolls over at the first second of a UTC month (pure logic)."""

from __future__ import annotations

import datetime

from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.operations import CLASS_A, CLASS_B, OperationCounter, _next_month_start


def at(*parts: int) -> float:
    return datetime.datetime(*parts, tzinfo=datetime.UTC).timestamp()


class OperationCounterTests(SynchronousTestCase):
    def test_next_month_start(self) -> None:
        self.assertEqual(_next_month_start("2026-11"), at(2026, 12, 1))
        self.assertEqual(_next_month_start("2026-12"), at(2027, 1, 1))

    def test_counts_reset_when_the_month_changes(self) -> None:
        clock = [at(2026, 11, 30, 23, 59, 59)]
        counter = OperationCounter(store=None, now=lambda: clock[0])
        counter.record("b1", CLASS_A)
        counter.record("b1", CLASS_B)
        counter.record("b1", CLASS_B)
        counter.record("b1", None)
        self.assertEqual(counter.count("b1"), (1, 2))
        self.assertEqual(counter.month, "2026-11")
        clock[0] = at(2026, 12, 1)
        self.assertEqual(counter.count("b1"), (0, 0))
        self.assertEqual(counter.month, "2026-12")
        counter.record("b1", CLASS_A)
        self.assertEqual(counter.count("b1"), (1, 0))
