"""
Conformance of Object Lock through a running daemon: the Object Lock
behaviours a standard S3 conformance suite checks, each as S3 answers it,
with boto3 for the account alice (the buckets' owner), alice's credential
"alice-bypass" (allowed to bypass GOVERNANCE retention) and alice's plain
one (not allowed):

  - CreateBucket with Object Lock (versioning Enabled with it, Suspended
    refused with 409 InvalidBucketState);
  - Put and GetObjectLockConfiguration: a default retention in days or
    years; MalformedXML for a mode S3 does not know, for Days and Years
    both, for ObjectLockEnabled missing or not "Enabled"; InvalidArgument
    for a period that is not positive; 409 InvalidBucketState on a bucket
    whose versioning is not Enabled; 404
    ObjectLockConfigurationNotFoundError on a bucket without Object Lock;
  - Put and GetObjectRetention: set, lengthened, of the latest or of one
    version, over the bucket's default; MalformedXML for an unknown mode;
    InvalidArgument for a date in the past; weakening GOVERNANCE retention
    (shortening, removing, changing the mode) is 403 AccessDenied without
    the bypass and allowed with it; COMPLIANCE retention is never weakened;
    404 NoSuchObjectLockConfiguration for a version without retention;
  - Put and GetObjectLegalHold: ON and OFF, MalformedXML for another
    status;
  - 400 InvalidRequest for all of these on a bucket without Object Lock;
  - DeleteObject by version id of a version under retention or legal hold
    (403 AccessDenied; GOVERNANCE gives way to the bypass, a legal hold and
    COMPLIANCE do not), DeleteObject without a version id (a delete marker,
    the version kept), DeleteObjects (an AccessDenied Error entry with the
    VersionId for each locked version, the others deleted);
  - the x-amz-object-lock-* headers of PutObject, CopyObject and
    CreateMultipartUpload (InvalidArgument for a mode without a date, a
    date without a mode, an unknown mode, a date in the past, an unknown
    legal hold status); a PUT without Content-MD5 or a checksum (400
    InvalidRequest); the headers GET and HEAD answer.

The checks also run directly against SeaweedFS (the C{SeaweedFS*} classes
at the end), so that the expectations are checked on a second
implementation; where SeaweedFS answers otherwise than S3, the test follows
S3, says so, and is marked C{todo} on SeaweedFS with what SeaweedFS
answers.  SeaweedFS has one identity, allowed everything: the checks of a
credential not allowed to bypass run through s3balance only.

Where the standard suite (ceph's s3-tests) expects what RGW answers rather
than S3, the test follows S3: a period not positive in a default retention
is 400 InvalidArgument on S3 ("Default retention period must be a positive
integer value."), InvalidRetentionPeriod on RGW.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from typing import TYPE_CHECKING, Any, Optional

from tests.conformance import SECRETS, ConformanceCase
from tests.harness import shared_seaweedfs, unique_bucket_name
from tests.test_conformance_versioning import headers, known_deviation

DAY = datetime.timedelta(days=1)


def soon(days: float = 1.0) -> datetime.datetime:
    """A date C{days} from now, in whole seconds (as S3 keeps it)."""
    return (datetime.datetime.now(datetime.UTC) + days * DAY).replace(microsecond=0)


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def default_retention(mode: str, **period: int) -> dict:
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, **period}}}


# The checks are mixins, so that trial runs them only in the classes below
# that say where (s3balance, or SeaweedFS directly).
_Checks = ConformanceCase if TYPE_CHECKING else object


class LockChecks(_Checks):
    """
    Helpers for the checks; the concrete case gives C{self.bypassing} (a
    client of alice's allowed to bypass GOVERNANCE retention) and
    C{unchecked_client()} (alice's, sending neither Content-MD5 nor a
    checksum when S3 does not require one).
    """

    bypassing: Any

    def locked_bucket(self) -> str:
        bucket = unique_bucket_name("lockc")
        self.alice.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        return bucket

    def put(self, bucket: str, key: str = "k", body: bytes = b"data", **lock: Any) -> str:
        """Write C{body} with Content-MD5 (and the lock arguments C{lock}); its version id."""
        return self.alice.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5(body), **lock)["VersionId"]

    def read(self, bucket: str, key: str, version: str) -> bytes:
        return self.alice.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()

    def retention(self, bucket: str, key: str, version: Optional[str] = None) -> dict:
        extra = {"VersionId": version} if version is not None else {}
        return self.alice.get_object_retention(Bucket=bucket, Key=key, **extra)["Retention"]

    def release(self, bucket: str, key: str, version: str) -> None:
        """Delete a version kept by GOVERNANCE retention or a legal hold, as its owner with the bypass may."""
        self.bypassing.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"})
        self.bypassing.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)


# -- the checks ---------------------------------------------------------------------------------------------------


class LockConfigurationChecks(LockChecks):
    def test_a_bucket_made_with_object_lock(self) -> None:
        """
        CreateBucket with x-amz-bucket-object-lock-enabled: versioning
        Enabled, and a configuration of ObjectLockEnabled alone (no default
        retention).
        """
        bucket = self.locked_bucket()
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], "Enabled")
        answer = self.alice.get_object_lock_configuration(Bucket=bucket)
        self.assertEqual(answer["ObjectLockConfiguration"], {"ObjectLockEnabled": "Enabled"})

    def test_a_default_retention_in_days_or_years(self) -> None:
        """
        PutObjectLockConfiguration answers 200 for GOVERNANCE in days and
        COMPLIANCE in years; GetObjectLockConfiguration answers the
        configuration put; versioning stays Enabled.
        """
        bucket = self.locked_bucket()
        for config in (default_retention("GOVERNANCE", Days=1), default_retention("COMPLIANCE", Years=1)):
            answer = self.alice.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config)
            self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
            self.assertEqual(self.alice.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
                             config)
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], "Enabled")

    def test_an_unknown_mode_is_malformed_xml(self) -> None:
        """A Mode other than GOVERNANCE or COMPLIANCE ("abc", "governance") answers 400 MalformedXML."""
        bucket = self.locked_bucket()
        for mode in ("abc", "governance"):
            self.assertS3Error(400, "MalformedXML", self.alice.put_object_lock_configuration, Bucket=bucket,
                               ObjectLockConfiguration=default_retention(mode, Years=1))
        self.assertEqual(self.alice.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
                         {"ObjectLockEnabled": "Enabled"})

    def test_days_and_years_both_is_malformed_xml(self) -> None:
        bucket = self.locked_bucket()
        self.assertS3Error(400, "MalformedXML", self.alice.put_object_lock_configuration, Bucket=bucket,
                           ObjectLockConfiguration=default_retention("GOVERNANCE", Days=1, Years=1))

    def test_a_period_not_positive_is_an_invalid_argument(self) -> None:
        """
        Days 0 and Years -1 answer 400 InvalidArgument, as S3 answers
        ("Default retention period must be a positive integer value.").
        """
        bucket = self.locked_bucket()
        for period in ({"Days": 0}, {"Days": -1}, {"Years": -1}):
            self.assertS3Error(400, "InvalidArgument", self.alice.put_object_lock_configuration, Bucket=bucket,
                               ObjectLockConfiguration=default_retention("GOVERNANCE", **period))

    def test_object_lock_enabled_missing_or_disabled_is_malformed_xml(self) -> None:
        """ObjectLockEnabled "Disabled", or none, answers 400 MalformedXML (Enabled is its only value)."""
        bucket = self.locked_bucket()
        disabled = dict(default_retention("GOVERNANCE", Years=1), ObjectLockEnabled="Disabled")
        self.assertS3Error(400, "MalformedXML", self.alice.put_object_lock_configuration, Bucket=bucket,
                           ObjectLockConfiguration=disabled)
        missing = {"Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
        self.assertS3Error(400, "MalformedXML", self.alice.put_object_lock_configuration, Bucket=bucket,
                           ObjectLockConfiguration=missing)

    def test_a_bucket_without_versioning_is_an_invalid_bucket_state(self) -> None:
        """
        PutObjectLockConfiguration on a bucket whose versioning is not
        Enabled (never versioned, or Suspended) answers 409
        InvalidBucketState; once Enabled, 200.
        """
        bucket = self.new_bucket()
        config = default_retention("GOVERNANCE", Days=1)
        self.assertS3Error(409, "InvalidBucketState", self.alice.put_object_lock_configuration, Bucket=bucket,
                           ObjectLockConfiguration=config)
        self.alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        self.assertS3Error(409, "InvalidBucketState", self.alice.put_object_lock_configuration, Bucket=bucket,
                           ObjectLockConfiguration=config)
        self.alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.alice.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config)
        self.assertEqual(self.alice.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"], config)

    def test_a_bucket_without_object_lock_has_no_configuration(self) -> None:
        """GetObjectLockConfiguration of a bucket without Object Lock: 404 ObjectLockConfigurationNotFoundError."""
        self.assertS3Error(404, "ObjectLockConfigurationNotFoundError", self.alice.get_object_lock_configuration,
                           Bucket=self.new_bucket())

    def test_suspending_versioning_is_an_invalid_bucket_state(self) -> None:
        """PutBucketVersioning Suspended on a bucket with Object Lock: 409 InvalidBucketState; still Enabled."""
        bucket = self.locked_bucket()
        self.assertS3Error(409, "InvalidBucketState", self.alice.put_bucket_versioning, Bucket=bucket,
                           VersioningConfiguration={"Status": "Suspended"})
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], "Enabled")


class RetentionChecks(LockChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.locked_bucket()

    def test_put_and_get_retention(self) -> None:
        """
        PutObjectRetention without a version id sets the latest version's;
        GetObjectRetention answers it (Mode, RetainUntilDate) with the
        version's id in x-amz-version-id.
        """
        version = self.put(self.bucket)
        retention = {"Mode": "GOVERNANCE", "RetainUntilDate": soon()}
        answer = self.alice.put_object_retention(Bucket=self.bucket, Key="k", Retention=retention)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.retention(self.bucket, "k"), retention)
        self.assertEqual(self.retention(self.bucket, "k", version), retention)
        self.release(self.bucket, "k", version)

    def test_retention_of_one_version(self) -> None:
        """With a version id, PutObjectRetention sets that version's only."""
        older = self.put(self.bucket)
        newer = self.put(self.bucket)
        retention = {"Mode": "GOVERNANCE", "RetainUntilDate": soon()}
        self.alice.put_object_retention(Bucket=self.bucket, Key="k", VersionId=older, Retention=retention)
        self.assertEqual(self.retention(self.bucket, "k", older), retention)
        self.assertS3Error(404, "NoSuchObjectLockConfiguration", self.alice.get_object_retention, Bucket=self.bucket,
                           Key="k", VersionId=newer)
        self.release(self.bucket, "k", older)

    def test_retention_overrides_the_default(self) -> None:
        """A version written under the bucket's default retention takes a later date by PutObjectRetention."""
        self.alice.put_object_lock_configuration(Bucket=self.bucket,
                                                 ObjectLockConfiguration=default_retention("GOVERNANCE", Days=1))
        version = self.put(self.bucket)
        self.assertEqual(self.retention(self.bucket, "k", version)["Mode"], "GOVERNANCE")
        retention = {"Mode": "GOVERNANCE", "RetainUntilDate": soon(3)}
        self.alice.put_object_retention(Bucket=self.bucket, Key="k", Retention=retention)
        self.assertEqual(self.retention(self.bucket, "k", version), retention)
        self.release(self.bucket, "k", version)

    def test_an_unknown_mode_is_malformed_xml(self) -> None:
        self.put(self.bucket)
        for mode in ("governance", "abc"):
            self.assertS3Error(400, "MalformedXML", self.alice.put_object_retention, Bucket=self.bucket, Key="k",
                               Retention={"Mode": mode, "RetainUntilDate": soon()})

    def test_a_date_in_the_past_is_an_invalid_argument(self) -> None:
        """A RetainUntilDate not in the future answers 400 InvalidArgument; the version keeps none."""
        version = self.put(self.bucket)
        self.assertS3Error(400, "InvalidArgument", self.alice.put_object_retention, Bucket=self.bucket, Key="k",
                           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon(-1)})
        self.assertS3Error(404, "NoSuchObjectLockConfiguration", self.alice.get_object_retention, Bucket=self.bucket,
                           Key="k", VersionId=version)

    def test_a_version_without_retention(self) -> None:
        """GetObjectRetention of a version without retention: 404 NoSuchObjectLockConfiguration."""
        self.put(self.bucket)
        self.assertS3Error(404, "NoSuchObjectLockConfiguration", self.alice.get_object_retention, Bucket=self.bucket,
                           Key="k")

    def test_lengthening_governance_needs_no_bypass(self) -> None:
        version = self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(1))
        later = {"Mode": "GOVERNANCE", "RetainUntilDate": soon(2)}
        self.alice.put_object_retention(Bucket=self.bucket, Key="k", Retention=later)
        self.assertEqual(self.retention(self.bucket, "k"), later)
        self.release(self.bucket, "k", version)

    def test_weakening_governance_needs_the_bypass(self) -> None:
        """
        Shortening GOVERNANCE retention, or changing it to COMPLIANCE (even
        to a later date), answers 403 AccessDenied without
        x-amz-bypass-governance-retention: in GOVERNANCE mode S3 lets no
        one alter the lock settings without the bypass but to lengthen
        them.  The retention stays.  With the bypass, each is allowed.
        """
        until = soon(2)
        version = self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
        shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": soon(1)}
        for retention in (shorter, {"Mode": "COMPLIANCE", "RetainUntilDate": until},
                          {"Mode": "COMPLIANCE", "RetainUntilDate": soon(3)}):
            self.assertS3Error(403, "AccessDenied", self.alice.put_object_retention, Bucket=self.bucket, Key="k",
                               Retention=retention)
        self.assertEqual(self.retention(self.bucket, "k"), {"Mode": "GOVERNANCE", "RetainUntilDate": until})
        self.bypassing.put_object_retention(Bucket=self.bucket, Key="k", Retention=shorter,
                                            BypassGovernanceRetention=True)
        self.assertEqual(self.retention(self.bucket, "k"), shorter)
        self.release(self.bucket, "k", version)

    def test_removing_retention(self) -> None:
        """
        An empty Retention removes a version's GOVERNANCE retention with the
        bypass only (403 AccessDenied without); COMPLIANCE retention not
        even with it.
        """
        governed = self.put(self.bucket, "g", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        self.put(self.bucket, "c", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(403, "AccessDenied", self.alice.put_object_retention, Bucket=self.bucket, Key="g",
                           Retention={})
        self.assertS3Error(403, "AccessDenied", self.bypassing.put_object_retention, Bucket=self.bucket, Key="c",
                           Retention={}, BypassGovernanceRetention=True)
        self.assertEqual(self.retention(self.bucket, "c")["Mode"], "COMPLIANCE")
        self.bypassing.put_object_retention(Bucket=self.bucket, Key="g", Retention={},
                                            BypassGovernanceRetention=True)
        self.assertS3Error(404, "NoSuchObjectLockConfiguration", self.alice.get_object_retention, Bucket=self.bucket,
                           Key="g")
        self.alice.delete_object(Bucket=self.bucket, Key="g", VersionId=governed)

    def test_governance_becomes_compliance_with_the_bypass(self) -> None:
        until = soon(1)
        self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
        compliance = {"Mode": "COMPLIANCE", "RetainUntilDate": until}
        self.bypassing.put_object_retention(Bucket=self.bucket, Key="k", Retention=compliance,
                                            BypassGovernanceRetention=True)
        self.assertEqual(self.retention(self.bucket, "k"), compliance)

    def test_compliance_is_never_weakened(self) -> None:
        """
        COMPLIANCE retention: shortening or changing the mode answers 403
        AccessDenied, with the bypass too; lengthening is allowed.
        """
        until = soon(2)
        self.put(self.bucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        for retention in ({"Mode": "COMPLIANCE", "RetainUntilDate": soon(1)},
                          {"Mode": "GOVERNANCE", "RetainUntilDate": until},
                          {"Mode": "GOVERNANCE", "RetainUntilDate": soon(3)}):
            for client, bypass in ((self.alice, {}), (self.bypassing, {"BypassGovernanceRetention": True})):
                self.assertS3Error(403, "AccessDenied", client.put_object_retention, Bucket=self.bucket, Key="k",
                                   Retention=retention, **bypass)
        self.assertEqual(self.retention(self.bucket, "k"), {"Mode": "COMPLIANCE", "RetainUntilDate": until})
        later = {"Mode": "COMPLIANCE", "RetainUntilDate": soon(3)}
        self.alice.put_object_retention(Bucket=self.bucket, Key="k", Retention=later)
        self.assertEqual(self.retention(self.bucket, "k"), later)

    def test_a_bucket_without_object_lock_is_an_invalid_request(self) -> None:
        """
        Put/GetObjectRetention and Put/GetObjectLegalHold in a bucket
        without Object Lock answer 400 InvalidRequest.
        """
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="k", Body=b"data")
        retention = {"Mode": "GOVERNANCE", "RetainUntilDate": soon()}
        self.assertS3Error(400, "InvalidRequest", self.alice.put_object_retention, Bucket=bucket, Key="k",
                           Retention=retention)
        self.assertS3Error(400, "InvalidRequest", self.alice.get_object_retention, Bucket=bucket, Key="k")
        self.assertS3Error(400, "InvalidRequest", self.alice.put_object_legal_hold, Bucket=bucket, Key="k",
                           LegalHold={"Status": "ON"})
        self.assertS3Error(400, "InvalidRequest", self.alice.get_object_legal_hold, Bucket=bucket, Key="k")


class LegalHoldChecks(LockChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.locked_bucket()

    def test_on_and_off(self) -> None:
        """PutObjectLegalHold ON and OFF answer 200; GetObjectLegalHold answers the status put."""
        self.put(self.bucket)
        for status in ("ON", "OFF"):
            answer = self.alice.put_object_legal_hold(Bucket=self.bucket, Key="k", LegalHold={"Status": status})
            self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
            self.assertEqual(self.alice.get_object_legal_hold(Bucket=self.bucket, Key="k")["LegalHold"],
                             {"Status": status})

    def test_an_unknown_status_is_malformed_xml(self) -> None:
        self.put(self.bucket)
        for status in ("abc", "on"):
            self.assertS3Error(400, "MalformedXML", self.alice.put_object_legal_hold, Bucket=self.bucket, Key="k",
                               LegalHold={"Status": status})

    def test_a_legal_hold_keeps_the_version_until_released(self) -> None:
        """
        DeleteObject by version id of a version under legal hold: 403
        AccessDenied, with the bypass too (it is no retention); once OFF,
        204.
        """
        version = self.put(self.bucket, ObjectLockLegalHoldStatus="ON")
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version)
        self.assertS3Error(403, "AccessDenied", self.bypassing.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True)
        self.assertEqual(self.read(self.bucket, "k", version), b"data")
        self.alice.put_object_legal_hold(Bucket=self.bucket, Key="k", VersionId=version, LegalHold={"Status": "OFF"})
        answer = self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=version)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)

    def test_legal_hold_of_one_version(self) -> None:
        older = self.put(self.bucket)
        newer = self.put(self.bucket)
        self.alice.put_object_legal_hold(Bucket=self.bucket, Key="k", VersionId=older, LegalHold={"Status": "ON"})
        answer = self.alice.get_object_legal_hold(Bucket=self.bucket, Key="k", VersionId=older)
        self.assertEqual(answer["LegalHold"], {"Status": "ON"})
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=newer)
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=older)
        self.release(self.bucket, "k", older)


