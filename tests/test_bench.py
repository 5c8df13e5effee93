"""
The benchmark tool (bench/, `make bench`) runs: a smoke run of it with real
SeaweedFS, the daemon, nginx (when installed) and the bare Twisted proxy of
bench/floor.py, and one of the replicas and failover sections (a second
SeaweedFS, three more daemons).  It measures nothing here; the figures come
from `make bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench import failover, report

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


class ReplicasAndFailoverReportTests(SynchronousTestCase):
    def test_the_replicas_target_per_client_count(self) -> None:
        def scenario(clients: int, one: float, two: float) -> dict:
            return {
                "scenario": {"clients": clients, "size": 64 * 2**20},
                "targets": {"replicas1": {"mb_per_s": one}, "replicas2": {"mb_per_s": two}},
                "ratio": two / one,
                "ratio_rounds": [two / one],
            }

        results = {"replicas": {"scenarios": {"put64m@1": scenario(1, 100, 90), "put64m@8": scenario(8, 100, 70)}}}
        found = {t["target"]: (t["status"], t["measured"]) for t in report.replicas_targets(results)}
        self.assertEqual(found, {
            "64 MiB PUT replicas: 2 >= 0.8 x replicas: 1 (1 client)": ("PASS", 0.9),
            "64 MiB PUT replicas: 2 >= 0.8 x replicas: 1 (8 clients)": ("FAIL", 0.7),
        })
        self.assertEqual([row[:4] for row in report.replicas_rows(results["replicas"])],
                         [["put64m@1", "100", "90", "0.90"], ["put64m@8", "100", "70", "0.70"]])
        self.assertEqual({t["status"] for t in report.replicas_targets({})}, {"SKIP"})

    def test_failover_added_latency(self) -> None:
        def group(p50: float, p99: float) -> dict:
            return {"requests": 10, "errors": 0, "p50_ms": p50, "p99_ms": p99, "ttfb_p50_ms": p50 - 0.5,
                    "ttfb_p99_ms": p99}

        results = {"phases": {
            "alive": {"never-down": {failover.DEAD: group(2.0, 5.0), failover.ALIVE: group(2.5, 5.0)}},
            "dead, before down": {"never-down": {failover.DEAD: group(4.0, 9.0), failover.ALIVE: group(2.5, 6.0)}},
        }}
        self.assertEqual(failover.added(results),
                         {"dead, before down (never-down)": {"p50": 2.0, "p99": 4.0, "ttfb_p50": 2.0}})
        rows = failover.rows(results)
        self.assertEqual(rows[2][:3] + rows[2][5:], ["dead, before down", "never-down", failover.DEAD, "4.00",
                                                      "9.00", "3.50", "9.00", "+1.50"])


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


class ListingTargetTests(SynchronousTestCase):
    def test_a_listing_target_per_versions_count(self) -> None:
        def measured(keys: int, versions: int, worst: float) -> dict:
            page = {"median_ms": worst, "min_ms": worst, "max_ms": worst, "entries": 1000, "truncated": True}
            return {"keys": keys, "versions": versions, "insert_s": 1.0, "pages": {"first": page},
                    "version_pages": {"first": page}}

        results = {"listing": {
            "sqlite": {"1000000": measured(10**6, 1, 40.0), "1000000x3": measured(10**6, 3, 60.0)},
            "postgres": {"10000": measured(10**4, 1, 10.0), "10000x3": measured(10**4, 3, 12.0)},
        }}
        found = {t["target"]: (t["status"], t["measured"]) for t in report.evaluate_targets(results)
                 if t["target"].startswith("1000-key page")}
        self.assertEqual(found, {
            "1000-key page <= 50 ms at 10^6 keys (sqlite)": ("PASS", 40.0),
            "1000-key page <= 50 ms at 10^6 keys x 3 versions (sqlite)": ("FAIL", 60.0),
            "1000-key page <= 50 ms at 10^6 keys (postgres)": ("SKIP", 10.0),
            "1000-key page <= 50 ms at 10^6 keys x 3 versions (postgres)": ("SKIP", 12.0),
        })
        lines: list[str] = []
        report.print_report(results, lines.append)
        text = "\n".join(lines)
        self.assertIn("versions first", text)
        self.assertIn("v2 first", text)
