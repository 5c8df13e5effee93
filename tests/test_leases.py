"""
Write-intent leases: renewed for as long as a write runs whatever a single
renewal's fate, for every write that holds an intent (CopyObject included),
and set and judged by the database's clock, not a daemon's.

Renewal logic on a controlled clock and a fake store; the clock on the real
store, on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Optional

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.s3 import copy as copy_module
from s3balance.s3.access import BucketAccess
from s3balance.s3.intent_lease import INTENT_LEASE
from s3balance.s3.streamed_body import StreamedBody
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import (
    Location,
    ObjectRecord,
    StoreUnavailable,
    WriteIntent,
    WriteIntentExpired,
)
from tests import dbfixtures

UTC = datetime.UTC


class LeasedIntentStore:
    """
    The write intents of a store, on a controlled clock: a lease runs out
    C{lease} seconds after it was taken or last renewed, and L{sweep} (the
    cleaner) takes every intent whose lease ran out.  C{renew_failures}
    makes the next renewals fail with a database error.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.intents: dict[int, float] = {}  # id -> lease end
        self.swept: list[int] = []
        self.renewals = 0
        self.renew_failures = 0
        self.committed: list[ObjectRecord] = []
        self.abandoned: list[int] = []
        self.objects: dict[tuple[str, str], ObjectRecord] = {}

    def begin_write(self, backend: str, real_key: str, lease_seconds: float, *reservation) -> Deferred:
        intent_id = len(self.intents) + len(self.swept) + 1
        self.intents[intent_id] = self.clock.seconds() + lease_seconds
        return succeed(WriteIntent(id=intent_id, backend=backend, real_key=real_key))

    def renew_write(self, intent_id: int, lease_seconds: float) -> Deferred:
        self.renewals += 1
        if self.renew_failures:
            self.renew_failures -= 1
            return fail(StoreUnavailable("connection refused"))
        if intent_id not in self.intents:
            return fail(WriteIntentExpired(intent_id))
        self.intents[intent_id] = self.clock.seconds() + lease_seconds
        return succeed(None)

    def sweep(self) -> None:
        for intent_id, until in list(self.intents.items()):
            if until <= self.clock.seconds():
                del self.intents[intent_id]
                self.swept.append(intent_id)

    def commit_object(self, intent_id: int, record: ObjectRecord, if_match=None, if_none_match=None, also=()) -> Deferred:
        if self.intents.pop(intent_id, None) is None:
            return fail(WriteIntentExpired(intent_id))
        self.committed.append(record)
        return succeed(record)

    def abandon_write(self, intent_id: int, backend_object_may_exist: bool) -> Deferred:
        self.intents.pop(intent_id, None)
        self.abandoned.append(intent_id)
        return succeed(None)

    def get_object(self, bucket: str, key: str) -> Deferred:
        return succeed(self.objects.get((bucket, key)))


def run_for(clock: Clock, store: LeasedIntentStore, seconds: float, step: float = 60.0) -> None:
    """Let C{seconds} pass on C{clock}, the cleaner sweeping every C{step}."""
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        clock.advance(min(step, end - clock.seconds()))
        store.sweep()


class RenewalTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = LeasedIntentStore(self.clock)
        self.upload = SimpleNamespace(gateway=SimpleNamespace(store=self.store, reactor=self.clock))

    def begin(self) -> int:
        return self.successResultOf(self.store.begin_write("b1", "vb/1", INTENT_LEASE)).id

    def test_renewal_survives_a_failed_renewal(self) -> None:
        intent_id = self.begin()
        lease = StreamedBody._renew_lease(self.upload, intent_id)  # type: ignore[arg-type]
        self.store.renew_failures = 1
        run_for(self.clock, self.store, 4 * INTENT_LEASE)
        self.assertIn(intent_id, self.store.intents, "the intent expired after one failed renewal")
        self.assertTrue(lease.running)
        self.assertGreater(self.store.renewals, 4)
        lease.stop()
        renewals = self.store.renewals
        self.clock.advance(4 * INTENT_LEASE)
        self.assertEqual(self.store.renewals, renewals)

    def test_renewal_survives_an_outage_shorter_than_the_lease(self) -> None:
        intent_id = self.begin()
        lease = StreamedBody._renew_lease(self.upload, intent_id)  # type: ignore[arg-type]
        self.store.renew_failures = 5  # failed renewals are retried sooner than the period
        run_for(self.clock, self.store, 3 * INTENT_LEASE)
        self.assertIn(intent_id, self.store.intents)
        lease.stop()

    def test_renewal_ends_when_the_intent_is_gone(self) -> None:
        intent_id = self.begin()
        lease = StreamedBody._renew_lease(self.upload, intent_id)  # type: ignore[arg-type]
        del self.store.intents[intent_id]
        self.clock.advance(INTENT_LEASE)
        self.assertFalse(lease.running)
        self.assertTrue(lease.lost)
        renewals = self.store.renewals
        self.clock.advance(4 * INTENT_LEASE)
        self.assertEqual(self.store.renewals, renewals)


