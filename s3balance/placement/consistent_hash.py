"""Consistent-hash placement: a hash ring with virtual nodes on bucket/key."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from zope.interface import implementer

from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext

__all__ = ["HashRing", "stable_hash"]

#: Ring points per unit of weight.
POINTS_PER_WEIGHT = 100


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@implementer(IStrategy)
class HashRing:
    """Maps ``f"{bucket}/{key}"`` to a backend on a ring of virtual nodes.

    Each backend owns ``POINTS_PER_WEIGHT * max(weight, 1)`` points on the
    ring.  A key goes to the owner of the first point clockwise from its hash
    *that is among the candidates*, so a backend that is unhealthy or full only
    gives away its own keys, and adding one backend to N moves about 1/(N+1) of
    the keys, all to the new one.

    Every backend ever seen stays on the ring (a backend's points depend only on
    its name and weight), so the ring is rebuilt only when a new backend or a
    new weight shows up.
    """

    name = "consistent-hash"

    def __init__(self, points_per_weight: int = POINTS_PER_WEIGHT) -> None:
        self._points_per_weight = points_per_weight
        self._members: dict[str, int] = {}
        self._hashes: list[int] = []
        self._owners: list[str] = []

    def _update(self, candidates: Sequence[BackendView]) -> None:
        changed = False
        for backend in candidates:
            weight = max(backend.weight, 1)
            if self._members.get(backend.name) != weight:
                self._members[backend.name] = weight
                changed = True
        if not changed:
            return
        points = sorted(
            (stable_hash(f"{name}#{index}"), name)
            for name, weight in self._members.items()
            for index in range(weight * self._points_per_weight)
        )
        self._hashes = [point for point, _ in points]
        self._owners = [owner for _, owner in points]

    def choose(self, context: PlacementContext, candidates: Sequence[BackendView]) -> BackendView | None:
        if not candidates:
            return None
        self._update(candidates)
        by_name = {backend.name: backend for backend in candidates}
        start = bisect.bisect_left(self._hashes, stable_hash(f"{context.bucket}/{context.key}"))
        count = len(self._owners)
        for step in range(count):
            owner = by_name.get(self._owners[(start + step) % count])
            if owner is not None:
                return owner
        raise AssertionError("every candidate has points on the ring")
