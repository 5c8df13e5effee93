"""
No path inside s3balance destroys a locked version's bytes: real daemons
(SQLite store) over two real SeaweedFS backends, a bucket made with Object
Lock holding versions under COMPLIANCE retention and under a legal hold,
most of them noncurrent (an unlocked write and a delete marker on top).
After each path, every locked version still reads back by its id, byte
for byte, with its lock, and a delete by its id is still refused:

  - the deletion worker, given a deletion of a locked version's real key
    (as a replaced or abandoned copy would queue it): its guard
    (L{s3balance.store.interfaces.IMetadataStore.is_referenced}) keeps the
    bytes, and the queue empties;
  - C{fsck --repair}: a locked version is no orphan; and with
    C{--drop-missing} a locked version whose copy was lost keeps its row;
  - DeleteBucket: 409 BucketNotEmpty while any version is left;
  - the stale multipart sweep, aborting an upload of a locked key;
  - the lifecycle expirer with an Expiration rule: one delete marker on
    top, nothing removed, however many passes;
  - a drain of the backend holding the versions: afterwards they are on
    the other backend, readable and still locked.

The lifecycle expirer's NoncurrentVersionExpiration runs on the store on
SQLite with a controlled clock (as C{tests.test_lifecycle_versions}): a
noncurrent version under COMPLIANCE retention is kept (and counted as
refused) until its retention ends, one under a legal hold for as long as
the hold stays, while an unlocked one beside them goes.
"""

from __future__ import annotations

import datetime
import hashlib
import sqlite3
import urllib.request
from typing import Any

from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, func, select
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from s3balance.ops.lifecycle import LifecycleExpirer, LifecycleMetrics
from s3balance.s3 import lifecycle_rules
from s3balance.store import tables, versions
from s3balance.store.connector import MetadataStore
from s3balance.store.deletion_queue import REASON_DELETED, queue_deletion
from s3balance.store.interfaces import ObjectRecord
from tests import dbfixtures
from tests.daemon import Gateway, poll, start_gateway
from tests.harness import unique_bucket_name
from tests.test_drain import Drained
from tests.test_fsck import lines_with, run_fsck
from tests.test_lifecycle_expirer import Paused, StubGateway, rule_xml
from tests.test_store import BUCKET, make_record

DAY = datetime.timedelta(days=1)


def soon(days: float = 2.0) -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + days * DAY).replace(microsecond=0)


