"""
A backup tool's repository in a bucket with Object Lock, through a running
daemon (accounts alice and bob; alice's credential "alice-bypass" may bypass
GOVERNANCE retention, alice's own may not; the lifecycle expirer every
second), the way restic uses one: a default retention on the bucket, the
repository's "config" and keys written at init, each backup writing a lock
file, packs under data/, an index and a snapshot, rewriting its lock file
to refresh it and deleting it at the end, a prune deleting old snapshots,
indexes and packs and rewriting "config".  Every write makes a version
under the default retention; every delete of the tool (without a version
id) adds a delete marker.

Afterwards every version ever written reads back by its id, byte for byte,
and no path destroys one: DeleteObject by version id, with or without the
bypass header from a credential not allowed to bypass; DeleteObjects of
every version; the lifecycle expirer with an Expiration and a
NoncurrentVersionExpiration rule; under COMPLIANCE, the allowed bypass too.

rclone writes to such a bucket: it sends Content-MD5 with a single-part
upload (the PUT a bucket with Object Lock requires; the PUT of "small.txt"
would be refused without).  A sync, a sync after a change and a deletion,
and C{rclone delete} leave every version readable.
"""

from __future__ import annotations

import datetime
import hashlib
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import poll
from tests.gateways import Lazy, RunningGateway, launch
from tests.harness import run_rclone, unique_bucket_name
from tests.test_acl_api import ALICE, BOB, SECRETS

MIB = 1024 * 1024


def _launch() -> RunningGateway:
    return launch(
        "restic",
        balancer={"lifecycle_period": "1s"},
        s3api={
            "accounts": [{"id": ALICE, "display_name": "alice"}, {"id": BOB, "display_name": "bob"}],
            "credentials": [
                {"access_key": "alice", "secret_key": SECRETS["alice"], "account": ALICE},
                {"access_key": "alice-bypass", "secret_key": SECRETS["alice-bypass"], "account": ALICE,
                 "bypass_governance_retention": True},
            ],
        },
    )


restic_gateway = Lazy(_launch, stop=lambda gateway: gateway.daemon.stop())