class CopyGateway:
    """What copy_object asks of the gateway, for a source on backend b1 copied server-side on b1."""

    def __init__(self, clock: Clock, store: LeasedIntentStore, copying: Deferred) -> None:
        self.reactor = clock
        self.store = store
        self.config = SimpleNamespace(
            s3api=SimpleNamespace(multipart_copy_threshold=0), replication_of=lambda bucket: (1, "sync")
        )
        self.answers: list[bytes] = []
        self.released: list[str] = []
        target = SimpleNamespace(name="b1", copy_object=lambda real_key, source_key, headers: copying)
        released = self.released

        class Reservation:
            backend = "b1"

            def release(self) -> None:
                released.append("b1")

        self.pool = SimpleNamespace(
            readable=lambda name: True,
            candidates=lambda size: [SimpleNamespace(name="b1")],
            reserve=lambda name, size: Reservation(),
            get=lambda name: target,
            add_usage=lambda name, size, count: None,
        )

    async def require_bucket(self, call, bucket=None, action=None, key=None) -> BucketAccess:
        return BucketAccess(bucket or call.bucket, "000000000000")

    def may_see_bucket(self, credential, bucket: str) -> bool:
        return True

    def new_real_key(self, bucket: str) -> str:
        return f"{bucket}/copy"

    def kick_deleter(self, replaced: bool = False) -> None:
        pass

    def answer_xml(self, request, body: bytes) -> None:
        self.answers.append(body)


class CopyCall:
    bucket = "vb"
    key = "copy"
    credential = None

    def __init__(self) -> None:
        self.headers = {"x-amz-copy-source": ["/vb/source"]}

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name)
        return values[0] if values else None


class CopyLeaseTests(unittest.SynchronousTestCase):
    def test_a_copy_longer_than_the_lease_keeps_its_intent(self) -> None:
        clock = Clock()
        store = LeasedIntentStore(clock)
        store.objects[("vb", "source")] = ObjectRecord(
            bucket="vb",
            key="source",
            size=10,
            etag='"e"',
            last_modified=datetime.datetime(2026, 1, 1, tzinfo=UTC),
            content_type="text/plain",
            headers={},
            checksums={},
            locations=(Location("b1", "vb/source-real"),),
        )
        copying: Deferred = Deferred()
        gateway = CopyGateway(clock, store, copying)
        done = ensureDeferred(copy_module.copy_object(gateway, object(), CopyCall()))
        self.assertNoResult(done)
        run_for(clock, store, 3 * INTENT_LEASE)  # the backend copies for three leases' time
        self.assertEqual(store.swept, [], "the copy's intent expired while it ran")
        copying.callback('"copied"')
        self.successResultOf(done)
        self.assertEqual([record.etag for record in store.committed], ['"copied"'])
        self.assertEqual(len(gateway.answers), 1)
        self.assertEqual(gateway.released, ["b1"])
        renewals = store.renewals
        clock.advance(4 * INTENT_LEASE)
        self.assertEqual(store.renewals, renewals, "the lease is still renewed after the copy")


class DatabaseClockMixin:
    """Leases follow the database's clock, whatever the daemons' clocks say."""

    kind: str

    async def setUp(self) -> None:
        self.url = dbfixtures.fresh_database(self, self.kind)
        self.right = await self.start_store(datetime.timedelta(0))
        await self.right.sync_config_buckets(["vb"])

    async def start_store(self, skew: datetime.timedelta) -> MetadataStore:
        store = MetadataStore(self.url, max_threads=2, now=lambda: datetime.datetime.now(UTC) + skew)
        await store.start()
        self.addCleanup(store.stop)  # type: ignore[attr-defined]
        return store

    async def test_a_daemon_clock_far_ahead_does_not_expire_live_leases(self) -> None:
        ahead = await self.start_store(datetime.timedelta(days=3650))
        intent = await self.right.begin_write("b1", "vb/live", 60)
        self.assertEqual(await ahead.expired_writes(), 0)
        self.assertTrue(await self.right.is_referenced("b1", "vb/live"))
        await self.right.renew_write(intent.id, 60)

    async def test_a_lease_taken_by_a_daemon_clock_far_behind_lasts_its_length(self) -> None:
        behind = await self.start_store(datetime.timedelta(days=-3650))
        intent = await behind.begin_write("b1", "vb/live", 60)
        await behind.renew_write(intent.id, 60)
        self.assertEqual(await self.right.expired_writes(), 0)
        self.assertEqual(await behind.expired_writes(), 0)

    async def test_a_lease_past_by_the_database_clock_expires_for_every_daemon(self) -> None:
        behind = await self.start_store(datetime.timedelta(days=-3650))
        await self.right.begin_write("b1", "vb/stale", -5)
        self.assertEqual(await behind.expired_writes(), 1)


class SQLiteDatabaseClockTests(DatabaseClockMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLDatabaseClockTests(DatabaseClockMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBDatabaseClockTests(DatabaseClockMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
