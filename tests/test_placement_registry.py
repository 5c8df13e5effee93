"""Tests for finding strategies as Twisted plugins."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import twisted.plugins
from s3balance.config import ConfigError
from s3balance.placement.interfaces import IStrategy, IStrategyFactory
from s3balance.placement.registry import UnknownStrategy, available_strategies, make_strategy

BUILT_IN = ["consistent-hash", "least-space", "round-robin", "weighted"]

EXTRA_PLUGIN = """
from zope.interface import implementer
from twisted.plugin import IPlugin

from s3balance.placement.interfaces import IStrategy, IStrategyFactory


@implementer(IStrategy)
class FirstName:
    name = "first-name"

    def choose(self, context, candidates):
        return min(candidates, key=lambda backend: backend.name, default=None)


@implementer(IPlugin, IStrategyFactory)
class FirstNameFactory:
    name = "first-name"
    description = "A third-party strategy for the tests."

    def __call__(self):
        return FirstName()


firstName = FirstNameFactory()
"""


class BuiltInTests(SynchronousTestCase):
    def test_built_ins_are_discovered(self) -> None:
        factories = available_strategies()
        self.assertEqual([name for name in factories if name in BUILT_IN], BUILT_IN)
        for name in BUILT_IN:
            factory = factories[name]
            self.assertTrue(verifyObject(IStrategyFactory, factory))
            self.assertEqual(factory.name, name)
            self.assertTrue(factory.description)

    def test_make_strategy(self) -> None:
        for name in BUILT_IN:
            strategy = make_strategy(name)
            self.assertTrue(verifyObject(IStrategy, strategy))
            self.assertEqual(strategy.name, name)

    def test_each_call_makes_a_new_strategy(self) -> None:
        self.assertIsNot(make_strategy("round-robin"), make_strategy("round-robin"))

    def test_unknown_name_lists_installed(self) -> None:
        with self.assertRaises(UnknownStrategy) as caught:
            make_strategy("foo")
        self.assertEqual(
            str(caught.exception),
            "balancer.strategy: unknown strategy 'foo' "
            "(installed: consistent-hash, least-space, round-robin, weighted)",
        )
        self.assertIsInstance(caught.exception, ConfigError)


class ThirdPartyPluginTests(SynchronousTestCase):
    def install_plugin(self) -> Callable[[], None]:
        """Put a plugin in a temp dir on sys.path; return the (idempotent) undo."""
        root = os.path.abspath(self.mktemp())
        plugins = os.path.join(root, "twisted", "plugins")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "extra_strategy.py"), "w", encoding="utf-8") as stream:
            stream.write(textwrap.dedent(EXTRA_PLUGIN))
        original_path = list(twisted.plugins.__path__)
        sys.path.insert(0, root)
        # twisted.plugins computed its __path__ when it was imported; add the
        # new directory as a fresh interpreter with root on sys.path would.
        twisted.plugins.__path__.insert(0, plugins)

        def remove() -> None:
            if root in sys.path:
                sys.path.remove(root)
            twisted.plugins.__path__[:] = original_path
            sys.modules.pop("twisted.plugins.extra_strategy", None)

        self.addCleanup(remove)
        return remove

    def test_third_party_plugin_is_discovered(self) -> None:
        self.install_plugin()
        self.assertEqual(sorted(available_strategies()), sorted([*BUILT_IN, "first-name"]))
        strategy = make_strategy("first-name")
        self.assertTrue(verifyObject(IStrategy, strategy))
        with self.assertRaises(UnknownStrategy) as caught:
            make_strategy("nope")
        self.assertIn("first-name", str(caught.exception))

    def test_cleanup_removes_the_plugin(self) -> None:
        remove = self.install_plugin()
        self.assertIn("first-name", available_strategies())
        remove()
        self.assertEqual(sorted(available_strategies()), BUILT_IN)
        self.assertNotIn("twisted.plugins.extra_strategy", sys.modules)
