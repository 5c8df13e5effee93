"""
Draining a backend (s3balance.ops.drain, s3balance.store.moves).

 - L{DrainStoreMixin}: the store's drain calls on the fake and on SQLite,
   PostgreSQL and MariaDB alike: totals, pages of candidates, the location
   switch in one transaction (an object overwritten, deleted or whose intent
   ran out keeps its state: the copy is queued for deletion instead), the
   recount that ends a drain, pause/resume/cancel, the part records.
 - Unit tests: the throttle and the gate on a controlled clock, the JSON
   document, the admin API over an in-process service, the CLI's parts,
   the configuration keys, the reload refusal.
 - L{DrainDaemonTests}: real daemons (SQLite) over two real SeaweedFS
   servers: a drain of b1 empties its real bucket while every object (small,
   multipart, with metadata) reads back byte for byte; new objects never go
   to b1; an object overwritten while it is copied keeps its new content;
   pause and resume; a daemon killed mid-drain resumes it; the rate limit;
   two daemons on one database move each object once; removing a backend
   that holds objects is refused, at reload and at start.

Over 500 lines: one feature's tests at its three levels (store, units,
daemons), whose fixtures the levels share; split, each part would import
the others' helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import attr
import yaml
from twisted.internet.defer import ensureDeferred
from twisted.internet.defer import fail as defer_fail
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from s3balance.admin.api import AdminResource
from s3balance.admin.target import ServiceAdminTarget
from s3balance.config import ConfigError, load_config, parse_config
from s3balance.daemon.service import GatewayService
from s3balance.ops import drain_cli
from s3balance.ops.drain import DrainMetrics, DrainWatcher, drain_document
from s3balance.ops.move import Throttle, _Gate, is_md5_etag
from s3balance.store.interfaces import DrainRecord, DrainStateError, Location
from s3balance.store.parts import PartRecord
from tests import dbfixtures
from tests.daemon import ROOT, Daemon, backend_entry, base_config, poll
from tests.fakestore import MemoryStore
from tests.harness import free_port, harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.harness.process import venv_bin
from tests.test_reload import API_TOKEN, config_dict
from tests.test_store import BUCKET, T0, make_record
from tests.test_store_contract import OnDatabase, OnMemoryStore, _Helpers, upload

MIB = 1024 * 1024
VB = "vb-drain"


# -- the store ----------------------------------------------------------------------


class DrainStoreMixin(_Helpers):
    """The drain calls, on the fake and on every database."""

    async def test_a_drain_counts_its_backend_and_is_started_once(self) -> None:
        await self.put("a", "vb/a", size=100)
        await self.put("b", "vb/b", size=20)
        await self.put("c", "vb/c", backend="b2", size=7)
        drain = await self.store.start_drain("b1")
        self.assertEqual(
            (drain.backend, drain.state, drain.rate, drain.total_objects, drain.total_bytes),
            ("b1", "draining", None, 2, 120),
        )
        self.assertEqual((drain.remaining_objects, drain.remaining_bytes, drain.moved_objects), (2, 120, 0))
        again = await self.store.start_drain("b1", 1000)  # under way: kept, its rate set
        self.assertEqual((again.total_objects, again.rate, again.started), (2, 1000, drain.started))
        self.assertEqual((await self.store.start_drain("b1")).rate, 1000)
        self.assertEqual([d.backend for d in await self.store.drains()], ["b1"])

        paused = await self.store.set_drain_state("b1", "paused")
        self.assertEqual(paused.state, "paused")
        self.assertEqual((await self.store.set_drain_state("b1", "paused")).state, "paused")
        self.assertEqual((await self.store.start_drain("b1")).state, "paused")  # the store keeps it as it is
        self.assertEqual((await self.store.set_drain_state("b1", "draining")).state, "draining")
        self.assertIsNone(await self.store.set_drain_state("b9", "paused"))
        self.assertEqual((await self.store.set_drain_rate("b1", None)).rate, None)
        self.assertIsNone(await self.store.set_drain_rate("b9", 5))
        with self.assertRaises(ValueError):
            await self.store.set_drain_state("b1", "done")

        cancelled = await self.store.cancel_drain("b1")
        self.assertEqual((cancelled.backend, cancelled.total_objects), ("b1", 2))
        self.assertEqual(await self.store.drains(), [])
        self.assertIsNone(await self.store.cancel_drain("b1"))

    async def test_candidates_come_in_pages_with_their_objects(self) -> None:
        for n in range(5):
            await self.put(f"k{n}", f"vb/{n}", backend="b2" if n == 2 else "b1", size=n)
        seen, after = [], 0
        while True:
            page = await self.store.drain_candidates("b1", after, 2)
            if not page:
                break
            self.assertLessEqual(len(page), 2)
            cursors = [candidate.cursor for candidate in page]
            self.assertEqual(cursors, sorted(cursors))
            self.assertGreater(cursors[0], after)
            seen.extend(page)
            after = page[-1].cursor
        self.assertEqual([c.record.key for c in seen], ["k0", "k1", "k3", "k4"])
        for candidate in seen:
            self.assertEqual(candidate.source, Location("b1", f"vb/{candidate.record.key[1:]}"))
            self.assertEqual(candidate.record, await self.store.get_object(BUCKET, candidate.record.key))
        self.assertEqual(await self.store.drain_candidates("b3", 0, 10), [])

    async def test_a_switch_moves_the_location_and_queues_the_old_copy_after_the_grace(self) -> None:
        store = await self.start_store(deletion_grace=30)
        record = await self.put("k", "vb/old", store=store, size=10)
        await store.start_drain("b1")
        [candidate] = await store.drain_candidates("b1", 0, 10)
        intent = await store.begin_write("b2", "vb/new", 60, 10)
        self.assertEqual(await store.switch_location(intent.id, candidate, Location("b2", "vb/new")), "moved")
        moved = await store.get_object(BUCKET, "k")
        self.assertEqual(moved, attr.evolve(record, locations=(Location("b2", "vb/new"),)))
        self.assertEqual(await self.due(), [])  # the grace period: reads under way finish
        self.skip_ahead(31)
        self.assertEqual(await self.due(), [("b1", "vb/old", "drained", 0)])
        [drain] = await store.drains()
        self.assertEqual(
            (drain.moved_objects, drain.moved_bytes, drain.remaining_objects, drain.remaining_bytes), (1, 10, 0, 0)
        )
        self.assertTrue(await store.is_referenced("b2", "vb/new"))
        self.assertEqual(await store.drain_candidates("b1", 0, 10), [])
        # The intent was taken in the same transaction.
        await self.assertFailure(store.renew_write(intent.id, 60), Exception)

    async def test_an_object_changed_during_its_copy_keeps_its_new_state(self) -> None:
        await self.put("gone", "vb/g1")
        await self.put("over", "vb/o1")
        await self.store.start_drain("b1")
        gone, over = sorted(await self.store.drain_candidates("b1", 0, 10), key=lambda c: c.record.key)
        newer = await self.put("over", "vb/o2", backend="b2", etag='"new"', size=9)
        await self.store.delete_object(BUCKET, "gone")
        for candidate, copy in ((over, "vb/o-copy"), (gone, "vb/g-copy")):
            intent = await self.store.begin_write("b3", copy, 60)
            self.assertEqual(await self.store.switch_location(intent.id, candidate, Location("b3", copy)), "stale")
        self.assertEqual(await self.store.get_object(BUCKET, "over"), newer)
        self.assertIsNone(await self.store.get_object(BUCKET, "gone"))
        self.assertEqual(
            await self.due(),
            [
                ("b1", "vb/g1", "deleted", 0),
                ("b1", "vb/o1", "replaced", 0),
                ("b3", "vb/g-copy", "abandoned", 0),
                ("b3", "vb/o-copy", "abandoned", 0),
            ],
        )
        self.assertFalse(await self.store.is_referenced("b3", "vb/o-copy"))
        [drain] = await self.store.drains()
        self.assertEqual(drain.moved_objects, 0)

    async def test_a_copy_whose_intent_ran_out_is_not_switched(self) -> None:
        record = await self.put("k", "vb/k")
        await self.store.start_drain("b1")
        [candidate] = await self.store.drain_candidates("b1", 0, 10)
        intent = await self.store.begin_write("b2", "vb/copy", 60)
        await self.store.abandon_write(intent.id, True)  # as the expiry sweep does
        self.assertEqual(await self.store.switch_location(intent.id, candidate, Location("b2", "vb/copy")), "expired")
        self.assertEqual(await self.store.get_object(BUCKET, "k"), record)
        self.assertEqual(await self.due(), [("b2", "vb/copy", "abandoned", 0)])

    async def test_a_moved_multipart_object_keeps_its_parts(self) -> None:
        await self.store.create_multipart(upload("u1", "big"))
        parts = [PartRecord(1, 5, "", {"crc32": "AAAAAA=="}), PartRecord(2, 3, "", {"crc32": "BBBBBB=="})]
        await self.store.complete_multipart("u1", make_record("big", "vb/u1", etag='"x-2"', size=8), object_parts=parts)
        await self.store.start_drain("b1")
        [candidate] = await self.store.drain_candidates("b1", 0, 10)
        intent = await self.store.begin_write("b2", "vb/copy", 60)
        self.assertEqual(await self.store.switch_location(intent.id, candidate, Location("b2", "vb/copy")), "moved")
        self.assertEqual(await self.store.object_parts_page("vb/copy", 0, 10), (parts, False))
        # The old copy's deletion takes its records, not the new key's.
        for deletion in await self.store.queued_deletions():
            await self.store.finish_deletion(deletion.id)
        self.assertEqual(await self.store.object_parts_page("vb/u1", 0, 10), ([], False))
        self.assertEqual(await self.store.object_parts_page("vb/copy", 0, 10), (parts, False))

    async def test_a_drain_is_done_once_nothing_refers_to_its_backend(self) -> None:
        await self.put("k", "vb/k", size=4)
        await self.store.start_drain("b1")
        late = await self.store.begin_write("b1", "vb/late", 60)  # placed before the drain began
        await self.store.create_multipart(upload("u1", "mp"))  # an open upload on b1
        [candidate] = await self.store.drain_candidates("b1", 0, 10)
        intent = await self.store.begin_write("b2", "vb/copy", 60)
        await self.store.switch_location(intent.id, candidate, Location("b2", "vb/copy"))
        drain = await self.store.recount_drain("b1")
        self.assertEqual(drain.state, "draining")
        self.assertEqual(
            (drain.remaining_objects, drain.pending_writes, drain.pending_uploads, drain.pending_deletions),
            (0, 1, 1, 1),
        )
        await self.store.abandon_write(late.id, False)
        await self.store.abort_multipart("u1", True)
        drain = await self.store.recount_drain("b1")
        self.assertEqual((drain.state, drain.pending_writes, drain.pending_uploads, drain.pending_deletions),
                         ("draining", 0, 0, 2))
        for deletion in await self.store.queued_deletions():
            await self.store.finish_deletion(deletion.id)
        done = await self.store.recount_drain("b1")
        self.assertEqual((done.state, done.moved_objects, done.moved_bytes), ("done", 1, 4))
        self.assertIsNotNone(done.finished)
        await self.assertFailure(self.store.set_drain_state("b1", "paused"), DrainStateError)
        self.assertIsNone(await self.store.recount_drain("b9"))
        # Started again: a new drain.
        again = await self.store.start_drain("b1", 7)
        self.assertEqual((again.state, again.total_objects, again.moved_objects, again.rate), ("draining", 0, 0, 7))

    async def test_a_paused_drain_is_not_done_by_a_recount(self) -> None:
        await self.store.start_drain("b1")
        await self.store.set_drain_state("b1", "paused")
        self.assertEqual((await self.store.recount_drain("b1")).state, "paused")

    async def test_a_pass_that_left_only_blocked_objects_blocks_the_drain(self) -> None:
        await self.put("a", "vb/a", size=5)
        await self.put("b", "vb/b", size=6)
        await self.store.start_drain("b1")
        # Some of what is left could still move: draining.
        self.assertEqual((await self.store.recount_drain("b1", 1)).state, "draining")
        blocked = await self.store.recount_drain("b1", 2)
        self.assertEqual((blocked.state, blocked.blocked_objects, blocked.remaining_objects), ("blocked", 2, 2))
        self.assertIsNone(blocked.finished)
        # A recount without a pass keeps it blocked; a drain under way is returned as it is.
        self.assertEqual((await self.store.recount_drain("b1")).state, "blocked")
        self.assertEqual((await self.store.start_drain("b1")).state, "blocked")
        # Paused and resumed: draining (its next pass decides again).
        self.assertEqual((await self.store.set_drain_state("b1", "paused")).state, "paused")
        self.assertEqual((await self.store.recount_drain("b1", 2)).state, "paused")
        self.assertEqual((await self.store.set_drain_state("b1", "draining")).state, "draining")
        self.assertEqual((await self.store.recount_drain("b1", 2)).state, "blocked")
        # A pass that blocked fewer than are left (a backend was added): draining again.
        again = await self.store.recount_drain("b1", 0)
        self.assertEqual((again.state, again.blocked_objects), ("draining", 0))
        await self.store.recount_drain("b1", 2)
        # The objects gone (deleted): done, nothing blocked.
        await self.store.delete_objects(BUCKET, [("a", None), ("b", None)])
        for deletion in await self.store.queued_deletions():
            await self.store.finish_deletion(deletion.id)
        done = await self.store.recount_drain("b1", 0)
        self.assertEqual((done.state, done.blocked_objects), ("done", 0))

    async def test_a_write_in_flight_keeps_the_drain_from_being_blocked(self) -> None:
        await self.put("a", "vb/a", size=5)
        await self.store.start_drain("b1")
        await self.store.begin_write("b1", "vb/late", 60)
        self.assertEqual((await self.store.recount_drain("b1", 1)).state, "draining")

    async def test_progress_notes_add_up(self) -> None:
        await self.store.start_drain("b1")
        await self.store.note_drain_progress("b1", 1.5, 2, "boom")
        await self.store.note_drain_progress("b1", 0.25, 0, None)
        [drain] = await self.store.drains()
        self.assertEqual((drain.active_seconds, drain.failed_objects, drain.last_error), (1.75, 2, "boom"))
        await self.store.note_drain_progress("b1", 0, 0, "")
        self.assertIsNone((await self.store.drains())[0].last_error)
        await self.store.note_drain_progress("b9", 1, 1, "nobody's")  # no drain: nothing

    async def test_backends_in_use(self) -> None:
        await self.put("a", "vb/a")
        await self.put("c", "vb/c", backend="b2")
        self.assertEqual(await self.store.backends_in_use(["b3", "b2", "b1"]), ["b1", "b2"])
        self.assertEqual(await self.store.backends_in_use([]), [])


class MemoryDrainStoreTests(OnMemoryStore, DrainStoreMixin, unittest.TestCase):
    pass


class SQLiteDrainStoreTests(OnDatabase, DrainStoreMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLDrainStoreTests(OnDatabase, DrainStoreMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBDrainStoreTests(OnDatabase, DrainStoreMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class StartupCheckMixin:
    """The start-up check of a daemon (blocking, before the reactor): backends removed while they hold objects."""

    kind: str

    async def test_an_unconfigured_backend_with_objects_is_named(self) -> None:
        from s3balance.store.connector import MetadataStore
        from s3balance.store.moves import unconfigured_backends_in_use_at

        testcase: Any = self
        url = dbfixtures.store_database(testcase, self.kind)
        store = MetadataStore(url)
        await store.start()
        testcase.addCleanup(store.stop)
        await store.sync_config_buckets([BUCKET])
        for n, backend in enumerate(["b1", "b2", "b2", "b10", "b1"]):
            intent = await store.begin_write(backend, f"vb/{n}", 60)
            await store.commit_object(intent.id, make_record(f"k{n}", f"vb/{n}", backend=backend))
        testcase.assertEqual(unconfigured_backends_in_use_at(url, ["b1", "b10", "b2"]), [])
        testcase.assertEqual(unconfigured_backends_in_use_at(url, ["b2"]), ["b1", "b10"])
        await store.delete_objects(BUCKET, [("k0", None), ("k4", None)])
        testcase.assertEqual(unconfigured_backends_in_use_at(url, ["b2"]), ["b10"])


class SQLiteStartupCheckTests(StartupCheckMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLStartupCheckTests(StartupCheckMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBStartupCheckTests(StartupCheckMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- units ----------------------------------------------------------------------------


class ThrottleTests(unittest.SynchronousTestCase):
    def test_bytes_per_second_with_a_small_burst(self) -> None:
        clock = Clock()
        throttle = Throttle(1000, clock, burst=0.25)
        self.assertEqual(throttle.charge(250), 0.0)  # the burst after an idle spell
        self.assertAlmostEqual(throttle.charge(500), 0.5)
        clock.advance(0.5)
        self.assertEqual(throttle.wait(), 0.0)
        clock.advance(10)
        self.assertEqual(throttle.charge(100), 0.0)
        unlimited = Throttle(0, clock)
        self.assertFalse(unlimited.limited)
        self.assertEqual(unlimited.charge(10**9), 0.0)

    def test_the_gate_pauses_the_source_for_the_rate_and_for_the_pipe(self) -> None:
        clock = Clock()
        calls: list[str] = []

        class Source:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

            def stopProducing(self) -> None:
                calls.append("stop")

        gate = _Gate(Throttle(100, clock, burst=0), clock)
        self.assertIs(gate.wrap(Source()), gate)
        gate.took(50)  # half a second's worth
        self.assertEqual(calls, ["pause"])
        gate.pauseProducing()  # the destination is slow too
        clock.advance(0.5)
        self.assertEqual(calls, ["pause"])  # still held by the pipe
        gate.resumeProducing()
        self.assertEqual(calls, ["pause", "resume"])
        gate.took(100)
        gate.took(100)  # arrived while paused: the wait grows
        clock.advance(1.0)
        self.assertEqual(calls[-1], "pause")
        clock.advance(1.0)
        self.assertEqual(calls[-1], "resume")
        gate.took(100)
        gate.stopProducing()
        self.assertEqual(calls[-1], "stop")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_md5_etags(self) -> None:
        self.assertTrue(is_md5_etag('"9a569f0ce12fffd16fd75ba06d8c6588"'))
        self.assertFalse(is_md5_etag('"9a569f0ce12fffd16fd75ba06d8c6588-3"'))
        self.assertFalse(is_md5_etag('"e1"'))


def record(**changes: Any) -> DrainRecord:
    values: dict[str, Any] = dict(
        backend="b1", state="draining", rate=None, started=T0, updated=T0, total_objects=10, total_bytes=1000,
        moved_objects=4, moved_bytes=400, remaining_objects=6, remaining_bytes=600, active_seconds=4.0,
    )
    values.update(changes)
    return DrainRecord(**values)


class DrainDocumentTests(unittest.SynchronousTestCase):
    def test_progress_rate_and_eta(self) -> None:
        doc = drain_document(record(), 50)
        self.assertEqual((doc["progress"], doc["rate"], doc["eta_seconds"]), (0.4, 100, 6))
        self.assertEqual((doc["rate_limit"], doc["rate_limit_from"]), (50, "config"))
        self.assertEqual(doc["objects"], {"total": 10, "moved": 4, "remaining": 6, "failed": 0, "blocked": 0})
        self.assertIsNone(doc["blocked_reason"])
        self.assertEqual(doc["started"], T0.isoformat().replace("+00:00", "Z"))
        self.assertFalse(doc["removable"])
        json.dumps(doc)
        # Not moved yet: the ETA from the rate limit, if any.
        fresh = record(moved_objects=0, moved_bytes=0, active_seconds=0.0, rate=60)
        self.assertEqual((drain_document(fresh, 0)["eta_seconds"], drain_document(fresh, 0)["rate"]), (10, None))
        self.assertIsNone(drain_document(record(moved_bytes=0, active_seconds=0.0), 0)["eta_seconds"])
        done = drain_document(record(state="done", remaining_objects=0, remaining_bytes=0), 0)
        self.assertEqual((done["progress"], done["eta_seconds"], done["removable"]), (1.0, 0, True))

    def test_a_blocked_drain_says_how_many_and_why(self) -> None:
        doc = drain_document(record(state="blocked", blocked_objects=6), 50)
        self.assertEqual((doc["objects"]["blocked"], doc["eta_seconds"], doc["removable"]), (6, None, False))
        self.assertEqual(doc["blocked_reason"], "no other backend can hold another copy of this object")
        line = drain_cli.summary(doc)
        self.assertIn("b1: blocked", line)
        self.assertIn("6 blocked (no other backend can hold another copy of this object)", line)
        self.assertNotIn("ETA", line)
        self.assertIn("blocked (6 blocked)", drain_cli.progress_bar(doc))
        status, last = drain_cli.wait_for(lambda: doc, drain_cli.Progress(io.StringIO(), False), 0)
        self.assertEqual((status, last["state"]), (3, "blocked"))


class CLIPartsTests(unittest.SynchronousTestCase):
    def test_words(self) -> None:
        self.assertEqual(drain_cli.parse_words(["b1"]), ("start", "b1"))
        self.assertEqual(drain_cli.parse_words(["pause", "b1"]), ("pause", "b1"))
        self.assertEqual(drain_cli.parse_words(["start", "status"]), ("start", "status"))
        self.assertEqual(drain_cli.parse_words(["status"]), ("status", None))
        for bad in (["pause"], ["b1", "b2"], ["pause", "b1", "x"]):
            with self.assertRaises(ValueError):
                drain_cli.parse_words(bad)

    def test_summary_and_progress_bar(self) -> None:
        doc = drain_document(record(last_error="boom"), 0)
        line = drain_cli.summary(doc)
        self.assertIn("b1: draining, 4/10 objects", line)
        self.assertIn("ETA 0:00:06", line)
        self.assertIn("last error: boom", line)
        bar = drain_cli.progress_bar(doc)
        self.assertIn("[" + "#" * 10 + "-" * 14 + "]  40.0%", bar)
        done = drain_document(record(state="done", remaining_objects=0, remaining_bytes=0), 0)
        self.assertIn("it may be removed from the configuration", drain_cli.summary(done))

    def test_progress_on_a_pipe_is_a_line_now_and_then(self) -> None:
        now = [0.0]
        stream = io.StringIO()
        progress = drain_cli.Progress(stream, True, clock=lambda: now[0], every=10)
        doc = drain_document(record(), 0)
        progress.show(doc)
        now[0] = 5
        progress.show(doc)
        now[0] = 11
        progress.show(doc)
        progress.end()
        self.assertEqual(len(stream.getvalue().splitlines()), 2)
        quiet = io.StringIO()
        drain_cli.Progress(quiet, False).show(doc)
        self.assertEqual(quiet.getvalue(), "")

    def test_waiting_ends_when_done_paused_or_gone(self) -> None:
        answers = [drain_document(record(), 0), drain_document(record(state="done"), 0)]
        status, last = drain_cli.wait_for(lambda: answers.pop(0), drain_cli.Progress(io.StringIO(), False), 0,
                                          sleep=lambda _: None)
        self.assertEqual((status, last["state"]), (0, "done"))
        status, _ = drain_cli.wait_for(lambda: drain_document(record(state="paused"), 0),
                                       drain_cli.Progress(io.StringIO(), False), 0)
        self.assertEqual(status, 3)

        def gone() -> dict:
            raise drain_cli.AdminCallFailed("not drained", 404, "no_drain")

        self.assertEqual(drain_cli.wait_for(gone, drain_cli.Progress(io.StringIO(), False), 0)[0], 3)

    def test_usage_errors(self) -> None:
        def run(*argv: str) -> tuple[int, str]:
            from s3balance.ops.cli import main

            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                return main(["drain", *argv]), err.getvalue()

        status, text = run("b1", "--admin-url", "http://127.0.0.1:1", "--token", "t", "--rate", "fast")
        self.assertEqual(status, 2)
        self.assertIn("cannot parse 'fast' as a rate", text)
        status, text = run("b1", "--admin-url", "", "--token", "t")
        self.assertEqual((status, "--admin-url" in text), (2, True))
        status, text = run("b1", "--admin-url", "http://127.0.0.1:1", "--token", "t")
        self.assertEqual(status, 1)
        self.assertIn("cannot reach", text)


class ConfigTests(unittest.SynchronousTestCase):
    def parse(self, **balancer: Any) -> Any:
        data = {
            "buckets": [{"name": "b1", "endpoint": "http://x", "virtual": False}, {"name": "vbucket", "virtual": True}],
            "balancer": balancer,
            "s3api": {"auth_required": False},
        }
        return parse_config(data).balancer

    def test_rate_and_concurrency(self) -> None:
        self.assertEqual((self.parse().drain_rate, self.parse().drain_concurrency), (0, 2))
        self.assertEqual(self.parse(drain_rate="50MB/s").drain_rate, 50 * MIB)
        self.assertEqual(self.parse(drain_rate=1000).drain_rate, 1000)
        self.assertEqual(self.parse(drain_concurrency=4).drain_concurrency, 4)
        for key, value in (("drain_rate", "fast"), ("drain_concurrency", 5), ("drain_concurrency", 0)):
            with self.assertRaises(ConfigError) as caught:
                self.parse(**{key: value})
            self.assertIn(f"balancer.{key}", str(caught.exception))


# -- the admin API and the reload over an in-process service --------------------------------


class InProcessService:
    """A GatewayService (not started) over a MemoryStore, with its admin API."""

    def __init__(self, testcase: unittest.SynchronousTestCase) -> None:
        directory = Path(testcase.mktemp())
        directory.mkdir(parents=True)
        self.path = directory / "s3balance.yaml"
        self.data = config_dict(directory)
        self.path.write_text(yaml.safe_dump(self.data))
        self.clock = Clock()
        self.store = MemoryStore(clock=self.clock)
        self.store.start()
        self.store.sync_config_buckets(["media"])
        self.service = GatewayService(load_config(self.path), self.store, MemoryReactorClock())
        from s3balance.daemon.reload import Reloader

        self.reloader = Reloader(self.service, str(self.path))
        self.target = ServiceAdminTarget(self.service, self.reloader)
        self.resource = AdminResource(self.target, API_TOKEN)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = DummyRequest([segment.encode() for segment in path.strip("/").split("/")])
        request.method = method.encode()
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {API_TOKEN}".encode()])
        request.content = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        result = self.resource.render(request)
        data = b"".join(request.written) if result is NOT_DONE_YET else result
        return request.responseCode or 200, json.loads(data)

    def put_object(self, key: str, backend: str, size: int = 10) -> None:
        intent = self.store.begin_write(backend, f"media/{key}", 60)
        intent.addCallback(
            lambda i: self.store.commit_object(
                i.id, attr.evolve(make_record(key, f"media/{key}", backend=backend, size=size), bucket="media")
            )
        )


class AdminDrainTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = InProcessService(self)
        self.pool = self.fixture.service.pool
        self.fixture.put_object("a", "b1", 100)
        self.fixture.put_object("b", "b2", 5)

    def test_start_pause_resume_cancel(self) -> None:
        call = self.fixture.call
        self.assertEqual(call("GET", "drains"), (200, {"drains": []}))
        self.assertEqual(call("GET", "backends/b1/drain")[1]["error"], "no_drain")
        status, drain = call("POST", "backends/b1/drain", {"rate": "2MB/s"})
        self.assertEqual(status, 200)
        self.assertEqual((drain["state"], drain["objects"]["total"], drain["bytes"]["total"]), ("draining", 1, 100))
        self.assertEqual((drain["rate_limit"], drain["rate_limit_from"]), (2 * MIB, "drain"))
        # At once out of placement in this daemon; the others within the watcher's period.
        self.assertEqual([view.name for view in self.pool.candidates(0)], ["b2"])
        self.assertEqual(call("GET", "backends/b1")[1]["drain"], "draining")
        self.assertEqual(call("POST", "backends/b1/drain/pause")[1]["state"], "paused")
        self.assertEqual([view.name for view in self.pool.candidates(0)], ["b2"])
        resumed = call("POST", "backends/b1/drain/resume", {"rate": 0})[1]
        self.assertEqual((resumed["state"], resumed["rate_limit"]), ("draining", 0))
        self.assertEqual(call("POST", "backends/b1/drain/pause")[1]["state"], "paused")
        self.assertEqual(call("POST", "backends/b1/drain")[1]["state"], "draining")  # start resumes
        self.assertEqual([d["backend"] for d in call("GET", "drains")[1]["drains"]], ["b1"])
        self.assertEqual(call("POST", "backends/b1/drain/cancel")[1]["backend"], "b1")
        self.assertEqual([view.name for view in self.pool.candidates(0)], ["b1", "b2"])
        self.assertEqual(call("POST", "backends/b1/drain/pause")[0], 404)

    def test_refusals(self) -> None:
        call = self.fixture.call
        self.assertEqual(call("POST", "backends/nope/drain")[1]["error"], "no_such_backend")
        self.assertEqual(call("POST", "backends/b1/drain", {"rate": "fast"})[1]["error"], "invalid_rate")
        self.assertEqual(call("POST", "backends/b1/drain")[0], 200)
        status, body = call("POST", "backends/b2/drain")
        self.assertEqual((status, body["error"]), (409, "drain_conflict"))  # nowhere left to move to
        self.fixture.store.cancel_drain("b1")
        self.fixture.store.start_drain("b1")
        self.fixture.store.tables.drains["b1"] = attr.evolve(self.fixture.store.tables.drains["b1"], state="done")
        status, body = call("POST", "backends/b1/drain/resume")
        self.assertEqual((status, body["error"]), (409, "drain_conflict"))

    def test_status_page_and_metrics_show_the_drain(self) -> None:
        from s3balance.daemon.status import render_page, status_document

        self.fixture.call("POST", "backends/b1/drain")
        service = self.fixture.service
        document = status_document(service.gateway)
        [drain] = document["drains"]
        self.assertEqual((drain["backend"], drain["state"]), ("b1", "draining"))
        self.assertEqual({entry["name"]: entry["drain"] for entry in document["backends"]}, {"b1": "draining", "b2": None})
        page = render_page(document, "nonce").decode()
        self.assertIn('<span class="state draining">draining</span>', page)
        self.assertNotIn('id="drain-table" hidden', page)
        scraped = service.metrics.render()[0].decode()
        self.assertIn('s3balance_drain_remaining_objects{backend="b1"} 1.0', scraped)
        self.assertIn('s3balance_drain_objects_moved_total{backend="b1"} 0.0', scraped)
        self.assertIn('s3balance_drain_state{backend="b1",state="draining"} 1.0', scraped)
        self.assertIn('s3balance_drain_blocked_objects{backend="b1"} 0.0', scraped)

    def test_reload_refuses_to_remove_a_backend_that_holds_objects(self) -> None:
        data = dict(self.fixture.data, buckets=[b for b in self.fixture.data["buckets"] if b["name"] != "b1"])
        self.fixture.path.write_text(yaml.safe_dump(data))
        failures: list = []
        self.fixture.reloader.reload().addErrback(failures.append)
        [failure] = failures
        self.assertIn("backend 'b1' is not in the configuration, but objects are stored on it", str(failure.value))
        self.assertEqual(self.pool.names(), ["b1", "b2"])
        self.fixture.store.delete_object("media", "a")
        results: list = []
        self.fixture.reloader.reload().addBoth(results.append)
        self.assertIn("backends -b1", results[0])


class WatcherTests(unittest.SynchronousTestCase):
    def test_the_snapshot_keeps_drained_backends_out_of_placement(self) -> None:
        fixture = InProcessService(self)
        service = fixture.service
        fixture.store.start_drain("b2")
        watcher: DrainWatcher = service.drains
        self.assertIsInstance(service.drain_metrics, DrainMetrics)
        self.successResultOf(ensureDeferred(watcher.run()))
        self.assertEqual(watcher.state("b2"), "draining")
        self.assertEqual([view.name for view in service.pool.candidates(0)], ["b1"])
        fixture.store.cancel_drain("b2")
        self.successResultOf(ensureDeferred(watcher.run()))
        self.assertEqual([view.name for view in service.pool.candidates(0)], ["b1", "b2"])


class BlockedMoverTests(unittest.SynchronousTestCase):
    """The mover over the memory store, on a controlled clock: objects every other backend holds a copy of."""

    def test_a_blocked_drain_is_passed_over_until_the_backends_change_or_a_minute_passed(self) -> None:
        from s3balance.ops.drain import DrainMover

        fixture = InProcessService(self)
        service, store = fixture.service, fixture.store
        for n in range(2):
            intent = self.successResultOf(store.begin_write("b1", f"media/{n}", 60))
            record = attr.evolve(make_record(f"k{n}", f"media/{n}", backend="b1", size=10), bucket="media")
            both = (Location("b1", f"media/{n}"), Location("b2", f"media/{n}-2"))
            self.successResultOf(store.commit_object(intent.id, attr.evolve(record, locations=both)))
        fixture.put_object("single", "b1")  # b2 can take this one
        store.start_drain("b1")
        self.successResultOf(ensureDeferred(service.drains.run()))
        clock = Clock()
        mover = DrainMover(service.gateway, service.drains, 2.0, clock)
        mover.running = True
        recounts: list[str] = []
        recount = store.recount_drain

        def counted(backend: str, blocked: Optional[int] = None) -> Any:
            recounts.append(backend)
            return recount(backend, blocked)

        store.recount_drain = counted  # type: ignore[method-assign]
        placed: list[Any] = []
        mover._place = lambda candidate: placed.append(candidate.record.key) or defer_fail(RuntimeError("no copy"))
        self.successResultOf(ensureDeferred(mover.run()))
        [drain] = self.successResultOf(store.drains())
        # The one object b2 could take was tried (and failed here); the two others were not.
        self.assertEqual((drain.state, drain.blocked_objects, drain.failed_objects), ("draining", 2, 1))
        self.assertEqual(placed, ["single"])
        self.successResultOf(store.delete_object("media", "single"))
        clock.advance(DrainMover.FAILED_PASS_PAUSE)
        self.successResultOf(ensureDeferred(mover.run()))
        [drain] = self.successResultOf(store.drains())
        self.assertEqual((drain.state, drain.blocked_objects, drain.remaining_objects), ("blocked", 2, 2))
        self.assertEqual(placed, ["single"])  # never a copy tried for a blocked object
        passes = len(recounts)
        # Runs every period: no pass over a blocked drain...
        for _ in range(5):
            clock.advance(2)
            self.successResultOf(ensureDeferred(mover.run()))
        self.assertEqual(len(recounts), passes)
        # ...until a minute has passed (objects deleted meanwhile are counted)...
        clock.advance(DrainMover.BLOCKED_RECHECK)
        self.successResultOf(ensureDeferred(mover.run()))
        self.assertEqual(len(recounts), passes + 2)
        # ...or the backends that could take a copy changed (here: b2 drained too).
        store.start_drain("b2")
        self.successResultOf(ensureDeferred(service.drains.run()))
        self.successResultOf(ensureDeferred(mover.run()))
        self.assertGreater(len(recounts), passes + 2)
        self.assertEqual(self.successResultOf(store.drains())[0].state, "blocked")
        self.assertEqual(placed, ["single"])


# -- real daemons over two SeaweedFS servers ---------------------------------------------------


def pattern(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class Drained:
    """A daemon (or two) over two fresh real buckets on the shared SeaweedFS pair, with the admin API."""

    def __init__(self, testcase: unittest.SynchronousTestCase, name: str = "drain", **balancer: Any) -> None:
        self.testcase = testcase
        self.servers = shared_seaweedfs_pair()
        self.real = [unique_bucket_name("real"), unique_bucket_name("real")]
        for server, bucket in zip(self.servers, self.real, strict=True):
            server.create_bucket(bucket)
        self.b1, self.b2 = self.real
        workdir = Path(harness_dir()) / f"{name}-{time.monotonic_ns()}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = base_config(
            [backend_entry(server, bucket) for server, bucket in zip(self.servers, self.real, strict=True)],
            [VB],
            workdir,
            api={"enabled": True, "token": "drain-token"},
            balancer=balancer,
        )
        self.daemon = self.start(Daemon(self.config, name=name))
        self.client = self.daemon.client()

    def start(self, daemon: Daemon) -> Daemon:
        daemon.start()
        self.testcase.addCleanup(daemon.stop)
        return daemon

    def admin(self, method: str, path: str, body: Optional[dict] = None, daemon: Optional[Daemon] = None) -> Any:
        daemon = daemon or self.daemon
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(
            f"{daemon.endpoint}/admin/{path}", data=data, method=method,
            headers={"Authorization": "Bearer drain-token"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return {"status": error.code, **json.load(error)}

    def drain(self, daemon: Optional[Daemon] = None) -> dict:
        return self.admin("GET", f"backends/{self.b1}/drain", daemon=daemon)

    def wait_done(self, timeout: float = 60.0) -> dict:
        return poll(lambda: (lambda d: d if d.get("state") == "done" else None)(self.drain()), timeout=timeout,
                    interval=0.25, message=f"the drain did not finish: {self.drain()}")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [venv_bin("s3balance-admin"), "drain", *args, "--admin-url", self.daemon.endpoint],
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "S3BALANCE_ADMIN_TOKEN": "drain-token"},
            capture_output=True, text=True, timeout=timeout,
        )

    def locations(self) -> dict[str, str]:
        """Virtual key -> backend, from the daemon's database."""
        path = self.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT o.key, l.backend FROM objects o JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ?",
                (VB,),
            ).fetchall()
        return {bytes(key).decode(): backend for key, backend in rows}

    def real_objects(self, index: int) -> dict[str, dict]:
        """Key -> HEAD answer of every object in real bucket C{index}."""
        direct = self.servers[index].client()
        found = {}
        for page in direct.get_paginator("list_objects_v2").paginate(Bucket=self.real[index]):
            for item in page.get("Contents", []):
                found[item["Key"]] = direct.head_object(Bucket=self.real[index], Key=item["Key"])
        return found

    def metric(self, name: str, daemon: Optional[Daemon] = None, label: str = "") -> float:
        """The sum of C{name}'s samples with C{label} (default: b1's) on C{daemon}'s /metrics."""
        daemon = daemon or self.daemon
        label = label or f'backend="{self.b1}"'
        with urllib.request.urlopen(f"{daemon.endpoint}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def put_objects(client: Any, count: int, size: int, prefix: str = "obj", seed: int = 0) -> dict[str, bytes]:
    bodies = {}
    for n in range(count):
        key = f"{prefix}/{n:03d}"
        bodies[key] = pattern(size + n, seed + n)
        client.put_object(Bucket=VB, Key=key, Body=bodies[key], ContentType="text/x-drain",
                          Metadata={"colour": f"blau-{n}"}, CacheControl="no-cache")
    return bodies


def put_multipart(client: Any, key: str, sizes: list[int], seed: int) -> bytes:
    upload = client.create_multipart_upload(Bucket=VB, Key=key, ContentType="application/x-mp",
                                            Metadata={"kind": "multipart"})
    parts, data = [], b""
    for number, size in enumerate(sizes, 1):
        body = pattern(size, seed * 100 + number)
        answer = client.upload_part(Bucket=VB, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body)
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        data += body
    client.complete_multipart_upload(Bucket=VB, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    return data


class DrainDaemonTests(unittest.SynchronousTestCase):
    def check_objects(self, gateway: Drained, bodies: dict[str, bytes], heads: dict[str, dict]) -> None:
        for key, body in bodies.items():
            got = gateway.client.get_object(Bucket=VB, Key=key)
            self.assertEqual(hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(body).hexdigest(), key)
            before = heads[key]
            for field in ("ETag", "ContentType", "Metadata", "ContentLength", "LastModified"):
                self.assertEqual(got[field], before[field], f"{key}: {field}")

    def test_a_drain_moves_every_object_and_empties_the_backend(self) -> None:
        gateway = Drained(self)
        client = gateway.client
        bodies = put_objects(client, 12, 1000)
        bodies["mp/one"] = put_multipart(client, "mp/one", [5 * MIB, 1 * MIB + 17], 1)
        bodies["mp/two"] = put_multipart(client, "mp/two", [5 * MIB, 5 * MIB, 3], 2)
        bodies["empty"] = b""
        client.put_object(Bucket=VB, Key="empty", Body=b"")
        placed = gateway.locations()
        self.assertTrue({placed["mp/one"], placed["mp/two"]} == set(gateway.real), placed)  # one multipart on b1
        self.assertGreater(sum(1 for backend in placed.values() if backend == gateway.b1), 5)
        heads = {key: client.head_object(Bucket=VB, Key=key) for key in bodies}
        result = gateway.cli(gateway.b1, "--rate", "0", "--wait", "--no-progress")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(f"{gateway.b1}: done", result.stdout)
        self.assertIn("it may be removed from the configuration", result.stdout)
        self.assertEqual(result.stderr, "")
        self.assertEqual(set(gateway.locations().values()), {gateway.b2})
        self.check_objects(gateway, bodies, heads)
        # b1's real bucket holds none of our objects (the grace is 0 here); b2 has a copy of
        # each, with the headers a PUT sends and the objects' ETags (multipart ones too).
        poll(lambda: not gateway.real_objects(0), timeout=20, message="b1 still holds objects")
        copies = gateway.real_objects(1)
        self.assertEqual(len(copies), len(bodies))
        self.assertEqual({head["ETag"] for head in copies.values()}, {head["ETag"] for head in heads.values()})
        for head in copies.values():
            self.assertIn(head["Metadata"]["s3balance-key"], bodies)
            self.assertEqual(head["Metadata"]["s3balance-bucket"], VB)
        drain = gateway.drain()
        moved = sum(1 for backend in placed.values() if backend == gateway.b1)
        self.assertEqual((drain["objects"]["moved"], drain["objects"]["remaining"]), (moved, 0))
        self.assertEqual(drain["objects"]["total"], moved)
        self.assertEqual(drain["bytes"]["moved"], sum(len(bodies[k]) for k, b in placed.items() if b == gateway.b1))
        self.assertEqual(drain["pending"], {"writes": 0, "uploads": 0, "deletions": 0})
        self.assertTrue(drain["removable"])
        self.assertEqual(gateway.metric("s3balance_drain_objects_moved_total"), moved)
        self.assertEqual(gateway.metric("s3balance_drain_remaining_objects"), 0)
        status = gateway.admin("GET", "drains")["drains"]
        self.assertEqual([d["backend"] for d in status], [gateway.b1])
        with urllib.request.urlopen(
            urllib.request.Request(f"{gateway.daemon.endpoint}/status?format=json",
                                   headers={"Authorization": "Bearer drain-token"}), timeout=10) as answer:
            self.assertEqual(json.load(answer)["drains"][0]["state"], "done")
        # New objects go to b2 only, while the drain stays (done).
        after = put_objects(client, 4, 10, prefix="late")
        self.assertEqual({gateway.locations()[key] for key in after}, {gateway.b2})
        # Removing b1 is safe now.
        data = dict(gateway.daemon.config)
        data["buckets"] = [b for b in data["buckets"] if b["name"] != gateway.b1]
        gateway.daemon.config = data
        gateway.daemon.write_config()
        reloaded = gateway.admin("POST", "reload")
        self.assertTrue(reloaded.get("reloaded"), reloaded)
        self.check_objects(gateway, bodies, heads)

    def test_new_objects_stay_off_and_an_overwritten_object_keeps_its_content(self) -> None:
        gateway = Drained(self, drain_concurrency=1)
        client = gateway.client
        big = pattern(3 * MIB, 7)
        client.put_object(Bucket=VB, Key="big", Body=big)
        client.put_object(Bucket=VB, Key="x", Body=b"x")  # round-robin: one of the two lands on b1
        self.assertEqual(set(gateway.locations().values()), set(gateway.real))
        key_on_b1 = next(key for key, backend in gateway.locations().items() if backend == gateway.b1)
        if key_on_b1 != "big":  # make sure the slow one is on b1
            client.put_object(Bucket=VB, Key="big", Body=b"placeholder")
            client.put_object(Bucket=VB, Key="big", Body=big)
            self.assertEqual(gateway.locations()["big"], gateway.b1)
        heads = {key: client.head_object(Bucket=VB, Key=key) for key in ("x",)}
        # 3 MiB at 1 MiB/s: about three seconds to overwrite it in.
        started = gateway.admin("POST", f"backends/{gateway.b1}/drain", {"rate": "1MB/s"})
        self.assertEqual(started["state"], "draining", started)
        # While it drains (or is paused), every new object goes to b2.
        fresh = put_objects(client, 6, 10, prefix="fresh")
        self.assertEqual({gateway.locations()[key] for key in fresh}, {gateway.b2})
        path = gateway.config["database"]["dsn"]

        def copying() -> bool:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
                return bool(connection.execute(
                    "SELECT COUNT(*) FROM write_intents WHERE backend = ? AND size = ?", (gateway.b2, len(big))
                ).fetchone()[0])

        poll(copying, timeout=20, interval=0.05, message="the copy of 'big' did not start")
        newer = pattern(1000, 8)
        client.put_object(Bucket=VB, Key="big", Body=newer)
        done = gateway.wait_done()
        self.assertEqual(client.get_object(Bucket=VB, Key="big")["Body"].read(), newer)
        self.check_objects(gateway, {"x": b"x"} if gateway.locations().get("x") else {}, heads)
        self.assertIn("changed while it was copied", gateway.daemon.log())
        # The dropped copy and b1's copies are gone; b2 holds exactly the live objects.
        poll(lambda: not gateway.real_objects(0), timeout=20, message="b1 still holds objects")
        poll(lambda: len(gateway.real_objects(1)) == len(gateway.locations()), timeout=20,
             message="the dropped copy stayed on b2")
        self.assertEqual(done["objects"]["moved"], 0 if key_on_b1 == "big" else 1)

    def test_pause_resume_and_the_rate_limit(self) -> None:
        gateway = Drained(self)
        bodies = put_objects(gateway.client, 24, 512 * 1024)  # ~6 MiB on b1
        on_b1 = [key for key, backend in gateway.locations().items() if backend == gateway.b1]
        size_on_b1 = sum(len(bodies[key]) for key in on_b1)
        rate = 2 * MIB
        began = time.monotonic()
        gateway.admin("POST", f"backends/{gateway.b1}/drain", {"rate": rate})
        poll(lambda: gateway.drain()["objects"]["moved"] >= 3, timeout=20, interval=0.05)
        paused = gateway.admin("POST", f"backends/{gateway.b1}/drain/pause")
        paused_at = time.monotonic()
        self.assertEqual(paused["state"], "paused")
        time.sleep(1.5)  # the moves under way finish
        frozen = gateway.drain()["objects"]["moved"]
        time.sleep(2.0)
        self.assertEqual(gateway.drain()["objects"]["moved"], frozen)
        self.assertLess(frozen, len(on_b1))
        result = gateway.cli("resume", gateway.b1, "--wait")
        resumed_at = paused_at + 3.5
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("objects", result.stderr)  # the progress went to stderr (a line: no terminal)
        elapsed = (time.monotonic() - began) - (resumed_at - paused_at)
        moved = gateway.drain()["bytes"]["moved"]
        self.assertEqual(moved, size_on_b1)
        # Roughly the rate: never more than half as fast again.
        self.assertLessEqual(moved / elapsed, rate * 1.5, f"{moved} bytes in {elapsed:.1f}s")
        self.assertGreater(moved / elapsed, rate * 0.3, f"{moved} bytes in {elapsed:.1f}s")
        drain = gateway.drain()
        self.assertLessEqual(drain["rate"], rate * 1.5)
        self.check_objects(gateway, bodies, {key: gateway.client.head_object(Bucket=VB, Key=key) for key in bodies})

    def test_a_daemon_killed_mid_drain_resumes_it(self) -> None:
        gateway = Drained(self, drain_rate="1MB/s")
        bodies = put_objects(gateway.client, 16, 400 * 1024)
        heads = {key: gateway.client.head_object(Bucket=VB, Key=key) for key in bodies}
        on_b1 = sum(1 for backend in gateway.locations().values() if backend == gateway.b1)
        gateway.admin("POST", f"backends/{gateway.b1}/drain")  # the configured rate: 1 MiB/s
        poll(lambda: gateway.drain()["objects"]["moved"] >= 2, timeout=20, interval=0.05)
        gateway.daemon.kill()
        gateway.daemon.start()
        gateway.client = gateway.daemon.client()
        # Out of placement from the first request on.
        fresh = put_objects(gateway.client, 3, 10, prefix="fresh")
        self.assertEqual({gateway.locations()[key] for key in fresh}, {gateway.b2})
        done = gateway.wait_done(timeout=60)
        self.assertEqual(done["objects"]["moved"], on_b1)
        self.check_objects(gateway, bodies, heads)
        poll(lambda: not gateway.real_objects(0), timeout=20, message="b1 still holds objects")

    def test_two_daemons_on_one_database_move_each_object_once(self) -> None:
        gateway = Drained(self, name="drain-a")
        second = gateway.start(Daemon(dict(gateway.config, server=dict(gateway.config["server"], port=free_port())),
                                      name="drain-b"))
        bodies = put_objects(gateway.client, 20, 2000)
        on_b1 = sum(1 for backend in gateway.locations().values() if backend == gateway.b1)
        # Started through the second daemon; whichever holds the lease moves.
        started = gateway.admin("POST", f"backends/{gateway.b1}/drain", daemon=second)
        self.assertEqual(started["state"], "draining")
        done = gateway.wait_done()
        self.assertEqual(done["objects"]["moved"], on_b1)
        leaders = [gateway.metric("s3balance_background_leader", d, 'job="drain"') for d in (gateway.daemon, second)]
        self.assertEqual(sorted(leaders), [0.0, 1.0])
        moved = [gateway.metric("s3balance_drain_objects_moved_total", d) for d in (gateway.daemon, second)]
        self.assertEqual(sorted(moved), [0.0, float(on_b1)])
        # Both see it (the other within the watcher's period): no new object goes to b1 from either.
        poll(lambda: gateway.drain(second).get("state") == "done", timeout=10)
        late = put_objects(second.client(), 4, 10, prefix="late")
        self.assertEqual({gateway.locations()[key] for key in late}, {gateway.b2})
        self.check_objects(gateway, bodies, {key: gateway.client.head_object(Bucket=VB, Key=key) for key in bodies})
        self.assertNotIn("changed while it was copied", gateway.daemon.log() + second.log())

    def test_a_drain_no_backend_can_take_a_copy_of_is_blocked_until_one_is_added(self) -> None:
        gateway = Drained(self, name="drain-blocked", replicas=2)
        bodies = put_objects(gateway.client, 5, 1000)
        heads = {key: gateway.client.head_object(Bucket=VB, Key=key) for key in bodies}
        self.assertEqual(self.copies(gateway), {key: {gateway.b1, gateway.b2} for key in bodies})
        result = gateway.cli(gateway.b1, "--wait", "--no-progress")
        self.assertEqual(result.returncode, 4, result.stdout + result.stderr)
        reason = "no other backend can hold another copy of this object"
        self.assertIn(f"{gateway.b1}: blocked", result.stdout)
        self.assertIn(f"5 blocked ({reason})", result.stdout)
        self.assertIn(f"the drain of {gateway.b1} is blocked: 5 object(s) left: {reason}", result.stderr)
        drain = gateway.drain()
        self.assertEqual((drain["state"], drain["objects"]["blocked"], drain["blocked_reason"]),
                         ("blocked", 5, reason))
        self.assertEqual((drain["objects"]["moved"], drain["objects"]["failed"], drain["last_error"]), (0, 0, None))
        self.assertFalse(drain["removable"])
        self.assertEqual(gateway.metric("s3balance_drain_blocked_objects"), 5)
        self.assertEqual(gateway.metric("s3balance_drain_state", label=f'backend="{gateway.b1}",state="blocked"'), 1)
        # Never a copy dropped, never a copy tried: both copies stay, b2 holds no stray object.
        self.assertEqual(self.copies(gateway), {key: {gateway.b1, gateway.b2} for key in bodies})
        self.assertEqual(len(gateway.real_objects(1)), 5)
        # /status shows the drain blocked, every object with its two copies, no rebalance.
        with urllib.request.urlopen(
            urllib.request.Request(f"{gateway.daemon.endpoint}/status?format=json",
                                   headers={"Authorization": "Bearer drain-token"}), timeout=10) as answer:
            status = json.load(answer)
        self.assertEqual([(d["state"], d["objects"]["blocked"]) for d in status["drains"]], [("blocked", 5)])
        self.assertEqual([(r["bucket"], r["replicas"], r["under_replicated"]) for r in status["replicas"]],
                         [(VB, 2, 0)])
        self.assertIsNone(status["rebalance"]["state"])
        # The mover's next runs leave a blocked drain alone (no pass until the backends change).
        runs = gateway.metric("s3balance_background_runs_total", label='job="drain"')
        poll(lambda: gateway.metric("s3balance_background_runs_total", label='job="drain"') >= runs + 2,
             timeout=20, interval=0.25)
        self.assertEqual(gateway.drain()["updated"], drain["updated"])
        self.check_objects(gateway, bodies, heads)
        # A third backend (a bucket on the first server) added by a reload: the next pass moves them.
        third = unique_bucket_name("real")
        gateway.servers[0].create_bucket(third)
        data = dict(gateway.daemon.config)
        data["buckets"] = [*data["buckets"][:2], backend_entry(gateway.servers[0], third), *data["buckets"][2:]]
        gateway.daemon.config = data
        gateway.daemon.write_config()
        reloaded = gateway.admin("POST", "reload")
        self.assertTrue(reloaded.get("reloaded"), reloaded)
        done = gateway.wait_done()
        self.assertEqual((done["objects"]["moved"], done["objects"]["blocked"], done["blocked_reason"]), (5, 0, None))
        self.assertEqual(self.copies(gateway), {key: {gateway.b2, third} for key in bodies})
        self.check_objects(gateway, bodies, heads)
        poll(lambda: not gateway.real_objects(0), timeout=20, message="b1 still holds objects")

    def copies(self, gateway: Drained) -> dict[str, set[str]]:
        """Virtual key -> the backends holding a copy of it."""
        path = gateway.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT o.key, l.backend FROM objects o JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ?",
                (VB,),
            ).fetchall()
        found: dict[str, set[str]] = {}
        for key, backend in rows:
            found.setdefault(bytes(key).decode(), set()).add(backend)
        return found

    def test_removing_a_backend_that_holds_objects_is_refused(self) -> None:
        gateway = Drained(self)
        put_objects(gateway.client, 4, 10)
        without_b1 = dict(gateway.daemon.config)
        without_b1["buckets"] = [b for b in without_b1["buckets"] if b["name"] != gateway.b1]
        gateway.daemon.config = without_b1
        gateway.daemon.write_config()
        refused = gateway.admin("POST", "reload")
        self.assertEqual((refused["status"], refused["error"]), (400, "invalid_config"))
        self.assertIn(f"backend '{gateway.b1}' is not in the configuration, but objects are stored on it",
                      refused["message"])
        # At start too: one line, exit status 2.
        gateway.daemon.stop()
        result = subprocess.run(
            [venv_bin("twistd"), "-n", "--pidfile=", "s3balance", "--config", str(gateway.daemon.config_path)],
            cwd=str(gateway.daemon.workdir), env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn(f"s3balance: buckets: backend '{gateway.b1}' is not in the configuration", result.stderr)



class StatusPageBrowserTests(unittest.SynchronousTestCase):
    """The /status page's script renders the drains (chromium, headless)."""

    def test_the_page_shows_the_drain(self) -> None:
        import shutil
        import tempfile

        from tests.test_status_page import chromium

        browser = chromium()
        gateway = Drained(self)
        put_objects(gateway.client, 4, 100)
        gateway.admin("POST", f"backends/{gateway.b1}/drain")
        gateway.wait_done()
        profile = tempfile.mkdtemp(prefix="s3balance-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
             f"{gateway.daemon.endpoint}/status?token=drain-token"],
            capture_output=True, timeout=120, check=False,
        )
        dom = result.stdout.decode(errors="replace")
        # The script ran (its poll answered) and rendered the drain's row and the backend's state.
        self.assertRegex(dom, r'id="updated">updated [^<]+<')
        self.assertIn('id="stale"></span>', dom)
        drains = dom[dom.index('id="drains"'):]
        self.assertIn(gateway.b1, drains)
        self.assertIn('<span class="state done">done</span>', drains)
        self.assertIn("100.0% of", drains)
        self.assertIn('<span class="state drained"', dom)