class DeletionChecks(LockChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.locked_bucket()

    def test_governance_keeps_a_version_but_for_the_bypass(self) -> None:
        """
        DeleteObject by version id of a version under GOVERNANCE retention:
        403 AccessDenied; with x-amz-bypass-governance-retention: true, 204
        and the version is gone.
        """
        version = self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version)
        self.assertEqual(self.read(self.bucket, "k", version), b"data")
        answer = self.bypassing.delete_object(Bucket=self.bucket, Key="k", VersionId=version,
                                              BypassGovernanceRetention=True)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.alice.list_object_versions(Bucket=self.bucket).get("Versions", []), [])

    def test_compliance_keeps_a_version_even_from_the_bypass(self) -> None:
        version = self.put(self.bucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(403, "AccessDenied", self.bypassing.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True)
        self.assertEqual(self.read(self.bucket, "k", version), b"data")

    def test_a_delete_without_version_id_adds_a_marker(self) -> None:
        """
        DeleteObject without a version id of a locked key: 204 and a delete
        marker; the locked version stays, readable by its id.
        """
        version = self.put(self.bucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
        answer = self.alice.delete_object(Bucket=self.bucket, Key="k")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertTrue(answer["DeleteMarker"])
        self.assertEqual(self.read(self.bucket, "k", version), b"data")
        # The marker itself is no locked version: it may go.
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=answer["VersionId"])
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"data")

    def test_delete_objects_refuses_locked_versions_only(self) -> None:
        """
        DeleteObjects of a version under retention and one without: an
        Error entry (Key, VersionId, Code AccessDenied) for the first, a
        Deleted entry for the second; with the bypass, the first is deleted.
        """
        locked = self.put(self.bucket, "k1", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        free = self.put(self.bucket, "k2")
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [
            {"Key": "k1", "VersionId": locked}, {"Key": "k2", "VersionId": free}]})
        self.assertEqual([(e["Key"], e["VersionId"], e["Code"]) for e in answer.get("Errors", [])],
                         [("k1", locked, "AccessDenied")])
        self.assertEqual([(d["Key"], d["VersionId"]) for d in answer["Deleted"]], [("k2", free)])
        self.assertEqual(self.read(self.bucket, "k1", locked), b"data")
        answer = self.bypassing.delete_objects(Bucket=self.bucket, BypassGovernanceRetention=True,
                                               Delete={"Objects": [{"Key": "k1", "VersionId": locked}]})
        self.assertEqual(answer.get("Errors", []), [])
        self.assertEqual([(d["Key"], d["VersionId"]) for d in answer["Deleted"]], [("k1", locked)])

    def test_delete_objects_keeps_compliance_and_legal_holds(self) -> None:
        """With the bypass, DeleteObjects still answers AccessDenied for COMPLIANCE retention and a legal hold."""
        compliance = self.put(self.bucket, "c", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
        held = self.put(self.bucket, "h", ObjectLockLegalHoldStatus="ON")
        answer = self.bypassing.delete_objects(Bucket=self.bucket, BypassGovernanceRetention=True, Delete={
            "Objects": [{"Key": "c", "VersionId": compliance}, {"Key": "h", "VersionId": held}]})
        self.assertEqual(sorted((e["Key"], e["VersionId"], e["Code"]) for e in answer.get("Errors", [])),
                         [("c", compliance, "AccessDenied"), ("h", held, "AccessDenied")])
        self.assertEqual(answer.get("Deleted", []), [])
        self.assertEqual(self.read(self.bucket, "c", compliance), b"data")
        self.assertEqual(self.read(self.bucket, "h", held), b"data")
        self.release(self.bucket, "h", held)

    def test_delete_objects_without_version_ids_adds_markers(self) -> None:
        """DeleteObjects without version ids of locked keys: Deleted entries with delete markers; versions kept."""
        version = self.put(self.bucket, "k", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=soon())
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "k"}]})
        self.assertEqual([(d["Key"], d["DeleteMarker"]) for d in answer["Deleted"]], [("k", True)])
        self.assertEqual(self.read(self.bucket, "k", version), b"data")


