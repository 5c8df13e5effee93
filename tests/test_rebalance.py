"""
Rebalancing the backends (s3balance.ops.rebalance, s3balance.store.rebalance).

 - L{RebalanceStoreMixin}: the store's rebalance calls on the fake and on
   SQLite, PostgreSQL and MariaDB alike: start, pause, resume, cancel, a new
   start after the end, progress notes, the location switch counted in the
   rebalance's row (and in no drain's).
 - Unit tests: the levels (capacity and weights), the choice of a target,
   the margin's parsing, the JSON document, the CLI's lines.
 - L{RebalanceDaemonTests}: a real daemon (SQLite) over two real SeaweedFS
   servers: objects written while one backend is disabled all land on the
   other; the rebalance (through s3balance-admin) ends with the shares
   within the margin and every object reading back byte for byte; a daemon
   SIGKILLed mid-rebalance (a copy under way) resumes it after its restart
   and finishes with every object there once, on one backend, byte for byte.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import sqlite3
import urllib.request
from typing import Any

import attr
from twisted.trial import unittest

from s3balance.ops import rebalance_cli
from s3balance.ops.drain_cli import Progress
from s3balance.ops.rebalance import Balance, Member, parse_margin, rebalance_document
from s3balance.store.interfaces import Location, RebalanceRecord, RebalanceStateError
from tests import dbfixtures
from tests.daemon import poll
from tests.test_drain import VB, Drained, pattern
from tests.test_store import BUCKET, T0
from tests.test_store_contract import OnDatabase, OnMemoryStore, _Helpers

# -- the store ----------------------------------------------------------------------


class RebalanceStoreMixin(_Helpers):
    async def test_start_pause_resume_cancel_and_start_anew(self) -> None:
        self.assertIsNone(await self.store.rebalance())
        started = await self.store.start_rebalance(0.05)
        self.assertEqual((started.state, started.margin, started.rate, started.moved_objects), ("running", 0.05, None, 0))
        again = await self.store.start_rebalance(0.1, 1000)  # under way: margin and rate set
        self.assertEqual((again.state, again.margin, again.rate, again.started), ("running", 0.1, 1000, started.started))
        self.assertEqual((await self.store.start_rebalance(0.1)).rate, 1000)
        paused = await self.store.set_rebalance_state("paused")
        self.assertEqual(paused.state, "paused")
        self.assertEqual((await self.store.start_rebalance(0.1)).state, "paused")  # the store keeps the state
        resumed = await self.store.set_rebalance_state("running", 5)
        self.assertEqual((resumed.state, resumed.rate), ("running", 5))
        with self.assertRaises(ValueError):
            await self.store.set_rebalance_state("done")
        cancelled = await self.store.cancel_rebalance()
        self.assertEqual(cancelled.state, "cancelled")
        self.assertIsNotNone(cancelled.finished)
        await self.assertFailure(self.store.cancel_rebalance(), RebalanceStateError)
        await self.assertFailure(self.store.set_rebalance_state("paused"), RebalanceStateError)
        self.assertEqual((await self.store.rebalance()).state, "cancelled")
        fresh = await self.store.start_rebalance(0.02)
        self.assertEqual((fresh.state, fresh.margin, fresh.rate, fresh.finished), ("running", 0.02, None, None))

    async def test_nothing_to_change_without_a_rebalance(self) -> None:
        self.assertIsNone(await self.store.set_rebalance_state("paused"))
        self.assertIsNone(await self.store.cancel_rebalance())
        self.assertIsNone(await self.store.note_rebalance_progress(1.0, 1, "x"))

    async def test_progress_notes_and_the_end(self) -> None:
        await self.store.start_rebalance(0.05)
        await self.store.note_rebalance_progress(1.5, 2, "boom", 0.25, 1000)
        noted = await self.store.note_rebalance_progress(0.25, 0, None)
        self.assertEqual(
            (noted.active_seconds, noted.failed_objects, noted.last_error, noted.spread, noted.remaining_bytes),
            (1.75, 2, "boom", 0.25, 1000),
        )
        await self.store.set_rebalance_state("paused")
        paused = await self.store.note_rebalance_progress(0, 0, "", 0.01, 0, finished=True)
        self.assertEqual((paused.state, paused.last_error), ("paused", None))  # only a running one ends
        await self.store.set_rebalance_state("running")
        done = await self.store.note_rebalance_progress(0, 0, None, 0.01, 0, finished=True)
        self.assertEqual((done.state, done.spread), ("done", 0.01))
        self.assertIsNotNone(done.finished)
        await self.assertFailure(self.store.set_rebalance_state("paused"), RebalanceStateError)

    async def test_a_switch_moves_the_location_and_counts_in_the_rebalance_only(self) -> None:
        record = await self.put("k", "vb/old", size=10)
        await self.put("other", "vb/other", size=3)
        await self.store.start_rebalance(0.05)
        await self.store.note_rebalance_progress(0, 0, None, 0.5, 25)
        candidate = next(c for c in await self.store.drain_candidates("b1", 0, 10) if c.record.key == "k")
        intent = await self.store.begin_write("b2", "vb/new", 60, 10)
        self.assertEqual(await self.store.rebalance_switch(intent.id, candidate, Location("b2", "vb/new")), "moved")
        self.assertEqual(await self.store.get_object(BUCKET, "k"), attr.evolve(record, locations=(Location("b2", "vb/new"),)))
        self.assertEqual(await self.due(), [("b1", "vb/old", "drained", 0)])
        counted = await self.store.rebalance()
        self.assertEqual((counted.moved_objects, counted.moved_bytes, counted.remaining_bytes), (1, 10, 15))
        self.assertEqual(await self.store.drains(), [])  # no drain row appeared
        # A copy of an object deleted meanwhile: stale, not counted.
        [other] = await self.store.drain_candidates("b1", 0, 10)
        await self.store.delete_object(BUCKET, "other")
        intent = await self.store.begin_write("b2", "vb/copy", 60, 3)
        self.assertEqual(await self.store.rebalance_switch(intent.id, other, Location("b2", "vb/copy")), "stale")
        self.assertEqual((await self.store.rebalance()).moved_objects, 1)


class MemoryRebalanceStoreTests(OnMemoryStore, RebalanceStoreMixin, unittest.TestCase):
    pass


class SQLiteRebalanceStoreTests(OnDatabase, RebalanceStoreMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLRebalanceStoreTests(OnDatabase, RebalanceStoreMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBRebalanceStoreTests(OnDatabase, RebalanceStoreMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- the levels -------------------------------------------------------------------


class BalanceTests(unittest.SynchronousTestCase):
    def test_capacity_fractions_against_the_whole(self) -> None:
        balance = Balance([Member("a", 80, 100, 1), Member("b", 20, 100, 1), Member("c", 50, 200, 5)])
        self.assertEqual(balance.mode, "capacity")
        self.assertAlmostEqual(balance.target("a"), 150 / 400)
        self.assertAlmostEqual(balance.fraction("a"), 0.8)
        self.assertAlmostEqual(balance.spread(), 0.8 - 0.2)
        self.assertEqual(balance.fullest(), "a")
        # The lowest below its target, not a holder, that the move improves.
        self.assertEqual(balance.choose("a", 10, ["a"], ["b", "c"]), "b")
        self.assertEqual(balance.choose("a", 10, ["a", "b"], ["b", "c"]), "c")
        self.assertIsNone(balance.choose("a", 10, ["a"], []))  # no room anywhere
        # Too big: the target would pass the source.
        self.assertIsNone(balance.choose("a", 70, ["a"], ["b", "c"]))
        balance.move("a", "b", 30)
        self.assertAlmostEqual(balance.spread(), 0.5 - 0.25)
        self.assertTrue(balance.balanced(0.25))
        self.assertFalse(balance.balanced(0.2))

    def test_weights_shares_of_the_stored_bytes(self) -> None:
        balance = Balance([Member("a", 900, None, 1), Member("b", 100, 1000, 3)])  # one without max_size
        self.assertEqual(balance.mode, "weights")
        self.assertAlmostEqual(balance.level("a"), 0.9 - 0.25)
        self.assertAlmostEqual(balance.level("b"), 0.1 - 0.75)
        self.assertAlmostEqual(balance.spread(), 1.3)
        self.assertEqual(balance.excess_bytes(0.0), 650)
        balance.move("a", "b", 650)
        self.assertAlmostEqual(balance.spread(), 0.0)
        self.assertEqual(balance.excess_bytes(0.05), 0)

    def test_nothing_stored_or_one_backend_is_balanced(self) -> None:
        self.assertTrue(Balance([Member("a", 0, None, 1), Member("b", 0, None, 1)]).balanced(0.01))
        self.assertTrue(Balance([Member("a", 10, None, 1)]).balanced(0.01))
        self.assertEqual(Balance([]).fullest(), None)

    def test_margins(self) -> None:
        self.assertEqual(parse_margin(0.05), 0.05)
        self.assertEqual(parse_margin("0.1"), 0.1)
        self.assertEqual(parse_margin("5%"), 0.05)
        for bad in (0, 1, -0.1, "x", True, None, "150%"):
            with self.assertRaises(ValueError):
                parse_margin(bad)


def record(**changes: Any) -> RebalanceRecord:
    values: dict[str, Any] = dict(
        state="running", margin=0.05, rate=None, started=T0, updated=T0 + datetime.timedelta(seconds=10),
        moved_objects=4, moved_bytes=400, active_seconds=4.0, remaining_bytes=600, spread=0.3,
    )
    values.update(changes)
    return RebalanceRecord(**values)


class DocumentAndCLITests(unittest.SynchronousTestCase):
    def test_document(self) -> None:
        balance = Balance([Member("a", 800, None, 1), Member("b", 200, None, 1)])
        document = rebalance_document(record(), balance, 0)
        self.assertEqual((document["state"], document["progress"], document["rate"], document["eta_seconds"]),
                         ("running", 0.4, 100, 6))
        self.assertEqual([b["backend"] for b in document["backends"]], ["a", "b"])
        self.assertAlmostEqual(document["spread"], 0.6)
        self.assertFalse(document["balanced"])
        done = rebalance_document(record(state="done"), balance, 0)
        self.assertEqual((done["progress"], done["eta_seconds"], done["bytes"]["remaining"]), (1.0, 0, 0))
        never = rebalance_document(None, balance, 0)
        self.assertEqual((never["state"], never["margin"]), (None, 0.05))

    def test_lines_and_waiting(self) -> None:
        balance = Balance([Member("a", 800, None, 1), Member("b", 200, None, 1)])
        document = rebalance_document(record(), balance, 1000)
        line = rebalance_cli.progress_line(document)
        self.assertIn("rebalance [##########--------------]  40.0% 4 objects 400 B moved", line)
        self.assertTrue(line.endswith("ETA 0:00:06 running"), line)
        text = rebalance_cli.summary(document)
        self.assertIn("rebalance: running, margin 0.05, spread 0.6000 (weights)", text)
        self.assertIn("  a: 800 B used, fraction 0.8000, target 0.5000 (+0.3000)", text)
        stream = io.StringIO()
        answers = iter([document, {**document, "state": "done", "progress": 1.0}])
        status, last = rebalance_cli.wait_for(lambda: next(answers), Progress(stream, True, render=rebalance_cli.progress_line), 0,
                                              sleep=lambda _: None)
        self.assertEqual((status, last["state"]), (0, "done"))
        self.assertIn("rebalance [", stream.getvalue())
        answers = iter([{**document, "state": "paused"}])
        self.assertEqual(rebalance_cli.wait_for(lambda: next(answers), Progress(stream, False), 0)[0], 3)


# -- a real daemon over two SeaweedFS servers --------------------------------------------


class RebalanceDaemonTests(unittest.SynchronousTestCase):
    def test_a_rebalance_evens_out_the_backends_and_keeps_every_object(self) -> None:
        gateway = Drained(self, name="rebalance")
        client = gateway.client
        disabled = gateway.admin("POST", f"backends/{gateway.b2}/disable")
        self.assertFalse(disabled.get("status"), disabled)
        bodies = {}
        for n in range(24):
            key = f"obj/{n:03d}"
            bodies[key] = pattern(20_000 + 1000 * n, n)
            client.put_object(Bucket=VB, Key=key, Body=bodies[key], Metadata={"n": str(n)})
        self.assertEqual(set(gateway.locations().values()), {gateway.b1})
        heads = {key: client.head_object(Bucket=VB, Key=key) for key in bodies}
        gateway.admin("POST", f"backends/{gateway.b2}/enable")
        before = gateway.admin("GET", "rebalance")
        self.assertIsNone(before["state"])
        result = subprocess_cli(gateway, "--margin", "0.1", "--rate", "0", "--wait", "--no-progress")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("rebalance: done, margin 0.1", result.stdout)
        # The shares of the stored bytes (equal weights) end within the margin.
        placed = gateway.locations()
        stored = {gateway.b1: 0, gateway.b2: 0}
        for key, backend in placed.items():
            stored[backend] += len(bodies[key])
        total = sum(stored.values())
        self.assertLessEqual(abs(stored[gateway.b1] - stored[gateway.b2]) / total, 0.1, stored)
        report = gateway.admin("GET", "rebalance")
        self.assertEqual(report["state"], "done")
        moved = sum(1 for backend in placed.values() if backend == gateway.b2)
        self.assertEqual(report["objects"]["moved"], moved)
        self.assertEqual(report["bytes"]["moved"], stored[gateway.b2])
        self.assertTrue(report["balanced"], report)
        for key, body in bodies.items():
            got = client.get_object(Bucket=VB, Key=key)
            self.assertEqual(hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(body).hexdigest(), key)
            self.assertEqual((got["ETag"], got["Metadata"]), (heads[key]["ETag"], heads[key]["Metadata"]))
        # The moved objects' old copies leave b1's real bucket (the grace is 0 here).
        poll(lambda: len(gateway.real_objects(0)) == len(bodies) - moved, timeout=20,
             message="b1 still holds the moved copies")
        with urllib.request.urlopen(f"{gateway.daemon.endpoint}/metrics", timeout=10) as answer:
            metrics = answer.read().decode().splitlines()
        self.assertIn(f"s3balance_rebalance_objects_moved_total {float(moved)}", metrics)
        poll(lambda: 's3balance_rebalance_state{state="done"} 1.0' in metrics_of(gateway), timeout=10,
             message="the state gauge does not show done")
        # A finished rebalance cannot be paused; a new one starts (and is balanced at once).
        self.assertEqual(gateway.admin("POST", "rebalance/pause")["status"], 409)
        again = gateway.admin("POST", "rebalance", {"margin": "10%"})
        self.assertEqual((again["state"], again["margin"]), ("running", 0.1))
        poll(lambda: gateway.admin("GET", "rebalance")["state"] == "done", timeout=20, interval=0.25,
             message="the second rebalance did not finish")
        self.assertEqual(gateway.admin("GET", "rebalance")["objects"]["moved"], 0)


    def test_a_daemon_killed_mid_rebalance_resumes_it_and_loses_nothing(self) -> None:
        gateway = Drained(self, name="rebalance-kill", drain_rate="1MB/s")
        client = gateway.client
        gateway.admin("POST", f"backends/{gateway.b2}/disable")
        bodies = {}
        for n in range(16):
            key = f"obj/{n:03d}"
            bodies[key] = pattern(400 * 1024 + n, 100 + n)
            client.put_object(Bucket=VB, Key=key, Body=bodies[key], Metadata={"n": str(n)})
        self.assertEqual(set(gateway.locations().values()), {gateway.b1})
        heads = {key: client.head_object(Bucket=VB, Key=key) for key in bodies}
        gateway.admin("POST", f"backends/{gateway.b2}/enable")
        started = gateway.admin("POST", "rebalance", {"margin": 0.1})  # the configured rate: 1 MB/s
        self.assertEqual(started["state"], "running", started)
        poll(lambda: gateway.admin("GET", "rebalance")["objects"]["moved"] >= 2, timeout=30, interval=0.05,
             message="the rebalance moved nothing")
        gateway.daemon.kill()  # SIGKILL: a copy is (most likely) under way
        moved_before = self.stored_rebalance(gateway)["moved_objects"]
        gateway.daemon.start()
        gateway.client = client = gateway.daemon.client()
        self.assertEqual(gateway.admin("GET", "rebalance")["state"], "running")  # resumed from the database
        done = poll(lambda: (lambda r: r if r["state"] == "done" else None)(gateway.admin("GET", "rebalance")),
                    timeout=60, interval=0.25, message="the rebalance did not finish after the restart")
        self.assertGreater(done["objects"]["moved"], moved_before)
        # No object lost or changed: one row each, one location each, every body byte for byte.
        placed = self.copies(gateway)
        self.assertEqual(set(placed), set(bodies))
        self.assertTrue(all(len(backends) == 1 for backends in placed.values()), placed)
        on_b2 = sum(1 for backends in placed.values() if backends == [gateway.b2])
        self.assertEqual(done["objects"]["moved"], on_b2)
        stored = {gateway.b1: 0, gateway.b2: 0}
        for key, [backend] in placed.items():
            stored[backend] += len(bodies[key])
        self.assertLessEqual(abs(stored[gateway.b1] - stored[gateway.b2]) / sum(stored.values()), 0.1, stored)
        for key, body in bodies.items():
            got = client.get_object(Bucket=VB, Key=key)
            self.assertEqual(hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(body).hexdigest(), key)
            self.assertEqual((got["ETag"], got["Metadata"]), (heads[key]["ETag"], heads[key]["Metadata"]))
        # The old copies of the moved objects leave b1 (the grace is 0 here).
        poll(lambda: len(gateway.real_objects(0)) == len(bodies) - on_b2, timeout=20,
             message="b1 still holds moved copies")

    @staticmethod
    def stored_rebalance(gateway: Drained) -> dict[str, Any]:
        """The rebalance's row, read from the database (the daemon is down)."""
        path = gateway.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute("SELECT * FROM rebalances").fetchone()
        return dict(row)

    @staticmethod
    def copies(gateway: Drained) -> dict[str, list[str]]:
        """Virtual key -> the backends of its locations."""
        path = gateway.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT o.key, l.backend FROM objects o LEFT JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ?",
                (VB,),
            ).fetchall()
        found: dict[str, list[str]] = {}
        for key, backend in rows:
            found.setdefault(bytes(key).decode(), []).append(backend)
        return found


def metrics_of(gateway: Drained) -> list[str]:
    with urllib.request.urlopen(f"{gateway.daemon.endpoint}/metrics", timeout=10) as answer:
        return answer.read().decode().splitlines()


def subprocess_cli(gateway: Drained, *args: str) -> Any:
    import subprocess

    from tests.daemon import ROOT
    from tests.harness.process import venv_bin

    return subprocess.run(
        [venv_bin("s3balance-admin"), "rebalance", *args, "--admin-url", gateway.daemon.endpoint],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "S3BALANCE_ADMIN_TOKEN": "drain-token"},
        capture_output=True, text=True, timeout=120,
    )
