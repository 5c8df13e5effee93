"""Tests for the built-in placement strategies."""

from __future__ import annotations

import hashlib
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from s3balance.placement.consistent_hash import HashRing, stable_hash
from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext
from s3balance.placement.least_space import LeastSpace
from s3balance.placement.round_robin import RoundRobin
from s3balance.placement.weighted import SmoothWeightedRoundRobin

CONTEXT = PlacementContext(bucket="demo", key="a/b.txt", size=None)


def views(*names: str) -> list[BackendView]:
    return [BackendView(name=name) for name in names]


def picks(strategy: IStrategy, candidates: list[BackendView], count: int) -> list[str]:
    chosen = [strategy.choose(CONTEXT, candidates) for _ in range(count)]
    return [backend.name for backend in chosen if backend is not None]


class InterfaceTests(SynchronousTestCase):
    def test_every_strategy_provides_istrategy(self) -> None:
        for strategy in (RoundRobin(), LeastSpace(), SmoothWeightedRoundRobin(), HashRing()):
            self.assertTrue(verifyObject(IStrategy, strategy))

    def test_names(self) -> None:
        self.assertEqual(
            [s.name for s in (RoundRobin(), LeastSpace(), SmoothWeightedRoundRobin(), HashRing())],
            ["round-robin", "least-space", "weighted", "consistent-hash"],
        )

    def test_empty_candidates_give_none(self) -> None:
        for strategy in (RoundRobin(), LeastSpace(), SmoothWeightedRoundRobin(), HashRing()):
            self.assertIsNone(strategy.choose(CONTEXT, []))

    def test_single_candidate_is_chosen(self) -> None:
        only = BackendView(name="only", weight=0, max_size=10, used_bytes=10)
        for strategy in (RoundRobin(), LeastSpace(), SmoothWeightedRoundRobin(), HashRing()):
            self.assertIs(strategy.choose(CONTEXT, [only]), only)

    def test_free_bytes(self) -> None:
        self.assertEqual(BackendView("a", 1, 100, 30, 20).free_bytes, 50)
        self.assertIsNone(BackendView("a", 1, None, 30, 20).free_bytes)


class RoundRobinTests(SynchronousTestCase):
    def test_cycles_in_name_order(self) -> None:
        self.assertEqual(picks(RoundRobin(), views("b", "c", "a"), 7), ["a", "b", "c", "a", "b", "c", "a"])

    def test_missing_candidate_is_skipped_without_repeating(self) -> None:
        strategy = RoundRobin()
        self.assertEqual(picks(strategy, views("a", "b", "c"), 1), ["a"])
        self.assertEqual(picks(strategy, views("a", "c"), 2), ["c", "a"])
        self.assertEqual(picks(strategy, views("a", "b", "c"), 3), ["b", "c", "a"])

    def test_each_instance_has_its_own_position(self) -> None:
        first, second = RoundRobin(), RoundRobin()
        picks(first, views("a", "b"), 1)
        self.assertEqual(picks(second, views("a", "b"), 1), ["a"])


class WeightedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.candidates = [BackendView("a", weight=5), BackendView("b", weight=3), BackendView("c", weight=2)]

    def test_full_cycle_matches_weights_exactly(self) -> None:
        strategy = SmoothWeightedRoundRobin()
        for _ in range(3):
            self.assertEqual(Counter(picks(strategy, self.candidates, 10)), {"a": 5, "b": 3, "c": 2})

    def test_sequence_is_smooth(self) -> None:
        sequence = picks(SmoothWeightedRoundRobin(), self.candidates, 10)
        self.assertEqual(sequence, ["a", "b", "c", "a", "a", "b", "a", "c", "b", "a"])
        runs = [1]
        for previous, current in zip(sequence, sequence[1:], strict=False):
            runs.append(runs[-1] + 1 if previous == current else 1)
        self.assertLessEqual(max(runs), 2)

    def test_heavy_weight_is_interleaved(self) -> None:
        sequence = picks(SmoothWeightedRoundRobin(), [BackendView("a", 9), BackendView("b", 1)], 10)
        self.assertEqual(sequence.count("b"), 1)
        self.assertNotIn(sequence.index("b"), (0, 9))

    def test_does_not_depend_on_candidate_order(self) -> None:
        forward = picks(SmoothWeightedRoundRobin(), self.candidates, 20)
        backward = picks(SmoothWeightedRoundRobin(), list(reversed(self.candidates)), 20)
        self.assertEqual(forward, backward)

    def test_candidates_leaving_and_returning(self) -> None:
        strategy = SmoothWeightedRoundRobin()
        picks(strategy, self.candidates, 4)
        without_a = picks(strategy, self.candidates[1:], 5)
        self.assertEqual(set(without_a), {"b", "c"})
        picks(strategy, self.candidates, 3)
        # Back to the full set: within a few cycles every full cycle is exact again.
        for _ in range(3):
            picks(strategy, self.candidates, 10)
        self.assertEqual(Counter(picks(strategy, self.candidates, 10)), {"a": 5, "b": 3, "c": 2})

    def test_zero_weight_is_used_only_alone(self) -> None:
        strategy = SmoothWeightedRoundRobin()
        candidates = [BackendView("a", 1), BackendView("z", 0)]
        self.assertEqual(set(picks(strategy, candidates, 10)), {"a"})
        self.assertEqual(
            Counter(picks(strategy, [BackendView("y", 0), BackendView("z", 0)], 4)), {"y": 2, "z": 2}
        )


