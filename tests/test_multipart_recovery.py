"""
A daemon that dies between a backend's CreateMultipartUpload and our record
of it leaves an open upload on the backend.  The gateway takes a write
intent for the upload's real key first; when that intent's lease runs out,
the cleaner aborts every upload of the key.  Here the crash is played out
step by step against a real SeaweedFS: intent, CreateMultipartUpload, no
record, lease expiry, one cleaner pass.
"""

from __future__ import annotations

import datetime

from twisted.internet import reactor
from twisted.trial import unittest

from s3balance.backends.backend import Backend, make_http_client
from s3balance.backends.pool import BackendPool
from s3balance.config import BackendConfig
from s3balance.ops.cleanup import DeletionWorker
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import MultipartRecord, WriteIntentExpired
from tests import dbfixtures
from tests.harness import shared_seaweedfs, unique_bucket_name

# Today, not a fixed date: the cleaners here run on the real clock, and an
# upload "initiated" at a fixed date became stale a week later (multipart
# max age), which failed the test from 2026-12-02 on.
T0 = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


class _CleanerCase(unittest.TestCase):
    """A store on SQLite and one real SeaweedFS backend, for the cleaner to work on."""

    async def setUp(self):
        self.server = shared_seaweedfs()
        self.bucket = self.server.create_bucket(unique_bucket_name("mprec"))
        self.now = T0
        self.store = MetadataStore(dbfixtures.fresh_database(self, "sqlite"), now=lambda: self.now)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.sync_config_buckets(["vb"])
        self.http = make_http_client(reactor)
        self.addCleanup(self.http.closeCachedConnections)
        config = BackendConfig(
            name=self.bucket,
            endpoint=self.server.endpoint,
            access_key_id=self.server.access_key,
            secret_access_key=self.server.secret_key,
            path_style=True,
        )
        self.backend = Backend(config, self.http, reactor)
        self.pool = BackendPool([self.backend])


class CreateMultipartCrashTests(_CleanerCase):
    def record(self, upload_id: str, real_key: str, backend_upload_id: str) -> MultipartRecord:
        return MultipartRecord(
            upload_id=upload_id,
            bucket="vb",
            key=f"key-of-{upload_id}",
            backend=self.bucket,
            real_key=real_key,
            backend_upload_id=backend_upload_id,
            initiated=T0,
            content_type="",
            headers={},
        )

    def open_uploads(self, key: str) -> list[str]:
        listed = self.server.client().list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == key]

    async def test_upload_opened_but_never_recorded_is_aborted_after_the_lease(self):
        real_key = "vb/crashed-create"
        intent = await self.store.begin_write(self.bucket, real_key, 300)
        await self.backend.create_multipart(real_key, {})
        self.assertEqual(len(self.open_uploads(real_key)), 1)
        # ... the daemon dies here: no record, the intent stays.
        cleaner = DeletionWorker(self.store, self.pool, period=3600, clock=reactor)
        cleaner.running = True
        await cleaner.run()
        self.assertEqual(len(self.open_uploads(real_key)), 1, "aborted while the lease still ran")
        self.now += datetime.timedelta(seconds=301)
        # Leases follow the database's clock: make this one run out by it.
        await self.store.renew_write(intent.id, -1)
        await cleaner.run()
        self.assertEqual(self.open_uploads(real_key), [])
        # A late record of it is refused: the intent is gone.
        record = self.record("u1", real_key, "gone")
        await self.assertFailure(self.store.create_multipart(record, intent.id), WriteIntentExpired)
        self.assertIsNone(await self.store.get_multipart("u1"))

    async def test_recorded_upload_settles_its_intent(self):
        real_key = "vb/recorded"
        intent = await self.store.begin_write(self.bucket, real_key, 300)
        upload_id = await self.backend.create_multipart(real_key, {})
        record = self.record("u2", real_key, upload_id)
        await self.store.create_multipart(record, intent.id)
        self.now += datetime.timedelta(seconds=301)
        cleaner = DeletionWorker(self.store, self.pool, period=3600, clock=reactor)
        cleaner.running = True
        await cleaner.run()
        self.assertEqual(self.open_uploads(real_key), [upload_id])  # ours: left alone
        await self.backend.abort_multipart(real_key, upload_id)


class TwinIntentTests(_CleanerCase):
    """
    A write intent whose COMMIT was lost with the database connection may
    have been committed anyway; the retried transaction then takes a second
    intent for the same real key.  The upload commits under the second; the
    first expires and queues the key for deletion.  The cleaner must keep
    the bytes: a stored object refers to them.
    """

    async def test_cleaner_keeps_the_object_a_twin_intent_committed(self):
        from s3balance.store.interfaces import Location, ObjectRecord

        real_key = "vb/twin"
        await self.store.begin_write(self.bucket, real_key, 300)  # the lost COMMIT
        twin = await self.store.begin_write(self.bucket, real_key, 300)  # its retry
        client = self.server.client()
        etag = client.put_object(Bucket=self.bucket, Key=real_key, Body=b"kept")["ETag"]
        record = ObjectRecord(
            bucket="vb",
            key="k",
            size=4,
            etag=etag,
            last_modified=T0,
            content_type="",
            headers={},
            checksums={},
            locations=(Location(self.bucket, real_key),),
        )
        await self.store.commit_object(twin.id, record)
        self.now += datetime.timedelta(seconds=301)
        cleaner = DeletionWorker(self.store, self.pool, period=3600, clock=reactor)
        cleaner.running = True
        await cleaner.run()
        self.assertEqual(client.get_object(Bucket=self.bucket, Key=real_key)["Body"].read(), b"kept")
        self.assertEqual(await self.store.queued_deletions(), [])  # dropped, not retried forever
        stored = await self.store.get_object("vb", "k")
        self.assertEqual(stored.locations, (Location(self.bucket, real_key),))