class UploadChecks(LockChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.locked_bucket()

    def assertLock(self, answer: dict, mode: Optional[str], until: Optional[datetime.datetime], hold: str) -> None:
        """A GET or HEAD answer shows the lock: ObjectLockMode, ObjectLockRetainUntilDate, ObjectLockLegalHoldStatus."""
        self.assertEqual(answer.get("ObjectLockMode"), mode)
        self.assertEqual(answer.get("ObjectLockRetainUntilDate"), until)
        self.assertEqual(answer.get("ObjectLockLegalHoldStatus"), hold)

    def test_put_with_lock_headers(self) -> None:
        """
        PutObject with a mode, a date and a legal hold: HEAD and GET answer
        them (x-amz-object-lock-mode, -retain-until-date in ISO 8601,
        -legal-hold), of the latest and of the version by id.
        """
        until = soon()
        version = self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until,
                           ObjectLockLegalHoldStatus="ON")
        for extra in ({}, {"VersionId": version}):
            self.assertLock(self.alice.head_object(Bucket=self.bucket, Key="k", **extra), "GOVERNANCE", until, "ON")
            got = self.alice.get_object(Bucket=self.bucket, Key="k", **extra)
            self.assertLock(got, "GOVERNANCE", until, "ON")
            self.assertEqual(got["Body"].read(), b"data")
        raw = headers(self.alice.head_object(Bucket=self.bucket, Key="k"))["x-amz-object-lock-retain-until-date"]
        self.assertEqual(datetime.datetime.fromisoformat(raw.replace("Z", "+00:00")), until)
        self.release(self.bucket, "k", version)

    def test_bad_lock_headers_are_invalid_arguments(self) -> None:
        """
        A mode without a date, a date without a mode, an unknown mode, a
        date in the past, an unknown legal hold status: 400 InvalidArgument,
        and nothing written.
        """
        body = {"Body": b"x", "ContentMD5": md5(b"x")}
        for lock in ({"ObjectLockMode": "GOVERNANCE"}, {"ObjectLockRetainUntilDate": soon()},
                     {"ObjectLockMode": "abc", "ObjectLockRetainUntilDate": soon()},
                     {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": soon(-1)},
                     {"ObjectLockLegalHoldStatus": "abc"}):
            self.assertS3Error(400, "InvalidArgument", self.alice.put_object, Bucket=self.bucket, Key="k", **body,
                               **lock)
        self.assertEqual(self.alice.list_object_versions(Bucket=self.bucket).get("Versions", []), [])

    def test_lock_headers_in_a_bucket_without_object_lock(self) -> None:
        bucket = self.new_bucket()
        self.assertS3Error(400, "InvalidRequest", self.alice.put_object, Bucket=bucket, Key="k", Body=b"x",
                           ContentMD5=md5(b"x"), ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(400, "InvalidRequest", self.alice.put_object, Bucket=bucket, Key="k", Body=b"x",
                           ContentMD5=md5(b"x"), ObjectLockLegalHoldStatus="ON")

    def test_a_put_needs_content_md5_or_a_checksum(self) -> None:
        """
        A PutObject to a bucket with Object Lock without Content-MD5 or an
        x-amz-checksum-* header: 400 InvalidRequest; with either, 200.
        """
        unchecked = self.unchecked_client()
        error = self.assertS3Error(400, "InvalidRequest", unchecked.put_object, Bucket=self.bucket, Key="k",
                                   Body=b"x")
        self.assertIn("Content-MD5", error.response["Error"]["Message"])
        unchecked.put_object(Bucket=self.bucket, Key="k", Body=b"x", ContentMD5=md5(b"x"))
        unchecked.put_object(Bucket=self.bucket, Key="k", Body=b"x", ChecksumAlgorithm="SHA256")
        self.assertEqual(len(self.alice.list_object_versions(Bucket=self.bucket)["Versions"]), 2)

    def test_multipart_upload_with_lock_headers(self) -> None:
        """CreateMultipartUpload with a mode, a date and a legal hold: the completed version has them."""
        until = soon()
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="m", ObjectLockMode="COMPLIANCE",
                                                    ObjectLockRetainUntilDate=until,
                                                    ObjectLockLegalHoldStatus="ON")["UploadId"]
        part = self.alice.upload_part(Bucket=self.bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"part",
                                      ContentMD5=md5(b"part"))
        done = self.alice.complete_multipart_upload(Bucket=self.bucket, Key="m", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertLock(self.alice.head_object(Bucket=self.bucket, Key="m", VersionId=done["VersionId"]),
                        "COMPLIANCE", until, "ON")
        self.assertS3Error(403, "AccessDenied", self.bypassing.delete_object, Bucket=self.bucket, Key="m",
                           VersionId=done["VersionId"], BypassGovernanceRetention=True)

    def test_bad_lock_headers_of_a_multipart_upload(self) -> None:
        self.assertS3Error(400, "InvalidArgument", self.alice.create_multipart_upload, Bucket=self.bucket, Key="m",
                           ObjectLockMode="GOVERNANCE")
        self.assertS3Error(400, "InvalidArgument", self.alice.create_multipart_upload, Bucket=self.bucket, Key="m",
                           ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(-1))

    def test_copy_with_lock_headers(self) -> None:
        """
        CopyObject with a mode, a date and a legal hold: the copy has them;
        a copy without takes none of its source's (the bucket has no
        default retention).
        """
        source = self.put(self.bucket, "s", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon(),
                          ObjectLockLegalHoldStatus="ON")
        until = soon(2)
        copied = self.alice.copy_object(Bucket=self.bucket, Key="c", CopySource={"Bucket": self.bucket, "Key": "s"},
                                        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                                        ObjectLockLegalHoldStatus="ON")
        self.assertLock(self.alice.head_object(Bucket=self.bucket, Key="c", VersionId=copied["VersionId"]),
                        "COMPLIANCE", until, "ON")
        plain = self.alice.copy_object(Bucket=self.bucket, Key="p", CopySource={"Bucket": self.bucket, "Key": "s"})
        self.assertS3Error(404, "NoSuchObjectLockConfiguration", self.alice.get_object_retention, Bucket=self.bucket,
                           Key="p", VersionId=plain["VersionId"])
        self.assertEqual(self.alice.get_object_legal_hold(Bucket=self.bucket, Key="p")["LegalHold"],
                         {"Status": "OFF"})
        self.release(self.bucket, "s", source)


# -- through s3balance ----------------------------------------------------------------------------------------


class BalancedCase(ConformanceCase):
    """The checks through the shared daemon; the bypass is alice-bypass's."""

    def setUp(self) -> None:
        super().setUp()
        self.bypassing = self.gateway.client("alice-bypass", SECRETS["alice-bypass"])

    def unchecked_client(self) -> Any:
        return self.gateway.client("alice", SECRETS["alice"], checksums="when_required")


class LockConfigurationTests(LockConfigurationChecks, BalancedCase):
    def test_another_account_may_not_configure(self) -> None:
        """Without a grant, bob may neither read nor put alice's bucket's configuration (403 AccessDenied)."""
        bucket = self.locked_bucket()
        self.assertDenied(self.bob.get_object_lock_configuration, Bucket=bucket)
        self.assertDenied(self.bob.put_object_lock_configuration, Bucket=bucket,
                          ObjectLockConfiguration=default_retention("COMPLIANCE", Years=1))
        self.assertEqual(self.alice.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
                         {"ObjectLockEnabled": "Enabled"})


class RetentionTests(RetentionChecks, BalancedCase):
    def test_a_bypass_needs_a_credential_allowed_to(self) -> None:
        """
        The bypass header from alice's own credential (not allowed to
        bypass) weakens nothing: 403 AccessDenied, as without it.
        """
        until = soon(2)
        self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
        for retention in ({"Mode": "GOVERNANCE", "RetainUntilDate": soon(1)}, {},
                          {"Mode": "COMPLIANCE", "RetainUntilDate": until}):
            self.assertS3Error(403, "AccessDenied", self.alice.put_object_retention, Bucket=self.bucket, Key="k",
                               Retention=retention, BypassGovernanceRetention=True)
        self.assertEqual(self.retention(self.bucket, "k"), {"Mode": "GOVERNANCE", "RetainUntilDate": until})

    def test_another_account_may_not_read_or_set_locks(self) -> None:
        version = self.put(self.bucket)
        self.assertDenied(self.bob.put_object_retention, Bucket=self.bucket, Key="k", VersionId=version,
                          Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon()})
        self.assertDenied(self.bob.put_object_legal_hold, Bucket=self.bucket, Key="k", VersionId=version,
                          LegalHold={"Status": "ON"})
        self.assertDenied(self.bob.get_object_retention, Bucket=self.bucket, Key="k", VersionId=version)
        self.assertDenied(self.bob.get_object_legal_hold, Bucket=self.bucket, Key="k", VersionId=version)
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=version)


