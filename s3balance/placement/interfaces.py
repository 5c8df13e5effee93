"""The placement seam: what a strategy is given and what it must provide."""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen
from zope.interface import Attribute, Interface

__all__ = ["BackendView", "IStrategy", "IStrategyFactory", "PlacementContext"]


@frozen
class PlacementContext:
    """What is being placed: ``key`` in virtual ``bucket``, ``size`` bytes if known."""

    bucket: str
    key: str
    size: int | None = None


@frozen
class BackendView:
    """A strategy's read-only view of one backend at the moment of the choice.

    ``max_size`` None means unlimited; ``reserved_bytes`` counts uploads in flight.
    """

    name: str
    weight: int = 1
    max_size: int | None = None
    used_bytes: int = 0
    reserved_bytes: int = 0

    @property
    def free_bytes(self) -> int | None:
        """Bytes left against ``max_size`` (may be negative), None when unlimited."""
        if self.max_size is None:
            return None
        return self.max_size - self.used_bytes - self.reserved_bytes


class IStrategy(Interface):
    """Chooses the backend that receives a new object."""

    name = Attribute("The strategy's registered name, e.g. 'round-robin'.")

    def choose(context: PlacementContext, candidates: Sequence[BackendView]) -> BackendView | None:
        """Return one of ``candidates``, or None only when ``candidates`` is empty.

        The candidates are already filtered (healthy, enabled, with room, under
        their operation limits); a strategy only picks among them.  A strategy
        may keep state between calls (e.g. a round-robin position).
        """


class IStrategyFactory(Interface):
    """A Twisted plugin (found with ``getPlugins``) that makes strategies."""

    name = Attribute("The name used in ``balancer.strategy``, e.g. 'round-robin'.")
    description = Attribute("One line for humans.")

    def __call__() -> IStrategy:
        """Return a new provider of :class:`IStrategy` with fresh state."""
