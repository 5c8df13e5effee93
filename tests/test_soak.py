"""
A short slice of the soak (bench/soak.py; `make soak` runs it for 10 minutes):
mixed load, every key reads back as its last acknowledged version, memory
and open files stay flat.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.soak import Soak
from tests.daemon import start_gateway


class SoakSliceTests(SynchronousTestCase):
    def test_short_mixed_load_stays_consistent_and_flat(self) -> None:
        gateway = start_gateway("soak-slice", balancer={"deletion_grace": "2s"})
        self.addCleanup(gateway.daemon.stop)
        soak = Soak(gateway, duration=20.0, clients=4, keys=16, seed=7)
        self.assertEqual(soak.run(interval=1.0), 0, soak.errors[:5])
        self.assertGreater(sum(soak.counts.values()), 50, soak.counts)
