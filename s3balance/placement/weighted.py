"""Weighted placement: nginx's smooth weighted round-robin."""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import implementer

from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext

__all__ = ["SmoothWeightedRoundRobin"]


@implementer(IStrategy)
class SmoothWeightedRoundRobin:
    """Deterministic, smooth weighted round-robin (as nginx's upstream module).

    Each call adds every candidate's weight to its running score, picks the
    highest score and subtracts the total weight from it.  Over a cycle of
    ``sum(weights)`` calls each backend is picked exactly ``weight`` times,
    interleaved rather than in runs (5, 3, 2 gives a b c a a b a c b a).

    Scores are kept per name; a backend that leaves the candidates loses its
    score and starts again from zero when it comes back.  Weight-0 backends are
    picked only when every candidate has weight 0 (then all count as 1).
    """

    name = "weighted"

    def __init__(self) -> None:
        self._scores: dict[str, int] = {}

    def choose(self, context: PlacementContext, candidates: Sequence[BackendView]) -> BackendView | None:
        if not candidates:
            return None
        weighted = [backend for backend in candidates if backend.weight > 0]
        weights = {backend.name: backend.weight for backend in weighted}
        if not weighted:
            weighted = list(candidates)
            weights = {backend.name: 1 for backend in weighted}
        scores = {name: self._scores.get(name, 0) + weight for name, weight in weights.items()}
        # Highest score wins; equal scores go to the first name so the order
        # does not depend on how the caller listed the candidates.
        chosen = min(weighted, key=lambda backend: (-scores[backend.name], backend.name))
        scores[chosen.name] -= sum(weights.values())
        self._scores = scores
        return chosen
