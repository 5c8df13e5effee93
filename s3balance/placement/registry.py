"""Finding strategies: Twisted plugins that provide IStrategyFactory."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import getPlugins

from s3balance.config import ConfigError
from s3balance.placement.interfaces import IStrategy, IStrategyFactory

__all__ = ["UnknownStrategy", "available_strategies", "make_strategy"]

log = Logger()


class UnknownStrategy(ConfigError):
    """``balancer.strategy`` names no installed strategy plugin."""


def available_strategies() -> dict[str, IStrategyFactory]:
    """Every installed strategy factory by name, in name order.

    Plugins live in any ``twisted/plugins/`` directory on ``sys.path`` (the
    built-ins are in s3balance's ``twisted/plugins/s3balance_strategies.py``).
    When two plugins claim one name the first found wins and the other is
    logged.
    """
    import twisted.plugins

    found: dict[str, IStrategyFactory] = {}
    for factory in getPlugins(IStrategyFactory, twisted.plugins):
        if factory.name in found:
            log.warn(
                "ignoring strategy plugin {plugin!r}: the name {name} is already taken by {other!r}",
                plugin=factory,
                name=factory.name,
                other=found[factory.name],
            )
            continue
        found[factory.name] = factory
    return dict(sorted(found.items()))


def make_strategy(name: str) -> IStrategy:
    """A new strategy from the plugin called ``name``; raises :class:`UnknownStrategy`."""
    factories = available_strategies()
    factory = factories.get(name)
    if factory is None:
        installed = ", ".join(factories) or "none"
        raise UnknownStrategy(f"balancer.strategy: unknown strategy {name!r} (installed: {installed})")
    strategy: IStrategy = factory()
    return strategy
