"""
A backend's max_size holds across daemons: every write reserves its bytes in
the database (its write intent's size; an UploadPart's stay with its upload
until it is completed or aborted), checked in the intent's transaction
against the used bytes and every daemon's reservations.

The store's tests run on SQLite, PostgreSQL and MariaDB; the daemons' share
one SQLite file and two SeaweedFS servers.
"""

from __future__ import annotations

import http.client
import sqlite3
import threading
import urllib.parse
from typing import Any, Optional

from botocore.exceptions import ClientError
from twisted.internet.defer import DeferredList
from twisted.trial.unittest import SynchronousTestCase, TestCase

from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import BackendFull, MultipartRecord, WriteIntentExpired
from tests import dbfixtures
from tests.daemon import Daemon, PatternStream, backend_entry, base_config, database_counts, poll, sign
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.test_store import T0

MIB = 1024**2


# -- the store ------------------------------------------------------------------


class StoreReservationsMixin:
    """Subclasses set C{kind} ("sqlite", dbfixtures.POSTGRES or dbfixtures.MYSQL)."""

    kind: str

    async def setUp(self):
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = await self.start_store()

    async def start_store(self) -> MetadataStore:
        store = MetadataStore(self.url, max_threads=8)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def assertRefused(self, store: MetadataStore, size: int, max_size: int = 10) -> BackendFull:
        try:
            await store.begin_write("b1", "vb/refused", 60, size, max_size)
        except BackendFull as full:
            return full
        self.fail(f"a reservation of {size} bytes was granted")

    async def test_a_write_that_does_not_fit_is_refused_and_records_nothing(self):
        await self.store.begin_write("b1", "vb/1", 60, 6, 10)
        full = await self.assertRefused(self.store, 5)
        self.assertEqual((full.backend, full.used, full.reserved, full.size), ("b1", 0, 6, 5))
        self.assertFalse(await self.store.is_referenced("b1", "vb/refused"))
        await self.store.begin_write("b1", "vb/2", 60, 4, 10)  # exactly full fits
        # Another backend, and writes without a limit, are not concerned.
        await self.store.begin_write("b2", "vb/3", 60, 10, 10)
        await self.store.begin_write("b1", "vb/4", 60, 100)

    async def test_two_stores_on_one_database_never_reserve_beyond_max_size(self):
        stores = [self.store, await self.start_store()]
        attempts = [stores[i % 2].begin_write("b1", f"vb/{i}", 60, 1, 10) for i in range(40)]
        results = await DeferredList(attempts, consumeErrors=True)
        granted = [value for ok, value in results if ok]
        refused = [value for ok, value in results if not ok]
        self.assertEqual(len(granted), 10)
        for failure in refused:
            failure.trap(BackendFull)

    async def test_an_ended_write_releases_its_bytes(self):
        abandoned = await self.store.begin_write("b1", "vb/a", 60, 10, 10)
        await self.assertRefused(self.store, 1)
        await self.store.abandon_write(abandoned.id, True)
        await self.store.begin_write("b1", "vb/b", -10, 10, 10)  # expired by the database's clock
        await self.assertRefused(self.store, 1)
        self.assertEqual(await self.store.expired_writes(), 1)
        await self.store.begin_write("b1", "vb/c", 60, 10, 10)
        self.assertEqual(await self.queued(), [("b1", "vb/a"), ("b1", "vb/b")])

    async def queued(self) -> list[tuple[str, str]]:
        return sorted((q.backend, q.real_key) for q in await self.store.queued_deletions(limit=100))

    async def test_a_write_of_unknown_length_grows_its_reservation(self):
        intent = await self.store.begin_write("b1", "vb/chunked", 60, 5, 10)
        await self.store.grow_write(intent.id, "b1", 5, 10)
        try:
            await self.store.grow_write(intent.id, "b1", 1, 10)
        except BackendFull:
            pass
        else:
            self.fail("the reservation grew beyond max_size")
        await self.assertRefused(self.store, 1)
        await self.store.abandon_write(intent.id, True)
        try:
            await self.store.grow_write(intent.id, "b1", 1)
        except WriteIntentExpired:
            pass
        else:
            self.fail("a reservation grew under an intent that is gone")
        await self.store.begin_write("b1", "vb/after", 60, 10, 10)

    async def test_parts_stay_reserved_until_their_upload_ends(self):
        await self.store.sync_config_buckets(["vb"])  # an upload needs its bucket
        for upload_id in ("u-abort", "u-complete"):
            create = await self.store.begin_write("b1", f"vb/{upload_id}", 60, 0, 10)
            record = MultipartRecord(
                upload_id=upload_id,
                bucket="vb",
                key=upload_id,
                backend="b1",
                real_key=f"vb/{upload_id}",
                backend_upload_id="backend-" + upload_id,
                initiated=T0,
                content_type="",
                headers={},
            )
            await self.store.create_multipart(record, create.id)
            part = await self.store.begin_write("b1", f"vb/{upload_id}", 60, 4, 10)
            await self.store.record_part(part.id, upload_id, 4)
        full = await self.assertRefused(self.store, 3)
        self.assertEqual(full.reserved, 8)
        await self.store.abort_multipart("u-abort", True)
        await self.store.begin_write("b1", "vb/fits", 60, 6, 10)


