"""
Object versions in the store (s3balance.store.versions) on SQLite, and on
PostgreSQL and MariaDB when they answer (always under CI=true): versioned
writes keep the previous version and its bytes, delete markers, removing a
version (the next one becomes the latest), the null version of a suspended
bucket, ListObjectVersions' pages, the usage every version counts in, the
deletion worker's guard on a noncurrent version's bytes, a race between a
write and a delete marker on two connections, and migration 0018 (every
existing object becomes its key's null version; the downgrade refuses
while versions exist).
"""

from __future__ import annotations

import datetime

from alembic import command
from sqlalchemy import func, insert, inspect, select
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from s3balance.store import migrate, tables, versions
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import BucketNotEmpty, Location
from s3balance.store.records import encode_key
from tests import dbfixtures
from tests.test_store import BUCKET, T0, make_record


class VersionsMixin:
    kind: str

    async def setUp(self) -> None:
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = MetadataStore(self.url, max_threads=4, now=lambda: T0)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.create_bucket(BUCKET)

    async def put(self, key: str, real_key: str, **kw):
        record = make_record(key, real_key, **kw)
        intent = await self.store.begin_write("b1", real_key, 60)
        return await self.store.commit_object(intent.id, record)

    async def listed(self, **kw) -> list[tuple[str, str, bool, bool]]:
        """(key, version id, is latest, is a delete marker) of every entry of one page."""
        page = await self.store.list_versions(BUCKET, kw.get("prefix", ""), kw.get("delimiter", ""),
                                              kw.get("key_marker", ""), kw.get("version_id_marker"),
                                              kw.get("max_keys", 1000))
        return [(r.key, r.version_id or "null", latest, r.delete_marker) for r, latest in page.versions]

    async def queued(self) -> list[str]:
        return sorted(q.real_key for q in await self.store.queued_deletions(limit=1000))

    async def usage(self) -> tuple[int, int]:
        [row] = [u for u in await self.store.bucket_usage() if u.bucket == BUCKET]
        return row.used_bytes, row.object_count

    async def test_an_enabled_bucket_keeps_every_version_and_its_bytes(self) -> None:
        old = await self.put("k", "vb/1", size=3)
        self.assertIsNone(old.version_id)
        self.assertTrue(await self.store.set_bucket_versioning(BUCKET, versions.ENABLED))
        new = await self.put("k", "vb/2", size=5, etag='"e2"')
        self.assertTrue(versions.is_version_id(new.version_id))
        self.assertEqual((await self.store.get_object(BUCKET, "k")).etag, '"e2"')
        null = await self.store.get_version(BUCKET, "k", "null")
        self.assertEqual((null.etag, null.locations), ('"e1"', (Location("b1", "vb/1"),)))
        self.assertEqual(await self.queued(), [])
        self.assertTrue(await self.store.is_referenced("b1", "vb/1"))
        self.assertEqual(await self.listed(), [("k", new.version_id, True, False), ("k", "null", False, False)])
        # Every version counts; a listing shows the latest only.
        self.assertEqual(await self.usage(), (8, 2))
        page = await self.store.list_objects(BUCKET)
        self.assertEqual([(e.key, e.etag) for e in page.entries], [("k", '"e2"')])

    async def test_a_lock_change_answers_the_locations_as_of_the_change(self) -> None:
        # PutObjectRetention and PutObjectLegalHold send the change to these
        # copies: one recorded by a replica before the change is among them.
        record = await self.put("k", "vb/1")
        intent = await self.store.begin_write("b2", "vb/2", 60)
        self.assertEqual(
            await self.store.add_location(intent.id, record, Location("b1", "vb/1"), Location("b2", "vb/2")), "added"
        )
        both = (Location("b1", "vb/1"), Location("b2", "vb/2"))
        until = T0 + datetime.timedelta(days=1)
        found = await self.store.set_retention(BUCKET, "k", "null", "GOVERNANCE", until)
        self.assertEqual((found.lock_mode, sorted(found.locations)), (None, sorted(both)))
        found = await self.store.set_legal_hold(BUCKET, "k", "null", True)
        self.assertEqual((found.lock_mode, found.legal_hold, sorted(found.locations)), ("GOVERNANCE", False, sorted(both)))

    async def test_a_delete_marker_hides_the_key_and_going_restores_it(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        v1 = await self.put("k", "vb/1")
        done = await self.store.delete_object(BUCKET, "k")
        marker = done.marker
        self.assertIsNone(done.removed)
        self.assertTrue(marker.delete_marker)
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))
        self.assertEqual((await self.store.get_version(BUCKET, "k", None)).version_id, marker.version_id)
        self.assertEqual((await self.store.list_objects(BUCKET)).entries, ())
        self.assertEqual(await self.listed(), [("k", marker.version_id, True, True), ("k", v1.version_id, False, False)])
        gone = await self.store.delete_object(BUCKET, "k", version_id=marker.version_id)
        self.assertTrue(gone.removed.delete_marker)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).version_id, v1.version_id)
        self.assertEqual(await self.queued(), [])

    async def test_removing_the_latest_version_makes_the_previous_one_latest(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        v1 = await self.put("k", "vb/1", size=3)
        v2 = await self.put("k", "vb/2", size=4)
        done = await self.store.delete_object(BUCKET, "k", version_id=v2.version_id)
        self.assertEqual(done.removed.locations, (Location("b1", "vb/2"),))
        self.assertEqual(await self.queued(), ["vb/2"])
        self.assertEqual((await self.store.get_object(BUCKET, "k")).version_id, v1.version_id)
        self.assertEqual(await self.usage(), (3, 1))
        # A version already gone, or never there: nothing.
        self.assertIsNone((await self.store.delete_object(BUCKET, "k", version_id=v2.version_id)).removed)

    async def test_a_suspended_bucket_replaces_the_null_version_only(self) -> None:
        await self.put("k", "vb/0")
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        v1 = await self.put("k", "vb/1")
        await self.store.set_bucket_versioning(BUCKET, versions.SUSPENDED)
        null = await self.put("k", "vb/2")
        self.assertIsNone(null.version_id)
        self.assertEqual(await self.queued(), ["vb/0"])
        self.assertEqual(await self.listed(), [("k", "null", True, False), ("k", v1.version_id, False, False)])
        marker = (await self.store.delete_object(BUCKET, "k")).marker
        self.assertIsNone(marker.version_id)
        self.assertEqual(await self.queued(), ["vb/0", "vb/2"])
        self.assertEqual(await self.listed(), [("k", "null", True, True), ("k", v1.version_id, False, False)])

    async def test_version_listing_pages_and_prefixes(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        made = {}
        for key in ("a", "b/1", "b/2", "c"):
            made[key] = [(await self.put(key, f"vb/{key}/{n}")).version_id for n in range(3)]
        everything = await self.listed()
        self.assertEqual(len(everything), 12)
        self.assertEqual([v for k, v, _, _ in everything if k == "a"], made["a"][::-1])
        folded = await self.listed(delimiter="/")
        self.assertEqual([k for k, _, _, _ in folded], ["a"] * 3 + ["c"] * 3)
        page = await self.store.list_versions(BUCKET, "", "/", "", None, 4)
        self.assertEqual((page.truncated, page.common_prefixes, page.next_key_marker), (True, ("b/",), "b/"))
        rest = await self.store.list_versions(BUCKET, "", "/", page.next_key_marker, page.next_version_id_marker, 10)
        self.assertEqual([r.key for r, _ in rest.versions], ["c"] * 3)
        # From the middle of a key: its older versions, none of them the latest.
        middle = await self.listed(key_marker="a", version_id_marker=made["a"][2], max_keys=3)
        self.assertEqual(middle, [("a", made["a"][1], False, False), ("a", made["a"][0], False, False),
                                  ("b/1", made["b/1"][2], True, False)])

    async def test_a_bucket_with_versions_left_is_not_empty(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        await self.put("k", "vb/1")
        await self.store.delete_object(BUCKET, "k")
        await self.assertFailure(self.store.delete_bucket(BUCKET), BucketNotEmpty)

    async def test_a_write_and_a_delete_marker_at_once_keep_one_latest(self) -> None:
        """
        A delete marker committed while a write of the same key waits on its
        lock: the write lands after it, and is the latest (one row with
        latest = 1, the newest).
        """
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        await self.put("k", "vb/1")
        intent = await self.store.begin_write("b1", "vb/2", 60)
        with self.store._engine.connect() as conn:
            conn.begin()
            from s3balance.store import objects

            objects.delete_object(conn, BUCKET, "k", T0)  # the marker, not committed
            written = self.store.commit_object(intent.id, make_record("k", "vb/2", etag='"e2"'))
            await deferLater(reactor, 0.3, lambda: None)
            self.assertNoResult(written)
            conn.commit()
        new = await written
        self.assertEqual((await self.store.get_object(BUCKET, "k")).version_id, new.version_id)
        entries = await self.listed()
        self.assertEqual([(latest, marker) for _, _, latest, marker in entries],
                         [(True, False), (False, True), (False, False)])
        with self.store._engine.connect() as conn:
            latest = conn.execute(select(func.count()).where(tables.objects.c.latest == 1)).scalar()
        self.assertEqual(latest, 1)


class SQLiteVersionsTests(VersionsMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLVersionsTests(VersionsMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBVersionsTests(VersionsMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MigrationMixin:
    kind: str

    def test_0018_makes_every_object_its_null_version_and_downgrades(self) -> None:
        url, engine = dbfixtures.database_at(self, self.kind, "0017")
        columns = ("bucket", "key", "size", "etag", "last_modified", "content_type", "headers", "checksums")
        _o, _loc = tables.objects, tables.object_locations
        with engine.begin() as conn:
            conn.execute(insert(tables.buckets).values(name="vb", created=T0, origin="config"))
            for n in range(3):
                object_id = conn.execute(insert(_o).values(
                    bucket="vb", key=encode_key(f"k{n}"), size=n, etag='"e"', last_modified=T0,
                    content_type=None, headers="{}", checksums="{}", tags="a=1",
                )).inserted_primary_key[0]
                conn.execute(insert(_loc).values(object_id=object_id, backend="b1", real_key=f"vb/{n}", created=T0))
        migrate.upgrade(url, "0018")
        with engine.begin() as conn:
            rows = conn.execute(
                select(_o.c.id, _o.c.size, _o.c.tags, _o.c.version_id, _o.c.latest, _o.c.delete_marker).order_by(_o.c.id)
            ).all()
            self.assertEqual([tuple(r)[1:] for r in rows], [(n, "a=1", None, 1, 0) for n in range(3)])
            located = conn.execute(select(_loc.c.object_id, _loc.c.real_key).order_by(_loc.c.object_id)).all()
            self.assertEqual([tuple(r) for r in located], [(rows[n].id, f"vb/{n}") for n in range(3)])
            # The locations still refer to objects (the foreign key survived the rebuild).
            [foreign] = inspect(conn).get_foreign_keys("object_locations")
            self.assertEqual((foreign["referred_table"], foreign["options"].get("ondelete")), ("objects", "CASCADE"))
            self.assertIsNone(conn.execute(select(tables.buckets.c.versioning)).scalar())
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0017")
        migrate.upgrade(url, "head")
        with engine.begin() as conn:
            versions.set_versioning(conn, "vb", versions.ENABLED)
            values = {name: getattr(conn.execute(select(_o).where(_o.c.key == encode_key("k1"))).one(), name)
                      for name in columns}
            conn.execute(insert(_o).values(dict(values, version_id=versions.new_version_id(), latest=None)))
        with engine.begin() as conn, self.assertRaises(RuntimeError):
            command.downgrade(migrate.alembic_config(connection=conn), "0017")


class SQLiteMigrationTests(MigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
