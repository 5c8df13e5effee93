"""
Migration 0016 (bucket_lifecycles) on a database at 0015 with buckets: they
are kept and have no configuration, one can be set, it goes with its bucket
(ON DELETE CASCADE, SQLite's foreign keys on as the store's engine sets
them), and the downgrade drops the table and nothing else.  On SQLite, and
on PostgreSQL and MariaDB when they answer (always under CI=true).
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, delete, func, insert, inspect, select
from twisted.trial import unittest

from s3balance.store import lifecycle, migrate, tables
from s3balance.store.engine import _configure_sqlite
from tests import dbfixtures
from tests.test_store import T0

REVISION = "0016"


class MigrationMixin:
    kind: str

    def test_0016_adds_the_table_and_downgrades(self) -> None:
        url, engine = dbfixtures.database_at(self, self.kind, "0015")
        with engine.begin() as conn:
            for name in ("vb", "api"):
                conn.execute(insert(tables.buckets).values(name=name, created=T0, origin="config"))
        migrate.upgrade(url, REVISION)
        store_engine = engine
        if self.kind == "sqlite":
            # Connections as the store's (foreign keys on).
            store_engine = create_engine(url)
            _configure_sqlite(store_engine, 10.0)
            self.addCleanup(store_engine.dispose)
        with store_engine.begin() as conn:
            self.assertEqual(migrate.current_revision_of(conn), REVISION)
            self.assertIsNone(lifecycle.get_bucket_lifecycle(conn, "vb"))
            self.assertTrue(lifecycle.set_bucket_lifecycle(conn, "vb", "{}"))
            self.assertTrue(lifecycle.set_bucket_lifecycle(conn, "api", "{}"))
            self.assertFalse(lifecycle.set_bucket_lifecycle(conn, "missing", "{}"))
        with store_engine.begin() as conn:
            conn.execute(delete(tables.buckets).where(tables.buckets.c.name == "api"))
        with store_engine.connect() as conn:
            self.assertEqual(lifecycle.lifecycle_buckets(conn), [("vb", "{}")])
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "0015")
        with engine.connect() as conn:
            self.assertNotIn("bucket_lifecycles", inspect(conn).get_table_names())
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.buckets)).scalar(), 1)
        migrate.upgrade(url, "head")


class SQLiteMigrationTests(MigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMigrationTests(MigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
