"""
The benchmark tool (bench/, `make bench`) runs: a smoke run of it with real
SeaweedFS, the daemon, nginx (when installed) and the bare Twisted proxy of
bench/floor.py.  It measures nothing here; the figures come from `make bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench import report

ROOT = Path(__file__).resolve().parent.parent


class BenchSmokeTests(SynchronousTestCase):
    def test_quick_run_with_the_floor(self) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "bench.json"
            run = subprocess.run(
                [sys.executable, "-m", "bench", "--quick", "--only", "put4k@1,get4k@1,latency", "--floor",
                 "--json", str(output)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=300,
            )
            self.assertEqual(run.returncode, 0, run.stdout[-3000:] + run.stderr[-3000:])
            results = json.loads(output.read_text())
        self.assertIn("The floor: a bare Twisted proxy", run.stdout)
        for scenario in ("put4k@1", "get4k@1"):
            targets = results["throughput"][scenario]["targets"]
            for name in ("direct", "s3balance", "twisted"):
                self.assertGreater(targets[name]["ops_per_s"], 0, (scenario, name, targets[name]))
                self.assertEqual(targets[name].get("error_count", 0), 0, (scenario, name, targets[name]))
        self.assertIn("Where a 1-client request's added latency goes", run.stdout)
        for op in ("put", "get"):
            figures = results["latency"][op]
            self.assertGreater(figures["request_ms"], 0, figures)
            self.assertGreater(figures["backend_ms"], 0, figures)
            # The parts add up to the added latency.
            self.assertAlmostEqual(sum(figures["parts_ms"].values()), figures["added_ms"], places=6)


class FloorTableTests(SynchronousTestCase):
    def test_rows_only_where_the_floor_ran(self) -> None:
        def target(ops: float, cpu: float) -> dict:
            return {"ops_per_s": ops, "proxy_cpu_us_per_op": cpu}

        results = {
            "put4k@8": {
                "targets": {"nginx": target(2000, 90), "twisted": target(1600, 250), "s3balance": target(800, 900)},
            },
            "get4k@8": {"targets": {"nginx": target(3000, 90)}},
        }
        rows = report.floor_rows(results)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][:6], ["put4k@8", "2000", "1600", "800", "0.80", "0.50"])
        self.assertEqual(rows[0][6:], ["90 us", "250 us", "900 us"])