def body_of(name: str, size: int = 2000) -> bytes:
    return (hashlib.sha256(name.encode()).hexdigest().encode() * (size // 64 + 1))[:size]


class LockedVersions:
    """
    A bucket of alice's made with Object Lock on a daemon, and the locked
    versions written into it: C{kept} maps each version id to (key, body).
    """

    def __init__(self, client: Any, dsn: str) -> None:
        self.client = client
        self.dsn = dsn
        self.bucket = unique_bucket_name("lockp")
        client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
        self.kept: dict[str, tuple[str, bytes]] = {}

    def write(self, keys: int = 2) -> None:
        """
        For each of C{keys} keys: a version under COMPLIANCE retention, one
        under a legal hold, then an unlocked version on top; the last key
        gets a delete marker too.  Round-robin placement puts some of each
        on both backends.
        """
        for n in range(keys):
            key = f"data/{n}"
            self.put(key, "compliance", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
            self.put(key, "held", ObjectLockLegalHoldStatus="ON")
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"unlocked")
        self.client.delete_object(Bucket=self.bucket, Key=f"data/{keys - 1}")

    def put(self, key: str, name: str, **lock: Any) -> str:
        body = body_of(f"{self.bucket}/{key}/{name}")
        version = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **lock)["VersionId"]
        self.kept[version] = (key, body)
        return version

    def locations(self) -> dict[str, tuple[str, str]]:
        """Version id -> (backend, real key) of every version of the bucket with bytes, from the database."""
        with sqlite3.connect(f"file:{self.dsn}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT o.version_id, l.backend, l.real_key FROM objects o "
                "JOIN object_locations l ON l.object_id = o.id WHERE o.bucket = ?",
                (self.bucket,),
            ).fetchall()
        return {version: (backend, real_key) for version, backend, real_key in rows}

    def versions(self) -> list[str]:
        listed = self.client.list_object_versions(Bucket=self.bucket)
        return sorted(v["VersionId"] for v in listed.get("Versions", []))


def metric(endpoint: str, name: str, label: str) -> float:
    """The sum of C{name}'s samples with C{label} on a daemon's /metrics."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


class LockPathCase(SynchronousTestCase):
    gateway: Gateway

    def start(self, **balancer: Any) -> LockedVersions:
        """A new daemon (the C{balancer} settings over the tests' own) with a bucket of locked versions."""
        self.gateway = start_gateway("lockpaths", balancer=balancer)
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.dsn = self.gateway.daemon.config["database"]["dsn"]
        locked = LockedVersions(self.client, self.dsn)
        locked.write()
        return locked

    def assertKept(self, locked: LockedVersions) -> None:
        """
        Every locked version reads back by id, byte for byte, with its lock
        (COMPLIANCE retention or a legal hold), and a delete by its id, with
        the bypass, answers 403 AccessDenied.
        """
        for version, (key, body) in locked.kept.items():
            got = locked.client.get_object(Bucket=locked.bucket, Key=key, VersionId=version)
            self.assertEqual(got["Body"].read(), body, (key, version))
            self.assertTrue(got.get("ObjectLockMode") == "COMPLIANCE" or got.get("ObjectLockLegalHoldStatus") == "ON",
                            got)
            with self.assertRaises(ClientError) as raised:
                locked.client.delete_object(Bucket=locked.bucket, Key=key, VersionId=version,
                                            BypassGovernanceRetention=True)
            self.assertEqual(raised.exception.response["Error"]["Code"], "AccessDenied")

    def assertOnBackends(self, locked: LockedVersions) -> None:
        """Each locked version's bytes are on the backend its location names (read there directly)."""
        direct = {bucket: server.client()
                  for server, bucket in zip(self.gateway.backends, self.gateway.real_buckets, strict=True)}
        locations = locked.locations()
        for version, (_, body) in locked.kept.items():
            backend, real_key = locations[version]
            self.assertEqual(direct[backend].get_object(Bucket=backend, Key=real_key)["Body"].read(), body)

    def runs(self, job: str) -> float:
        return metric(self.gateway.daemon.endpoint, "s3balance_background_runs_total", f'job="{job}"')

    def wait_runs(self, job: str, count: int = 2, timeout: float = 20.0) -> None:
        """Until C{job} ran C{count} more times on the daemon (each run starting after this call)."""
        target = self.runs(job) + count + 1
        poll(lambda: self.runs(job) >= target, timeout=timeout, message=f"{job} did not run {count} times")

    def queued(self) -> int:
        with sqlite3.connect(f"file:{self.dsn}?mode=ro", uri=True, timeout=10) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM deletion_queue").fetchone()[0])


class DeletionWorkerTests(LockPathCase):
    def test_a_queued_deletion_of_a_locked_versions_bytes_is_dropped(self) -> None:
        """
        A deletion queued by hand for the real key of every locked version
        (the worker's input from a replaced, deleted or abandoned copy): the
        worker's guard finds the key referenced and drops the entry; the
        bytes stay.
        """
        locked = self.start()
        engine = create_engine(f"sqlite:///{self.dsn}", connect_args={"timeout": 10})
        self.addCleanup(engine.dispose)
        now = datetime.datetime.now(datetime.UTC)
        locations = locked.locations()
        with engine.begin() as conn:
            for version in locked.kept:
                backend, real_key = locations[version]
                queue_deletion(conn, backend, real_key, REASON_DELETED, now)
            count = conn.execute(select(func.count()).select_from(tables.deletion_queue)).scalar_one()
        self.assertGreaterEqual(count, len(locked.kept))
        poll(lambda: self.queued() == 0, timeout=20, message="the deletion worker left its queue")
        self.assertKept(locked)
        self.assertOnBackends(locked)


class FsckTests(LockPathCase):
    def test_repair_finds_no_orphan_among_locked_versions(self) -> None:
        """C{fsck --repair --older-than 0s}: consistent, nothing deleted; every locked version kept."""
        locked = self.start()
        poll(lambda: self.queued() == 0, timeout=20, message="the deletion worker left its queue")
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair")
        self.assertEqual(code, 0, output)
        self.assertIn("result: consistent", output)
        self.assertEqual(lines_with(output, "orphan"), [], output)
        self.assertKept(locked)
        self.assertOnBackends(locked)

    def test_drop_missing_keeps_a_locked_versions_row(self) -> None:
        """
        A locked version whose copy was deleted behind the daemon's back:
        C{fsck --repair --drop-missing --force} reports it missing and keeps
        its row (the record of what was locked), saying why; the other
        locked versions are untouched.
        """
        locked = self.start()
        victim = next(iter(locked.kept))
        backend, real_key = locked.locations()[victim]
        server = self.gateway.backends[self.gateway.real_buckets.index(backend)]
        server.client().delete_object(Bucket=backend, Key=real_key)
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair", "--drop-missing", "--force")
        self.assertEqual(code, 1, output)
        self.assertNotIn("DROPPED", output)
        self.assertEqual(len(lines_with(output, "missing:")), 1, output)
        self.assertIn("under Object Lock", output)
        self.assertIn(victim, locked.versions())
        self.assertEqual(locked.locations()[victim], (backend, real_key))
        lost = locked.kept.pop(victim)
        self.assertKept(locked)
        head = self.client.head_object(Bucket=locked.bucket, Key=lost[0], VersionId=victim)
        self.assertEqual(head["ContentLength"], len(lost[1]))


class DeleteBucketTests(LockPathCase):
    def test_a_bucket_with_locked_versions_is_not_empty(self) -> None:
        """
        DeleteBucket after every version that may go went (delete markers,
        unlocked versions): 409 BucketNotEmpty; the bucket and its locked
        versions stay.
        """
        locked = self.start()
        listed = self.client.list_object_versions(Bucket=locked.bucket)
        for entry in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
            if entry["VersionId"] not in locked.kept:
                self.client.delete_object(Bucket=locked.bucket, Key=entry["Key"], VersionId=entry["VersionId"])
        self.assertEqual(locked.versions(), sorted(locked.kept))
        with self.assertRaises(ClientError) as raised:
            self.client.delete_bucket(Bucket=locked.bucket)
        response = raised.exception.response
        self.assertEqual((response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]),
                         (409, "BucketNotEmpty"))
        self.client.head_bucket(Bucket=locked.bucket)
        self.assertKept(locked)


class StaleUploadTests(LockPathCase):
    def test_the_sweep_aborts_an_upload_and_keeps_the_locked_versions(self) -> None:
        """
        With C{multipart_max_age} 3s, an upload of a locked key (itself
        asking for COMPLIANCE retention) left idle is aborted by the sweep;
        the versions of that key, a completed multipart one among them,
        stay.
        """
        locked = self.start(multipart_max_age="3s")
        until = soon()
        upload = self.client.create_multipart_upload(Bucket=locked.bucket, Key="data/0", ObjectLockMode="COMPLIANCE",
                                                     ObjectLockRetainUntilDate=until)["UploadId"]
        body = body_of("multipart", 6 * 1024 * 1024)
        first = self.client.upload_part(Bucket=locked.bucket, Key="data/0", UploadId=upload, PartNumber=1,
                                        Body=body[:5 * 1024 * 1024])
        second = self.client.upload_part(Bucket=locked.bucket, Key="data/0", UploadId=upload, PartNumber=2,
                                         Body=body[5 * 1024 * 1024:])
        done = self.client.complete_multipart_upload(Bucket=locked.bucket, Key="data/0", UploadId=upload,
                                                     MultipartUpload={"Parts": [
                                                         {"PartNumber": 1, "ETag": first["ETag"]},
                                                         {"PartNumber": 2, "ETag": second["ETag"]}]})
        locked.kept[done["VersionId"]] = ("data/0", body)
        idle = self.client.create_multipart_upload(Bucket=locked.bucket, Key="data/0", ObjectLockMode="COMPLIANCE",
                                                   ObjectLockRetainUntilDate=until)["UploadId"]
        self.client.upload_part(Bucket=locked.bucket, Key="data/0", UploadId=idle, PartNumber=1, Body=b"idle part")

        def aborted() -> bool:
            return not self.client.list_multipart_uploads(Bucket=locked.bucket).get("Uploads")

        poll(aborted, timeout=30, message="the sweep did not abort the idle upload")
        poll(lambda: self.queued() == 0, timeout=20, message="the deletion worker left its queue")
        self.assertKept(locked)
        self.assertOnBackends(locked)


class LifecycleTests(LockPathCase):
    def test_expiration_adds_one_delete_marker_and_removes_nothing(self) -> None:
        """
        An Expiration rule whose date is past, applied every second: each
        key whose latest is a version gets one delete marker, however many
        passes follow; every version stays.
        """
        locked = self.start(lifecycle_period="1s")
        before = locked.versions()
        self.client.put_bucket_lifecycle_configuration(Bucket=locked.bucket, LifecycleConfiguration={"Rules": [{
            "ID": "expire-all", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)}}]})

        def markers() -> list[tuple[str, bool]]:
            listed = self.client.list_object_versions(Bucket=locked.bucket)
            return sorted((m["Key"], m["IsLatest"]) for m in listed.get("DeleteMarkers", []))

        # data/1 had a marker already; data/0 gets one.
        poll(lambda: markers() == [("data/0", True), ("data/1", True)], timeout=20,
             message=f"the expirer added no marker: {markers()}")
        self.wait_runs("lifecycle")
        self.assertEqual(markers(), [("data/0", True), ("data/1", True)])
        self.assertEqual(locked.versions(), before)
        self.assertKept(locked)
        self.assertOnBackends(locked)


