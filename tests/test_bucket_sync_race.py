"""
Two daemons starting on one PostgreSQL or MariaDB database at once both
record the configured buckets (store.buckets.sync_config_buckets): the one
whose read missed the other's new row must not fail its start with a
duplicate key, and the row ends up configured.  Two connections, the
second one's transaction started while the first one's insert is not
committed yet.
"""

from __future__ import annotations

import datetime
import threading
import time

from sqlalchemy import create_engine, select
from twisted.trial import unittest

from s3balance.store import buckets, tables
from tests import dbfixtures

NOW = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)


class _RaceMixin:
    kind: str

    def test_both_starts_record_the_bucket(self) -> None:
        url = dbfixtures.store_database(self, self.kind)
        first_engine, second_engine = create_engine(url), create_engine(url)
        self.addCleanup(first_engine.dispose)
        self.addCleanup(second_engine.dispose)
        errors: list[BaseException] = []
        with first_engine.connect() as first:
            first.begin()
            buckets.sync_config_buckets(first, ["vb-race"], NOW)

            def second_start() -> None:
                try:
                    with second_engine.begin() as second:
                        buckets.sync_config_buckets(second, ["vb-race"], NOW)
                except BaseException as error:
                    errors.append(error)

            thread = threading.Thread(target=second_start)
            thread.start()
            # The second read the table before this commit and waits on the row.
            time.sleep(0.5)
            first.commit()
        thread.join(30)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        with first_engine.connect() as conn:
            rows = conn.execute(select(tables.buckets.c.name, tables.buckets.c.origin)).all()
        self.assertEqual([(row.name, row.origin) for row in rows], [("vb-race", buckets.ORIGIN_CONFIG)])


class PostgreSQLBucketSyncRaceTests(_RaceMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBBucketSyncRaceTests(_RaceMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