class LegalHoldTests(LegalHoldChecks, BalancedCase):
    pass


class DeletionTests(DeletionChecks, BalancedCase):
    def test_a_bypass_needs_a_credential_allowed_to(self) -> None:
        """
        DeleteObject and DeleteObjects with the bypass header from alice's
        own credential (not allowed to bypass): 403 AccessDenied and an
        AccessDenied Error entry; the version stays.
        """
        version = self.put(self.bucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon())
        self.assertS3Error(403, "AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=version, BypassGovernanceRetention=True)
        answer = self.alice.delete_objects(Bucket=self.bucket, BypassGovernanceRetention=True,
                                           Delete={"Objects": [{"Key": "k", "VersionId": version}]})
        self.assertEqual([(e["Key"], e["VersionId"], e["Code"]) for e in answer["Errors"]],
                         [("k", version, "AccessDenied")])
        self.assertEqual(self.read(self.bucket, "k", version), b"data")
        self.release(self.bucket, "k", version)


class UploadTests(UploadChecks, BalancedCase):
    pass


# -- the same checks directly against SeaweedFS (the reference) --------------------------------------------------


class SeaweedFSCase(ConformanceCase):
    """
    The checks run directly against the shared SeaweedFS, with its one
    identity (allowed everything, the bypass too) as alice.
    """

    def setUp(self) -> None:
        self.server = shared_seaweedfs()
        self.alice = self.server.client()
        self.bypassing = self.alice

    def unchecked_client(self) -> Any:
        return self.server.client(checksums="when_required")

    def new_bucket(self, acl: Optional[str] = None, client: Any = None) -> str:
        name = unique_bucket_name("lref")
        (client or self.alice).create_bucket(Bucket=name, **({"ACL": acl} if acl else {}))
        return name


class SeaweedFSLockConfigurationTests(LockConfigurationChecks, SeaweedFSCase):
    test_a_period_not_positive_is_an_invalid_argument = known_deviation(
        LockConfigurationChecks.test_a_period_not_positive_is_an_invalid_argument,
        "SeaweedFS answers 400 InvalidRetentionPeriod (as RGW)")


_NO_RETENTION = "SeaweedFS answers 404 ObjectLockConfigurationNotFoundError for a version without retention"


class SeaweedFSRetentionTests(RetentionChecks, SeaweedFSCase):
    test_a_date_in_the_past_is_an_invalid_argument = known_deviation(
        RetentionChecks.test_a_date_in_the_past_is_an_invalid_argument, "SeaweedFS answers 400 InvalidRequest")
    test_a_version_without_retention = known_deviation(RetentionChecks.test_a_version_without_retention,
                                                       _NO_RETENTION)
    test_retention_of_one_version = known_deviation(RetentionChecks.test_retention_of_one_version, _NO_RETENTION)
    test_removing_retention = known_deviation(
        RetentionChecks.test_removing_retention, "SeaweedFS answers 400 InvalidRequest to an empty Retention")


class SeaweedFSLegalHoldTests(LegalHoldChecks, SeaweedFSCase):
    pass


class SeaweedFSDeletionTests(DeletionChecks, SeaweedFSCase):
    pass


class SeaweedFSUploadTests(UploadChecks, SeaweedFSCase):
    test_bad_lock_headers_are_invalid_arguments = known_deviation(
        UploadChecks.test_bad_lock_headers_are_invalid_arguments, "SeaweedFS answers 400 InvalidRequest")
    test_bad_lock_headers_of_a_multipart_upload = known_deviation(
        UploadChecks.test_bad_lock_headers_of_a_multipart_upload, "SeaweedFS answers 400 InvalidRequest")
    test_a_put_needs_content_md5_or_a_checksum = known_deviation(
        UploadChecks.test_a_put_needs_content_md5_or_a_checksum, "SeaweedFS accepts a PUT with neither")
    test_copy_with_lock_headers = known_deviation(
        UploadChecks.test_copy_with_lock_headers,
        "SeaweedFS gives the copy its source's retention instead of the request's")