class DrainTests(LockPathCase):
    def test_a_drain_moves_locked_versions_and_they_stay_locked(self) -> None:
        """
        A drain of the first backend: every locked version's copy moves to
        the second, reads back byte for byte by its id with its lock, and
        still may not be deleted; the first backend's real bucket empties.
        """
        drained = Drained(self, name="lockdrain")
        dsn = drained.config["database"]["dsn"]
        locked = LockedVersions(drained.client, dsn)
        locked.write(3)
        placed = {backend for backend, _ in locked.locations().values()}
        self.assertEqual(placed, set(drained.real))
        heads = {version: drained.client.head_object(Bucket=locked.bucket, Key=key, VersionId=version)
                 for version, (key, _) in locked.kept.items()}
        result = drained.cli(drained.b1, "--rate", "0", "--wait", "--no-progress")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual({backend for backend, _ in locked.locations().values()}, {drained.b2})
        poll(lambda: not drained.real_objects(0), timeout=20, message="b1 still holds objects")
        for version, (key, _) in locked.kept.items():
            head = drained.client.head_object(Bucket=locked.bucket, Key=key, VersionId=version)
            for field in ("ETag", "ContentLength", "LastModified", "ObjectLockMode", "ObjectLockRetainUntilDate",
                          "ObjectLockLegalHoldStatus"):
                self.assertEqual(head.get(field), heads[version].get(field), (version, field))
        self.assertKept(locked)


