"""
Behaviour of the metadata store, the same tests on SQLite, PostgreSQL and
MariaDB (one mixin, three TestCase classes; each test gets an empty database at the
head revision, see dbfixtures.store_database).
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, insert, inspect, literal_column, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from s3balance.store import buckets, migrate, multipart, objects, tables
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import (
    BucketExists,
    BucketNotEmpty,
    ConfigBucketError,
    Deletion,
    IMetadataStore,
    ListPage,
    Location,
    MultipartRecord,
    NoSuchBucketError,
    NoSuchUploadError,
    ObjectRecord,
    PreconditionFailedError,
    WriteIntentExpired,
)
from s3balance.store.rawread import RawConnection
from tests import dbfixtures

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC)
BUCKET = "vb"


def make_record(
    key: str, real_key: str, backend: str = "b1", size: int = 3, etag: str = '"e1"', **kw
) -> ObjectRecord:
    values = dict(
        bucket=BUCKET,
        key=key,
        size=size,
        etag=etag,
        last_modified=T0,
        content_type="text/plain",
        headers={"x-amz-meta-colour": "blau", "cache-control": "no-cache"},
        checksums={"crc32": "AAAAAA=="},
        locations=(Location(backend, real_key),),
    )
    values.update(kw)
    return ObjectRecord(**values)


def watch_relaxed_setting(store: MetadataStore, query: str) -> list:
    """What C{query} answers inside each transaction the store runs without waiting for the disk."""
    seen: list = []
    original = store._relaxed

    def spy(conn, fn, *args):
        def probe(conn, *args):
            seen.append(conn.exec_driver_sql(query).scalar())
            return fn(conn, *args)

        return original(conn, probe, *args)

    store._relaxed = spy  # type: ignore[method-assign]
    return seen


class StoreBehaviourMixin:
    """Subclasses set C{kind} ("sqlite", dbfixtures.POSTGRES or dbfixtures.MYSQL)."""

    kind: str

    async def setUp(self):
        self.now = T0
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = await self.start_store()
        await self.store.sync_config_buckets([BUCKET])

    async def start_store(self) -> MetadataStore:
        store = MetadataStore(self.url, max_threads=8, now=lambda: self.now)
        await store.start()
        # Cleanups run last-in first-out: stores stop before the database is dropped.
        self.addCleanup(store.stop)
        return store

    async def put(self, key: str, real_key: str, store=None, **kw) -> ObjectRecord:
        store = store or self.store
        record = make_record(key, real_key, **kw)
        location = record.locations[0]
        intent = await store.begin_write(location.backend, location.real_key, 60)
        return await store.commit_object(intent.id, record)

    async def assertLookupsAsOnTheOrdinaryPath(self) -> None:
        """GetObject's lookup (whatever path the store takes) gives what the ordinary path's gives."""
        keys = ["plain", "ünïcödé/ключ", "sp ace+%2F", ""]
        for i, key in enumerate(keys[:-1]):
            record = make_record(
                key, f"vb/{i}", size=10**12 + i, headers={"x-amz-meta-a": "ä", "content-encoding": "gzip"}
            )
            intent = await self.store.begin_write("b1", f"vb/{i}", 60)
            await self.store.commit_object(intent.id, record)
        for key in keys + ["missing"]:
            looked_up = await self.store.get_object(BUCKET, key)
            ordinary = await self.store._read(objects.get_object, BUCKET, key)
            self.assertEqual(looked_up, ordinary, key)
        found = await self.store.get_object(BUCKET, "ünïcödé/ключ")
        self.assertEqual((found.size, found.last_modified.tzinfo), (10**12 + 1, datetime.UTC))

    async def queued(self) -> list[tuple[str, str]]:
        return sorted((q.backend, q.real_key) for q in await self.store.queued_deletions(limit=10000))

    async def test_migration_0003_indexes_real_keys_and_downgrades(self):
        # Down to 0002 and up again, with rows in the tables, on the store's database.
        intent = await self.store.begin_write("b1", "vb/kept", 60)
        await self.store.stop()
        indexed = {"write_intents", "multipart_uploads", "deletion_queue"}

        def real_key_indexes(conn) -> set[str]:
            found = set()
            for table in indexed:
                for index in inspect(conn).get_indexes(table):
                    if index["column_names"] == ["real_key"]:
                        found.add(table)
            return found

        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                command.downgrade(migrate.alembic_config(connection=conn), "0002")
            with engine.connect() as conn:
                self.assertEqual(real_key_indexes(conn), set())
            with engine.begin() as conn:
                migrate.upgrade_connection(conn)
            with engine.connect() as conn:
                self.assertEqual(migrate.current_revision_of(conn), migrate.head_revision())
                self.assertEqual(real_key_indexes(conn), indexed)
        finally:
            engine.dispose()
        store = await self.start_store()
        await store.abandon_write(intent.id, backend_object_may_exist=False)

    # -- the store as a whole ---------------------------------------------------

    def test_provides_the_interface(self):
        verifyObject(IMetadataStore, self.store)

    def test_migrated_schema_matches_tables(self):
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                self.assertEqual(migrate.current_revision_of(conn), migrate.head_revision())
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                self.assertEqual(compare_metadata(context, tables.metadata), [])
        finally:
            engine.dispose()

    async def test_stop_is_idempotent(self):
        await self.store.stop()
        await self.store.stop()

    async def test_restart_on_migrated_database(self):
        await self.store.stop()
        store = await self.start_store()
        self.assertEqual([b.name for b in await store.list_buckets()], [BUCKET])

    # -- objects ------------------------------------------------------------------

    async def test_commit_then_get(self):
        committed = await self.put("dir/file.txt", "vb/1")
        self.assertTrue(committed.id)
        got = await self.store.get_object(BUCKET, "dir/file.txt")
        self.assertEqual(got, committed)
        self.assertEqual(got.last_modified, T0)
        self.assertEqual(got.last_modified.tzinfo, UTC)
        self.assertEqual(got.headers, {"x-amz-meta-colour": "blau", "cache-control": "no-cache"})
        self.assertEqual(got.locations, (Location("b1", "vb/1"),))
        self.assertIsNone(await self.store.get_object(BUCKET, "dir/other"))
        self.assertEqual(await self.queued(), [])

    async def test_last_modified_is_whole_seconds_utc(self):
        cet = datetime.timezone(datetime.timedelta(hours=1))
        moment = datetime.datetime(2026, 1, 2, 4, 5, 6, 789000, tzinfo=cet)
        committed = await self.put("k", "vb/1", last_modified=moment)
        expected = datetime.datetime(2026, 1, 2, 3, 5, 6, tzinfo=UTC)
        self.assertEqual(committed.last_modified, expected)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).last_modified, expected)

    async def test_replace_queues_old_locations(self):
        first = await self.put("k", "vb/1", etag='"old"')
        second = await self.put("k", "vb/2", backend="b2", etag='"new"', size=10)
        self.assertEqual(second.id, first.id)
        got = await self.store.get_object(BUCKET, "k")
        self.assertEqual((got.etag, got.size, got.locations), ('"new"', 10, (Location("b2", "vb/2"),)))
        self.assertEqual(await self.queued(), [("b1", "vb/1")])

    async def test_replace_under_same_real_key_keeps_the_data(self):
        await self.put("k", "vb/k")
        await self.put("k", "vb/k", etag='"e2"')
        self.assertEqual(await self.queued(), [])

    async def test_delete_object_queues_its_locations(self):
        await self.put("k", "vb/1")
        removed = (await self.store.delete_object(BUCKET, "k")).removed
        self.assertEqual((removed.key, removed.locations), ("k", (Location("b1", "vb/1"),)))
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))
        self.assertEqual(await self.queued(), [("b1", "vb/1")])
        self.assertEqual(await self.store.delete_object(BUCKET, "k"), Deletion())

    async def test_commit_into_missing_bucket_fails_and_keeps_intent(self):
        intent = await self.store.begin_write("b1", "nb/1", 60)
        record = make_record("k", "nb/1", bucket="nobucket")
        await self.assertFailure(self.store.commit_object(intent.id, record), NoSuchBucketError)
        # The intent survives, so the data is still covered by its lease.
        await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.queued(), [("b1", "nb/1")])

    # -- intents ------------------------------------------------------------------

    async def test_abandon_write_queues_when_backend_object_may_exist(self):
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.queued(), [("b1", "vb/1")])
        self.assertEqual(await self.store.expired_writes(), 0)

    async def test_abandon_write_drops_intent_when_nothing_was_written(self):
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.abandon_write(intent.id, False)
        self.now += datetime.timedelta(hours=1)
        self.assertEqual(await self.store.expired_writes(), 0)
        self.assertEqual(await self.queued(), [])

    async def test_expired_lease_moves_intent_to_deletion_queue(self):
        # Leases follow the database's clock (the daemon's, self.now, is
        # years off): one that ended 10 seconds ago by it has expired.
        stale = await self.store.begin_write("b1", "vb/stale", -10)
        fresh = await self.store.begin_write("b1", "vb/fresh", -10)
        await self.store.renew_write(fresh.id, 60)
        self.assertEqual(await self.store.expired_writes(), 1)
        self.assertEqual(await self.queued(), [("b1", "vb/stale")])
        # The write that lost its lease may neither renew nor commit.
        await self.assertFailure(self.store.renew_write(stale.id, 60), WriteIntentExpired)
        await self.assertFailure(
            self.store.commit_object(stale.id, make_record("k", "vb/stale")), WriteIntentExpired
        )
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))
        await self.store.commit_object(fresh.id, make_record("k", "vb/fresh"))
        self.assertEqual(await self.store.expired_writes(), 0)

    async def test_committed_intent_is_gone(self):
        intent = await self.store.begin_write("b1", "vb/1", 1)
        await self.store.commit_object(intent.id, make_record("k", "vb/1"))
        self.now += datetime.timedelta(hours=1)
        self.assertEqual(await self.store.expired_writes(), 0)
        self.assertEqual(await self.queued(), [])
        await self.assertFailure(
            self.store.commit_object(intent.id, make_record("k", "vb/1")), WriteIntentExpired
        )

    async def test_a_twin_intent_leaves_its_committed_key_referenced(self):
        # A begin_write whose COMMIT was lost with its connection may have
        # committed after all; its retry takes a second intent for the same
        # real key, and that upload commits.  The first intent expires later.
        first = await self.store.begin_write("b1", "vb/twin", -10)  # expired by the database's clock
        second = await self.store.begin_write("b1", "vb/twin", 30)
        self.assertNotEqual(first.id, second.id)
        self.assertTrue(await self.store.is_referenced("b1", "vb/twin"))  # live intents
        await self.store.commit_object(second.id, make_record("k", "vb/twin"))
        self.assertEqual(await self.store.expired_writes(), 1)
        self.assertEqual(await self.queued(), [("b1", "vb/twin")])
        # Queued, yet the stored object's location refers to it.
        self.assertTrue(await self.store.is_referenced("b1", "vb/twin"))
        self.assertFalse(await self.store.is_referenced("b2", "vb/twin"))
        self.assertFalse(await self.store.is_referenced("b1", "vb/other"))
        await self.store.delete_object(BUCKET, "k")
        self.assertFalse(await self.store.is_referenced("b1", "vb/twin"))

    async def test_an_open_multipart_upload_refers_to_its_key(self):
        intent = await self.store.begin_write("b1", "vb/mpu", 60)
        record = MultipartRecord(
            upload_id="u-ref",
            bucket=BUCKET,
            key="big",
            backend="b1",
            real_key="vb/mpu",
            backend_upload_id="backend-u",
            initiated=T0,
            content_type="",
            headers={},
        )
        await self.store.create_multipart(record, intent.id)
        self.assertTrue(await self.store.is_referenced("b1", "vb/mpu"))

    # -- deletion queue -----------------------------------------------------------

    async def test_retry_deletion_later_and_finish(self):
        await self.put("k", "vb/1")
        await self.store.delete_object(BUCKET, "k")
        [queued] = await self.store.queued_deletions()
        self.assertEqual((queued.attempts, queued.backend_upload_id), (0, None))
        await self.store.retry_deletion_later(queued.id, 300)
        self.assertEqual(await self.store.queued_deletions(), [])
        self.now += datetime.timedelta(seconds=301)
        [again] = await self.store.queued_deletions()
        self.assertEqual((again.id, again.attempts), (queued.id, 1))
        await self.store.finish_deletion(again.id)
        self.now += datetime.timedelta(days=1)
        self.assertEqual(await self.store.queued_deletions(), [])

    # -- conditional writes -------------------------------------------------------

    async def test_if_none_match_star_refuses_to_overwrite(self):
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.commit_object(intent.id, make_record("k", "vb/1"), if_none_match="*")
        intent = await self.store.begin_write("b1", "vb/2", 60)
        await self.assertFailure(
            self.store.commit_object(intent.id, make_record("k", "vb/2"), if_none_match="*"),
            PreconditionFailedError,
        )
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, (Location("b1", "vb/1"),))
        # Nothing committed: the intent is still there for the caller to abandon.
        await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.queued(), [("b1", "vb/2")])

    async def test_if_match_compares_etags(self):
        intent = await self.store.begin_write("b1", "vb/0", 60)
        await self.assertFailure(
            self.store.commit_object(intent.id, make_record("k", "vb/0"), if_match="*"),
            PreconditionFailedError,
        )
        await self.put("k", "vb/1", etag='"abc"')
        intent = await self.store.begin_write("b1", "vb/2", 60)
        await self.assertFailure(
            self.store.commit_object(intent.id, make_record("k", "vb/2"), if_match='"zzz"'),
            PreconditionFailedError,
        )
        committed = await self.store.commit_object(
            intent.id, make_record("k", "vb/2", etag='"def"'), if_match="abc"
        )
        self.assertEqual(committed.etag, '"def"')
        intent = await self.store.begin_write("b1", "vb/3", 60)
        await self.assertFailure(
            self.store.commit_object(intent.id, make_record("k", "vb/3"), if_none_match='"x", "def"'),
            PreconditionFailedError,
        )

    # -- buckets ------------------------------------------------------------------

    async def test_bucket_lifecycle(self):
        created = await self.store.create_bucket("apibucket")
        self.assertEqual((created.name, created.origin), ("apibucket", "api"))
        await self.assertFailure(self.store.create_bucket("apibucket"), BucketExists)
        await self.assertFailure(self.store.create_bucket(BUCKET), BucketExists)
        self.assertEqual(
            [(b.name, b.origin) for b in await self.store.list_buckets()],
            [("apibucket", "api"), (BUCKET, "config")],
        )
        got = await self.store.get_bucket("apibucket")
        self.assertEqual((got.name, got.created), ("apibucket", T0))
        await self.store.delete_bucket("apibucket")
        self.assertIsNone(await self.store.get_bucket("apibucket"))
        await self.assertFailure(self.store.delete_bucket("apibucket"), NoSuchBucketError)

    async def test_config_buckets_are_undeletable(self):
        await self.assertFailure(self.store.delete_bucket(BUCKET), ConfigBucketError)

    async def test_bucket_dropped_from_config_becomes_deletable(self):
        await self.store.create_bucket("later")
        await self.store.sync_config_buckets([BUCKET, "later", "new"])
        self.assertEqual(
            [(b.name, b.origin) for b in await self.store.list_buckets()],
            [("later", "config"), ("new", "config"), (BUCKET, "config")],
        )
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual((await self.store.get_bucket("new")).origin, "api")
        await self.store.delete_bucket("new")

    async def test_bucket_with_objects_is_not_empty(self):
        await self.store.create_bucket("full")
        await self.put("k", "full/1", bucket="full")
        await self.store.create_multipart(self.upload("u1", "k", bucket="full"))
        await self.assertFailure(self.store.delete_bucket("full"), BucketNotEmpty)
        self.assertIsNotNone(await self.store.get_multipart("u1"))
        await self.store.delete_object("full", "k")
        await self.store.abort_multipart("u1", False)
        self.assertEqual(await self.store.delete_bucket("full"), 0)

    async def test_bucket_with_only_uploads_is_deleted_and_its_uploads_aborted(self):
        # As on S3: open multipart uploads do not keep a bucket; their backend
        # uploads are queued for the deletion worker to abort.
        await self.store.create_bucket("uploads")
        await self.store.create_multipart(self.upload("u1", "k", bucket="uploads"))
        await self.store.create_multipart(self.upload("u2", "k2", bucket="uploads"))
        before = await self.queued()
        self.assertEqual(await self.store.delete_bucket("uploads"), 2)
        self.assertIsNone(await self.store.get_multipart("u1"))
        self.assertIsNone(await self.store.get_bucket("uploads"))
        added = sorted(set(await self.queued()) - set(before))
        self.assertEqual(added, [("b1", "uploads/u1"), ("b1", "uploads/u2")])

    async def test_delete_objects_runs_one_transaction(self):
        a = await self.put("a", "vb/a")
        b = await self.put("b", "vb/b")
        before = await self.queued()
        runs = []
        run = self.store._run

        def counted(fn, *args, **kwargs):
            runs.append(fn.__name__)
            return run(fn, *args, **kwargs)

        self.store._run = counted
        done = await self.store.delete_objects(BUCKET, [("b", None), ("a", None), ("missing", None), ("a", None)])
        self.store._run = run
        self.assertEqual(runs, ["delete_objects"])
        self.assertEqual(
            {key: d.removed.etag if d.removed else None for (key, _), d in done.items()},
            {"a": a.etag, "b": b.etag, "missing": None},
        )
        self.assertIsNone(await self.store.get_object(BUCKET, "a"))
        self.assertEqual(sorted(set(await self.queued()) - set(before)), [("b1", "vb/a"), ("b1", "vb/b")])

    # -- multipart ----------------------------------------------------------------

    async def test_stale_uploads_are_idle_ones_not_old_ones(self):
        # multipart_max_age counts from the last part (UploadPart or
        # UploadPartCopy), from initiation only before the first.
        day = datetime.timedelta(days=1)
        for upload_id in ("idle", "parted", "copied"):
            await self.store.create_multipart(self.upload(upload_id, upload_id))
        self.now = T0 + 2 * day
        intent = await self.store.begin_write("b1", f"{BUCKET}/parted", 60, 5)
        await self.store.record_part(intent.id, "parted", 5)
        await self.store.touch_multipart("copied")
        stale = await self.store.stale_multipart(T0 + day)
        self.assertEqual([r.upload_id for r in stale], ["idle"])
        later = await self.store.stale_multipart(T0 + 3 * day)
        self.assertEqual(sorted(r.upload_id for r in later), ["copied", "idle", "parted"])

    def upload(self, upload_id: str, key: str, initiated=T0, bucket=BUCKET) -> MultipartRecord:
        return MultipartRecord(
            upload_id=upload_id,
            bucket=bucket,
            key=key,
            backend="b1",
            real_key=f"{bucket}/{upload_id}",
            backend_upload_id=f"backend-{upload_id}",
            initiated=initiated,
            content_type="application/zip",
            headers={"x-amz-meta-a": "1"},
        )

    async def test_multipart_record_lifecycle(self):
        later = T0 + datetime.timedelta(seconds=5)
        for record in [
            self.upload("u3", "b", later),
            self.upload("u1", "a"),
            self.upload("u2", "b"),
            self.upload("u4", "b", later),
            self.upload("u5", "c/x"),
        ]:
            await self.store.create_multipart(record)
        self.assertEqual(await self.store.get_multipart("u1"), self.upload("u1", "a"))
        self.assertIsNone(await self.store.get_multipart("nope"))

        async def ids(**kw):
            return [r.upload_id for r in await self.store.list_multipart(BUCKET, **kw)]

        self.assertEqual(await ids(), ["u1", "u2", "u3", "u4", "u5"])
        self.assertEqual(await ids(prefix="b"), ["u2", "u3", "u4"])
        self.assertEqual(await ids(key_marker="a"), ["u2", "u3", "u4", "u5"])
        self.assertEqual(await ids(key_marker="b", upload_id_marker="u3"), ["u4", "u5"])
        self.assertEqual(await ids(max_uploads=2), ["u1", "u2"])
        self.assertEqual(
            [r.upload_id for r in await self.store.stale_multipart(T0 + datetime.timedelta(seconds=1))],
            ["u1", "u2", "u5"],
        )

        await self.put("b", "vb/old")
        record = make_record("b", "vb/u2", etag='"abc-2"')
        completed = await self.store.complete_multipart("u2", record)
        self.assertEqual((await self.store.get_object(BUCKET, "b")).etag, '"abc-2"')
        self.assertEqual(completed.locations, (Location("b1", "vb/u2"),))
        self.assertIsNone(await self.store.get_multipart("u2"))
        self.assertEqual(await self.queued(), [("b1", "vb/old")])
        await self.assertFailure(self.store.complete_multipart("u2", record), NoSuchUploadError)

        aborted = await self.store.abort_multipart("u3", True)
        self.assertEqual(aborted.upload_id, "u3")
        [deletion] = [q for q in await self.store.queued_deletions() if q.backend_upload_id]
        self.assertEqual((deletion.real_key, deletion.backend_upload_id), ("vb/u3", "backend-u3"))
        self.assertIsNone(await self.store.abort_multipart("u3", True))
        await self.store.abort_multipart("u4", False)
        self.assertEqual(await ids(), ["u1", "u5"])

    # -- usage and counters -------------------------------------------------------

    async def test_backend_usage_aggregates_locations(self):
        self.assertEqual(await self.store.backend_usage(), [])
        await self.put("a", "vb/a", size=100)
        await self.put("b", "vb/b", size=20)
        await self.put("c", "vb/c", backend="b2", size=7)
        await self.put("a", "vb/a2", backend="b2", size=1000)
        usage = {u.backend: (u.used_bytes, u.object_count) for u in await self.store.backend_usage()}
        self.assertEqual(usage, {"b1": (20, 1), "b2": (1007, 2)})

    async def test_operation_counters_add_up_per_month(self):
        await self.store.count_operations("b1", 2, 5)
        await self.store.count_operations("b1", 1, 0)
        await self.store.count_operations("b2", 0, 4)
        self.now += datetime.timedelta(minutes=1)  # April now
        await self.store.count_operations("b1", 10, 10)
        await self.store.count_operations("b1", 1, 1, when=T0)
        march = await self.store.operation_counts("2026-03")
        self.assertEqual(
            [(c.backend, c.month, c.type_a, c.type_b) for c in march],
            [("b1", "2026-03", 4, 6), ("b2", "2026-03", 0, 4)],
        )
        april = await self.store.operation_counts("2026-04")
        self.assertEqual([(c.backend, c.type_a, c.type_b) for c in april], [("b1", 10, 10)])

    async def test_concurrent_operation_counts_are_not_lost(self):
        other = await self.start_store()
        await defer.gatherResults(
            [store.count_operations("b1", 1, 2) for _ in range(20) for store in (self.store, other)]
        )
        [counts] = await self.store.operation_counts("2026-03")
        self.assertEqual((counts.type_a, counts.type_b), (40, 80))

    # -- concurrency --------------------------------------------------------------

    async def test_concurrent_commits_to_one_key_leave_one_row_and_queue_the_rest(self):
        # Two stores on one database: two daemons, each with its own pool.
        other = await self.start_store()
        stores = [self.store, other]
        real_keys = [f"vb/v{i}" for i in range(24)]
        intents = []
        for i, real_key in enumerate(real_keys):
            intents.append(await stores[i % 2].begin_write("b1", real_key, 60))
        await defer.gatherResults(
            [
                stores[i % 2].commit_object(intent.id, make_record("same", real_key, etag=f'"{i}"'))
                for i, (intent, real_key) in enumerate(zip(intents, real_keys, strict=True))
            ]
        )
        got = await self.store.get_object(BUCKET, "same")
        [live] = got.locations
        queued = await self.queued()
        self.assertEqual(len(queued), len(set(queued)))
        self.assertEqual(
            sorted(queued + [(live.backend, live.real_key)]), sorted(("b1", k) for k in real_keys)
        )
        self.assertEqual(got.etag, f'"{real_keys.index(live.real_key)}"')
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(func.count()).select_from(tables.objects)).scalar()
                locations = conn.execute(select(func.count()).select_from(tables.object_locations)).scalar()
                intents_left = conn.execute(select(func.count()).select_from(tables.write_intents)).scalar()
        finally:
            engine.dispose()
        self.assertEqual((rows, locations, intents_left), (1, 1, 0))

    async def test_work_runs_off_the_reactor_thread(self):
        seen = []
        original = self.store._transaction

        def spy(fn, *args, **kw):
            seen.append(threading.current_thread().name)
            return original(fn, *args, **kw)

        self.store._transaction = spy
        await self.store.list_buckets()
        self.assertEqual(len(seen), 1)
        self.assertNotEqual(seen[0], threading.main_thread().name)
        self.assertIn("s3balance-db", seen[0])

    # -- listing ------------------------------------------------------------------

    async def test_keys_sort_in_utf8_byte_order(self):
        keys = ["b", "a", "a/b", "a~", "aé", "a\x7f", "A", "0", "\uffff", "\U0001f600", "a/", "a0", "Z~"]
        for i, key in enumerate(keys):
            await self.put(key, f"vb/{i}")
        expected = sorted(keys, key=lambda k: k.encode("utf-8"))
        page = await self.store.list_objects(BUCKET)
        self.assertEqual([e.key for e in page.entries], expected)
        self.assertFalse(page.is_truncated)

    async def test_listing_folds_common_prefixes_across_pages(self):
        for i, key in enumerate(["a/1", "a/2", "b", "c/d/e", "c/x", "d"]):
            await self.put(key, f"vb/{i}")
        page = await self.store.list_objects(BUCKET, delimiter="/", max_keys=2)
        self.assertEqual(page, ListPage(entries=("a/", page.entries[1]), is_truncated=True, next_marker="b"))
        self.assertEqual(page.entries[1].key, "b")
        page = await self.store.list_objects(BUCKET, delimiter="/", after="b", max_keys=2)
        self.assertEqual((page.entries[0], page.entries[1].key, page.is_truncated), ("c/", "d", False))
        page = await self.store.list_objects(BUCKET, prefix="c/", delimiter="/", after="c/d/")
        self.assertEqual([e.key for e in page.entries], ["c/x"])
        page = await self.store.list_objects(BUCKET, prefix="c/")
        self.assertEqual([e.key for e in page.entries], ["c/d/e", "c/x"])


class SQLiteStoreTests(StoreBehaviourMixin, unittest.TestCase):
    kind = "sqlite"

    def test_sqlite_pragmas(self):
        engine = self.store._engine
        with engine.connect() as conn:
            self.assertEqual(conn.exec_driver_sql("PRAGMA journal_mode").scalar(), "wal")
            self.assertEqual(conn.exec_driver_sql("PRAGMA foreign_keys").scalar(), 1)
            self.assertEqual(conn.exec_driver_sql("PRAGMA busy_timeout").scalar(), 10000)
            self.assertEqual(conn.exec_driver_sql("PRAGMA synchronous").scalar(), 2)  # FULL
        self.assertEqual(self.store._max_threads, 1)

    async def test_raw_lookup_equals_the_sqlalchemy_one(self):
        """GetObject's lookup on SQLite runs without SQLAlchemy (rawread.py) and gives the same records."""
        self.assertIsNotNone(self.store._raw_statements)
        await self.assertLookupsAsOnTheOrdinaryPath()
        self.assertIsNotNone(self.store._raw_connection)

    async def test_raw_lookup_falls_back_when_sqlite_fails(self):
        record = make_record("k", "vb/1")
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.commit_object(intent.id, record)

        def broken(conn, statement, params=None):
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(RawConnection, "execute", broken)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, record.locations)

    async def test_write_intents_commit_without_fsync_and_leave_full_sync(self):
        """begin_write runs at synchronous=NORMAL, commit_object at FULL; both connections are back at FULL."""
        seen: list = []
        original = self.store._raw_group

        def spy(items):
            def probing(fn):
                def probe(conn, *args):
                    seen.append(conn.connection.execute("PRAGMA synchronous").fetchone()[0])
                    return fn(conn, *args)

                return probe

            return original([(probing(fn), args, durable) for fn, args, durable in items])

        self.store._raw_group = spy  # type: ignore[method-assign]
        intent = await self.store.begin_write("b1", "vb/relaxed", 60)
        await self.store.commit_object(intent.id, make_record("k", "vb/relaxed"))
        self.assertEqual(seen, [1, 2])  # NORMAL, FULL
        self.assertEqual(await self.store._read(lambda conn: conn.exec_driver_sql("PRAGMA synchronous").scalar()), 2)
        raw = self.store._raw_connection.dbapi_connection
        self.assertEqual(raw.execute("PRAGMA synchronous").fetchone()[0], 2)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations[0].real_key, "vb/relaxed")

    async def test_a_failing_raw_write_falls_back_and_leaves_nothing_of_itself(self):
        """A sqlite3 error inside the raw transaction rolls it back; the ordinary path then does the work once."""
        intent = await self.store.begin_write("b1", "vb/x", 60)
        calls: list = []
        original = RawConnection.execute

        def failing(conn, statement, params=()):
            calls.append(statement)
            if len(calls) == 3:  # after the intent is taken and the bucket locked
                raise sqlite3.OperationalError("disk I/O error")
            return original(conn, statement, params)

        self.patch(RawConnection, "execute", failing)
        await self.store.commit_object(intent.id, make_record("k", "vb/x"))
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations[0].real_key, "vb/x")
        counts = await self.store._read(
            lambda conn: [conn.execute(select(func.count()).select_from(t)).scalar() for t in
                          (tables.objects, tables.object_locations, tables.write_intents)]
        )
        self.assertEqual(counts, [1, 1, 0])

    async def test_a_committed_raw_write_is_not_run_again(self):
        """An error after COMMIT (restoring synchronous=FULL) keeps the result: no second write intent."""

        class Proxy:
            def __init__(self, connection):
                self.connection = connection

            def execute(self, sql, *args):
                if sql == "PRAGMA synchronous=FULL":
                    raise sqlite3.OperationalError("disk I/O error")
                return self.connection.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self.connection, name)

        original = self.store._raw_connection_now
        self.store._raw_connection_now = lambda: Proxy(original())  # type: ignore[method-assign]
        intent = await self.store.begin_write("b1", "vb/once", 60)
        rows = await self.store._read(lambda conn: conn.execute(select(tables.write_intents.c.id)).scalars().all())
        self.assertEqual(rows, [intent.id])
        self.assertIsNone(self.store._raw_connection)  # dropped: its setting is unknown


    async def _counts(self) -> list:
        return await self.store._read(
            lambda conn: [conn.execute(select(func.count()).select_from(t)).scalar() for t in
                          (tables.objects, tables.object_locations, tables.write_intents)]
        )

    def _record_groups(self) -> list:
        """The size of every group the raw path commits from now on."""
        sizes: list = []
        original = self.store._raw_group

        def spy(items):
            sizes.append(len(items))
            return original(items)

        self.store._raw_group = spy  # type: ignore[method-assign]
        return sizes

    async def test_concurrent_commits_share_one_transaction(self):
        """Commits made while the database thread is busy go to one group commit; each lands."""
        intents = [await self.store.begin_write("b1", f"vb/g{i}", 60) for i in range(6)]
        sizes = self._record_groups()
        gate = threading.Event()
        busy = self.store._pool.submit(gate.wait, 10)  # hold the database thread
        commits = [self.store.commit_object(i.id, make_record(f"k{n}", f"vb/g{n}")) for n, i in enumerate(intents)]
        gate.set()
        await busy
        stored = await defer.gatherResults(commits)
        self.assertEqual(sizes, [6])
        self.assertEqual([r.key for r in stored], [f"k{n}" for n in range(6)])
        for n in range(6):
            self.assertEqual((await self.store.get_object(BUCKET, f"k{n}")).locations[0].real_key, f"vb/g{n}")
        self.assertEqual(await self._counts(), [6, 6, 0])

    async def test_a_failing_member_of_a_group_is_undone_alone(self):
        """One commit's failed precondition is its own answer; its intent stays; the rest of the group commits."""
        first = await self.store.begin_write("b1", "vb/first", 60)
        await self.store.commit_object(first.id, make_record("taken", "vb/first"))
        intents = [await self.store.begin_write("b1", f"vb/m{i}", 60) for i in range(3)]
        sizes = self._record_groups()
        gate = threading.Event()
        busy = self.store._pool.submit(gate.wait, 10)
        commits = [
            self.store.commit_object(intents[0].id, make_record("a", "vb/m0")),
            self.store.commit_object(intents[1].id, make_record("taken", "vb/m1"), if_none_match="*"),
            self.store.commit_object(intents[2].id, make_record("b", "vb/m2")),
        ]
        gate.set()
        await busy
        await commits[0]
        await self.assertFailure(commits[1], PreconditionFailedError)
        await commits[2]
        self.assertEqual(sizes, [3])
        self.assertEqual((await self.store.get_object(BUCKET, "taken")).locations[0].real_key, "vb/first")
        self.assertEqual(await self._counts(), [3, 3, 1])  # the refused commit's intent is still there
        await self.store.abandon_write(intents[1].id, True)
        self.assertEqual(await self._counts(), [3, 3, 0])

    async def test_a_group_that_fails_runs_each_member_alone(self):
        """A sqlite3 error inside a group rolls all of it back; each member then runs once on the ordinary path."""
        intents = [await self.store.begin_write("b1", f"vb/f{i}", 60) for i in range(3)]
        calls: list = []
        original = RawConnection.execute

        def failing(conn, statement, params=()):
            calls.append(statement)
            if len(calls) == 5:  # inside the group's second member
                raise sqlite3.OperationalError("disk I/O error")
            return original(conn, statement, params)

        self.patch(RawConnection, "execute", failing)
        gate = threading.Event()
        busy = self.store._pool.submit(gate.wait, 10)
        commits = [self.store.commit_object(i.id, make_record(f"f{n}", f"vb/f{n}")) for n, i in enumerate(intents)]
        gate.set()
        await busy
        await defer.gatherResults(commits)
        self.assertGreaterEqual(len(calls), 5)
        for n in range(3):
            self.assertEqual((await self.store.get_object(BUCKET, f"f{n}")).locations[0].real_key, f"vb/f{n}")
        self.assertEqual(await self._counts(), [3, 3, 0])


