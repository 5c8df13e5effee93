"""
Migration 0013 (tags columns) on a database at 0012 that holds objects,
their locations, a multipart upload and buckets: every row is kept and reads
as untagged, tags can be set, and the downgrade drops the columns in place
(an object's locations survive it: no copy of the objects table, whose
locations refer to it ON DELETE CASCADE).  On SQLite, and on PostgreSQL and
MariaDB when they answer (always under CI=true).
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, insert, inspect, select, update
from twisted.trial import unittest

from s3balance.store import buckets, migrate, objects, tables
from s3balance.store.records import encode_key
from tests import dbfixtures
from tests.test_store import T0

TAGGED = ("objects", "multipart_uploads", "buckets")


class MigrationMixin:
    kind: str

    def test_0013_keeps_every_row_untagged_and_downgrades_in_place(self) -> None:
        url, engine = dbfixtures.database_at(self, self.kind, "0012")
        with engine.begin() as conn:
            conn.execute(insert(tables.buckets).values(name="vb", created=T0, origin="config"))
            for n in range(3):
                object_id = conn.execute(insert(tables.objects).values(
                    bucket="vb", key=encode_key(f"k{n}"), size=n, etag='"e"', last_modified=T0,
                    content_type=None, headers="{}", checksums="{}",
                )).inserted_primary_key[0]
                conn.execute(insert(tables.object_locations).values(
                    object_id=object_id, backend="b1", real_key=f"vb/{n}", created=T0
                ))
            conn.execute(insert(tables.multipart_uploads).values(
                upload_id="u1", bucket="vb", key=encode_key("big"), backend="b1", real_key="vb/u1",
                backend_upload_id="bu1", initiated=T0, content_type=None, headers="{}",
            ))
        migrate.upgrade(url, "0013")
        with engine.begin() as conn:
            self.assertEqual(migrate.current_revision_of(conn), "0013")
            # The rows as 0013 has them (the store's reads take later columns too).
            _o = tables.objects
            found = conn.execute(select(_o.c.size, _o.c.tags).where(_o.c.key == encode_key("k1"))).one()
            self.assertEqual(tuple(found), (1, None))
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.object_locations)).scalar(), 3)
            self.assertIsNone(conn.execute(select(tables.buckets.c.tags)).scalar())
            self.assertIsNone(conn.execute(select(tables.multipart_uploads.c.tags)).scalar())
            # (An UPDATE of this revision's columns: the store's functions read later ones.)
            _k1 = tables.objects.c.key == encode_key("k1")
            self.assertEqual(conn.execute(update(tables.objects).where(_k1).values(tags="a=1")).rowcount, 1)
            self.assertTrue(buckets.set_bucket_tags(conn, "vb", (("b", "2"),)))
        with engine.connect() as conn:
            tags = conn.execute(select(tables.objects.c.tags).where(tables.objects.c.key == encode_key("k1")))
            self.assertEqual(tags.scalar(), "a=1")
            self.assertEqual(conn.execute(select(tables.buckets.c.tags)).scalar(), "b=2")
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0012")
        with engine.connect() as conn:
            for table in TAGGED:
                self.assertNotIn("tags", [c["name"] for c in inspect(conn).get_columns(table)], table)
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.objects)).scalar(), 3)
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.object_locations)).scalar(), 3)
        migrate.upgrade(url, "head")
        with engine.connect() as conn:
            self.assertEqual(objects.get_object(conn, "vb", "k1").tags, ())


class SQLiteMigrationTests(MigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
