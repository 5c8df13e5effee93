"""
Per-virtual-bucket quotas (store/quotas.py): usage kept by every commit and
delete in their transactions, reservations checked against the quota in the
write intent's transaction, race-free across daemons.

  - the store: on the fake, SQLite, PostgreSQL and MariaDB (one mixin);
  - migration 0009 fills the usage from the objects already stored;
  - the configuration (errors name the key) and the admin API in-process;
  - a daemon with boto3: 403 QuotaExceeded, nothing stored, room freed by
    deletes, the admin API, metrics and /status.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from alembic import command
from botocore.exceptions import ClientError
from prometheus_client.utils import floatToGoString
from sqlalchemy import create_engine, insert, inspect, select
from sqlalchemy.engine import make_url
from twisted.internet.defer import DeferredList
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.config import ConfigError, parse_config
from s3balance.daemon.buckets import config_quotas
from s3balance.metrics import BucketCollector, Metrics
from s3balance.store import migrate, quotas, tables
from s3balance.store.interfaces import (
    BucketUsage,
    ConfigQuotaError,
    MultipartRecord,
    NoSuchBucketError,
    Quota,
    QuotaExceeded,
    WriteIntent,
    WriteIntentExpired,
)
from s3balance.store.records import encode_key
from tests import dbfixtures
from tests.daemon import Daemon, PatternStream, backend_entry, base_config, database_counts, poll, sign
from tests.fakestore import MemoryStore
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.test_store import BUCKET, T0, make_record
from tests.test_store_contract import OnDatabase, OnMemoryStore, _Helpers

MIB = 1024**2


def ensure(coroutine: Any) -> Any:
    from twisted.internet.defer import ensureDeferred

    return ensureDeferred(coroutine)


# -- the store ------------------------------------------------------------------------------


class QuotaStoreMixin(_Helpers):
    """On the fake and on every database (L{OnMemoryStore}, L{OnDatabase})."""

    async def reserve(self, key: str, size: int, objects: int = 1, store: Any = None) -> WriteIntent:
        """A write intent of C{key} in BUCKET reserving C{size} bytes and C{objects} objects."""
        return await (store or self.store).begin_write("b1", f"vb/{key}", 60, size, None, BUCKET, objects)

    async def store_object(self, key: str, size: int, store: Any = None) -> None:
        intent = await self.reserve(key, size, store=store)
        await (store or self.store).commit_object(intent.id, make_record(key, f"vb/{key}-{intent.id}", size=size))

    async def usage(self, bucket: str = BUCKET, store: Any = None) -> BucketUsage:
        rows = {row.bucket: row for row in await (store or self.store).bucket_usage()}
        return rows[bucket]

    async def held(self) -> tuple[int, int, int, int]:
        """(used bytes, objects, reserved bytes, reserved objects) of BUCKET."""
        row = await self.usage()
        return row.used_bytes, row.object_count, row.reserved_bytes, row.reserved_objects

    async def assertRefused(self, limit: str, key: str, size: int, objects: int = 1, store: Any = None) -> QuotaExceeded:
        try:
            await self.reserve(key, size, objects, store)
        except QuotaExceeded as exceeded:
            self.assertEqual((exceeded.bucket, exceeded.limit), (BUCKET, limit))
            self.assertFalse(await self.store.is_referenced("b1", f"vb/{key}"))  # nothing recorded
            return exceeded
        self.fail(f"a reservation of {size} bytes and {objects} objects was granted")

    async def test_usage_follows_commits_replacements_and_deletions(self) -> None:
        self.assertEqual(await self.held(), (0, 0, 0, 0))
        for key in ("a", "b", "c"):
            await self.store_object(key, 100)
        self.assertEqual(await self.held(), (300, 3, 0, 0))
        await self.store_object("a", 30)  # a replacement counts its difference, no new object
        self.assertEqual(await self.held(), (230, 3, 0, 0))
        await self.store_object("b", 130)
        self.assertEqual(await self.held(), (260, 3, 0, 0))
        await self.store.delete_object(BUCKET, "c")
        await self.store.delete_object(BUCKET, "missing")
        self.assertEqual(await self.held(), (160, 2, 0, 0))
        await self.store.delete_objects(BUCKET, [("a", None), ("b", None), ("b", None), ("missing", None)])
        self.assertEqual(await self.held(), (0, 0, 0, 0))
        # A write that is not committed counts as reserved until it ends.
        intent = await self.reserve("d", 7)
        self.assertEqual(await self.held(), (0, 0, 7, 1))
        await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.held(), (0, 0, 0, 0))

    async def test_many_keys_add_up_whatever_usage_row_they_count_in(self) -> None:
        keys = [f"k{n}" for n in range(40)]
        for n, key in enumerate(keys):
            await self.store_object(key, n + 1)
        self.assertEqual(await self.held(), (sum(range(1, 41)), 40, 0, 0))
        await self.store.delete_objects(BUCKET, [(key, None) for key in keys[::2]])
        self.assertEqual(await self.held(), (sum(range(2, 41, 2)), 20, 0, 0))

    async def test_a_completed_multipart_upload_turns_its_reservation_into_usage(self) -> None:
        await self.store_object("old", 50)
        for upload_id, key in (("u-new", "new"), ("u-old", "old")):
            create = await self.reserve(f"{upload_id}", 0)
            await self.store.create_multipart(
                MultipartRecord(upload_id, BUCKET, key, "b1", f"vb/{upload_id}", "bu", T0, None, {}), create.id
            )
            for size in (5, 6):
                part = await self.reserve(upload_id, size, objects=0)
                await self.store.record_part(part.id, upload_id, size)
        # Each open upload holds its parts' bytes and one object.
        self.assertEqual(await self.held(), (50, 1, 22, 2))
        await self.store.complete_multipart("u-new", make_record("new", "vb/u-new", size=11))
        self.assertEqual(await self.held(), (61, 2, 11, 1))
        await self.store.complete_multipart("u-old", make_record("old", "vb/u-old", size=11))  # a replacement
        self.assertEqual(await self.held(), (22, 2, 0, 0))

    async def test_a_quota_refuses_what_would_exceed_it_and_records_nothing(self) -> None:
        row = await self.store.set_bucket_quota(BUCKET, 100, 3)
        self.assertEqual((row.quota_bytes, row.quota_objects, row.quota_origin), (100, 3, "api"))
        first = await self.reserve("a", 60)
        exceeded = await self.assertRefused("max_size", "too-big", 41)
        self.assertEqual((exceeded.used, exceeded.reserved, exceeded.wanted, exceeded.maximum), (0, 60, 41, 100))
        await self.store.commit_object(first.id, make_record("a", "vb/a", size=60))
        await self.assertRefused("max_size", "still-too-big", 41)
        await self.store_object("b", 40)  # exactly full fits
        await self.assertRefused("max_size", "a-byte", 1)
        await self.store.delete_object(BUCKET, "b")
        # Objects: two stored, an intent holds the third.
        await self.store_object("c", 0)
        held = await self.reserve("d", 0)
        exceeded = await self.assertRefused("max_objects", "e", 0)
        self.assertEqual((exceeded.used, exceeded.reserved, exceeded.maximum), (2, 1, 3))
        # Every object write reserves an object, an overwrite too (its intent can't
        # know its key exists); a part reserves only bytes.
        await self.assertRefused("max_objects", "overwrite-of-a", 1)
        part = await self.reserve("d", 40, objects=0)
        await self.store.abandon_write(part.id, False)
        await self.store.abandon_write(held.id, False)
        await self.store_object("a", 40)  # an overwrite adds no object (and reserved its whole size)
        self.assertEqual(await self.held(), (40, 2, 0, 0))

    async def test_an_upload_of_unknown_length_grows_its_reservation_within_the_quota(self) -> None:
        await self.store.set_bucket_quota(BUCKET, 10, None)
        intent = await self.reserve("chunked", 5)
        await self.store.grow_write(intent.id, "b1", 5, None, BUCKET)
        try:
            await self.store.grow_write(intent.id, "b1", 1, None, BUCKET)
        except QuotaExceeded as exceeded:
            self.assertEqual((exceeded.limit, exceeded.reserved, exceeded.wanted), ("max_size", 10, 1))
        else:
            self.fail("the reservation grew beyond the quota")
        self.assertEqual(await self.held(), (0, 0, 10, 1))
        await self.store.abandon_write(intent.id, True)
        with self.assertRaises(WriteIntentExpired):
            await self.store.grow_write(intent.id, "b1", 1, None, BUCKET)

    async def test_an_open_multipart_upload_holds_one_object(self) -> None:
        await self.store.set_bucket_quota(BUCKET, None, 1)
        create = await self.reserve("u1", 0)
        await self.store.create_multipart(
            MultipartRecord("u1", BUCKET, "big", "b1", "vb/u1", "bu", T0, None, {}), create.id
        )
        await self.assertRefused("max_objects", "other", 0)
        part = await self.reserve("u1", 9, objects=0)  # parts add bytes, no object
        await self.store.record_part(part.id, "u1", 9)
        await self.store.abort_multipart("u1", True)
        await self.reserve("other", 0)

    async def test_lowering_or_removing_a_quota(self) -> None:
        await self.store_object("a", 50)
        row = await self.store.set_bucket_quota(BUCKET, 40, None)  # below what is stored: kept, no more writes
        self.assertEqual((row.used_bytes, row.quota_bytes), (50, 40))
        await self.assertRefused("max_size", "empty", 0)
        self.assertIsNotNone(await self.store.get_object(BUCKET, "a"))
        row = await self.store.set_bucket_quota(BUCKET, None, None)
        self.assertEqual((row.quota_bytes, row.quota_objects, row.quota_origin), (None, None, None))
        await self.reserve("big", 10**12)

    async def test_two_stores_never_reserve_beyond_the_quota(self) -> None:
        """Two daemons (on a database: two engines, their own connections) reserving at once."""
        other = await self.start_store()
        await self.store.set_bucket_quota(BUCKET, 10, 7)
        await other.bucket_usage()  # (the periodic refresh: how another daemon learns of the quota)
        stores = [self.store, other]

        async def race(size: int, objects: int) -> tuple[int, list[Any]]:
            attempts = [
                stores[n % 2].begin_write("b1", f"vb/r{size}-{n}", 60, size, None, BUCKET, objects) for n in range(24)
            ]
            results = await DeferredList(attempts, consumeErrors=True)
            refused = [value for ok, value in results if not ok]
            for failure in refused:
                failure.trap(QuotaExceeded)
            granted = [value for ok, value in results if ok]
            for intent in granted:
                await self.store.abandon_write(intent.id, False)
            return len(granted), refused

        self.assertEqual((await race(1, 0))[0], 10)  # bytes
        self.assertEqual((await race(0, 1))[0], 7)  # objects

    async def test_configured_quotas_are_the_configurations(self) -> None:
        await self.store.sync_config_buckets([BUCKET], {BUCKET: Quota(100, None), "not-configured": Quota(1, 1)})
        row = await self.usage()
        self.assertEqual((row.quota_bytes, row.quota_objects, row.quota_origin), (100, None, "config"))
        with self.assertRaises(ConfigQuotaError):
            await self.store.set_bucket_quota(BUCKET, 200, None)
        await self.assertRefused("max_size", "big", 101)
        # A changed configuration changes it; one that drops it removes it.
        await self.store.sync_config_buckets([BUCKET], {BUCKET: Quota(None, 5)})
        row = await self.usage()
        self.assertEqual((row.quota_bytes, row.quota_objects), (None, 5))
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual((await self.usage()).quota_origin, None)
        await self.reserve("big", 101)
        # A quota set through the API is kept by the configuration's sync.
        await self.store.set_bucket_quota(BUCKET, 7, None)
        await self.store.sync_config_buckets([BUCKET])
        row = await self.usage()
        self.assertEqual((row.quota_bytes, row.quota_origin), (7, "api"))
        with self.assertRaises(NoSuchBucketError):
            await self.store.set_bucket_quota("no-such-bucket", 1, None)

    async def test_a_deleted_bucket_takes_its_usage_and_quota(self) -> None:
        await self.store.create_bucket("api-b")
        await self.store.set_bucket_quota("api-b", 100, 2)
        intent = await self.store.begin_write("b1", "api-b/1", 60, 10, None, "api-b", 1)
        await self.store.commit_object(intent.id, make_record("k", "api-b/1", size=10, bucket="api-b"))
        row = await self.usage("api-b")
        self.assertEqual((row.used_bytes, row.object_count, row.origin), (10, 1, "api"))
        await self.store.delete_object("api-b", "k")
        await self.store.delete_bucket("api-b")
        self.assertNotIn("api-b", [row.bucket for row in await self.store.bucket_usage()])
        await self.store.create_bucket("api-b")
        row = await self.usage("api-b")
        self.assertEqual((row.used_bytes, row.object_count, row.quota_bytes, row.quota_origin), (0, 0, None, None))


    async def test_a_recount_of_exact_counters_changes_nothing(self) -> None:
        for key in ("a", "b"):
            await self.store_object(key, 10)
        await self.reserve("in-flight", 5)
        result = await self.store.recount_bucket_usage(BUCKET)
        self.assertEqual((result.bytes_after, result.objects_after, result.changed), (20, 2, False))
        self.assertEqual(await self.held(), (20, 2, 5, 1))
        with self.assertRaises(NoSuchBucketError):
            await self.store.recount_bucket_usage("no-such-bucket")


class MemoryQuotaTests(OnMemoryStore, QuotaStoreMixin, unittest.TestCase):
    pass


class DatabaseQuotaMixin(OnDatabase, QuotaStoreMixin):
    """What only a database shows: which statements run, what another daemon knows."""

    async def test_a_bucket_without_a_quota_pays_no_check(self) -> None:
        checked: list[str] = []
        original = quotas.check_quota

        def spy(conn: Any, bucket: str, size: int, objects: int) -> None:
            checked.append(bucket)
            original(conn, bucket, size, objects)

        self.patch(quotas, "check_quota", spy)
        await self.reserve("free", 10)
        self.assertEqual(checked, [])
        await self.store.set_bucket_quota(BUCKET, 100, None)
        await self.reserve("limited", 10)
        self.assertEqual(checked, [BUCKET])

    async def test_a_quota_set_through_another_daemon_applies_once_refreshed(self) -> None:
        other = await self.start_store()
        await self.store.set_bucket_quota(BUCKET, 5, None)
        await self.assertRefused("max_size", "here", 6)
        await other.bucket_usage()
        await self.assertRefused("max_size", "there", 6, store=other)
        # A quota removed meanwhile: the check finds none and lets the write in.
        await self.store.set_bucket_quota(BUCKET, None, None)
        await self.reserve("there", 6, store=other)


    def corrupt_usage(self, bucket: str = BUCKET) -> None:
        """Counters that drifted: shard rows off, one missing (a restored or hand-edited database)."""
        engine = create_engine(make_url(self.url))
        try:
            with engine.begin() as conn:
                conn.execute(tables.bucket_usage.delete().where(tables.bucket_usage.c.bucket == bucket))
                conn.execute(insert(tables.bucket_usage).values(bucket=bucket, shard=3, used_bytes=999, object_count=9))
        finally:
            engine.dispose()

    def drift(self) -> list[Any]:
        engine = create_engine(make_url(self.url))
        try:
            with engine.connect() as conn:
                return quotas.usage_drift(conn)
        finally:
            engine.dispose()

    async def test_a_recount_repairs_drifted_counters_and_keeps_the_reservations(self) -> None:
        for n, key in enumerate(("a", "b", "c")):
            await self.store_object(key, 10 + n)
        await self.reserve("in-flight", 5)
        self.corrupt_usage()
        self.assertEqual(await self.held(), (999, 9, 5, 1))
        [drift] = self.drift()
        self.assertEqual((drift.bucket, drift.bytes_before, drift.bytes_after, drift.objects_after), (BUCKET, 999, 33, 3))
        result = await self.store.recount_bucket_usage(BUCKET)
        self.assertEqual((result.bytes_before, result.objects_before), (999, 9))
        self.assertEqual((result.bytes_after, result.objects_after, result.changed), (33, 3, True))
        self.assertEqual(await self.held(), (33, 3, 5, 1))
        self.assertEqual(self.drift(), [])
        # Later commits and deletes add to the recounted total, whatever shard they count in.
        await self.store.delete_objects(BUCKET, [("a", None), ("b", None)])
        await self.store_object("d", 100)
        self.assertEqual(await self.held(), (112, 2, 5, 1))
        self.assertEqual(self.drift(), [])
        self.assertFalse((await self.store.recount_bucket_usage(BUCKET)).changed)

    async def test_commits_and_deletes_racing_a_recount_are_counted_once(self) -> None:
        other = await self.start_store()
        for n in range(8):
            await self.store_object(f"old{n}", 3)
        self.corrupt_usage()

        async def recount_often() -> None:
            for _ in range(4):
                await other.recount_bucket_usage(BUCKET)

        writes = [ensure(self.store_object(f"new{n}", n + 1, store=self.store)) for n in range(12)]
        deletes = [ensure(self.store.delete_object(BUCKET, f"old{n}")) for n in range(0, 8, 2)]
        results = await DeferredList([ensure(recount_often()), *writes, *deletes], consumeErrors=True)
        for ok, value in results:
            if not ok:
                value.raiseException()
        self.assertEqual(self.drift(), [])
        self.assertEqual(await self.held(), (4 * 3 + sum(range(1, 13)), 16, 0, 0))


class SQLiteQuotaTests(DatabaseQuotaMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLQuotaTests(DatabaseQuotaMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBQuotaTests(DatabaseQuotaMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- migration 0009 ----------------------------------------------------------------------------


class MigrationMixin:
    kind: str

    def test_0009_fills_the_usage_from_the_objects_and_downgrades(self) -> None:
        url = dbfixtures.fresh_database(self, self.kind)
        if self.kind == "sqlite":
            os.makedirs(os.path.dirname(make_url(url).database or ""), exist_ok=True)
        migrate.upgrade(url, "0008")
        engine = create_engine(url)
        self.addCleanup(engine.dispose)
        sizes = {"vb": [10, 20, 30], "other": [5], "empty": []}
        with engine.begin() as conn:
            for bucket, object_sizes in sizes.items():
                conn.execute(insert(tables.buckets).values(name=bucket, created=T0, origin="config"))
                for n, size in enumerate(object_sizes):
                    values = dict(
                        bucket=bucket, key=encode_key(f"k{n}"), size=size, etag='"e"', last_modified=T0,
                        content_type=None, headers="{}", checksums="{}",
                    )
                    conn.execute(insert(tables.objects).values(**values))
        migrate.upgrade(url, "0009")
        with engine.connect() as conn:
            rows = conn.execute(
                select(tables.bucket_usage.c.bucket, tables.bucket_usage.c.used_bytes, tables.bucket_usage.c.object_count)
            ).all()
            self.assertEqual(sorted(tuple(row) for row in rows), [("other", 5, 1), ("vb", 60, 3)])
            usage = {row.bucket: (row.used_bytes, row.object_count) for row in quotas.bucket_usage(conn)}
            self.assertEqual(usage, {"empty": (0, 0), "other": (5, 1), "vb": (60, 3)})
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0008")
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            self.assertNotIn("bucket_usage", names)
            self.assertNotIn("quota_locks", names)
            self.assertNotIn("quota_bytes", [c["name"] for c in inspect(conn).get_columns("buckets")])
            self.assertNotIn("bucket", [c["name"] for c in inspect(conn).get_columns("write_intents")])
        migrate.upgrade(url, "head")


class SQLiteMigrationTests(MigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- configuration ------------------------------------------------------------------------


def config_with(quota: object, *more: dict) -> dict:
    return {
        "buckets": [
            {"name": "real-one"},
            {"name": "plain", "virtual": True},
            {"name": "media", "virtual": True, "max_size": "1TB", "quota": quota},
            *more,
        ],
        "s3api": {"auth_required": False},
    }


class ConfigQuotaTests(unittest.SynchronousTestCase):
    def test_a_quota_of_bytes_objects_or_both(self) -> None:
        config = parse_config(config_with({"max_size": "10GiB", "max_objects": 100000}))
        media = config.virtual_bucket("media")
        assert media is not None and media.quota is not None
        self.assertEqual((media.max_size, media.quota.max_size, media.quota.max_objects), (1024**4, 10 * 1024**3, 100000))
        self.assertEqual(media.quota.key, "buckets[2].quota")
        self.assertIsNone(config.virtual_bucket("plain").quota)  # type: ignore[union-attr]
        config = parse_config(config_with({"max_objects": 5}))
        self.assertEqual(config_quotas(config), {"media": Quota(None, 5)})
        config = parse_config(config_with({"max_size": 1024}))
        self.assertEqual(config_quotas(config), {"media": Quota(1024, None)})
        self.assertEqual(config_quotas(parse_config(config_with(None))), {})

    def test_errors_name_the_key(self) -> None:
        for quota, message in [
            ({"max_size": "10XB"}, "buckets[2].quota.max_size: cannot parse '10XB' as a size"),
            ({"max_size": 0}, "buckets[2].quota.max_size: expected a size above zero"),
            ({"max_objects": 0}, "buckets[2].quota.max_objects: expected a positive integer, got 0"),
            ({"max_objects": "many"}, "buckets[2].quota.max_objects: expected an integer, got 'many'"),
            ({"max_files": 3}, "buckets[2].quota.max_files: unknown key"),
            ({}, "buckets[2].quota: give max_size, max_objects or both"),
            ("10GiB", "buckets[2].quota: expected a mapping, got '10GiB'"),
        ]:
            with self.assertRaises(ConfigError) as raised:
                parse_config(config_with(quota))
            self.assertEqual(str(raised.exception), message)

    def test_a_quota_on_a_real_bucket_is_an_unknown_key(self) -> None:
        data = config_with(None)
        data["buckets"][0]["quota"] = {"max_size": "1GB"}
        with self.assertRaises(ConfigError) as raised:
            parse_config(data)
        self.assertEqual(str(raised.exception), "buckets[0].quota: unknown key")


# -- the admin API, metrics and /status in-process ------------------------------------------


class AdminQuotaTests(unittest.TestCase):
    """The admin API over a service on the in-memory store (see tests.test_admin_api)."""

    async def setUp(self) -> None:  # type: ignore[override]  # trial waits for it
        from s3balance.admin.api import AdminResource
        from s3balance.admin.target import ServiceAdminTarget
        from s3balance.daemon.buckets import sync_config_buckets
        from s3balance.daemon.service import GatewayService
        from tests.test_admin_api import AdminAPITests
        from tests.test_reload import API_TOKEN, ServiceFixture

        fixture = ServiceFixture(self)  # type: ignore[arg-type]
        data = fixture.edited()
        data["buckets"][2]["quota"] = {"max_size": "1MiB"}
        fixture.write(data)
        from s3balance.config import load_config

        self.store = MemoryStore(clock=Clock())
        await self.store.start()
        config = load_config(fixture.path)
        self.service = GatewayService(config, self.store, fixture.reactor)
        await sync_config_buckets(self.store, config)
        await self.store.create_bucket("made-by-a-client")
        self.target = ServiceAdminTarget(self.service, None)
        self.resource = AdminResource(self.target, API_TOKEN)
        self.token = API_TOKEN
        self.bodies: list[bytes] = []
        self._call = AdminAPITests.call

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict]:
        return self._call(self, method, path, body, self.token)  # type: ignore[arg-type]

    async def test_buckets_report_usage_and_quota(self) -> None:
        intent = await self.store.begin_write("b1", "vbucket/1", 60, 100, None, "vbucket", 1)
        await self.store.commit_object(intent.id, make_record("k", "vbucket/1", size=100, bucket="vbucket"))
        await self.store.begin_write("b1", "vbucket/2", 60, 7, None, "vbucket", 1)
        status, body = self.call("GET", "buckets")
        self.assertEqual(status, 200)
        reports = {report["name"]: report for report in body["buckets"]}
        self.assertEqual(sorted(reports), ["made-by-a-client", "vbucket"])
        self.assertEqual(
            reports["vbucket"],
            {
                "name": "vbucket",
                "origin": "config",
                "owner": "000000000000",
                "used_bytes": 100,
                "objects": 1,
                "reserved_bytes": 7,
                "reserved_objects": 1,
                "quota": {"max_size": MIB, "max_objects": None, "set_by": "config", "config_key": "buckets[2].quota"},
                "free_bytes": MIB - 107,
                "free_objects": None,
            },
        )
        self.assertIsNone(reports["made-by-a-client"]["quota"])
        self.assertEqual(self.call("GET", "buckets/vbucket")[1], reports["vbucket"])
        self.assertEqual(self.call("GET", "buckets/nothing")[0], 404)
        # The gateway's view (metrics, /status) was refreshed by the call.
        self.assertEqual([row.bucket for row in self.service.gateway.bucket_usage], ["made-by-a-client", "vbucket"])

    async def test_set_and_remove_a_quota(self) -> None:
        status, report = self.call("PUT", "buckets/made-by-a-client/quota", {"max_size": "2KiB", "max_objects": 3})
        self.assertEqual(status, 200)
        self.assertEqual(
            report["quota"], {"max_size": 2048, "max_objects": 3, "set_by": "api", "config_key": None}
        )
        with self.assertRaises(QuotaExceeded):
            await self.store.begin_write("b1", "m/1", 60, 2049, None, "made-by-a-client", 1)
        status, report = self.call("PUT", "buckets/made-by-a-client/quota", {"max_objects": 10})
        self.assertEqual((report["quota"]["max_size"], report["quota"]["max_objects"]), (None, 10))
        status, report = self.call("DELETE", "buckets/made-by-a-client/quota")
        self.assertEqual((status, report["quota"]), (200, None))
        await self.store.begin_write("b1", "m/1", 60, 10**9, None, "made-by-a-client", 1)

    async def test_a_configured_quota_is_refused_naming_its_key(self) -> None:
        for method, body in (("PUT", {"max_size": "2MiB"}), ("DELETE", None)):
            status, answer = self.call(method, "buckets/vbucket/quota", body)
            self.assertEqual(status, 409)
            self.assertEqual(answer["error"], "quota_in_config")
            self.assertIn("buckets[2].quota", answer["message"])
        self.assertEqual((await self.store.bucket_usage())[1].quota_bytes, MIB)

    async def test_bad_requests(self) -> None:
        self.assertEqual(self.call("PUT", "buckets/nothing/quota", {"max_size": 1})[0], 404)
        for body, message in [
            ({}, "give max_size, max_objects or both (DELETE removes the quota)"),
            ({"max_size": None, "max_objects": None}, "give max_size, max_objects or both (DELETE removes the quota)"),
            ({"max_size": "lots"}, "max_size: cannot parse 'lots' as a size"),
            ({"max_objects": -1}, "max_objects: expected a positive integer, got -1"),
            ({"max_objects": 1.5}, "max_objects: expected an integer, got 1.5"),
            ({"max_size": 1, "size": 2}, "unknown key 'size': expected max_size and/or max_objects"),
            ([1], 'expected {"max_size": "10GiB", "max_objects": 100000}'),
        ]:
            status, answer = self.call("PUT", "buckets/made-by-a-client/quota", body)
            self.assertEqual((status, answer["message"]), (400, message), body)
        self.assertEqual(self.call("POST", "buckets/made-by-a-client/quota", {})[0], 405)

    async def test_a_recount_through_the_admin_api(self) -> None:
        status, answer = self.call("POST", "quota/recount")
        self.assertEqual(status, 200, answer)
        names = [entry["bucket"] for entry in answer["buckets"]]
        self.assertIn("made-by-a-client", names)
        self.assertEqual(names, sorted(names))
        status, answer = self.call("POST", "quota/recount", {"bucket": "made-by-a-client"})
        self.assertEqual(
            answer,
            {"buckets": [{"bucket": "made-by-a-client", "objects": 0, "bytes": 0,
                          "before": {"objects": 0, "bytes": 0}, "changed": False}]},
        )
        self.assertEqual(self.call("POST", "quota/recount", {"bucket": "nothing"})[0], 404)
        for body in ({"bucket": 3}, {"name": "x"}, [1]):
            self.assertEqual(self.call("POST", "quota/recount", body)[0], 400, body)
        self.assertEqual(self.call("GET", "quota/recount")[0], 405)

    async def test_metrics_and_status_show_the_operators_buckets(self) -> None:
        from s3balance.daemon.status import render_page, status_document

        self.call("PUT", "buckets/made-by-a-client/quota", {"max_objects": 3})
        await self.store.create_bucket("no-quota-client-bucket")
        self.call("GET", "buckets")
        metrics = Metrics()
        metrics.watch_buckets(lambda: self.service.gateway.bucket_usage)
        metrics.quota_rejection("vbucket")
        text = metrics.render()[0].decode()
        self.assertIn('s3balance_bucket_bytes{bucket="vbucket"} 0.0', text)
        self.assertIn(f's3balance_bucket_quota_bytes{{bucket="vbucket"}} {floatToGoString(MIB)}', text)
        self.assertIn('s3balance_bucket_quota_objects{bucket="made-by-a-client"} 3.0', text)
        self.assertIn('s3balance_quota_rejections_total{bucket="vbucket"} 1.0', text)
        self.assertNotIn("no-quota-client-bucket", text)  # a client's name, no quota: no series
        document = status_document(self.service.gateway)
        self.assertEqual([entry["name"] for entry in document["buckets"]], ["made-by-a-client", "vbucket"])
        page = render_page(document, "nonce").decode()
        self.assertIn("1.0 MiB", page)
        self.assertIn('<tbody id="buckets">', page)

    def test_bucket_collector_without_rows(self) -> None:
        families = BucketCollector(lambda: []).collect()
        self.assertEqual([family.name for family in families], [
            "s3balance_bucket_bytes", "s3balance_bucket_objects",
            "s3balance_bucket_quota_bytes", "s3balance_bucket_quota_objects",
        ])
        self.assertEqual([family.samples for family in families], [[], [], [], []])


# -- a daemon ---------------------------------------------------------------------------------

API_TOKEN = "quota-admin-token"
LIMITED = "vb-quota"  # 6 MiB, 3 objects in the configuration


class QuotaDaemon:
    """One daemon (SQLite) over a real bucket, with the admin API; tests make their own buckets."""

    def __init__(self, testcase: unittest.SynchronousTestCase) -> None:
        server, _ = shared_seaweedfs_pair()
        self.server = server
        self.real = unique_bucket_name("real")
        server.create_bucket(self.real)
        workdir = harness_dir() / unique_bucket_name("quota")
        workdir.mkdir(parents=True)
        config = base_config([backend_entry(server, self.real)], [], workdir, api={"enabled": True, "token": API_TOKEN})
        config["buckets"].append(
            {"name": LIMITED, "virtual": True, "quota": {"max_size": "6MiB", "max_objects": 3}}
        )
        self.daemon = Daemon(config, name="quota")
        self.daemon.start()
        testcase.addCleanup(self.daemon.stop)
        self.s3 = self.daemon.client()

    def admin(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.daemon.endpoint}/admin/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def usage(self, bucket: str) -> tuple[int, int]:
        status, report = self.admin("GET", f"buckets/{bucket}")
        assert status == 200, report
        return report["used_bytes"], report["objects"]

    def new_bucket(self, **quota: Any) -> str:
        name = unique_bucket_name("q")
        self.s3.create_bucket(Bucket=name)
        status, report = self.admin("PUT", f"buckets/{name}/quota", quota)
        assert status == 200, report
        return name

    def backend_keys(self, bucket: str) -> list[str]:
        listing = self.server.client().list_objects_v2(Bucket=self.real, Prefix=f"{bucket}/")
        return [item["Key"] for item in listing.get("Contents", [])]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.daemon.endpoint}/metrics", timeout=10) as answer:
            return answer.read().decode()


def refusal(testcase: unittest.SynchronousTestCase, call: Any, **kw: Any) -> dict:
    with testcase.assertRaises(ClientError) as raised:
        call(**kw)
    response = raised.exception.response
    testcase.assertEqual(
        (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]), (403, "QuotaExceeded")
    )
    return response["Error"]


def chunked_put(daemon: Daemon, bucket: str, key: str, size: int) -> int:
    """A PUT of C{size} bytes with a chunked body and no length (the daemon reserves it part by part)."""
    path = f"/{bucket}/{key}"
    url = daemon.endpoint + path
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        body = PatternStream(size, seed=3)
        conn.request("PUT", path, body=iter(body), headers=sign("PUT", url, {}), encode_chunked=True)
        response = conn.getresponse()
        text = response.read()
        if response.status == 403:
            assert b"<Code>QuotaExceeded</Code>" in text, text
        return response.status
    finally:
        conn.close()


class DaemonQuotaTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = QuotaDaemon(self)
        self.s3 = self.gateway.s3

    def test_a_put_over_the_quota_is_refused_and_stores_nothing(self) -> None:
        gw = self.gateway
        self.s3.put_object(Bucket=LIMITED, Key="four", Body=b"x" * (4 * MIB))
        self.assertEqual(gw.usage(LIMITED), (4 * MIB, 1))
        error = refusal(self, self.s3.put_object, Bucket=LIMITED, Key="three", Body=b"y" * (3 * MIB))
        self.assertIn(LIMITED, error["Message"])
        self.assertIn(str(6 * MIB), error["Message"])
        with self.assertRaises(ClientError):
            self.s3.head_object(Bucket=LIMITED, Key="three")
        self.assertEqual(gw.usage(LIMITED), (4 * MIB, 1))
        self.assertEqual(len(gw.backend_keys(LIMITED)), 1)
        self.assertEqual(database_counts(gw.daemon, LIMITED)["write_intents"], 0)
        # Objects: three at most.
        self.s3.put_object(Bucket=LIMITED, Key="a", Body=b"a")
        self.s3.put_object(Bucket=LIMITED, Key="b", Body=b"b")
        refusal(self, self.s3.put_object, Bucket=LIMITED, Key="c", Body=b"c")
        # A delete frees room.
        self.s3.delete_object(Bucket=LIMITED, Key="four")
        self.assertEqual(gw.usage(LIMITED), (2, 2))
        self.s3.put_object(Bucket=LIMITED, Key="three", Body=b"y" * (3 * MIB))
        self.s3.delete_objects(Bucket=LIMITED, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
        self.assertEqual(gw.usage(LIMITED), (3 * MIB, 1))

    def test_multipart_and_copies_count_against_the_quota(self) -> None:
        gw = self.gateway
        bucket = gw.new_bucket(max_size="12MiB", max_objects=4)
        upload = self.s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        self.s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"p" * (5 * MIB))
        self.s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=2, Body=b"q" * (5 * MIB))
        # 10 MiB reserved by the upload: a third part, or a PUT, of 5 MiB does not fit.
        refusal(self, self.s3.upload_part, Bucket=bucket, Key="big", UploadId=upload, PartNumber=3,
                Body=b"r" * (5 * MIB))
        refusal(self, self.s3.put_object, Bucket=bucket, Key="other", Body=b"o" * (5 * MIB))
        status, report = gw.admin("GET", f"buckets/{bucket}")
        self.assertEqual((report["reserved_bytes"], report["reserved_objects"]), (10 * MIB, 1))
        parts = [
            {"PartNumber": n, "ETag": self.s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"][n - 1]["ETag"]}
            for n in (1, 2)
        ]
        self.s3.complete_multipart_upload(
            Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts}
        )
        self.assertEqual(gw.usage(bucket), (10 * MIB, 1))
        # UploadPartCopy reserves its part as UploadPart does.
        second = self.s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
        refusal(self, self.s3.upload_part_copy, Bucket=bucket, Key="copied", UploadId=second, PartNumber=1,
                CopySource={"Bucket": bucket, "Key": "big"}, CopySourceRange=f"bytes=0-{3 * MIB - 1}")
        self.s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=second, PartNumber=1,
                                 CopySource={"Bucket": bucket, "Key": "big"}, CopySourceRange="bytes=0-1023")
        status, report = gw.admin("GET", f"buckets/{bucket}")
        self.assertEqual((report["reserved_bytes"], report["reserved_objects"]), (1024, 1))
        self.s3.abort_multipart_upload(Bucket=bucket, Key="copied", UploadId=second)
        # A copy of 10 MiB does not fit beside the original; a small one does.
        refusal(self, self.s3.copy_object, Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "big"})
        self.s3.put_object(Bucket=bucket, Key="small", Body=b"s" * 100)
        self.s3.copy_object(Bucket=bucket, Key="small-copy", CopySource={"Bucket": bucket, "Key": "small"})
        self.assertEqual(gw.usage(bucket), (10 * MIB + 200, 3))
        self.assertEqual(database_counts(gw.daemon, bucket)["write_intents"], 0)

    def test_an_upload_of_unknown_length_is_stopped_at_the_quota(self) -> None:
        gw = self.gateway
        bucket = gw.new_bucket(max_size="8MiB")
        self.assertEqual(chunked_put(gw.daemon, bucket, "too-long", 12 * MIB), 403)
        poll(lambda: database_counts(gw.daemon, bucket)["write_intents"] == 0, timeout=20,
             message="the refused upload kept its intent")
        with self.assertRaises(ClientError):
            self.s3.head_object(Bucket=bucket, Key="too-long")
        self.assertEqual(gw.usage(bucket), (0, 0))
        self.assertEqual(chunked_put(gw.daemon, bucket, "fits", 7 * MIB), 200)
        self.assertEqual(gw.usage(bucket), (7 * MIB, 1))

    def test_the_admin_api_sets_quotas_and_refuses_configured_ones(self) -> None:
        gw = self.gateway
        bucket = unique_bucket_name("q")
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"k" * 100)
        status, report = gw.admin("PUT", f"buckets/{bucket}/quota", {"max_size": 150})
        self.assertEqual((status, report["used_bytes"], report["quota"]["set_by"]), (200, 100, "api"))
        refusal(self, self.s3.put_object, Bucket=bucket, Key="more", Body=b"m" * 51)
        # An overwrite reserves its whole size until it commits, then counts its difference.
        refusal(self, self.s3.put_object, Bucket=bucket, Key="k", Body=b"k" * 51)
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"k" * 50)
        self.assertEqual(gw.usage(bucket), (50, 1))
        self.assertEqual(gw.admin("DELETE", f"buckets/{bucket}/quota")[0], 200)
        self.s3.put_object(Bucket=bucket, Key="more", Body=b"m" * 51)
        status, answer = gw.admin("PUT", f"buckets/{LIMITED}/quota", {"max_size": "1GiB"})
        self.assertEqual(status, 409)
        self.assertIn("buckets[1].quota", answer["message"])
        status, body = gw.admin("GET", "buckets")
        names = [report["name"] for report in body["buckets"]]
        self.assertIn(bucket, names)
        self.assertIn(LIMITED, names)

    def test_metrics_show_usage_quotas_and_refusals(self) -> None:
        gw = self.gateway
        self.s3.put_object(Bucket=LIMITED, Key="k", Body=b"k" * 1000)
        refusal(self, self.s3.put_object, Bucket=LIMITED, Key="big", Body=b"b" * (7 * MIB))
        # The gauges come from the periodic usage refresh (update_stats_period: 2 s here).
        poll(lambda: f's3balance_bucket_bytes{{bucket="{LIMITED}"}} 1000.0' in gw.metrics(), timeout=20,
             message="the bucket's usage did not reach the metrics")
        text = gw.metrics()
        self.assertIn(f's3balance_bucket_objects{{bucket="{LIMITED}"}} 1.0', text)
        self.assertIn(f's3balance_bucket_quota_bytes{{bucket="{LIMITED}"}} {floatToGoString(6 * MIB)}', text)
        self.assertIn(f's3balance_bucket_quota_objects{{bucket="{LIMITED}"}} 3.0', text)
        self.assertIn(f's3balance_quota_rejections_total{{bucket="{LIMITED}"}} 1.0', text)
        request = urllib.request.Request(
            f"{gw.daemon.endpoint}/status?format=json", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            document = json.load(answer)
        [entry] = [entry for entry in document["buckets"] if entry["name"] == LIMITED]
        self.assertEqual((entry["used_bytes"], entry["quota_bytes"], entry["quota_objects"]), (1000, 6 * MIB, 3))
