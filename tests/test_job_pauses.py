"""
Pausing the cluster-wide background jobs (s3balance.ops.pauses, s3balance.store.pauses).

 - L{JobPauseStoreMixin}: pause_job / resume_job / paused_jobs on the fake and
   on SQLite, PostgreSQL and MariaDB alike.
 - L{PausedElectedRepeaterTests}: an elected job beside a L{PauseWatcher} on a
   controlled clock: no run while paused (the lease kept), a run under way
   stops between steps, a resume runs it at once, another daemon's pause
   within the watcher's period, the metric.
 - L{AdminJobsTests}: the admin API over an in-process service; C{/status}.
 - L{JobsCLITests}: C{s3balance-admin jobs} against a stubbed admin API.
 - L{PauseDaemonTests}: a real daemon (SQLite, SeaweedFS): the deleter paused
   keeps a deleted object's backend copy, across a restart; resumed, it goes.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.ops import jobs_cli
from s3balance.ops.background import BackgroundMetrics, ElectedRepeater
from s3balance.ops.drain_cli import AdminCallFailed
from s3balance.ops.pauses import PauseWatcher
from tests import dbfixtures
from tests.daemon import ROOT, Daemon, backend_entry, base_config, poll
from tests.fakestore import MemoryStore, MemoryTables
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.harness.process import venv_bin
from tests.test_drain import InProcessService
from tests.test_store_contract import OnDatabase, OnMemoryStore, _Helpers

ELECTED = ("deleter", "drain", "lifecycle", "replicas", "scrub", "stale-uploads", "usage-reconcile")


# -- the store ----------------------------------------------------------------------------


class JobPauseStoreMixin(_Helpers):
    async def test_pause_resume_and_list(self) -> None:
        self.assertEqual(await self.store.paused_jobs(), [])
        pause = await self.store.pause_job("scrub", "admin API (10.0.0.1)", "backends busy")
        self.assertEqual((pause.job, pause.paused_by, pause.reason), ("scrub", "admin API (10.0.0.1)", "backends busy"))
        self.assertIsNotNone(pause.paused_at.tzinfo)
        await self.store.pause_job("deleter")
        self.assertEqual([p.job for p in await self.store.paused_jobs()], ["deleter", "scrub"])
        self.assertEqual(await self.store.paused_jobs(), [await self.store.pause_job("deleter"), pause])
        self.assertTrue(await self.store.resume_job("scrub"))
        self.assertFalse(await self.store.resume_job("scrub"))
        [left] = await self.store.paused_jobs()
        self.assertEqual((left.job, left.paused_by, left.reason), ("deleter", None, None))

    async def test_a_second_pause_keeps_the_first(self) -> None:
        first = await self.store.pause_job("drain", "alice", "first")
        self.skip_ahead(60)
        again = await self.store.pause_job("drain", "bob", "second")
        self.assertEqual(again, first)
        # Another daemon on the same database sees it, and may resume it.
        other = await self.start_store()
        self.assertEqual(await other.paused_jobs(), [first])
        self.assertTrue(await other.resume_job("drain"))
        self.assertEqual(await self.store.paused_jobs(), [])

    async def test_long_texts_are_cut_to_the_columns(self) -> None:
        pause = await self.store.pause_job("replicas", "b" * 300, "r" * 300)
        self.assertEqual((len(pause.paused_by), len(pause.reason)), (255, 255))
        self.assertEqual(await self.store.paused_jobs(), [pause])


class MemoryJobPauseStoreTests(OnMemoryStore, JobPauseStoreMixin, unittest.TestCase):
    pass


class SQLiteJobPauseStoreTests(OnDatabase, JobPauseStoreMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLJobPauseStoreTests(OnDatabase, JobPauseStoreMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBJobPauseStoreTests(OnDatabase, JobPauseStoreMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- the elected repeater and the watcher on a controlled clock ------------------------------


class Steps:
    """A job of several steps, each held open until the test fires it; records the steps begun."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.begun = 0
        self.runs = 0
        self.pending: list[Deferred] = []
        self.hold = False
        self.repeater: Optional[ElectedRepeater] = None

    async def __call__(self) -> None:
        self.runs += 1
        for _ in range(self.steps):
            assert self.repeater is not None
            if not self.repeater.keep_going():
                return
            self.begun += 1
            if self.hold:
                step: Deferred = Deferred()
                self.pending.append(step)
                await step


