"""
Object Lock through a running daemon (s3balance.s3.object_lock), with
boto3: a bucket made with Object Lock (versioning Enabled for good), a
default retention, retention and legal hold on PUT, copy and multipart and
by Put/GetObjectRetention and Put/GetObjectLegalHold, the headers GET and
HEAD answer, and enforcement: a locked version is not deleted by version
id (a DELETE without one adds a delete marker), COMPLIANCE retention is
never shortened, GOVERNANCE only with the bypass header from a credential
allowed to, and a PUT needs Content-MD5 or a checksum.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from typing import Any

from tests.conformance import SECRETS, ConformanceCase

DAY = datetime.timedelta(days=1)


def soon(days: float = 1.0) -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + days * DAY).replace(microsecond=0)


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


class ObjectLockTests(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bypassing = self.gateway.client("alice-bypass", SECRETS["alice-bypass"])
        self.bucket = self.locked_bucket()

    def locked_bucket(self) -> str:
        bucket = self.new_bucket_name()
        self.alice.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        return bucket

    def new_bucket_name(self) -> str:
        from tests.harness import unique_bucket_name

        return unique_bucket_name("lock")

    def put(self, key: str, body: bytes = b"data", **kw: Any) -> str:
        return self.alice.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5(body), **kw)["VersionId"]

    def test_a_bucket_made_with_object_lock_is_versioned_for_good(self) -> None:
        """CreateBucket with Object Lock: versioning Enabled; Suspended is 409 InvalidBucketState."""
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=self.bucket)["Status"], "Enabled")
        config = self.alice.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        self.assertEqual(config, {"ObjectLockEnabled": "Enabled"})
        self.assertS3Error(409, "InvalidBucketState", self.alice.put_bucket_versioning, Bucket=self.bucket,
                           VersioningConfiguration={"Status": "Suspended"})

    def test_a_bucket_without_object_lock(self) -> None:
        """No configuration: 404 ObjectLockConfigurationNotFoundError; lock headers: 400 InvalidRequest."""
        plain = self.new_bucket()
        self.assertS3Error(404, "ObjectLockConfigurationNotFoundError", self.alice.get_object_lock_configuration,
                           Bucket=plain)
        self.assertS3Error(400, "InvalidRequest", self.alice.put_object, Bucket=plain, Key="k", Body=b"x",
                           ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        # Enabling needs versioning Enabled first.
        config = {"ObjectLockEnabled": "Enabled"}
        self.assertS3Error(409, "InvalidBucketState", self.alice.put_object_lock_configuration, Bucket=plain,
                           ObjectLockConfiguration=config)
        self.alice.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
        self.alice.put_object_lock_configuration(Bucket=plain, ObjectLockConfiguration=config)
        self.assertEqual(self.alice.get_object_lock_configuration(Bucket=plain)["ObjectLockConfiguration"], config)

    def test_a_put_needs_content_md5_or_a_checksum(self) -> None:
        """A PUT to a bucket with Object Lock without Content-MD5 or x-amz-checksum-*: 400 InvalidRequest."""

        def strip(request: Any, **_: Any) -> None:
            for name in list(request.headers.keys()):
                if name.lower() in ("content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer") or \
                        name.lower().startswith("x-amz-checksum-"):
                    del request.headers[name]

        self.alice.meta.events.register("before-sign.s3.PutObject", strip)
        try:
            error = self.assertS3Error(400, "InvalidRequest", self.alice.put_object, Bucket=self.bucket, Key="k",
                                       Body=b"x")
        finally:
            self.alice.meta.events.unregister("before-sign.s3.PutObject", strip)
        self.assertIn("Content-MD5", error.response["Error"]["Message"])
        self.put("k")

    def test_compliance_retention_keeps_the_version(self) -> None:
        """COMPLIANCE: no delete by version id, no shortening, even with the bypass; a marker may go on top."""
        until = soon(2)
        version = self.put("k", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        head = self.alice.head_object(Bucket=self.bucket, Key="k")
        self.assertEqual((head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]), ("COMPLIANCE", until))
        for client in (self.alice, self.bypassing):
            self.assertS3Error(403, "AccessDenied", client.delete_object, Bucket=self.bucket, Key="k",
                               VersionId=version, BypassGovernanceRetention=True)
        self.assertS3Error(403, "AccessDenied", self.bypassing.put_object_retention, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True,
                           Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon(1)})
        self.assertS3Error(403, "AccessDenied", self.bypassing.put_object_retention, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True,
                           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon(3)})
        # Lengthening is allowed.
        self.alice.put_object_retention(Bucket=self.bucket, Key="k", VersionId=version,
                                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon(3)})
        marker = self.alice.delete_object(Bucket=self.bucket, Key="k")
        self.assertTrue(marker["DeleteMarker"])
        self.assertEqual(self.read(version), b"data")
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "k", "VersionId": version}]})
        self.assertEqual([(e["Key"], e["Code"]) for e in answer["Errors"]], [("k", "AccessDenied")])
        self.assertEqual(self.read(version), b"data")

    def read(self, version: str) -> bytes:
        return self.alice.get_object(Bucket=self.bucket, Key="k", VersionId=version)["Body"].read()

    def test_governance_retention_gives_way_to_an_allowed_bypass(self) -> None:
        """GOVERNANCE: the bypass header from alice-bypass (allowed) removes it; from alice (not allowed) not."""
        version = self.put("k", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version)
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True)
        self.assertS3Error(403, "AccessDenied", self.alice.put_object_retention, Bucket=self.bucket, Key="k",
                           VersionId=version, Retention={})
        self.bypassing.put_object_retention(Bucket=self.bucket, Key="k", VersionId=version,
                                            BypassGovernanceRetention=True,
                                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon(0.5)})
        self.bypassing.delete_object(Bucket=self.bucket, Key="k", VersionId=version, BypassGovernanceRetention=True)
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=self.bucket, Key="k")

    def test_legal_hold_keeps_the_version_until_released(self) -> None:
        version = self.put("k", ObjectLockLegalHoldStatus="ON")
        self.assertEqual(self.alice.get_object_legal_hold(Bucket=self.bucket, Key="k")["LegalHold"], {"Status": "ON"})
        self.assertEqual(self.alice.head_object(Bucket=self.bucket, Key="k")["ObjectLockLegalHoldStatus"], "ON")
        self.assertS3Error(403, "AccessDenied", self.bypassing.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True)
        self.alice.put_object_legal_hold(Bucket=self.bucket, Key="k", VersionId=version, LegalHold={"Status": "OFF"})
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=version)
        self.assertEqual(self.alice.list_object_versions(Bucket=self.bucket).get("Versions", []), [])

    def test_default_retention_applies_to_put_copy_and_multipart(self) -> None:
        self.alice.put_object_lock_configuration(Bucket=self.bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        })
        version = self.put("k")
        copied = self.alice.copy_object(Bucket=self.bucket, Key="c", CopySource={"Bucket": self.bucket, "Key": "k"})
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="m")["UploadId"]
        part = self.alice.upload_part(Bucket=self.bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"p",
                                      ContentMD5=md5(b"p"))
        done = self.alice.complete_multipart_upload(Bucket=self.bucket, Key="m", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        for key, made in (("k", version), ("c", copied["VersionId"]), ("m", done["VersionId"])):
            retention = self.alice.get_object_retention(Bucket=self.bucket, Key=key, VersionId=made)["Retention"]
            self.assertEqual(retention["Mode"], "GOVERNANCE", key)
            left = retention["RetainUntilDate"] - datetime.datetime.now(datetime.UTC)
            self.assertTrue(DAY - datetime.timedelta(minutes=5) < left <= DAY, (key, left))
            self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key=key,
                               VersionId=made)

    def test_bad_lock_headers(self) -> None:
        self.assertS3Error(400, "InvalidArgument", self.alice.put_object, Bucket=self.bucket, Key="k", Body=b"x",
                           ContentMD5=md5(b"x"), ObjectLockMode="GOVERNANCE")
        self.assertS3Error(400, "InvalidArgument", self.alice.put_object, Bucket=self.bucket, Key="k", Body=b"x",
                           ContentMD5=md5(b"x"), ObjectLockMode="GOVERNANCE",
                           ObjectLockRetainUntilDate=soon(-1))
        self.assertEqual(self.alice.list_object_versions(Bucket=self.bucket).get("Versions", []), [])