class SQLiteStoreReservations(StoreReservationsMixin, TestCase):
    kind = "sqlite"


class PostgreSQLStoreReservations(StoreReservationsMixin, TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBStoreReservations(StoreReservationsMixin, TestCase):
    kind = dbfixtures.MYSQL


# -- daemons ----------------------------------------------------------------------

VBUCKET = "vb-room"


class Cluster:
    """
    Two daemons on one SQLite database in front of one real bucket of
    C{max_size} 10 MiB ("limited"); with C{spare}, the second daemon also
    has an unlimited real bucket ("spare") to place on.  Their cluster-wide
    jobs' lease (C{balancer.job_lease}) is short: when the first daemon dies
    holding the deleter's, the second takes it within JOB_LEASE seconds.
    """

    JOB_LEASE = "3s"

    def __init__(self, name: str, spare: bool = False) -> None:
        first, second = shared_seaweedfs_pair()
        self.servers = {"limited": first, "spare": second}
        self.buckets = {"limited": unique_bucket_name("real"), "spare": unique_bucket_name("real")}
        first.create_bucket(self.buckets["limited"])
        second.create_bucket(self.buckets["spare"])
        workdir = harness_dir() / unique_bucket_name(name)
        workdir.mkdir(parents=True)
        limited = backend_entry(first, self.buckets["limited"], max_size=10 * MIB)
        backends = [limited]
        balancer = {"job_lease": self.JOB_LEASE}
        self.a = Daemon(base_config(backends, [VBUCKET], workdir, balancer=balancer), name=f"{name}-a")
        if spare:
            backends = [limited, backend_entry(second, self.buckets["spare"])]
        config = base_config(backends, [VBUCKET], workdir, balancer=balancer)
        config["database"] = self.a.config["database"]  # the same file
        self.b = Daemon(config, name=f"{name}-b")

    def start(self, testcase) -> Cluster:
        self.a.start()
        testcase.addCleanup(self.a.stop)
        self.b.start()
        testcase.addCleanup(self.b.stop)
        return self

    def keys(self, backend: str) -> list[str]:
        listing = self.servers[backend].client().list_objects_v2(Bucket=self.buckets[backend])
        return [item["Key"] for item in listing.get("Contents", [])]

    def intents(self) -> int:
        return database_counts(self.a, VBUCKET)["write_intents"]


def put(daemon: Daemon, key: str, size: int, headers: Optional[dict] = None) -> int:
    """A PUT of C{size} bytes (no retries); -> the status."""
    path = f"/{VBUCKET}/{key}"
    url = daemon.endpoint + path
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        chunked = size < 0
        headers = dict(headers or {})
        if not chunked:
            headers["Content-Length"] = str(size)
        body = PatternStream(abs(size), seed=3)
        conn.request("PUT", path, body=iter(body), headers=sign("PUT", url, headers), encode_chunked=chunked)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class SlowPut:
    """A PUT whose body trickles in a thread until L{finish} lets the rest go."""

    def __init__(self, daemon: Daemon, key: str, size: int, headers: Optional[dict] = None) -> None:
        self.release = threading.Event()
        self.result: dict[str, Any] = {}
        path = f"/{VBUCKET}/{key}"
        url = daemon.endpoint + path
        parts = urllib.parse.urlsplit(url)
        signed = sign("PUT", url, {"Content-Length": str(size), **(headers or {})})

        def body():
            source = PatternStream(size, seed=5, block=256 * 1024)
            yield source.read(256 * 1024)
            self.release.wait(60)
            yield from source

        def run() -> None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            try:
                conn.request("PUT", path, body=body(), headers=signed)
                response = conn.getresponse()
                self.result["status"] = response.status
                response.read()
            except Exception as error:  # the daemon may be killed: that is the point
                self.result["error"] = error
            finally:
                conn.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> Any:
        self.release.set()
        self.thread.join(60)
        return self.result.get("status", self.result.get("error"))


class DaemonReservationTests(SynchronousTestCase):
    def hold(self, daemon: Daemon, cluster: Cluster, sizes: list[int], **headers: str) -> list[SlowPut]:
        """Uploads in flight on C{daemon}, once their intents are in the database."""
        before = cluster.intents()
        uploads = [SlowPut(daemon, f"held-{i}", size, headers or None) for i, size in enumerate(sizes)]
        for upload in uploads:
            self.addCleanup(upload.release.set)
        poll(lambda: cluster.intents() == before + len(sizes), timeout=20, message="the uploads did not start")
        return uploads

    def test_two_daemons_share_a_backends_room(self) -> None:
        cluster = Cluster("share").start(self)
        held = self.hold(cluster.a, cluster, [4 * MIB, 4 * MIB])
        # 8 MiB are in flight through the first daemon: the second has room for 2.
        self.assertEqual(put(cluster.b, "too-big", 4 * MIB), 507)
        self.assertEqual(put(cluster.b, "fits", 2 * MIB), 200)
        self.assertEqual([upload.finish() for upload in held], [200, 200])
        self.assertEqual(len(cluster.keys("limited")), 3)

    def test_a_backend_full_by_another_daemons_uploads_is_passed_over(self) -> None:
        cluster = Cluster("elsewhere", spare=True).start(self)
        held = self.hold(cluster.a, cluster, [4 * MIB, 4 * MIB])
        # Round-robin would put one of these on the limited backend.
        for key in ("one", "two"):
            self.assertEqual(put(cluster.b, key, 4 * MIB), 200)
        self.assertEqual([upload.finish() for upload in held], [200, 200])
        self.assertEqual(len(cluster.keys("limited")), 2)
        self.assertEqual(len(cluster.keys("spare")), 2)

    def test_multipart_parts_count_until_the_upload_ends(self) -> None:
        cluster = Cluster("parts").start(self)
        s3a, s3b = cluster.a.client(), cluster.b.client()
        upload_id = s3a.create_multipart_upload(Bucket=VBUCKET, Key="big")["UploadId"]
        s3a.upload_part(Bucket=VBUCKET, Key="big", UploadId=upload_id, PartNumber=1, Body=b"p" * (6 * MIB))
        self.assertEqual(put(cluster.b, "five", 5 * MIB), 507)
        self.assertEqual(put(cluster.b, "four", 4 * MIB), 200)
        # The first part's 6 MiB stay reserved (whatever the usage counters
        # know of "four" yet): a second part of 5 MiB through the other
        # daemon does not fit.
        with self.assertRaises(ClientError) as refused:
            s3b.upload_part(Bucket=VBUCKET, Key="big", UploadId=upload_id, PartNumber=2, Body=b"q" * (5 * MIB))
        self.assertEqual(refused.exception.response["Error"]["Code"], "InsufficientStorage")
        s3a.abort_multipart_upload(Bucket=VBUCKET, Key="big", UploadId=upload_id)
        self.assertEqual(put(cluster.b, "after-abort", 5 * MIB), 200)

    def test_a_failed_upload_releases_its_reservation(self) -> None:
        cluster = Cluster("failed").start(self)
        (held,) = self.hold(cluster.a, cluster, [8 * MIB], **{"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
        self.assertEqual(put(cluster.b, "while-held", 4 * MIB), 507)
        self.assertEqual(held.finish(), 400)  # BadDigest
        self.assertEqual(put(cluster.b, "after", 8 * MIB), 200)

    def test_a_crashed_upload_holds_its_reservation_until_its_lease_ends(self) -> None:
        cluster = Cluster("crashed").start(self)
        (held,) = self.hold(cluster.a, cluster, [8 * MIB])
        cluster.a.kill()
        held.finish()
        self.assertEqual(put(cluster.b, "while-leased", 4 * MIB), 507)
        # Let the lease run out (it is an hour), as the database's clock would.
        path = cluster.a.config["database"]["dsn"]
        with sqlite3.connect(path, timeout=10) as connection:
            connection.execute("UPDATE write_intents SET lease_until = '2000-01-01 00:00:00.000000'")
        # The dead daemon held the deleter's job lease: the second daemon's
        # deleter takes the expired intent once that lease ran out too.
        poll(lambda: cluster.intents() == 0, timeout=30, message="the expired intent was not taken")
        self.assertEqual(put(cluster.b, "after-lease", 8 * MIB), 200)

    def test_an_upload_of_unknown_length_reserves_part_by_part(self) -> None:
        cluster = Cluster("chunked").start(self)
        # Two parts of 5 MiB fit; the third does not.
        self.assertEqual(put(cluster.a, "chunked", -12 * MIB), 507)
        poll(lambda: cluster.intents() == 0, timeout=20, message="the refused upload kept its intent")
        self.assertEqual(put(cluster.b, "chunked-fits", -9 * MIB), 200)
