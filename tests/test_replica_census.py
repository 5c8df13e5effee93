"""
The replica census (s3balance.ops.replica_census) and what shows it: the
status page's JSON and HTML (with the rebalance) and C{GET /admin/replicas},
over an in-process service on the memory store and a controlled clock.
"""

from __future__ import annotations

from typing import Any

import attr
from twisted.internet.defer import ensureDeferred
from twisted.trial import unittest

from s3balance.daemon.status import render_page, status_document
from s3balance.ops.replica_census import ReplicaCensus
from s3balance.store.interfaces import Location
from tests.test_drain import InProcessService
from tests.test_store import make_record


class Replicated(InProcessService):
    """The in-process service with C{replicas: 2} for every bucket."""

    def __init__(self, testcase: unittest.SynchronousTestCase) -> None:
        super().__init__(testcase)
        self.testcase = testcase

    def put(self, key: str, backends: tuple[str, ...], bucket: str = "media") -> None:
        locations = tuple(Location(name, f"{bucket}/{key}/{name}") for name in backends)
        intent = self.testcase.successResultOf(self.store.begin_write(backends[0], locations[0].real_key, 60))
        record = attr.evolve(make_record(key, locations[0].real_key, backend=backends[0]), bucket=bucket)
        self.testcase.successResultOf(self.store.commit_object(intent.id, attr.evolve(record, locations=locations)))


def replicated(testcase: unittest.SynchronousTestCase, replicas: int = 2) -> Replicated:
    fixture = Replicated(testcase)
    config = fixture.service.gateway.config
    fixture.service.gateway.config = attr.evolve(config, balancer=attr.evolve(config.balancer, replicas=replicas))
    return fixture


def media(census: ReplicaCensus) -> Any:
    return next((entry for entry in census.buckets() if entry["bucket"] == "media"), None)


class CensusTests(unittest.SynchronousTestCase):
    def census(self, fixture: Replicated, budget: int = 10000) -> ReplicaCensus:
        census = ReplicaCensus(fixture.service.gateway, 10.0, fixture.clock, budget=budget, now=lambda: 1700000000.0)
        census.running = True  # (runs are called by hand)
        return census

    def sweep(self, census: ReplicaCensus) -> None:
        self.successResultOf(ensureDeferred(census.run()))

    def test_objects_short_of_copies_are_counted_per_bucket(self) -> None:
        fixture = replicated(self)
        for n in range(3):
            fixture.put(f"whole{n}", ("b1", "b2"))
        fixture.put("short", ("b1",))
        fixture.put("gone", ("b1", "b9"))  # a copy on a backend no longer configured does not count
        census = self.census(fixture)
        self.sweep(census)
        self.assertEqual(
            census.buckets(),
            [
                {"bucket": "media", "replicas": 2, "under_replicated": 2, "as_of": 1700000000.0},
                {"bucket": "vbucket", "replicas": 2, "under_replicated": 0, "as_of": 1700000000.0},  # (empty)
            ],
        )
        report = fixture.call("GET", "replicas")
        self.assertEqual(report, (200, {"buckets": [], "period_seconds": 10.0}))  # the service's own census: not run
        fixture.service.replica_census = census
        self.assertEqual(fixture.call("GET", "replicas")[1]["buckets"], census.buckets())

    def test_a_big_bucket_is_swept_over_several_runs_and_shown_once_complete(self) -> None:
        fixture = replicated(self)
        for n in range(7):
            fixture.put(f"k{n}", ("b1",) if n % 2 else ("b1", "b2"))
        census = self.census(fixture, budget=2)
        calls: list[int] = []
        store = fixture.store
        original = store.under_replicated

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(args[3])
            return original(*args, **kwargs)

        store.under_replicated = counted  # type: ignore[method-assign]
        for _ in range(3):
            self.sweep(census)
            self.assertIsNone(media(census))  # no partial count is ever shown
            self.assertTrue(all(limit <= 2 for limit in calls), calls)
        self.sweep(census)  # the 7th object, then the end
        self.sweep(census)
        self.assertEqual(media(census)["under_replicated"], 3)
        # The next sweep starts over and sees a repair.
        fixture.put("k1", ("b1", "b2"))
        for _ in range(5):
            self.sweep(census)
        self.assertEqual(media(census)["under_replicated"], 2)

    def test_buckets_with_one_copy_are_not_swept(self) -> None:
        fixture = replicated(self, replicas=1)
        fixture.put("only", ("b1",))
        census = self.census(fixture)
        self.sweep(census)
        self.assertEqual(census.buckets(), [])


class StatusTests(unittest.SynchronousTestCase):
    def test_the_status_page_shows_the_rebalance_and_the_replicas(self) -> None:
        fixture = replicated(self)
        fixture.put("short", ("b1",))
        service = fixture.service
        census = ReplicaCensus(service.gateway, 10.0, fixture.clock, now=lambda: 1700000000.0)
        census.running = True
        self.successResultOf(ensureDeferred(census.run()))
        document = status_document(service.gateway, rebalance=service.rebalance_state, replicas=census)
        self.assertEqual(document["replicas"], census.buckets())
        rebalance = document["rebalance"]
        self.assertEqual((rebalance["state"], rebalance["margin"]), (None, 0.05))
        self.assertEqual([entry["backend"] for entry in rebalance["backends"]], ["b1", "b2"])
        page = render_page(document, "nonce").decode()
        self.assertIn('<span class="state none">none</span>', page)
        self.assertIn('<td class="name">media</td><td class="num">2</td><td class="num">1</td>', page)
        self.assertNotIn('id="replica-table" hidden', page)
        # A rebalance under way: its state, what moved and the target.
        code, started = fixture.call("POST", "rebalance", {"margin": 0.1})
        self.assertEqual(code, 200, started)
        document = status_document(service.gateway, rebalance=service.rebalance_state, replicas=census)
        rebalance = document["rebalance"]
        self.assertEqual((rebalance["state"], rebalance["margin"], rebalance["objects"]["moved"]), ("running", 0.1, 0))
        self.assertEqual(rebalance["bytes"]["moved"], 0)
        page = render_page(document, "nonce").decode()
        self.assertIn('<span class="state running">running</span>', page)
        self.assertIn("within 10.0% (", page)

    def test_without_the_watchers_the_page_leaves_them_out(self) -> None:
        fixture = replicated(self)
        document = status_document(fixture.service.gateway)
        self.assertEqual((document["rebalance"], document["replicas"]), (None, []))
        page = render_page(document, "nonce").decode()
        self.assertIn('id="replica-table" hidden', page)