# Day 0 of the store's clock, midnight UTC.
D0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


class NoncurrentExpiryTests(unittest.TestCase):
    """The lifecycle expirer's NoncurrentVersionExpiration on the store on SQLite, the clock a controlled one."""

    async def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(D0.timestamp())
        self.store = MetadataStore(dbfixtures.store_database(self, "sqlite"), max_threads=4, now=self.now)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.create_bucket(BUCKET)
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        self.registry = CollectorRegistry()
        self.job = LifecycleExpirer(StubGateway(self.store, self.clock), self.clock,  # type: ignore[arg-type]
                                    holder="a", lifecycle_metrics=LifecycleMetrics(self.registry))
        self.job.running = True
        self.job.pauses = Paused()
        self.written = 0

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)

    def at(self, moment: datetime.datetime) -> None:
        self.clock.advance((moment - self.now()).total_seconds())

    async def put(self, **lock: Any) -> ObjectRecord:
        """A version of "k" written now, with the lock C{lock} (lock_mode, lock_until, legal_hold)."""
        self.written += 1
        real_key = f"vb/k/{self.written}"
        intent = await self.store.begin_write("b1", real_key, 60)
        return await self.store.commit_object(intent.id, make_record("k", real_key, last_modified=self.now(), **lock))

    async def remaining(self) -> list[str]:
        page = await self.store.list_versions(BUCKET, "", "", "", None, 1000)
        return sorted(record.version_id or "null" for record, _ in page.versions)

    async def test_noncurrent_expiration_keeps_locked_versions(self) -> None:
        """
        NoncurrentDays 1, passes ten days on: the unlocked noncurrent
        version goes; the one under COMPLIANCE retention (thirty days) and
        the one under a legal hold stay, with their locations, and are
        counted as refused.  Once the retention ended, that version goes;
        the held one stays until its hold is released.
        """
        compliance = await self.put(lock_mode=versions.COMPLIANCE, lock_until=D0 + 30 * DAY)
        self.at(D0 + datetime.timedelta(hours=1))
        held = await self.put(legal_hold=True)
        self.at(D0 + datetime.timedelta(hours=2))
        unlocked = await self.put()
        self.at(D0 + datetime.timedelta(hours=3))
        current = await self.put()
        body = ("<LifecycleConfiguration>" + rule_xml(
            "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>",
            "<Filter><Prefix></Prefix></Filter>") + "</LifecycleConfiguration>").encode()
        await self.store.set_bucket_lifecycle(BUCKET, lifecycle_rules.dump(lifecycle_rules.parse_document(body)))
        self.at(D0 + 10 * DAY)
        await self.job.run()
        await self.job.run()
        kept = sorted(v.version_id for v in (compliance, held, current))
        self.assertEqual(await self.remaining(), kept)
        self.assertNotIn(unlocked.version_id, await self.remaining())
        for record in (compliance, held):
            stored = await self.store.get_version(BUCKET, "k", record.version_id)
            self.assertEqual(stored.locations, record.locations)
        self.assertEqual(self.registry.get_sample_value("s3balance_lifecycle_versions_refused_total"), 4.0)
        self.assertTrue(await self.store.is_referenced("b1", compliance.locations[0].real_key))
        self.at(D0 + 31 * DAY)
        await self.job.run()
        self.assertEqual(await self.remaining(), sorted(v.version_id for v in (held, current)))
        await self.store.set_legal_hold(BUCKET, "k", held.version_id, False)
        await self.job.run()
        self.assertEqual(await self.remaining(), [current.version_id])
