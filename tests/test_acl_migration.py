"""
Migration 0017 (acl columns, public_access_block, bucket_policies) on a database at 0016 with a
bucket and an object: both are kept with no ACL (NULL: private), a policy
row goes with its bucket (ON DELETE CASCADE, SQLite's foreign keys on as the
store's engine sets them), and the downgrade drops the columns and the table
and nothing else.  On SQLite, and on PostgreSQL and MariaDB when they answer
(always under CI=true).
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, delete, func, insert, inspect, select
from twisted.trial import unittest

from s3balance.store import migrate, tables
from s3balance.store.engine import _configure_sqlite
from tests import dbfixtures
from tests.test_store import T0

REVISION = "0017"


class MigrationMixin:
    kind: str

    def test_0017_adds_acls_and_policies_and_downgrades(self) -> None:
        url, engine = dbfixtures.database_at(self, self.kind, "0016")
        with engine.begin() as conn:
            for name in ("vb", "api"):
                conn.execute(insert(tables.buckets).values(name=name, created=T0, origin="config"))
            conn.execute(
                insert(tables.objects).values(
                    bucket="vb", key=b"k", size=1, etag='"e"', last_modified=T0, headers="{}", checksums="{}"
                )
            )
        migrate.upgrade(url, REVISION)
        store_engine = engine
        if self.kind == "sqlite":
            store_engine = create_engine(url)
            _configure_sqlite(store_engine, 10.0)
            self.addCleanup(store_engine.dispose)
        with store_engine.begin() as conn:
            self.assertEqual(migrate.current_revision_of(conn), REVISION)
            self.assertEqual(conn.execute(select(tables.buckets.c.acl)).scalars().all(), [None, None])
            self.assertEqual(
                conn.execute(select(tables.buckets.c.public_access_block)).scalars().all(), [None, None]
            )
            self.assertEqual(conn.execute(select(tables.objects.c.acl)).scalars().all(), [None])
            for name in ("vb", "api"):
                conn.execute(insert(tables.bucket_policies).values(bucket=name, policy="{}"))
        with store_engine.begin() as conn:
            conn.execute(delete(tables.buckets).where(tables.buckets.c.name == "api"))
        with store_engine.connect() as conn:
            self.assertEqual(conn.execute(select(tables.bucket_policies.c.bucket)).scalars().all(), ["vb"])
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0016")
        with engine.connect() as conn:
            inspector = inspect(conn)
            self.assertNotIn("bucket_policies", inspector.get_table_names())
            for table in ("objects", "multipart_uploads", "buckets"):
                self.assertNotIn("acl", [c["name"] for c in inspector.get_columns(table)])
            self.assertNotIn("public_access_block", [c["name"] for c in inspector.get_columns("buckets")])
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.objects)).scalar(), 1)
        migrate.upgrade(url, "head")


class SQLiteMigrationTests(MigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