class Daemonlet:
    """One daemon's share: a service with an elected job and a pause watcher, on a shared fake database."""

    def __init__(self, clock: Clock, tables: MemoryTables, holder: str, metrics: BackgroundMetrics) -> None:
        self.store = MemoryStore(clock=clock, tables=tables)
        self.store.start()
        self.work = Steps()
        self.job = ElectedRepeater(
            "deleter", 5.0, self.work, clock, metrics, store=self.store, holder=holder, lease_seconds=30.0
        )
        self.work.repeater = self.job
        self.service = MultiService()
        self.job.setServiceParent(self.service)
        self.watcher = PauseWatcher(self.store, 2.0, clock, metrics)
        self.watcher.setServiceParent(self.service)


class PausedElectedRepeaterTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.tables = MemoryTables()
        self.registry = CollectorRegistry()
        self.metrics = BackgroundMetrics(self.registry)
        self.a = Daemonlet(self.clock, self.tables, "a", self.metrics)
        self.addCleanup(self.a.service.stopService)

    def gauge(self) -> Optional[float]:
        return self.registry.get_sample_value("s3balance_background_paused", {"job": "deleter"})

    def test_the_watcher_asks_for_its_elected_siblings(self) -> None:
        self.assertIs(self.a.job.pauses, self.a.watcher)
        self.assertEqual(self.a.watcher.elected(), [self.a.job])
        self.assertIsNone(self.a.watcher.find("nope"))
        self.assertEqual(self.gauge(), 0.0)

    def test_a_paused_job_does_not_run_and_keeps_its_lease(self) -> None:
        self.a.service.startService()
        self.assertEqual(self.a.work.runs, 1)
        self.successResultOf(self.a.store.pause_job("deleter"))
        self.clock.pump([1.0] * 3)  # the watcher's period
        self.assertTrue(self.a.job.paused)
        self.assertEqual(self.gauge(), 1.0)
        runs = self.a.work.runs
        self.clock.pump([1.0] * 100)
        self.assertEqual(self.a.work.runs, runs)
        self.assertFalse(self.a.job.should_run())
        self.assertFalse(self.a.job.keep_going())
        # The lease is kept (renewed): nobody else takes the job meanwhile.
        self.assertTrue(self.a.job.holding)
        self.assertEqual(self.tables.leases["deleter"][0], "a")
        # Resumed: it runs at once, not after its period.
        self.successResultOf(self.a.store.resume_job("deleter"))
        self.clock.advance(2.0)
        self.assertEqual(self.a.work.runs, runs + 1)
        self.assertEqual(self.gauge(), 0.0)
        self.assertTrue(self.a.job.keep_going())

    def test_a_run_under_way_stops_between_steps(self) -> None:
        self.a.work.hold = True
        self.a.service.startService()
        self.assertEqual(self.a.work.begun, 1)
        self.assertTrue(self.a.job.busy)
        # Paused through this daemon (the admin API's learn): at once.
        self.a.watcher.learn(self.successResultOf(self.a.store.pause_job("deleter")))
        self.a.work.pending.pop().callback(None)  # the step in progress ends...
        self.assertEqual(self.a.work.begun, 1)  # ...and no other begins
        self.assertFalse(self.a.job.busy)
        self.a.work.hold = False
        self.successResultOf(self.a.store.resume_job("deleter"))
        self.a.watcher.forget("deleter")
        self.assertEqual(self.a.work.begun, 1 + self.a.work.steps)

    def test_another_daemons_pause_and_a_restart(self) -> None:
        b = Daemonlet(self.clock, self.tables, "b", self.metrics)
        self.addCleanup(b.service.stopService)
        self.a.service.startService()
        b.service.startService()
        # b's pause (its admin API) holds in a, the leader, within the watcher's period.
        b.watcher.learn(self.successResultOf(b.store.pause_job("deleter")))
        self.clock.advance(2.0)
        self.assertTrue(self.a.job.paused)
        runs = self.a.work.runs
        self.clock.pump([1.0] * 20)
        self.assertEqual((self.a.work.runs, b.work.runs), (runs, 0))
        # a stops (gives the lease up); a new daemon reads the pauses before its jobs start
        # (GatewayService.startService), takes the lease and does not run the job.
        self.successResultOf(self.a.service.stopService())
        c = Daemonlet(self.clock, self.tables, "c", self.metrics)
        self.addCleanup(c.service.stopService)
        self.successResultOf(ensureDeferred(c.watcher.run()))
        c.service.startService()
        self.clock.pump([1.0] * 30)
        self.assertIn(self.tables.leases["deleter"][0], ("b", "c"))
        self.assertEqual((b.work.runs, c.work.runs), (0, 0))


# -- the admin API, /status, the metrics ------------------------------------------------------


class AdminJobsTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = InProcessService(self)
        self.service = self.fixture.service

    def test_list_pause_resume(self) -> None:
        call = self.fixture.call
        status, body = call("GET", "jobs")
        self.assertEqual(status, 200)
        jobs = {job["name"]: job for job in body["jobs"]}
        self.assertTrue(set(ELECTED) <= set(jobs), jobs)
        self.assertEqual(
            jobs["deleter"],
            {"name": "deleter", "paused": False, "paused_at": None, "paused_by": None, "reason": None,
             "leader": False, "holder": None, "running": False, "period": self.service.deleter.period},
        )
        status, job = call("POST", "jobs/deleter/pause", {"reason": "investigating a backend"})
        self.assertEqual(status, 200)
        self.assertEqual((job["name"], job["paused"], job["reason"]), ("deleter", True, "investigating a backend"))
        self.assertTrue(job["paused_by"].startswith("admin API"), job)
        self.assertTrue(job["paused_at"].endswith("Z"), job)
        # At once in this daemon; in the store for the others and for restarts.
        self.assertTrue(self.service.deleter.paused)
        self.assertEqual([p.job for p in self.successResultOf(self.fixture.store.paused_jobs())], ["deleter"])
        self.assertEqual(call("GET", "jobs/deleter")[1]["paused"], True)
        self.assertEqual(call("POST", "jobs/scrub/pause")[1]["reason"], None)
        self.assertEqual([j["name"] for j in call("GET", "jobs")[1]["jobs"] if j["paused"]], ["deleter", "scrub"])
        # The lease holder, when a daemon holds it.
        self.successResultOf(self.fixture.store.acquire_lease("scrub", "other-daemon", 30))
        self.assertEqual(call("GET", "jobs/scrub")[1]["holder"], "other-daemon")
        status, job = call("POST", "jobs/deleter/resume")
        self.assertEqual((status, job["paused"], job["paused_at"]), (200, False, None))
        self.assertFalse(self.service.deleter.paused)
        self.assertEqual(call("POST", "jobs/deleter/resume")[1]["paused"], False)  # twice: no error

    def test_refusals(self) -> None:
        call = self.fixture.call
        for method, path in (("POST", "jobs/nope/pause"), ("POST", "jobs/nope/resume"), ("GET", "jobs/nope")):
            status, body = call(method, path)
            self.assertEqual((status, body["error"]), (404, "no_such_job"), path)
            self.assertIn("'nope'", body["message"])
            self.assertIn("deleter", body["message"])  # names the jobs there are
        # Per-daemon jobs are not elected: not pausable.
        self.assertEqual(call("POST", "jobs/usage/pause")[0], 404)
        self.assertEqual(call("POST", "jobs/deleter/pause", {"reason": 5})[1]["error"], "invalid_request")
        self.assertEqual(call("GET", "jobs/deleter/pause")[0], 405)
        self.assertEqual(self.successResultOf(self.fixture.store.paused_jobs()), [])
        # The same token as every admin call.
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b"jobs"])
        request.method = b"GET"
        self.fixture.resource.render(request)
        self.assertEqual(request.responseCode, 401)

    def test_status_and_metrics_show_the_paused_jobs(self) -> None:
        from s3balance.daemon.status import StatusResource, render_page, status_document

        page = self.service.root.fixed[b"/status"]
        assert isinstance(page, StatusResource)
        self.assertIs(page.job_pauses, self.service.job_pauses)
        self.assertEqual(status_document(self.service.gateway, job_pauses=page.job_pauses)["paused_jobs"], [])
        self.fixture.call("POST", "jobs/replicas/pause")
        document = status_document(self.service.gateway, job_pauses=page.job_pauses)
        self.assertEqual(document["paused_jobs"], ["replicas"])
        self.assertIn('paused jobs <b id="paused-jobs">replicas</b>', render_page(document, "nonce").decode())
        scraped = self.service.metrics.render()[0].decode()
        self.assertIn('s3balance_background_paused{job="replicas"} 1.0', scraped)
        self.assertIn('s3balance_background_paused{job="deleter"} 0.0', scraped)


# -- the CLI -------------------------------------------------------------------------------------


