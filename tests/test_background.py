"""
The background services (s3balance.ops.background, s3balance.ops.cleanup): the
repeater and the elected repeater on a controlled clock with an in-memory
lease store, the same lease contract checked against that fake and the real
store on SQLite, PostgreSQL and MariaDB, and the cleaners' bounded work.
"""

from __future__ import annotations

import datetime
import time

from prometheus_client import CollectorRegistry
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from s3balance.backends.backend import BackendError
from s3balance.ops.background import BackgroundMetrics, ElectedRepeater, Repeater, holder_id
from s3balance.ops.cleanup import DeletionWorker, StaleUploadCleaner, UsageReconciler, UsageRefresher
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import BackendUsage, QueuedDeletion, StoreUnavailable
from s3balance.store.leases import LeaseState
from tests import dbfixtures


def sample(registry: CollectorRegistry, name: str, job: str) -> float:
    value = registry.get_sample_value(name, {"job": job})
    return 0.0 if value is None else value


class FakeLeaseStore:
    """The store's lease methods in memory, on a clock of the test's (the "database's" clock)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[str, float]] = {}
        self.failing = False

    def acquire_lease(self, job: str, holder: str, seconds: float) -> Deferred:
        if self.failing:
            return defer.fail(StoreUnavailable("database gone"))
        now = self.clock.seconds()
        row = self.rows.get(job)
        if row is None or row[1] < now or row[0] == holder:
            self.rows[job] = (holder, now + seconds)
            return succeed(True)
        return succeed(False)

    def release_lease(self, job: str, holder: str) -> Deferred:
        row = self.rows.get(job)
        if row is not None and row[0] == holder:
            del self.rows[job]
            return succeed(True)
        return succeed(False)

    def lease_state(self, job: str) -> Deferred:
        row = self.rows.get(job)
        if row is None:
            return succeed(None)
        return succeed(LeaseState(job=job, holder=row[0], live=row[1] > self.clock.seconds()))


class Recorder:
    """A job that records its runs; its run is held open while C{hold} is set."""

    def __init__(self) -> None:
        self.runs = 0
        self.hold = False
        self.pending: list[Deferred] = []
        self.fail_with: BaseException | None = None

    def __call__(self) -> Deferred:
        self.runs += 1
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        if self.hold:
            d: Deferred = Deferred()
            self.pending.append(d)
            return d
        return succeed(None)


# -- Repeater -----------------------------------------------------------------------


class RepeaterTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.metrics = BackgroundMetrics(self.registry)
        self.job = Recorder()
        self.repeater = Repeater("job", 10.0, self.job, self.clock, self.metrics)

    def test_runs_at_start_and_every_period(self):
        self.repeater.startService()
        self.assertEqual(self.job.runs, 1)
        self.clock.advance(9.9)
        self.assertEqual(self.job.runs, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.job.runs, 2)
        self.clock.pump([10.0] * 3)
        self.assertEqual(self.job.runs, 5)
        self.assertEqual(sample(self.registry, "s3balance_background_runs_total", "job"), 5)

    def test_never_overlaps_itself(self):
        self.job.hold = True
        self.repeater.startService()
        self.clock.pump([10.0] * 5)
        self.assertEqual(self.job.runs, 1)
        self.repeater.kick()
        self.assertEqual(self.job.runs, 1)
        # A kick during the run asks for one more right after it.
        self.job.hold = False
        self.job.pending.pop().callback(None)
        self.clock.advance(0)
        self.assertEqual(self.job.runs, 2)

    def test_next_run_counts_from_the_start_of_the_last(self):
        self.job.hold = True
        self.repeater.startService()
        self.clock.advance(4.0)
        self.job.hold = False
        self.job.pending.pop().callback(None)
        self.clock.advance(5.9)
        self.assertEqual(self.job.runs, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.job.runs, 2)

    def test_kick_runs_now(self):
        self.repeater.startService()
        self.clock.advance(3)
        self.repeater.kick()
        self.assertEqual(self.job.runs, 2)
        self.clock.advance(9.9)
        self.assertEqual(self.job.runs, 2)

    def test_errors_are_logged_counted_and_survived(self):
        self.job.fail_with = ValueError("boom")
        self.repeater.startService()
        self.clock.advance(10.0)
        self.assertEqual(self.job.runs, 2)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)
        self.assertEqual(sample(self.registry, "s3balance_background_errors_total", "job"), 2)
        self.job.fail_with = None
        self.clock.advance(10.0)
        self.assertEqual(self.job.runs, 3)
        self.assertEqual(sample(self.registry, "s3balance_background_errors_total", "job"), 2)
        self.assertEqual(sample(self.registry, "s3balance_background_runs_total", "job"), 3)

    def test_quiet_errors_are_counted_without_a_traceback(self):
        repeater = Repeater("quiet", 10.0, self.job, self.clock, self.metrics, quiet_errors=(StoreUnavailable,))
        self.job.fail_with = StoreUnavailable("down")
        repeater.startService()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(sample(self.registry, "s3balance_background_errors_total", "quiet"), 1)

    def test_a_coroutine_job_runs(self):
        done = []

        async def work() -> None:
            done.append(True)

        Repeater("coro", 1.0, work, self.clock).startService()
        self.assertEqual(done, [True])

    def test_stop_waits_for_the_run_in_progress(self):
        self.job.hold = True
        self.repeater.startService()
        stopped = self.repeater.stopService()
        self.assertNoResult(stopped)
        self.job.pending.pop().callback(None)
        self.successResultOf(stopped)
        self.clock.advance(100)
        self.assertEqual(self.job.runs, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels_a_run_that_takes_too_long(self):
        self.job.hold = True
        self.repeater.stop_timeout = 5.0
        self.repeater.startService()
        stopped = self.repeater.stopService()
        self.clock.advance(5.0)
        self.successResultOf(stopped)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_when_idle_leaves_no_timer(self):
        self.repeater.startService()
        self.successResultOf(self.repeater.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.repeater.kick()
        self.assertEqual(self.job.runs, 1)


# -- ElectedRepeater ---------------------------------------------------------------


class ElectedRepeaterTests(unittest.SynchronousTestCase):
    LEASE = 30.0

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FakeLeaseStore(self.clock)
        self.registry = CollectorRegistry()
        self.metrics = BackgroundMetrics(self.registry)

    def elected(self, holder: str, job: Recorder, store=None) -> ElectedRepeater:
        return ElectedRepeater(
            "cleaner", 5.0, job, self.clock, self.metrics, store=store or self.store, holder=holder,
            lease_seconds=self.LEASE,
        )

    def test_only_the_lease_holder_runs(self):
        a_job, b_job = Recorder(), Recorder()
        a, b = self.elected("a", a_job), self.elected("b", b_job)
        a.startService()
        b.startService()
        self.clock.pump([1.0] * 120)
        self.assertTrue(a.holding)
        self.assertFalse(b.holding)
        self.assertGreater(a_job.runs, 20)
        self.assertEqual(b_job.runs, 0)
        self.assertEqual(self.store.rows["cleaner"][0], "a")

    def test_holder_that_stops_renewing_is_replaced_after_expiry(self):
        a_job, b_job = Recorder(), Recorder()
        a, b = self.elected("a", a_job), self.elected("b", b_job)
        a.startService()
        b.startService()
        self.clock.advance(1)
        # a hangs (its process frozen, its database connection gone): no renewals.
        a.lease.stopService()
        self.clock.pump([1.0] * int(self.LEASE - 2))
        self.assertFalse(b.holding, "taken over before the lease expired")
        self.assertEqual(b_job.runs, 0)
        self.assertTrue(a.holding)
        # a counts itself out no later than the database does.
        self.clock.advance(1)
        self.assertFalse(a.holding)
        runs_of_a = a_job.runs
        self.clock.pump([1.0] * int(self.LEASE / 3 + 3))
        self.assertTrue(b.holding)
        self.assertGreater(b_job.runs, 0)
        self.assertEqual(a_job.runs, runs_of_a)

    def test_a_lease_renewal_failure_stops_the_runs(self):
        job = Recorder()
        a = self.elected("a", job)
        a.startService()
        self.store.failing = True
        self.clock.pump([1.0] * 11)
        self.assertFalse(a.holding)
        runs = job.runs
        self.clock.pump([1.0] * 60)
        self.assertEqual(job.runs, runs)
        self.assertEqual(sample(self.registry, "s3balance_background_leader", "cleaner"), 0)
        self.flushLoggedErrors(StoreUnavailable)
        self.store.failing = False
        self.clock.pump([1.0] * 11)
        self.assertTrue(a.holding)
        self.assertGreater(job.runs, runs)

    def test_errors_do_not_end_the_elected_job(self):
        job = Recorder()
        job.fail_with = RuntimeError("bad")
        a = self.elected("a", job)
        a.startService()
        self.clock.pump([1.0] * 20)
        self.assertGreater(job.runs, 2)
        self.assertTrue(a.holding)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), job.runs)
        self.assertEqual(sample(self.registry, "s3balance_background_errors_total", "cleaner"), job.runs)

    def test_stop_releases_the_lease_and_another_takes_over_at_once(self):
        a_job, b_job = Recorder(), Recorder()
        a, b = self.elected("a", a_job), self.elected("b", b_job)
        a.startService()
        b.startService()
        self.assertEqual(sample(self.registry, "s3balance_background_leader", "cleaner"), 1)
        a_job.hold = True
        self.clock.advance(5)
        stopped = a.stopService()
        self.assertNoResult(stopped)  # waits for its run in progress
        a_job.pending.pop().callback(None)
        self.successResultOf(stopped)
        self.assertNotIn("cleaner", self.store.rows)
        self.clock.advance(self.LEASE / 3)
        self.assertTrue(b.holding)
        self.assertEqual(b_job.runs, 1)

    def test_kick_without_the_lease_does_nothing(self):
        self.store.rows["cleaner"] = ("other", 1000.0)
        job = Recorder()
        a = self.elected("a", job)
        a.startService()
        a.kick()
        self.clock.pump([1.0] * 30)
        self.assertEqual(job.runs, 0)
        self.assertEqual(self.successResultOf(self.store.lease_state("cleaner")).holder, "other")

    def test_holder_ids_differ_unless_the_seat_is_the_same(self):
        self.assertNotEqual(holder_id(), holder_id())
        self.assertEqual(holder_id("0.0.0.0:8080/0"), holder_id("0.0.0.0:8080/0"))
        self.assertNotEqual(holder_id("0.0.0.0:8080/0"), holder_id("0.0.0.0:8080/1"))


# -- the lease contract: the fake and the real store -----------------------------------


class LeaseContractMixin:
    """The same checks for the fake and for the store on each database."""

    lease = 1.0

    def expire(self) -> Deferred:
        raise NotImplementedError

    async def test_one_holder_at_a_time(self):
        self.assertTrue(await self.store.acquire_lease("job", "a", self.lease))
        self.assertFalse(await self.store.acquire_lease("job", "b", self.lease))
        self.assertTrue(await self.store.acquire_lease("job", "a", self.lease))  # renewal
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "a", True))
        # Leases of other jobs are apart.
        self.assertTrue(await self.store.acquire_lease("other", "b", self.lease))

    async def test_an_expired_lease_goes_to_the_next_that_asks(self):
        self.assertTrue(await self.store.acquire_lease("job", "a", self.lease))
        await self.expire()
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "a", False))
        self.assertTrue(await self.store.acquire_lease("job", "b", 60))
        self.assertFalse(await self.store.acquire_lease("job", "a", self.lease))

    async def test_release_lets_another_take_it(self):
        self.assertTrue(await self.store.acquire_lease("job", "a", 60))
        self.assertFalse(await self.store.release_lease("job", "b"))
        self.assertTrue(await self.store.release_lease("job", "a"))
        self.assertIsNone(await self.store.lease_state("job"))
        self.assertTrue(await self.store.acquire_lease("job", "b", 60))


class FakeLeaseContractTests(LeaseContractMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FakeLeaseStore(self.clock)

    def expire(self) -> Deferred:
        self.clock.advance(self.lease + 0.1)
        return succeed(None)


class StoreLeaseMixin(LeaseContractMixin):
    kind: str

    async def setUp(self) -> None:
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = MetadataStore(self.url, reactor=reactor, max_threads=4)
        await self.store.start()
        self.addCleanup(self.store.stop)

    async def expire(self) -> None:
        # The database's clock decides: wait until it says the lease is over.
        deadline = time.monotonic() + 10
        while (await self.store.lease_state("job")).live:
            self.assertLess(time.monotonic(), deadline, "the lease never expired")
            await deferLater(reactor, 0.1, lambda: None)

    async def test_two_holders_racing_for_a_new_job_one_wins(self):
        answers = await defer.gatherResults(
            [self.store.acquire_lease("race", holder, 60) for holder in ("a", "b", "c", "d")]
        )
        self.assertEqual(sorted(answers), [False, False, False, True])

    async def test_two_elected_repeaters_on_one_database_run_the_job_once(self):
        runs: dict[str, int] = {"a": 0, "b": 0}

        def job_of(name: str):
            def job() -> None:
                runs[name] += 1

            return job

        repeaters = [
            ElectedRepeater("job", 0.05, job_of(name), reactor, store=self.store, holder=name, lease_seconds=3.0)
            for name in ("a", "b")
        ]
        for repeater in repeaters:
            repeater.startService()
        deadline = time.monotonic() + 10
        while sum(runs.values()) < 10:
            self.assertLess(time.monotonic(), deadline, f"the job did not run: {runs}")
            await deferLater(reactor, 0.05, lambda: None)
        for repeater in repeaters:
            await repeater.stopService()
        self.assertIn(0, runs.values(), runs)
        self.assertIsNone(await self.store.lease_state("job"), "the lease was not given up")

    async def test_usage_deltas_add_up_and_the_reconcile_replaces_them(self):
        first = await self.store.add_backend_usage({"b1": (100, 1), "b2": (0, 0)})
        self.assertEqual([(u.backend, u.used_bytes, u.object_count) for u in first], [("b1", 100, 1)])
        both = await self.store.add_backend_usage({"b1": (-40, 0), "b2": (7, 2)})
        self.assertEqual([(u.backend, u.used_bytes, u.object_count) for u in both], [("b1", 60, 1), ("b2", 7, 2)])
        # Nothing is stored: the aggregate of the locations is nothing.
        self.assertEqual(await self.store.reconcile_backend_usage(), [])
        self.assertEqual(await self.store.stored_backend_usage(), [])

    async def test_migration_0004_fills_the_usage_from_the_locations(self):
        from alembic import command
        from sqlalchemy import create_engine

        from s3balance.store import migrate
        from tests.test_store import BUCKET, make_record

        await self.store.sync_config_buckets([BUCKET])
        for i, size in enumerate((100, 20)):
            intent = await self.store.begin_write("b1", f"vb/{i}", 60)
            await self.store.commit_object(intent.id, make_record(f"k{i}", f"vb/{i}", size=size))
        await self.store.stop()
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                command.downgrade(migrate.alembic_config(connection=conn), "0003")
            with engine.begin() as conn:
                migrate.upgrade_connection(conn)
        finally:
            engine.dispose()
        self.store = MetadataStore(self.url, reactor=reactor, max_threads=4)
        await self.store.start()
        self.addCleanup(self.store.stop)
        [row] = await self.store.stored_backend_usage()
        self.assertEqual((row.backend, row.used_bytes, row.object_count), ("b1", 120, 2))

    async def test_postponed_deletions_keep_their_attempts(self):
        intent = await self.store.begin_write("down", "vb/x", 60)
        await self.store.abandon_write(intent.id, True)
        [queued] = await self.store.queued_deletions()
        self.assertEqual(await self.store.postpone_deletions("up", 60), 0)
        self.assertEqual(await self.store.postpone_deletions("down", 60), 1)
        self.assertEqual(await self.store.queued_deletions(), [])
        self.assertEqual(queued.attempts, 0)


class SQLiteLeaseTests(StoreLeaseMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLLeaseTests(StoreLeaseMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBLeaseTests(StoreLeaseMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- the cleaners -------------------------------------------------------------------------


class FakeBackend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.timeout = 10.0
        self.deleting: list[Deferred] = []
        self.deleted: list[str] = []

    def delete_object(self, real_key: str) -> Deferred:
        d: Deferred = Deferred()
        self.deleting.append(d)
        d.addCallback(lambda _: self.deleted.append(real_key))
        return d

    def multipart_uploads_of(self, real_key: str) -> Deferred:
        return succeed([])


class FakePool:
    def __init__(self, *backends: FakeBackend) -> None:
        self.backends = {b.name: b for b in backends}
        self.down: set[str] = set()
        self._usage: dict[str, tuple[int, int]] = {}

    def names(self) -> list[str]:
        return sorted(self.backends)

    def get(self, name: str):
        return self.backends.get(name)

    def is_up(self, name: str) -> bool:
        return name in self.backends and name not in self.down

    def usage(self, name: str) -> tuple[int, int]:
        return self._usage.get(name, (0, 0))

    def set_usage(self, name: str, used: int, count: int) -> None:
        self._usage[name] = (used, count)

    def add_usage(self, name: str, used: int, count: int) -> None:
        was = self.usage(name)
        self._usage[name] = (was[0] + used, was[1] + count)


class FakeDeletionStore(FakeLeaseStore):
    def __init__(self, clock: Clock, queue: list[QueuedDeletion]) -> None:
        super().__init__(clock)
        self.queue = {item.id: item for item in queue}
        self.postponed: list[str] = []
        self.retried: list[int] = []

    def expired_writes(self, limit: int) -> Deferred:
        return succeed(0)

    def postpone_deletions(self, backend: str, delay: float) -> Deferred:
        self.postponed.append(backend)
        moved = [i for i, item in self.queue.items() if item.backend == backend]
        for i in moved:
            del self.queue[i]
        return succeed(len(moved))

    def queued_deletions(self, limit: int) -> Deferred:
        due = sorted(i for i in self.queue if i not in self.retried)
        return succeed([self.queue[i] for i in due[:limit]])

    def is_referenced(self, backend: str, real_key: str) -> Deferred:
        return succeed(False)

    def finish_deletion(self, deletion_id: int) -> Deferred:
        del self.queue[deletion_id]
        return succeed(None)

    def retry_deletion_later(self, deletion_id: int, delay: float) -> Deferred:
        self.retried.append(deletion_id)
        return succeed(None)


def queued(n: int, backend: str, start: int = 0) -> list[QueuedDeletion]:
    return [
        QueuedDeletion(id=start + i, backend=backend, real_key=f"k{start + i}", backend_upload_id=None, attempts=0,
                       reason="deleted")
        for i in range(n)
    ]


class DeletionWorkerTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.up, self.down = FakeBackend("up"), FakeBackend("down")
        self.pool = FakePool(self.up, self.down)

    def worker(self, store) -> DeletionWorker:
        return DeletionWorker(store, self.pool, 60.0, self.clock, holder="me")

    def test_deletes_several_at_once_but_bounded(self):
        store = FakeDeletionStore(self.clock, queued(20, "up"))
        worker = self.worker(store)
        worker.startService()
        self.assertTrue(worker.holding)
        self.assertEqual(len(self.up.deleting), DeletionWorker.CONCURRENCY)
        while self.up.deleting:
            self.up.deleting.pop(0).callback(None)
        self.assertEqual(len(self.up.deleted), 20)
        self.assertEqual(store.queue, {})

    def test_skips_a_backend_that_is_down(self):
        store = FakeDeletionStore(self.clock, queued(3, "down") + queued(2, "up", start=10))
        self.pool.down.add("down")
        worker = self.worker(store)
        worker.startService()
        self.assertEqual(store.postponed, ["down"])
        self.assertEqual(self.down.deleting, [])
        for d in list(self.up.deleting):
            d.callback(None)
        self.assertEqual(self.up.deleted, ["k10", "k11"])

    def test_a_backend_that_never_answers_is_given_up_on_in_time(self):
        store = FakeDeletionStore(self.clock, queued(2, "up"))
        worker = self.worker(store)
        worker.startService()
        self.clock.advance(worker.item_timeout())
        self.assertEqual(sorted(store.retried), [0, 1])
        self.assertEqual(len(store.queue), 2)
        self.flushLoggedErrors()

    def test_backend_errors_push_the_deletion_later(self):
        store = FakeDeletionStore(self.clock, queued(1, "up"))
        worker = self.worker(store)
        worker.startService()
        self.up.deleting.pop().errback(BackendError("up", 503, "SlowDown", "busy"))
        self.assertEqual(store.retried, [0])

    def test_a_store_error_ends_the_run_only_once_the_batch_settled(self):
        store = FakeDeletionStore(self.clock, queued(3, "up"))
        registry = CollectorRegistry()

        def flaky(backend: str, real_key: str) -> Deferred:
            if real_key == "k0":
                return defer.fail(StoreUnavailable("gone"))
            return succeed(False)

        store.is_referenced = flaky
        worker = DeletionWorker(store, self.pool, 60.0, self.clock, holder="me", metrics=BackgroundMetrics(registry))
        worker.startService()
        self.assertEqual(len(self.up.deleting), 2)
        self.clock.advance(0)
        self.assertEqual(sample(registry, "s3balance_background_runs_total", "deleter"), 0, "ended mid-batch")
        worker.kick()  # asks for another run: not while this one's deletions are in flight
        self.assertEqual(len(self.up.deleting), 2)
        for d in list(self.up.deleting):
            d.callback(None)
        self.assertEqual(sample(registry, "s3balance_background_errors_total", "deleter"), 1)
        self.assertEqual(self.up.deleted, ["k1", "k2"])

    def test_does_nothing_without_the_lease(self):
        store = FakeDeletionStore(self.clock, queued(2, "up"))
        store.rows["deleter"] = ("other", 1e9)
        worker = self.worker(store)
        worker.startService()
        worker.kick()
        self.clock.pump([10.0] * 20)
        self.assertEqual(self.up.deleting, [])


class UsageTests(unittest.TestCase):
    """Two daemons' usage refreshers on one SQLite database, and the reconcile."""

    async def setUp(self) -> None:
        self.store = MetadataStore(dbfixtures.sqlite_url(self), reactor=reactor)
        await self.store.start()
        self.addCleanup(self.store.stop)

    async def test_each_daemon_sees_the_other_daemons_writes(self):
        pools = [FakePool(FakeBackend("b1"), FakeBackend("b2")) for _ in range(2)]
        refreshers = [UsageRefresher(self.store, pool, 60.0, Clock()) for pool in pools]
        pools[0].add_usage("b1", 100, 1)
        pools[1].add_usage("b1", 50, 1)
        pools[1].add_usage("b2", 7, 1)
        for refresher in refreshers:
            await refresher.run()
        await refreshers[0].run()
        self.assertEqual([pools[0].usage("b1"), pools[0].usage("b2")], [(150, 2), (7, 1)])
        pools[0].add_usage("b1", -100, -1)  # a delete
        await refreshers[0].run()
        await refreshers[1].run()
        self.assertEqual([pools[1].usage("b1"), pools[1].usage("b2")], [(50, 1), (7, 1)])

    def test_changes_made_while_the_store_answers_are_kept_for_the_next_run(self):
        pool = FakePool(FakeBackend("b1"))
        answers: list[Deferred] = []
        sent: list[dict] = []

        class SlowStore:
            def add_backend_usage(self, deltas):
                sent.append(deltas)
                answers.append(Deferred())
                return answers[-1]

        refresher = UsageRefresher(SlowStore(), pool, 60.0, Clock())
        pool.add_usage("b1", 10, 1)
        refresher.run()
        pool.add_usage("b1", 5, 1)  # a write committed meanwhile
        answers[0].callback([BackendUsage("b1", 1000, 10)])  # other daemons' too
        self.assertEqual(pool.usage("b1"), (1005, 11))
        refresher.run()
        self.assertEqual(sent, [{"b1": (10, 1)}, {"b1": (5, 1)}])

    async def test_reconcile_puts_the_aggregate_of_the_locations_back(self):
        from tests.test_store import BUCKET, make_record

        await self.store.sync_config_buckets([BUCKET])
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.commit_object(intent.id, make_record("k", "vb/1", size=123))
        pool = FakePool(FakeBackend("b1"))
        refresher = UsageRefresher(self.store, pool, 60.0, Clock())
        pool.add_usage("b1", 999_999, 5)  # drift: counted, never stored
        await refresher.run()
        self.assertEqual(pool.usage("b1"), (999_999, 5))
        reconciler = UsageReconciler(self.store, 3600.0, Clock(), holder="me", refresher=refresher)
        reconciler.running = True
        await reconciler.run()
        await refresher.run()
        self.assertEqual(pool.usage("b1"), (123, 1))


class StaleUploadCleanerTests(unittest.TestCase):
    async def test_aborts_uploads_idle_too_long_and_kicks_the_deleter(self):
        from s3balance.store.interfaces import MultipartRecord

        store = MetadataStore(dbfixtures.sqlite_url(self), reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)
        await store.sync_config_buckets(["vb"])
        old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        await store.create_multipart(MultipartRecord("u1", "vb", "k", "b1", "vb/rk", "B1", old, None, {}))
        kicked = []

        class Deleter:
            def kick(self) -> None:
                kicked.append(True)

        clock = Clock()
        clock.advance(time.time())
        cleaner = StaleUploadCleaner(store, 60.0, 3600.0, clock, holder="me", deleter=Deleter())
        cleaner.running = True
        await cleaner.run()
        self.assertIsNone(await store.get_multipart("u1"))
        self.assertEqual([(q.backend, q.backend_upload_id) for q in await store.queued_deletions()], [("b1", "B1")])
        self.assertEqual(kicked, [True])
