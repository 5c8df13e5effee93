"""A cheap IStrategyFactory for plugin modules: imports the strategy on first use."""

from __future__ import annotations

from attrs import frozen
from twisted.plugin import IPlugin
from twisted.python.reflect import namedAny
from zope.interface import implementer

from s3balance.placement.interfaces import IStrategy, IStrategyFactory

__all__ = ["LazyStrategyFactory"]


@implementer(IPlugin, IStrategyFactory)
@frozen
class LazyStrategyFactory:
    """Makes strategies of the class named by ``qualified_name`` ("pkg.mod.Class").

    Plugin modules are imported whenever plugins are listed, so they should
    not import the strategies themselves; this defers that to ``__call__``.
    """

    name: str
    description: str
    qualified_name: str

    def __call__(self) -> IStrategy:
        strategy: IStrategy = namedAny(self.qualified_name)()
        return strategy
