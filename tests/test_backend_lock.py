"""
Object Lock on the backends' copies (s3balance.backends.retention), through
a running daemon over two SeaweedFS real buckets made with Object Lock and
configured with C{object_lock: true}, every object kept on both
(C{balancer.replicas: 2}):

  - a locked version's copies carry its retention and legal hold on the
    backend, and the backend refuses to delete them by version id: written
    by PutObject (both copies at once), CopyObject, and a multipart upload
    (its second copy made by the replica service's copier, as drain and
    rebalance copy);
  - PutObjectRetention and PutObjectLegalHold are mirrored: lengthened,
    shortened with the bypass, the hold lifted;
  - a copy s3balance deletes leaves no version and no delete marker behind
    on the versioned real bucket: an object of a bucket without Object
    Lock, overwritten or deleted, and a GOVERNANCE version deleted with the
    bypass;
  - a copy the backend cannot lock (a real bucket without Object Lock
    configured with C{object_lock: true}) is not recorded: the write fails
    and nothing is left.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError
from sqlalchemy import create_engine, select
from twisted.trial.unittest import SynchronousTestCase

from s3balance.store import tables
from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.gateways import Lazy
from tests.harness import boto3_client, harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.test_import import run_admin

DAY = datetime.timedelta(days=1)
# A credential allowed to bypass GOVERNANCE retention (s3.object_lock.may_bypass).
LOCKER_SECRET = "locker-secret-0123456789"


def soon(days: float = 1.0) -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + days * DAY).replace(microsecond=0)


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


class LockedBackends:
    """A daemon over two real buckets with Object Lock; C{locked}: whether the config says so."""

    def __init__(self, name: str, lock_enabled: bool = True) -> None:
        self.servers = shared_seaweedfs_pair()
        self.real = [unique_bucket_name("locked"), unique_bucket_name("locked")]
        for server, bucket in zip(self.servers, self.real, strict=True):
            server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=lock_enabled)
        workdir = Path(harness_dir()) / f"{name}-{id(self)}"
        workdir.mkdir(parents=True, exist_ok=True)
        backends = [
            backend_entry(server, bucket, object_lock=True)
            for server, bucket in zip(self.servers, self.real, strict=True)
        ]
        config = base_config(
            backends,
            ["vb-default"],
            workdir,
            balancer={"replicas": 2, "replication": "sync"},
            s3api={"credentials": [
                {"access_key": "locker", "secret_key": LOCKER_SECRET, "bypass_governance_retention": True},
            ]},
        )
        self.daemon = Daemon(config, name=name).start()
        self.client = boto3_client(self.daemon.endpoint, "locker", LOCKER_SECRET)

    def copies(self, bucket: str, key: str) -> list[tuple[Any, str, str]]:
        """(direct client, real bucket, real key) of every backend copy of the virtual object, by its metadata."""
        found = []
        for server, real in zip(self.servers, self.real, strict=True):
            direct = server.client()
            for item in direct.list_objects_v2(Bucket=real).get("Contents", []):
                meta = direct.head_object(Bucket=real, Key=item["Key"])["Metadata"]
                if meta.get("s3balance-bucket") == bucket and meta.get("s3balance-key") == key:
                    found.append((direct, real, item["Key"]))
        return found

    def versions(self, real: str, real_key: str) -> list[str]:
        """Version ids (versions and delete markers) of a real key, on whichever backend holds C{real}."""
        server = self.servers[self.real.index(real)]
        answer = server.client().list_object_versions(Bucket=real, Prefix=real_key)
        return [
            entry["VersionId"]
            for entry in answer.get("Versions", []) + answer.get("DeleteMarkers", [])
            if entry["Key"] == real_key
        ]

    def all_versions(self) -> dict[str, list[str]]:
        """Every key with a version or delete marker, by real bucket."""
        found = {}
        for server, real in zip(self.servers, self.real, strict=True):
            answer = server.client().list_object_versions(Bucket=real)
            found[real] = sorted(
                entry["Key"] for entry in answer.get("Versions", []) + answer.get("DeleteMarkers", [])
            )
        return found


locked_backends = Lazy(lambda: LockedBackends("backend-lock"), stop=lambda backends: backends.daemon.stop())
unlockable_backends = Lazy(
    lambda: LockedBackends("backend-nolock", lock_enabled=False), stop=lambda backends: backends.daemon.stop()
)


class BackendLockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.backends = locked_backends()
        self.client = self.backends.client

    def locked_bucket(self, **rule: Any) -> str:
        bucket = unique_bucket_name("vlock")
        self.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        if rule:
            self.client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule},
            })
        return bucket

    def assertLockedCopies(self, bucket: str, key: str, mode: str, until: datetime.datetime, hold: str) -> None:
        copies = self.backends.copies(bucket, key)
        self.assertEqual(len(copies), 2, copies)
        for direct, real, real_key in copies:
            retention = direct.get_object_retention(Bucket=real, Key=real_key)["Retention"]
            self.assertEqual(retention["Mode"], mode)
            self.assertEqual(retention["RetainUntilDate"].astimezone(datetime.UTC), until)
            try:
                held = direct.get_object_legal_hold(Bucket=real, Key=real_key)["LegalHold"]["Status"]
            except ClientError as error:
                # SeaweedFS: a copy never held has no legal hold to show.
                self.assertEqual(error.response["Error"]["Code"], "NoSuchObjectLegalHold")
                held = "OFF"
            self.assertEqual(held, hold)
            version_id = self.backends.versions(real, real_key)[0]
            with self.assertRaises(ClientError) as raised:
                direct.delete_object(Bucket=real, Key=real_key, VersionId=version_id)
            self.assertEqual(raised.exception.response["Error"]["Code"], "AccessDenied")

    def assertNoVersionLeft(self, bucket: str, key: str, copies: list[tuple[Any, str, str]]) -> None:
        """The copies (and every version of their real keys) are gone from the backends."""
        self.assertTrue(copies)

        def gone() -> bool:
            return all(not self.backends.versions(real, real_key) for _, real, real_key in copies)

        poll(gone, timeout=20, message=f"versions of {bucket}/{key}'s copies left on the backends")

    def test_a_put_locks_both_copies_on_their_backends(self) -> None:
        """PutObject with retention and a legal hold: each copy locked alike; the backend refuses to delete it."""
        bucket = self.locked_bucket()
        until = soon(2)
        self.client.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=md5(b"data"),
                               ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until,
                               ObjectLockLegalHoldStatus="ON")
        self.assertLockedCopies(bucket, "k", "GOVERNANCE", until, "ON")

    def test_default_retention_copy_and_multipart(self) -> None:
        """The bucket's default retention reaches the copies of a CopyObject and of a multipart upload."""
        bucket = self.locked_bucket(Mode="GOVERNANCE", Days=1)
        self.client.put_object(Bucket=bucket, Key="source", Body=b"s", ContentMD5=md5(b"s"))
        self.client.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "source"})
        upload = self.client.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
        part = self.client.upload_part(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1, Body=b"p",
                                       ContentMD5=md5(b"p"))
        self.client.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        for key in ("source", "copied", "parts"):
            retention = self.client.get_object_retention(Bucket=bucket, Key=key)["Retention"]
            self.assertEqual(retention["Mode"], "GOVERNANCE")
            self.assertLockedCopies(bucket, key, "GOVERNANCE", retention["RetainUntilDate"].astimezone(datetime.UTC),
                                    "OFF")

    def test_retention_and_legal_hold_changes_are_mirrored(self) -> None:
        """Lengthened, then shortened with the bypass; the legal hold set, then lifted: the copies follow."""
        bucket = self.locked_bucket()
        self.client.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=md5(b"data"),
                               ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(1))
        longer = soon(3)
        self.client.put_object_retention(Bucket=bucket, Key="k", Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": longer})
        self.client.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
        self.assertLockedCopies(bucket, "k", "GOVERNANCE", longer, "ON")
        shorter = soon(2)
        self.client.put_object_retention(Bucket=bucket, Key="k", BypassGovernanceRetention=True, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": shorter})
        self.client.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "OFF"})
        self.assertLockedCopies(bucket, "k", "GOVERNANCE", shorter, "OFF")

    def test_a_rebuild_gives_each_version_the_lock_of_its_copies(self) -> None:
        """A lost database rebuilt from the backends: retention and legal hold back from the copies' HEADs."""
        bucket = self.locked_bucket()
        until = soon(2)
        self.client.put_object(Bucket=bucket, Key="kept", Body=b"k", ContentMD5=md5(b"k"),
                               ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
        self.client.put_object(Bucket=bucket, Key="held", Body=b"h", ContentMD5=md5(b"h"),
                               ObjectLockLegalHoldStatus="ON")
        self.client.put_object(Bucket=bucket, Key="plain", Body=b"p", ContentMD5=md5(b"p"))
        workdir = Path(harness_dir()) / unique_bucket_name("rebuilt")
        workdir.mkdir(parents=True)
        config = dict(self.backends.daemon.config, database={"type": "sqlite", "dsn": str(workdir / "rebuilt.db")})
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        code, out, err = run_admin(config_path, "rebuild")
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"locked: object={bucket}/kept mode=GOVERNANCE retain_until={until.isoformat()} legal_hold=off",
                      out)
        self.assertIn(f"locked: object={bucket}/held legal_hold=on", out)
        self.assertNotIn(f"object={bucket}/plain legal_hold", out)
        self.assertIn(f"bucket: {bucket}: Object Lock enabled, versioning Enabled", out)
        engine = create_engine(f"sqlite:///{workdir / 'rebuilt.db'}")
        self.addCleanup(engine.dispose)
        _o, _b = tables.objects, tables.buckets
        with engine.connect() as conn:
            rows = conn.execute(
                select(_o.c.key, _o.c.lock_mode, _o.c.lock_until, _o.c.legal_hold).where(_o.c.bucket == bucket)
            ).all()
            [(versioning, lock)] = conn.execute(select(_b.c.versioning, _b.c.object_lock).where(_b.c.name == bucket))
        self.assertEqual(
            sorted((bytes(key).decode(), mode, moment, held) for key, mode, moment, held in rows),
            [("held", None, None, 1), ("kept", "GOVERNANCE", until, 0), ("plain", None, None, 0)],
        )
        self.assertEqual(versioning, "Enabled")
        self.assertIsNotNone(lock)

    def test_deleted_copies_leave_no_version_behind(self) -> None:
        """In a bucket without Object Lock: a replaced and a deleted object leave nothing on the versioned real buckets."""
        bucket = unique_bucket_name("vplain")
        self.client.create_bucket(Bucket=bucket)
        self.client.put_object(Bucket=bucket, Key="replaced", Body=b"one")
        first = self.backends.copies(bucket, "replaced")
        self.client.put_object(Bucket=bucket, Key="replaced", Body=b"two")
        self.assertNoVersionLeft(bucket, "replaced", first)
        self.client.put_object(Bucket=bucket, Key="deleted", Body=b"x")
        copies = self.backends.copies(bucket, "deleted")
        self.client.delete_object(Bucket=bucket, Key="deleted")
        self.assertNoVersionLeft(bucket, "deleted", copies)
        self.assertEqual(len(self.backends.copies(bucket, "replaced")), 2)

    def test_a_governance_version_deleted_with_the_bypass(self) -> None:
        """A GOVERNANCE version deleted through s3balance with the bypass: its copies go too."""
        bucket = self.locked_bucket()
        version = self.client.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=md5(b"data"),
                                         ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(1))["VersionId"]
        copies = self.backends.copies(bucket, "k")
        self.client.delete_object(Bucket=bucket, Key="k", VersionId=version, BypassGovernanceRetention=True)
        self.assertNoVersionLeft(bucket, "k", copies)