class LeastSpaceTests(SynchronousTestCase):
    def test_most_free_bytes_wins(self) -> None:
        candidates = [
            BackendView("a", max_size=100, used_bytes=50),
            BackendView("b", max_size=1000, used_bytes=800),
            BackendView("c", max_size=100, used_bytes=10),
        ]
        self.assertEqual(picks(LeastSpace(), candidates, 1), ["b"])

    def test_reserved_bytes_count(self) -> None:
        candidates = [
            BackendView("a", max_size=1000, used_bytes=100, reserved_bytes=500),
            BackendView("b", max_size=1000, used_bytes=300),
        ]
        self.assertEqual(picks(LeastSpace(), candidates, 1), ["b"])

    def test_unlimited_wins(self) -> None:
        candidates = [
            BackendView("a", max_size=10**15),
            BackendView("b", max_size=None, used_bytes=10**14),
        ]
        self.assertEqual(picks(LeastSpace(), candidates, 1), ["b"])

    def test_ties_go_to_the_first_name(self) -> None:
        candidates = [
            BackendView("c", max_size=10),
            BackendView("a", max_size=10),
            BackendView("b", max_size=10),
        ]
        self.assertEqual(picks(LeastSpace(), candidates, 3), ["a", "a", "a"])
        unlimited = [BackendView("z"), BackendView("y")]
        self.assertEqual(picks(LeastSpace(), unlimited, 1), ["y"])


class HashRingTests(SynchronousTestCase):
    keys = [f"photos/{index:05d}.jpg" for index in range(10_000)]

    def place(self, ring: HashRing, candidates: list[BackendView]) -> dict[str, str]:
        placed = {}
        for key in self.keys:
            backend = ring.choose(PlacementContext("demo", key, 1), candidates)
            assert backend is not None
            placed[key] = backend.name
        return placed

    def test_stable_hash_is_fixed(self) -> None:
        # Independent of PYTHONHASHSEED and of the process, unlike hash().
        self.assertEqual(
            stable_hash("abc"), int.from_bytes(hashlib.blake2b(b"abc", digest_size=8).digest(), "big")
        )

    def test_same_key_same_backend(self) -> None:
        candidates = views("a", "b", "c")
        first = self.place(HashRing(), candidates)
        self.assertEqual(self.place(HashRing(), list(reversed(candidates))), first)

    def test_bucket_is_part_of_the_key(self) -> None:
        ring, candidates = HashRing(), views("a", "b", "c", "d")
        differ = sum(
            ring.choose(PlacementContext("one", key), candidates)
            != ring.choose(PlacementContext("two", key), candidates)
            for key in self.keys[:1000]
        )
        self.assertGreater(differ, 500)

    def test_keys_spread_over_backends(self) -> None:
        counts = Counter(self.place(HashRing(), views("a", "b", "c", "d")).values())
        for name in "abcd":
            self.assertTrue(1500 < counts[name] < 3500, counts)

    def test_adding_a_backend_moves_about_one_in_n_plus_one(self) -> None:
        before = self.place(HashRing(), views("a", "b", "c", "d"))
        after = self.place(HashRing(), views("a", "b", "c", "d", "e"))
        moved = [key for key in self.keys if before[key] != after[key]]
        self.assertTrue(1000 <= len(moved) <= 3000, len(moved))
        self.assertEqual({after[key] for key in moved}, {"e"})

    def test_removing_a_candidate_moves_only_its_keys(self) -> None:
        ring = HashRing()
        before = self.place(ring, views("a", "b", "c", "d"))
        after = self.place(ring, views("a", "b", "d"))
        moved = {key for key in self.keys if before[key] != after[key]}
        self.assertEqual(moved, {key for key in self.keys if before[key] == "c"})
        self.assertEqual(self.place(ring, views("a", "b", "c", "d")), before)

    def test_weight_gives_more_keys(self) -> None:
        counts = Counter(
            self.place(HashRing(), [BackendView("a", weight=3), BackendView("b", weight=1)]).values()
        )
        self.assertTrue(6500 < counts["a"] < 8500, counts)
