"""Least-space placement: the backend with the most free bytes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from zope.interface import implementer

from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext

__all__ = ["LeastSpace"]


def _most_free_first(backend: BackendView) -> tuple[float, str]:
    free = backend.free_bytes
    return (-math.inf if free is None else -free, backend.name)


@implementer(IStrategy)
class LeastSpace:
    """Picks the most free bytes (``max_size - used - reserved``).

    Unlimited backends count as infinitely free; ties go to the first name in
    sort order, so the choice is deterministic.
    """

    name = "least-space"

    def choose(self, context: PlacementContext, candidates: Sequence[BackendView]) -> BackendView | None:
        if not candidates:
            return None
        return min(candidates, key=_most_free_first)
