"""Round-robin placement: each backend in turn, in name order."""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import implementer

from s3balance.placement.interfaces import BackendView, IStrategy, PlacementContext

__all__ = ["RoundRobin"]


@implementer(IStrategy)
class RoundRobin:
    """Cycles through the candidates sorted by name.

    The position is the name last chosen, not an index, so a backend that
    drops out of (or comes back into) the candidates does not make the cycle
    skip or repeat the others.
    """

    name = "round-robin"

    def __init__(self) -> None:
        self._last: str | None = None

    def choose(self, context: PlacementContext, candidates: Sequence[BackendView]) -> BackendView | None:
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda backend: backend.name)
        chosen = ordered[0]
        if self._last is not None:
            for backend in ordered:
                if backend.name > self._last:
                    chosen = backend
                    break
        self._last = chosen.name
        return chosen