class SQLiteOrdinaryPathStoreTests(StoreBehaviourMixin, unittest.TestCase):
    """The same behaviour with the raw write path off: both paths run the same transaction functions."""

    kind = "sqlite"

    async def start_store(self):
        store = await super().start_store()
        store._raw_statements = None
        return store

    async def test_write_intents_commit_without_fsync_and_leave_full_sync(self):
        """begin_write runs at synchronous=NORMAL; the pooled connection is back at FULL after it."""
        seen = watch_relaxed_setting(self.store, "PRAGMA synchronous")
        intent = await self.store.begin_write("b1", "vb/relaxed", 60)
        await self.store.commit_object(intent.id, make_record("k", "vb/relaxed"))
        self.assertEqual(seen, [1])  # NORMAL
        self.assertEqual(await self.store._read(lambda conn: conn.exec_driver_sql("PRAGMA synchronous").scalar()), 2)


class PostgreSQLStoreTests(StoreBehaviourMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES

    def watch_synchronous_commit(self, name: str) -> list:
        """What synchronous_commit is inside each run of objects.<name> (on either path)."""
        seen: list = []
        original = getattr(objects, name)
        # No bound parameter: the raw path takes only those it is given.
        query = select(literal_column("current_setting('synchronous_commit')").label("value"))

        def spy(conn, *args):
            seen.append(conn.execute(query).first().value)
            return original(conn, *args)

        self.patch(objects, name, spy)
        return seen

    async def test_write_intents_commit_asynchronously(self):
        """begin_write's transaction runs with synchronous_commit off; the object's commit keeps the server's setting."""
        relaxed = self.watch_synchronous_commit("begin_write")
        durable = self.watch_synchronous_commit("commit_object")
        intent = await self.store.begin_write("b1", "vb/relaxed", 60)
        await self.store.commit_object(intent.id, make_record("k", "vb/relaxed"))
        self.assertEqual((relaxed, durable), (["off"], ["on"]))
        self.assertEqual(await self.store._read(lambda conn: conn.exec_driver_sql("SHOW synchronous_commit").scalar()), "on")

    async def test_the_put_path_writes_without_sqlalchemy(self):
        """begin_write and commit_object run on pooled connections (rawread), with the ids PostgreSQL returns."""
        first = await self.store.begin_write("b1", "vb/a", 60)
        second = await self.store.begin_write("b1", "vb/b", 60)
        self.assertEqual(second.id, first.id + 1)
        stored = await self.store.commit_object(second.id, make_record("k", "vb/b"))
        statements = [str(key[0]) for key in self.store._pg_raw_statements]
        self.assertTrue(any(sql.startswith("INSERT INTO write_intents") for sql in statements), statements)
        self.assertTrue(any(sql.startswith("INSERT INTO objects") for sql in statements), statements)
        found = await self.store.get_object(BUCKET, "k")
        self.assertEqual((found.id, found.locations), (stored.id, (Location("b1", "vb/b"),)))
        ids = await self.store._read(lambda conn: conn.exec_driver_sql("SELECT id FROM objects").scalars().all())
        self.assertEqual(ids, [stored.id])

    async def test_a_failing_pooled_write_falls_back_and_leaves_nothing_of_itself(self):
        import psycopg2

        original = RawConnection.execute
        calls: list = []

        def flaky(conn, statement, params=None):
            calls.append(statement)
            if len(calls) == 2:  # the second statement of commit_object
                raise psycopg2.OperationalError("server closed the connection unexpectedly")
            return original(conn, statement, params)

        intent = await self.store.begin_write("b1", "vb/1", 60)
        self.patch(RawConnection, "execute", flaky)
        await self.store.commit_object(intent.id, make_record("k", "vb/1"))
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, (Location("b1", "vb/1"),))
        counts = await self.store._read(
            lambda conn: [
                conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                for table in ("objects", "object_locations", "write_intents")
            ]
        )
        self.assertEqual(counts, [1, 1, 0])

    async def test_pooled_lookup_equals_the_sqlalchemy_one(self):
        """GetObject's lookup runs its SELECT on a pooled connection in autocommit and gives the same records."""
        self.assertIsNotNone(self.store._pg_raw_dialect)
        await self.assertLookupsAsOnTheOrdinaryPath()
        self.assertTrue(self.store._pg_raw_statements, "the pooled path did not run")
        # The connection goes back to the pool out of autocommit, as the ordinary path needs it.
        used: list = []
        original = RawConnection.__init__

        def spy(raw, connection, *args):
            used.append((connection, connection.autocommit))
            original(raw, connection, *args)

        self.patch(RawConnection, "__init__", spy)
        await self.store.get_object(BUCKET, "plain")
        [(connection, during)] = used
        self.assertEqual((during, connection.autocommit), (True, False))

    async def test_pooled_lookup_falls_back_when_the_driver_fails(self):
        record = make_record("k", "vb/1")
        intent = await self.store.begin_write("b1", "vb/1", 60)
        await self.store.commit_object(intent.id, record)

        def broken(conn, statement, params=None):
            import psycopg2

            raise psycopg2.OperationalError("server closed the connection unexpectedly")

        self.patch(RawConnection, "execute", broken)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, record.locations)
        self.patch(RawConnection, "execute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("pool")))
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, record.locations)