def blob(name: str, size: int = 1000) -> bytes:
    return (hashlib.sha256(name.encode()).hexdigest().encode() * (size // 64 + 1))[:size]


class Repository:
    """A restic-like repository in C{bucket}: what it wrote, as (key, version id) -> body."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self.written: dict[tuple[str, str], bytes] = {}
        self.packs: dict[int, list[str]] = {}

    def save(self, key: str, body: bytes) -> str:
        version = self.client.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]
        self.written[(key, version)] = body
        return version

    def remove(self, key: str) -> None:
        answer = self.client.delete_object(Bucket=self.bucket, Key=key)
        assert answer["DeleteMarker"], answer

    def init(self) -> None:
        self.save("config", blob("config v1", 200))
        self.save("keys/k1", blob("key 1", 400))

    def backup(self, number: int, packs: int = 3) -> None:
        lock = f"locks/lock{number}"
        self.save(lock, blob(f"lock {number}", 150))
        for pack in range(packs):
            name = hashlib.sha256(f"pack {number}/{pack}".encode()).hexdigest()
            key = f"data/{name[:2]}/{name}"
            self.save(key, blob(name, 20_000 + pack))
            self.packs.setdefault(number, []).append(key)
        self.save(lock, blob(f"lock {number} refreshed", 150))
        self.save(f"index/index{number}", blob(f"index {number}", 3000))
        self.save(f"snapshots/snap{number}", blob(f"snapshot {number}", 500))
        self.remove(lock)

    def prune(self, number: int) -> None:
        """Forget snapshot C{number}: its snapshot, index and packs go; a new index and "config" are written."""
        self.save("locks/prune", blob("prune lock", 150))
        self.remove(f"snapshots/snap{number}")
        self.remove(f"index/index{number}")
        for key in self.packs.pop(number):
            self.remove(key)
        self.save("index/index-pruned", blob("index pruned", 3000))
        self.save("config", blob("config v2", 200))
        self.remove("locks/prune")


class ResticScenarioTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = restic_gateway()
        self.alice = self.gateway.client("alice", SECRETS["alice"])
        self.bypassing = self.gateway.client("alice-bypass", SECRETS["alice-bypass"])

    def locked_bucket(self, mode: str) -> str:
        bucket = unique_bucket_name("restic")
        self.alice.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        self.alice.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": 1}}})
        return bucket

    def lifecycle_runs(self) -> float:
        with urllib.request.urlopen(f"{self.gateway.endpoint}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("s3balance_background_runs_total{") and 'job="lifecycle"' in line)

    def assertAllKept(self, bucket: str, written: dict[tuple[str, str], bytes], mode: str) -> None:
        """Every version written is listed and reads back by its id, byte for byte, with the bucket's retention."""
        listed = self.alice.list_object_versions(Bucket=bucket).get("Versions", [])
        self.assertEqual(sorted((v["Key"], v["VersionId"]) for v in listed), sorted(written))
        for (key, version), body in written.items():
            got = self.alice.get_object(Bucket=bucket, Key=key, VersionId=version)
            self.assertEqual(got["Body"].read(), body, (key, version))
            self.assertEqual(got["ObjectLockMode"], mode, (key, version))

    def assertRefused(self, call: Any, **kwargs: Any) -> None:
        with self.assertRaises(ClientError) as raised:
            call(**kwargs)
        self.assertEqual(raised.exception.response["Error"]["Code"], "AccessDenied", kwargs)

    def destroy_everything(self, bucket: str, written: dict[tuple[str, str], bytes], mode: str) -> None:
        """Every way a client of alice's may try to remove versions; each one refused."""
        for key, version in written:
            self.assertRefused(self.alice.delete_object, Bucket=bucket, Key=key, VersionId=version)
            self.assertRefused(self.alice.delete_object, Bucket=bucket, Key=key, VersionId=version,
                               BypassGovernanceRetention=True)
            if mode == "COMPLIANCE":
                self.assertRefused(self.bypassing.delete_object, Bucket=bucket, Key=key, VersionId=version,
                                   BypassGovernanceRetention=True)
        objects = [{"Key": key, "VersionId": version} for key, version in written]
        clients = [self.alice] + ([self.bypassing] if mode == "COMPLIANCE" else [])
        for client in clients:
            answer = client.delete_objects(Bucket=bucket, BypassGovernanceRetention=True,
                                           Delete={"Objects": objects})
            self.assertEqual(answer.get("Deleted", []), [])
            self.assertEqual(sorted((e["Key"], e["VersionId"], e["Code"]) for e in answer["Errors"]),
                             sorted((key, version, "AccessDenied") for key, version in written))
        # The lifecycle expirer: every current key expired (a delete marker), noncurrent versions due after a day.
        self.alice.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)}},
            {"ID": "noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        ]})

        def all_hidden() -> bool:
            return not self.alice.list_objects_v2(Bucket=bucket).get("Contents")

        poll(all_hidden, timeout=30, message="the expirer left current keys")
        target = self.lifecycle_runs() + 3
        poll(lambda: self.lifecycle_runs() >= target, timeout=30, message="the expirer did not run again")

    def run_scenario(self, mode: str) -> None:
        bucket = self.locked_bucket(mode)
        repository = Repository(self.alice, bucket)
        repository.init()
        repository.backup(1)
        repository.backup(2)
        repository.prune(1)
        repository.backup(3)
        # The latest view is what restic sees: packs of snapshots 2 and 3, their indexes, config v2.
        listed = {item["Key"] for item in self.alice.list_objects_v2(Bucket=bucket)["Contents"]}
        self.assertIn("config", listed)
        self.assertNotIn("snapshots/snap1", listed)
        self.assertFalse(any(key.startswith("locks/") for key in listed), listed)
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="config")["Body"].read(), blob("config v2", 200))
        self.assertAllKept(bucket, repository.written, mode)
        self.destroy_everything(bucket, repository.written, mode)
        self.assertAllKept(bucket, repository.written, mode)

    def test_a_repository_under_governance_retention(self) -> None:
        self.run_scenario("GOVERNANCE")

    def test_a_repository_under_compliance_retention(self) -> None:
        self.run_scenario("COMPLIANCE")

    def test_rclone_sync_and_delete_keep_every_version(self) -> None:
        """
        rclone sync (single-part and multipart uploads), a second sync after
        a change and a local deletion, then C{rclone delete}: each upload a
        version under the default retention, each deletion a delete marker;
        every version reads back by its id.
        """
        bucket = self.locked_bucket("COMPLIANCE")
        local = Path(tempfile.mkdtemp())
        (local / "small.txt").write_bytes(blob("small", 100))
        (local / "big.bin").write_bytes(blob("big", 6 * MIB))
        (local / "gone.txt").write_bytes(blob("gone", 100))
        multipart = ["--s3-upload-cutoff", "1M", "--s3-chunk-size", "5M"]

        def rclone(*args: str) -> None:
            run_rclone(list(args), self.gateway.endpoint, "alice", SECRETS["alice"])

        rclone("sync", str(local), f"s3:{bucket}/backup", *multipart)
        (local / "small.txt").write_bytes(blob("small v2", 120))
        (local / "gone.txt").unlink()
        rclone("sync", str(local), f"s3:{bucket}/backup", *multipart)
        rclone("delete", f"s3:{bucket}/backup")
        listed = self.alice.list_object_versions(Bucket=bucket)
        versions = {(v["Key"], v["VersionId"]) for v in listed["Versions"]}
        bodies = {"backup/small.txt": {blob("small", 100), blob("small v2", 120)},
                  "backup/big.bin": {blob("big", 6 * MIB)}, "backup/gone.txt": {blob("gone", 100)}}
        self.assertEqual(sorted(key for key, _ in versions),
                         ["backup/big.bin", "backup/gone.txt", "backup/small.txt", "backup/small.txt"])
        self.assertEqual(sorted(m["Key"] for m in listed["DeleteMarkers"]),
                         ["backup/big.bin", "backup/gone.txt", "backup/small.txt"])
        read = {}
        for key, version in versions:
            got = self.alice.get_object(Bucket=bucket, Key=key, VersionId=version)
            self.assertEqual(got["ObjectLockMode"], "COMPLIANCE")
            read.setdefault(key, set()).add(got["Body"].read())
        self.assertEqual(read, bodies)
