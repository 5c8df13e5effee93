"""
Migration 0015 (bucket owner) on a database at 0014 that holds buckets of
both origins with tags and quotas: every row is kept and reads as owned by
the default owner (NULL), an owner can be recorded, and the downgrade drops
the column in place.  On SQLite, and on PostgreSQL and MariaDB when they
answer (always under CI=true).
"""

from __future__ import annotations

import os

from alembic import command
from sqlalchemy import create_engine, func, insert, inspect, select
from sqlalchemy.engine import make_url
from twisted.trial import unittest

from s3balance.store import buckets, migrate, tables
from tests import dbfixtures
from tests.test_store import T0

# The revision this test is about, and the one before it (renumbered together).
OWNER_REVISION, PREVIOUS = "0015", "0014"


class OwnerMigrationMixin:
    kind: str

    def test_existing_buckets_get_no_owner_and_the_downgrade_drops_the_column(self) -> None:
        url = dbfixtures.fresh_database(self, self.kind)
        if self.kind == "sqlite":
            os.makedirs(os.path.dirname(make_url(url).database or ""), exist_ok=True)
        migrate.upgrade(url, PREVIOUS)
        engine = create_engine(url)
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            conn.execute(insert(tables.buckets).values(
                name="vb", created=T0, origin="config", quota_bytes=100, quota_origin="config", tags="a=1"
            ))
            conn.execute(insert(tables.buckets).values(name="made", created=T0, origin="api"))
        migrate.upgrade(url, OWNER_REVISION)
        # Only the columns this revision has (the tables module describes the head).
        b = tables.buckets.c
        with engine.begin() as conn:
            self.assertEqual(migrate.current_revision_of(conn), OWNER_REVISION)
            vb = conn.execute(select(b.owner, b.origin, b.tags).where(b.name == "vb")).one()
            self.assertEqual(tuple(vb), (None, "config", "a=1"))
            self.assertIsNone(conn.execute(select(b.owner).where(b.name == "made")).scalar_one())
            self.assertTrue(buckets.set_bucket_owner(conn, "made", "111111111111"))
            conn.execute(insert(tables.buckets).values(name="new", created=T0, origin="api", owner="222222222222"))
        with engine.connect() as conn:
            owners = dict(conn.execute(select(b.name, b.owner)).all())
            self.assertEqual(owners, {"vb": None, "made": "111111111111", "new": "222222222222"})
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), PREVIOUS)
        with engine.connect() as conn:
            columns = [c["name"] for c in inspect(conn).get_columns("buckets")]
            self.assertNotIn("owner", columns)
            self.assertEqual(conn.execute(select(func.count()).select_from(tables.buckets)).scalar(), 3)
        migrate.upgrade(url, "head")
        with engine.connect() as conn:
            self.assertIsNone(buckets.get_bucket(conn, "made").owner)


class SQLiteOwnerMigrationTests(OwnerMigrationMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLOwnerMigrationTests(OwnerMigrationMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBOwnerMigrationTests(OwnerMigrationMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