class JobsCLITests(unittest.SynchronousTestCase):
    JOB = {"name": "deleter", "paused": True, "paused_at": "2026-12-12T10:00:00Z", "paused_by": "admin API (::1)",
           "reason": "disk check", "leader": True, "holder": "host/a", "running": False, "period": 60.0}

    def run_cli(self, *words: str, answers: Any = None, env_token: str = "t") -> tuple[int, str, str, list]:
        calls: list = []

        def fake_call(base: str, token: str, method: str, path: str, body: Optional[dict] = None) -> Any:
            calls.append((method, path, body))
            if isinstance(answers, Exception):
                raise answers
            return answers

        self.patch(jobs_cli, "admin_call", fake_call)
        from s3balance.ops.cli import main

        out, err = io.StringIO(), io.StringIO()
        self.patch(jobs_cli.sys, "stdout", out)
        self.patch(jobs_cli.sys, "stderr", err)
        status = main(["jobs", *words, "--admin-url", "http://127.0.0.1:1", "--token", env_token])
        return status, out.getvalue(), err.getvalue(), calls

    def test_list_pause_resume(self) -> None:
        status, out, _, calls = self.run_cli(answers={"jobs": [self.JOB, dict(self.JOB, name="scrub", paused=False,
                                                                                leader=False, holder=None)]})
        self.assertEqual((status, calls), (0, [("GET", "jobs", None)]))
        self.assertEqual(
            out.splitlines(),
            [
                "deleter: paused, since 2026-12-12T10:00:00Z by admin API (::1), reason: disk check, "
                "lease held by host/a (this daemon)",
                "scrub: active, no daemon holds its lease",
            ],
        )
        status, out, _, calls = self.run_cli("pause", "deleter", "--reason", "disk check", answers=self.JOB)
        self.assertEqual((status, calls), (0, [("POST", "jobs/deleter/pause", {"reason": "disk check"})]))
        self.assertTrue(out.startswith("deleter: paused"))
        status, out, _, calls = self.run_cli("resume", "deleter", "--json", answers=dict(self.JOB, paused=False))
        self.assertEqual((status, calls), (0, [("POST", "jobs/deleter/resume", None)]))
        self.assertEqual(json.loads(out)["paused"], False)

    def test_exit_codes(self) -> None:
        refused = AdminCallFailed("no cluster-wide background job named 'x' (HTTP 404)", 404, "no_such_job")
        status, _, err, _ = self.run_cli("pause", "x", answers=refused)
        self.assertEqual(status, 1)
        self.assertIn("no cluster-wide background job named 'x'", err)
        for words in (("pause",), ("stop", "deleter"), ("resume", "deleter", "--reason", "r")):
            status, _, err, calls = self.run_cli(*words, answers={})
            self.assertEqual((status, calls), (2, []), words)
        self.assertEqual(self.run_cli(env_token="", answers={})[0], 2)


# -- a real daemon ---------------------------------------------------------------------------------


class PauseDaemonTests(unittest.SynchronousTestCase):
    TOKEN = "pause-token"

    def admin(self, daemon: Daemon, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(f"{daemon.endpoint}/admin/{path}", data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return {"status": error.code, **json.load(error)}

    def test_a_paused_deleter_keeps_backend_copies_until_resumed_across_a_restart(self) -> None:
        server = shared_seaweedfs_pair()[0]
        real = unique_bucket_name("real")
        server.create_bucket(real)
        workdir = Path(harness_dir()) / f"pauses-{time.monotonic_ns()}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = base_config(
            [backend_entry(server, real)], ["vb-pauses"], workdir,
            api={"enabled": True, "token": self.TOKEN},
            balancer={"cleanup_period": "0.5s"},
        )
        daemon = Daemon(config, name="pauses")
        daemon.start()
        self.addCleanup(daemon.stop)
        direct = server.client()

        def stored() -> list[str]:
            return [item["Key"] for item in direct.list_objects_v2(Bucket=real).get("Contents", [])]

        paused = self.admin(daemon, "POST", "jobs/deleter/pause", {"reason": "test"})
        self.assertEqual((paused["paused"], paused["reason"]), (True, "test"))
        client = daemon.client()
        client.put_object(Bucket="vb-pauses", Key="kept", Body=b"x" * 100)
        [copy] = stored()
        client.delete_object(Bucket="vb-pauses", Key="kept")
        time.sleep(1.5)  # three cleanup periods
        self.assertEqual(stored(), [copy])
        # Still paused after a restart (read before the jobs start).
        daemon.stop()
        daemon.start()
        jobs = {job["name"]: job for job in self.admin(daemon, "GET", "jobs")["jobs"]}
        self.assertEqual((jobs["deleter"]["paused"], jobs["deleter"]["reason"]), (True, "test"))
        self.assertFalse(jobs["scrub"]["paused"])
        time.sleep(1.0)
        self.assertEqual(stored(), [copy])
        result = subprocess.run(
            [venv_bin("s3balance-admin"), "jobs", "resume", "deleter", "--admin-url", daemon.endpoint],
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "S3BALANCE_ADMIN_TOKEN": self.TOKEN},
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("deleter: active", result.stdout)
        poll(lambda: not stored(), timeout=10, message="the resumed deleter did not delete the copy")
        self.assertEqual(self.admin(daemon, "POST", "jobs/nope/pause")["status"], 404)