class MariaDBStoreTests(StoreBehaviourMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL

    async def test_a_key_the_column_cannot_hold_is_refused_not_cut_short(self):
        # A server whose default sql_mode is not strict (init_command runs
        # before the store sets up the session).
        url = make_url(self.url).update_query_dict({"init_command": "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'"})
        store = MetadataStore(url, max_threads=2, now=lambda: self.now)
        await store.start()
        self.addCleanup(store.stop)
        mode = await store._read(lambda conn: conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar())
        self.assertIn("STRICT_ALL_TABLES", mode.split(","))
        self.assertIn("NO_ENGINE_SUBSTITUTION", mode.split(","))
        intent = await store.begin_write("b1", "vb/long", 60)
        long_key = "k" * 1025
        with self.assertRaises(DBAPIError):
            await store.commit_object(intent.id, make_record(long_key, "vb/long"))
        self.assertIsNone(await store.get_object(BUCKET, long_key[:1024]))
        with self.assertRaises(DBAPIError):
            await store.commit_object(intent.id, make_record("k", "vb/long", content_type="t/" + "x" * 300))
        self.assertIsNone(await store.get_object(BUCKET, "k"))


class BucketLockRaceMixin:
    """
    CreateMultipartUpload and DeleteBucket take turns on the bucket row
    (store.multipart.create_multipart shares its lock as an object's commit
    does): one transaction of each, on two connections, the first one held
    open while the store's waits.  Subclasses set C{kind}.
    """

    kind: str
    HOLD = 0.3  # seconds the first transaction stays open while the store's waits

    async def setUp(self):
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = MetadataStore(self.url, max_threads=4, now=lambda: T0)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.create_bucket("race")

    def upload(self, upload_id: str) -> MultipartRecord:
        return MultipartRecord(
            upload_id=upload_id,
            bucket="race",
            key="k",
            backend="b1",
            real_key=f"race/{upload_id}",
            backend_upload_id=f"backend-{upload_id}",
            initiated=T0,
            content_type=None,
            headers={},
        )

    async def hold_then_commit(self, conn, waiting: defer.Deferred) -> None:
        """The store's call is still waiting for C{conn}'s transaction; commit that."""
        await deferLater(reactor, self.HOLD, lambda: None)
        self.assertNoResult(waiting)
        conn.commit()

    async def test_an_upload_recorded_while_its_bucket_is_deleted_fails(self):
        with self.store._engine.connect() as conn:
            conn.begin()
            self.assertEqual(buckets.delete_bucket(conn, "race"), [])  # the row locked, deleted, not committed
            created = self.store.create_multipart(self.upload("u1"))
            await self.hold_then_commit(conn, created)
        await self.assertFailure(created, NoSuchBucketError)
        self.assertIsNone(await self.store.get_multipart("u1"))

    async def test_a_bucket_deleted_while_an_upload_is_recorded_aborts_it(self):
        with self.store._engine.connect() as conn:
            conn.begin()
            multipart.create_multipart(conn, self.upload("u1"))  # the row share-locked, not committed
            deleted = self.store.delete_bucket("race")
            await self.hold_then_commit(conn, deleted)
        self.assertEqual(await deleted, 1)
        self.assertIsNone(await self.store.get_multipart("u1"))
        self.assertIsNone(await self.store.get_bucket("race"))
        [abort] = await self.store.queued_deletions()
        self.assertEqual((abort.real_key, abort.backend_upload_id), ("race/u1", "backend-u1"))


class SQLiteBucketLockRaceTests(BucketLockRaceMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLBucketLockRaceTests(BucketLockRaceMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBBucketLockRaceTests(BucketLockRaceMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class StartMigratesMixin:
    """
    MetadataStore.start migrates an empty database to the head revision.
    (The other store tests start on a database at the head already:
    dbfixtures.store_database.)
    """

    kind: str

    async def test_start_migrates_an_empty_database(self):
        url = dbfixtures.fresh_database(self, self.kind)
        store = MetadataStore(url, max_threads=2)
        await store.start()
        self.addCleanup(store.stop)  # before the database is dropped
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                self.assertEqual(migrate.current_revision_of(conn), migrate.head_revision())
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                self.assertEqual(compare_metadata(context, tables.metadata), [])
        finally:
            engine.dispose()
        await store.sync_config_buckets([BUCKET])
        self.assertEqual([b.name for b in await store.list_buckets()], [BUCKET])


class SQLiteStartMigratesTests(StartMigratesMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLStartMigratesTests(StartMigratesMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBStartMigratesTests(StartMigratesMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# The columns whose times keep microseconds on every engine (DATETIME(6) on MySQL/MariaDB, migration 0008).
PRECISE_COLUMNS = {
    "write_intents": ("lease_until", "created"),
    "deletion_queue": ("due", "created"),
    "job_leases": ("expires_at",),
}


class PreciseTimesMixin:
    """Leases and due times keep their fractions of a second; subclasses set C{kind}."""

    kind: str
    MOMENT = datetime.datetime(2026, 3, 31, 23, 59, 30, 800123, tzinfo=UTC)

    def setUp(self):
        self.url = dbfixtures.fresh_database(self, self.kind)
        if self.kind == "sqlite":
            os.makedirs(os.path.dirname(self.url[len("sqlite:///") :]), exist_ok=True)
        migrate.upgrade(self.url)
        self.engine = create_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def precisions(self) -> dict[tuple[str, str], int]:
        """(table, column) -> fractional digits of every date-time column (MySQL/MariaDB, PostgreSQL)."""
        with self.engine.connect() as conn:
            if self.kind == dbfixtures.MYSQL:
                where = "table_schema = DATABASE() AND data_type = 'datetime'"
            else:
                where = "table_schema = current_schema() AND data_type IN ('timestamp with time zone', 'timestamp')"
            rows = conn.exec_driver_sql(
                f"SELECT table_name, column_name, datetime_precision FROM information_schema.columns WHERE {where}"
            )
            return {(table.lower(), column.lower()): int(digits) for table, column, digits in rows}

    def insert_moments(self, moment: datetime.datetime) -> None:
        with self.engine.begin() as conn:
            for table in (tables.write_intents, tables.deletion_queue, tables.job_leases):
                conn.execute(table.delete())
            conn.execute(
                insert(tables.write_intents).values(backend="b1", real_key="vb/1", lease_until=moment, created=moment)
            )
            conn.execute(
                insert(tables.deletion_queue).values(
                    backend="b1", real_key="vb/1", reason="deleted", attempts=0, due=moment, created=moment
                )
            )
            conn.execute(insert(tables.job_leases).values(job="j", holder="h", expires_at=moment))

    def stored_moments(self) -> set[datetime.datetime]:
        with self.engine.connect() as conn:
            return {
                value
                for name, columns in PRECISE_COLUMNS.items()
                for column in columns
                for value in conn.execute(select(tables.metadata.tables[name].c[column])).scalars()
            }

    def test_lease_and_due_times_keep_microseconds(self):
        self.insert_moments(self.MOMENT)
        self.assertEqual(self.stored_moments(), {self.MOMENT})

    def test_date_time_precisions_are_those_of_the_tables(self):
        # (Alembic's compare_metadata does not compare them.)
        if self.kind == "sqlite":
            raise unittest.SkipTest("SQLite stores date-times as text")
        expected = {}
        for table in tables.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, tables.UTCDateTime):
                    mysql_digits = column.type.fsp or 0
                    expected[(table.name, column.name)] = mysql_digits if self.kind == dbfixtures.MYSQL else 6
        self.assertEqual(self.precisions(), expected)
        if self.kind == dbfixtures.MYSQL:
            self.assertEqual({key for key, digits in expected.items() if digits}, set(self.precise_keys()))

    def test_migration_0008_downgrades_to_whole_seconds_on_mysql_only(self):
        with self.engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0007")
        self.insert_moments(self.MOMENT)
        if self.kind == dbfixtures.MYSQL:
            # MariaDB cuts the fraction off, MySQL rounds it.
            whole = self.MOMENT.replace(microsecond=0)
            self.assertIn(self.stored_moments(), [{whole}, {whole + datetime.timedelta(seconds=1)}])
            self.assertEqual({self.precisions()[key] for key in self.precise_keys()}, {0})
        else:
            self.assertEqual(self.stored_moments(), {self.MOMENT})
        with self.engine.begin() as conn:
            migrate.upgrade_connection(conn)
            self.assertEqual(migrate.current_revision_of(conn), migrate.head_revision())
        self.insert_moments(self.MOMENT)
        self.assertEqual(self.stored_moments(), {self.MOMENT})
        if self.kind != "sqlite":
            self.assertEqual({self.precisions()[key] for key in self.precise_keys()}, {6})

    def precise_keys(self) -> list[tuple[str, str]]:
        return [(table, column) for table, columns in PRECISE_COLUMNS.items() for column in columns]


class SQLitePreciseTimesTests(PreciseTimesMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLPreciseTimesTests(PreciseTimesMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBPreciseTimesTests(PreciseTimesMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class RawDateTimeTests(unittest.SynchronousTestCase):
    """rawread's own UTCDateTime converters for SQLite give exactly what SQLAlchemy's do."""

    def test_same_text_and_same_datetimes_as_sqlalchemy(self):
        from sqlalchemy.dialects import sqlite as sqlite_dialect

        from s3balance.store.rawread import _processors

        dialect = sqlite_dialect.dialect()
        impl = tables.UTCDateTime().dialect_impl(dialect)
        bind, result = impl.bind_processor(dialect), impl.result_processor(dialect, None)
        _bind_utc, _result_utc = _processors(tables.UTCDateTime(), dialect)
        plus_two = datetime.timezone(datetime.timedelta(hours=2))
        for moment in [
            datetime.datetime(2026, 11, 25, 19, 9, 39, tzinfo=datetime.UTC),
            datetime.datetime(2026, 11, 25, 19, 9, 39, 123456, tzinfo=datetime.UTC),
            datetime.datetime(1999, 1, 2, 3, 4, 5, 6, tzinfo=plus_two),
            datetime.datetime(1, 1, 1, 0, 0, tzinfo=datetime.UTC),
        ]:
            text = bind(moment)
            self.assertEqual(_bind_utc(moment), text)
            self.assertEqual(_result_utc(text), result(text))
            self.assertEqual(_result_utc(text), moment)
        self.assertEqual(_result_utc("2026-11-25 19:09:39"), result("2026-11-25 19:09:39"))
        self.assertIsNone(_bind_utc(None))
        self.assertIsNone(_result_utc(None))
        self.assertRaises(ValueError, _bind_utc, datetime.datetime(2026, 1, 1))


class StoreURLTests(unittest.SynchronousTestCase):
    def test_repr_and_url_mask_the_password(self):
        store = MetadataStore("postgresql+psycopg2://s3b:s3cr3t@db.example:5432/s3b")
        self.assertNotIn("s3cr3t", repr(store))
        self.assertNotIn("s3cr3t", str(store.url))
        self.assertNotIn("s3cr3t", repr(store.url))
        self.assertIn("db.example", repr(store))

    def test_migration_script_location_has_the_versions(self):
        import os

        location = migrate.script_location()
        self.assertTrue(os.path.exists(os.path.join(location, "env.py")))
        # The head is the newest numbered migration (each revises the one before).
        numbered = sorted(name for name in os.listdir(os.path.join(location, "versions")) if name[:4].isdigit())
        self.assertEqual(migrate.head_revision(), numbered[-1][:4])


class DatabaseFixtureTests(unittest.SynchronousTestCase):
    """An absent server skips the PostgreSQL/MariaDB tests, except under CI=true."""

    def setUp(self):
        self.patch(
            dbfixtures,
            "_ADMIN_URLS",
            {dbfixtures.POSTGRES: "postgresql+psycopg2://postgres@127.0.0.1:1/test"},
        )
        self.patch(dbfixtures, "_reachability", {})

    def test_unreachable_server_skips_with_reason(self):
        self.patch(dbfixtures.os, "environ", {})
        error = self.assertRaises(unittest.SkipTest, dbfixtures.require_server, dbfixtures.POSTGRES)
        self.assertIn("PostgreSQL not reachable at 127.0.0.1:1: OperationalError", str(error))

    def test_unreachable_server_fails_under_ci(self):
        self.patch(dbfixtures.os, "environ", {"CI": "true"})
        error = self.assertRaises(RuntimeError, dbfixtures.require_server, dbfixtures.POSTGRES)
        self.assertIn("CI=true", str(error))