class UnlockableBackendTests(SynchronousTestCase):
    def test_a_copy_that_cannot_be_locked_is_not_recorded(self) -> None:
        """A real bucket without Object Lock marked C{object_lock}: the locked write fails and leaves nothing."""
        backends = unlockable_backends()
        client = backends.client
        bucket = unique_bucket_name("vlock")
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        with self.assertRaises(ClientError) as raised:
            client.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=md5(b"data"),
                              ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(1))
        self.assertGreaterEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(client.list_object_versions(Bucket=bucket).get("Versions", []), [])
        poll(lambda: not any(backends.all_versions().values()), timeout=20,
             message="the copies that could not be locked were not deleted")
        # A version without a lock is written as before.
        client.put_object(Bucket=bucket, Key="plain", Body=b"data", ContentMD5=md5(b"data"))
        self.assertEqual(client.get_object(Bucket=bucket, Key="plain")["Body"].read(), b"data")


class VersionsLeftTests(SynchronousTestCase):
    """A real key whose versions keep coming back is not reported deleted: the deletion stays queued."""

    def test_versions_left_after_five_rounds_fail_the_deletion(self) -> None:
        from twisted.internet.task import Clock

        from s3balance.backends.backend import Backend, BackendError
        from s3balance.config.schema import BackendConfig
        from tests.test_retries_clock import ScriptedHTTP

        http = ScriptedHTTP()
        config = BackendConfig(name="locked", endpoint="http://locked.invalid:9000", path_style=True, object_lock=True)
        backend = Backend(config, http, Clock())  # type: ignore[arg-type]
        listing = (
            b'<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Version><Key>vb/k</Key>'
            b"<VersionId>v1</VersionId></Version></ListVersionsResult>"
        )
        deleted = backend.delete_object("vb/k")
        for round_ in range(5):
            listed = http.exchanges[2 * round_]
            self.assertTrue(listed.head.startswith(b"GET /locked/?versions=&prefix=vb%2Fk "), listed.head)
            listed.answer(200, body=listing)
            removed = http.exchanges[2 * round_ + 1]
            self.assertTrue(removed.head.startswith(b"DELETE /locked/vb/k?versionId=v1 "), removed.head)
            self.assertIn(b"x-amz-bypass-governance-retention: true", removed.head.lower())
            removed.answer(204)
        error = self.failureResultOf(deleted, BackendError).value
        self.assertEqual(error.code, "VersionsLeft")
        self.assertEqual(len(http.exchanges), 10)
