"""
Conformance of object versioning through a running daemon: the versioning
behaviours a standard S3 conformance suite checks, each as S3 answers it,
with boto3 for the account alice (the buckets' owner), bob and an unsigned
client:

  - Put and GetBucketVersioning (Enabled, Suspended, a never-versioned
    bucket, an invalid Status, MFA delete);
  - objects in an Enabled bucket: a version id for every write, GET and
    HEAD of one version, delete markers, deleting one version, unknown and
    malformed version ids;
  - the "null" version: objects written before versioning, writes and
    deletes while versioning is Suspended;
  - ListObjectVersions (order, IsLatest, Prefix, Delimiter, MaxKeys with
    KeyMarker and VersionIdMarker, EncodingType=url), and ListObjects and
    ListObjectsV2 showing only live latest versions;
  - DeleteObjects with and without version ids;
  - CopyObject and UploadPartCopy from a source version, the version id of
    a completed multipart upload;
  - object tags and ACLs of one version;
  - DeleteBucket of a bucket holding only noncurrent versions or delete
    markers;
  - concurrent writes (and deletes) of one key.

The core of these checks also runs directly against SeaweedFS (the
C{SeaweedFS*} classes at the end), so that the expectations are checked on
a second implementation.  Where SeaweedFS answers otherwise than S3's
documentation says, the test follows S3, says so, and is marked C{todo}
(an expected failure) on SeaweedFS with what SeaweedFS answers.

Not here, with the reason:
  - MFA delete: s3balance has no MFA devices; enabling it answers 501
    NotImplemented (checked here);
  - Object Lock, retention and legal holds (they need versioning but are a
    feature of their own);
  - lifecycle expiry of noncurrent versions and delete markers (the rules
    are checked in C{tests.test_conformance_lifecycle}).
"""

from __future__ import annotations

import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from tests.conformance import ALL_USERS, SECRETS, ConformanceCase, grants
from tests.harness import shared_seaweedfs, unique_bucket_name

MIB = 1024 * 1024

# Version ids S3 could never have made: refused before any lookup.
MALFORMED_VERSION_ID = "not a version id!"


def headers(answer: dict) -> dict:
    """The HTTP headers (names in lower case) of a boto3 answer, or of a ClientError's response."""
    return answer["ResponseMetadata"]["HTTPHeaders"]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> Optional[str]:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


# The checks are mixins, so that trial runs them only in the classes below
# that say where (s3balance, or SeaweedFS directly); a type checker sees them
# as conformance tests.
_Checks = ConformanceCase if TYPE_CHECKING else object


class VersioningChecks(_Checks):
    """
    Helpers for conformance tests on versioned buckets of alice's; the
    concrete case also gives C{another_alice()}, a new client for alice
    (one per thread in the concurrency tests).
    """

    def versioned_bucket(self, status: str = "Enabled") -> str:
        bucket = self.new_bucket()
        self.set_versioning(bucket, status)
        return bucket

    def set_versioning(self, bucket: str, status: str) -> None:
        answer = self.alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)

    def put(self, bucket: str, key: str, body: bytes) -> Any:
        """Write C{body} at C{key}; the version id S3 answered (None if it answered none)."""
        return self.alice.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")

    def read(self, bucket: str, key: str, version: Optional[str] = None) -> bytes:
        extra = {"VersionId": version} if version is not None else {}
        return self.alice.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()

    def listing(self, bucket: str, client: Any = None, **params: Any) -> tuple[dict, list[tuple[str, str, str, bool]]]:
        """
        The ListObjectVersions answer as boto3 parses it, and its entries in
        the order of the XML document (boto3 parts versions from delete
        markers): (C{"version"} or C{"marker"}, key, version id, IsLatest),
        keys decoded when the answer says EncodingType url.
        """
        client = client or self.alice
        bodies: list[bytes] = []

        def keep(response_dict: dict, **_: Any) -> None:
            bodies.append(response_dict["body"])

        event = "before-parse.s3.ListObjectVersions"
        client.meta.events.register(event, keep)
        try:
            answer = client.list_object_versions(Bucket=bucket, **params)
        finally:
            client.meta.events.unregister(event, keep)
        root = ET.fromstring(bodies[-1])
        encoded = _child(root, "EncodingType") == "url"
        entries = []
        for element in root:
            kind = {"Version": "version", "DeleteMarker": "marker"}.get(_local(element.tag))
            if kind is None:
                continue
            key = _child(element, "Key") or ""
            entries.append((kind, urllib.parse.unquote_plus(key) if encoded else key,
                            _child(element, "VersionId") or "", _child(element, "IsLatest") == "true"))
        return answer, entries

    def entries(self, bucket: str, **params: Any) -> list[tuple[str, str, str, bool]]:
        return self.listing(bucket, **params)[1]

    def raw_body(self, client: Any, operation: str, call: Callable[[], Any]) -> bytes:
        """The body of the answer to C{call}, an C{operation} of C{client}, as it came."""
        bodies: list[bytes] = []

        def keep(response_dict: dict, **_: Any) -> None:
            bodies.append(response_dict["body"])

        event = f"before-parse.s3.{operation}"
        client.meta.events.register(event, keep)
        try:
            call()
        finally:
            client.meta.events.unregister(event, keep)
        return bodies[-1]


def version(key: str, version_id: str, latest: bool = False) -> tuple[str, str, str, bool]:
    return ("version", key, version_id, latest)


def marker(key: str, version_id: str, latest: bool = False) -> tuple[str, str, str, bool]:
    return ("marker", key, version_id, latest)


def known_deviation(method: Callable[..., Any], reason: str) -> Callable[..., Any]:
    """C{method} as a test expected to fail (trial's C{todo}) for C{reason}."""

    def test(self: Any) -> Any:
        return method(self)

    test.__doc__ = method.__doc__
    test.todo = reason  # type: ignore[attr-defined]
    return test


# -- the checks ---------------------------------------------------------------------------------------------------


class BucketVersioningChecks(VersioningChecks):
    def test_a_new_bucket_answers_no_status(self) -> None:
        """GetBucketVersioning of a bucket never versioned answers 200 and a configuration without Status or MFADelete."""
        answer = self.alice.get_bucket_versioning(Bucket=self.new_bucket())
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertNotIn("Status", answer)
        self.assertNotIn("MFADelete", answer)

    def test_enable_suspend_and_enable_again(self) -> None:
        """
        PutBucketVersioning answers 200 and GetBucketVersioning the Status
        put: Enabled, Suspended, Enabled again.  A never-versioned bucket may
        be Suspended straight away.
        """
        bucket = self.new_bucket()
        for status in ("Enabled", "Suspended", "Enabled"):
            self.set_versioning(bucket, status)
            self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], status)
        other = self.new_bucket()
        self.set_versioning(other, "Suspended")
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=other)["Status"], "Suspended")

    def test_an_invalid_status_is_malformed_xml(self) -> None:
        """
        A Status other than Enabled or Suspended ("Bogus", "enabled",
        "Disabled") answers 400 MalformedXML and leaves the configuration as
        it was.  S3 answers MalformedXML (the document does not validate
        against its schema, where Status is an enumeration), not
        IllegalVersioningConfigurationException, which S3 keeps for
        configurations that are valid XML but not allowed (e.g. MFA delete
        asked without an MFA).  SeaweedFS answers 400 InvalidRequest.
        """
        bucket = self.new_bucket()
        for status in ("Bogus", "enabled", "Disabled"):
            self.assertS3Error(400, "MalformedXML", self.alice.put_bucket_versioning, Bucket=bucket,
                               VersioningConfiguration={"Status": status})
        self.assertNotIn("Status", self.alice.get_bucket_versioning(Bucket=bucket))
        self.set_versioning(bucket, "Enabled")
        self.assertS3Error(400, "MalformedXML", self.alice.put_bucket_versioning, Bucket=bucket,
                           VersioningConfiguration={"Status": "Bogus"})
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], "Enabled")

    def test_mfa_delete_is_not_implemented(self) -> None:
        """
        Enabling MFADelete (with an x-amz-mfa header) answers 501
        NotImplemented: s3balance has no MFA devices.  The configuration is
        left as it was.  (S3 would check the MFA; SeaweedFS accepts and
        ignores MFADelete.)
        """
        bucket = self.new_bucket()
        self.assertS3Error(501, "NotImplemented", self.alice.put_bucket_versioning, Bucket=bucket,
                           VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
                           MFA="arn:aws:iam::111111111111:mfa/alice 123456")
        answer = self.alice.get_bucket_versioning(Bucket=bucket)
        self.assertNotIn("Status", answer)
        self.assertNotIn("MFADelete", answer)


class VersionedObjectChecks(VersioningChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.versioned_bucket()

    def test_each_put_answers_a_new_version_id(self) -> None:
        """Every PutObject in an Enabled bucket answers x-amz-version-id, a new one each time (never "null")."""
        answers = [self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"%d" % n) for n in range(3)]
        ids = [answer["VersionId"] for answer in answers]
        self.assertEqual(len(set(ids)), 3, ids)
        self.assertNotIn("null", ids)
        for answer, version_id in zip(answers, ids, strict=True):
            self.assertEqual(headers(answer)["x-amz-version-id"], version_id)
        other = self.put(self.bucket, "other", b"x")
        self.assertNotIn(other, ids)

    def test_get_and_head_of_one_version(self) -> None:
        """GET and HEAD with a versionId answer that version's bytes, ETag, length and x-amz-version-id."""
        first = self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"first")
        second = self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"second body")
        for answer, body in ((first, b"first"), (second, b"second body")):
            got = self.alice.get_object(Bucket=self.bucket, Key="k", VersionId=answer["VersionId"])
            self.assertEqual((got["Body"].read(), got["ETag"], got["VersionId"]), (body, answer["ETag"],
                                                                                    answer["VersionId"]))
            head = self.alice.head_object(Bucket=self.bucket, Key="k", VersionId=answer["VersionId"])
            self.assertEqual((head["ContentLength"], head["ETag"], head["VersionId"]), (len(body), answer["ETag"],
                                                                                        answer["VersionId"]))

    def test_get_without_a_version_answers_the_latest(self) -> None:
        """GET and HEAD without a versionId answer the latest version, and its id in x-amz-version-id."""
        self.put(self.bucket, "k", b"old")
        latest = self.put(self.bucket, "k", b"new")
        got = self.alice.get_object(Bucket=self.bucket, Key="k")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"new", latest))
        self.assertEqual(self.alice.head_object(Bucket=self.bucket, Key="k")["VersionId"], latest)

    def test_list_versions_newest_first(self) -> None:
        """
        ListObjectVersions answers every version, keys in order and each
        key's versions newest first, the newest IsLatest, with its ETag and
        Size.
        """
        a = [self.put(self.bucket, "a", b"a" * (n + 1)) for n in range(3)]
        b = [self.put(self.bucket, "b", b"b")]
        answer, entries = self.listing(self.bucket)
        self.assertEqual(entries, [version("a", a[2], True), version("a", a[1]), version("a", a[0]),
                                   version("b", b[0], True)])
        self.assertEqual([(v["Size"], v["IsLatest"]) for v in answer["Versions"]],
                         [(3, True), (2, False), (1, False), (1, True)])
        self.assertFalse(answer["IsTruncated"])
        self.assertNotIn("DeleteMarkers", answer)
        etag = self.alice.head_object(Bucket=self.bucket, Key="a", VersionId=a[1])["ETag"]
        self.assertEqual(answer["Versions"][1]["ETag"], etag)

    def test_delete_adds_a_delete_marker(self) -> None:
        """
        DELETE without a versionId answers 204 with x-amz-delete-marker: true
        and the new marker's x-amz-version-id; the marker is listed (in
        DeleteMarkers) as the key's latest, the versions stay, noncurrent.
        """
        v1 = self.put(self.bucket, "k", b"one")
        answer = self.alice.delete_object(Bucket=self.bucket, Key="k")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertTrue(answer["DeleteMarker"])
        self.assertEqual(headers(answer)["x-amz-delete-marker"], "true")
        deleted = answer["VersionId"]
        self.assertNotIn(deleted, (v1, "null"))
        listed, entries = self.listing(self.bucket)
        self.assertEqual(entries, [marker("k", deleted, True), version("k", v1)])
        self.assertEqual([(m["Key"], m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]],
                         [("k", deleted, True)])
        self.assertEqual(self.read(self.bucket, "k", v1), b"one")

    def test_a_key_behind_a_delete_marker_is_not_found(self) -> None:
        """
        GET of a key whose latest version is a delete marker answers 404
        NoSuchKey with x-amz-delete-marker: true; HEAD answers 404 with the
        same header.
        """
        self.put(self.bucket, "k", b"one")
        self.alice.delete_object(Bucket=self.bucket, Key="k")
        error = self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=self.bucket, Key="k")
        self.assertEqual(headers(error.response).get("x-amz-delete-marker"), "true")
        error = self.assertS3Error(404, None, self.alice.head_object, Bucket=self.bucket, Key="k")
        self.assertEqual(headers(error.response).get("x-amz-delete-marker"), "true")

    def test_get_and_head_of_a_delete_marker_are_not_allowed(self) -> None:
        """
        GET and HEAD of a delete marker by its version id answer 405
        MethodNotAllowed (HEAD without a body) with x-amz-delete-marker: true
        and Last-Modified, as S3 documents.  (SeaweedFS answers 404
        NoSuchKey.)
        """
        self.put(self.bucket, "k", b"one")
        deleted = self.alice.delete_object(Bucket=self.bucket, Key="k")["VersionId"]
        error = self.assertS3Error(405, "MethodNotAllowed", self.alice.get_object, Bucket=self.bucket, Key="k",
                                   VersionId=deleted)
        self.assertEqual(headers(error.response).get("x-amz-delete-marker"), "true")
        self.assertIn("last-modified", headers(error.response))
        error = self.assertS3Error(405, None, self.alice.head_object, Bucket=self.bucket, Key="k", VersionId=deleted)
        self.assertEqual(headers(error.response).get("x-amz-delete-marker"), "true")

    def test_deleting_one_version_leaves_the_others(self) -> None:
        """
        DELETE with the latest version's id answers 204 and that id, and no
        x-amz-delete-marker; that version is gone for good (404
        NoSuchVersion), the one before becomes the latest, no marker is made.
        """
        v1 = self.put(self.bucket, "k", b"one")
        v2 = self.put(self.bucket, "k", b"two")
        answer = self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=v2)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(answer["VersionId"], v2)
        self.assertFalse(answer.get("DeleteMarker", False))
        self.assertEqual(self.entries(self.bucket), [version("k", v1, True)])
        self.assertEqual(self.read(self.bucket, "k"), b"one")
        self.assertS3Error(404, "NoSuchVersion", self.alice.get_object, Bucket=self.bucket, Key="k", VersionId=v2)

    def test_deleting_a_noncurrent_version(self) -> None:
        """DELETE of a noncurrent version removes only it; the latest stays the latest."""
        v1 = self.put(self.bucket, "k", b"one")
        v2 = self.put(self.bucket, "k", b"two")
        v3 = self.put(self.bucket, "k", b"three")
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=v2)
        self.assertEqual(self.entries(self.bucket), [version("k", v3, True), version("k", v1)])
        self.assertEqual(self.read(self.bucket, "k"), b"three")

    def test_deleting_the_delete_marker_restores_the_object(self) -> None:
        """
        DELETE of the delete marker by its version id answers 204,
        x-amz-delete-marker: true and the marker's id; the version before it
        is the latest again and GET answers it.
        """
        v1 = self.put(self.bucket, "k", b"one")
        deleted = self.alice.delete_object(Bucket=self.bucket, Key="k")["VersionId"]
        answer = self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=deleted)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertTrue(answer["DeleteMarker"])
        self.assertEqual(answer["VersionId"], deleted)
        self.assertEqual(self.entries(self.bucket), [version("k", v1, True)])
        got = self.alice.get_object(Bucket=self.bucket, Key="k")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"one", v1))

    def test_removing_every_version_leaves_nothing(self) -> None:
        """
        Once every version and marker of a key is deleted by id, it lists no
        version, ListObjectsV2 lists nothing, and GET answers 404 NoSuchKey
        without x-amz-delete-marker.
        """
        ids = [self.put(self.bucket, "k", b"%d" % n) for n in range(3)]
        ids.append(self.alice.delete_object(Bucket=self.bucket, Key="k")["VersionId"])
        for version_id in ids:
            self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=version_id)
        answer, entries = self.listing(self.bucket)
        self.assertEqual(entries, [])
        self.assertNotIn("Versions", answer)
        self.assertNotIn("DeleteMarkers", answer)
        self.assertEqual(self.alice.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)
        error = self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=self.bucket, Key="k")
        self.assertNotIn("x-amz-delete-marker", headers(error.response))

    def test_an_unknown_version_is_no_such_version(self) -> None:
        """
        GET and HEAD of a well-formed version id that this key does not have
        (another key's, or one deleted) answer 404 NoSuchVersion (HEAD 404
        without a body); the key's own versions are unharmed.
        """
        v1 = self.put(self.bucket, "k", b"one")
        others = self.put(self.bucket, "other", b"x")
        gone = self.put(self.bucket, "k", b"two")
        self.alice.delete_object(Bucket=self.bucket, Key="k", VersionId=gone)
        for version_id in (others, gone):
            self.assertS3Error(404, "NoSuchVersion", self.alice.get_object, Bucket=self.bucket, Key="k",
                               VersionId=version_id)
            self.assertS3Error(404, None, self.alice.head_object, Bucket=self.bucket, Key="k", VersionId=version_id)
        self.assertS3Error(404, "NoSuchVersion", self.alice.get_object, Bucket=self.bucket, Key="missing",
                           VersionId=others)
        self.assertEqual(self.read(self.bucket, "k", v1), b"one")

    def test_a_malformed_version_id_is_an_invalid_argument(self) -> None:
        """
        GET, HEAD and DELETE with a version id S3 could not have made answer
        400 InvalidArgument "Invalid version id specified" (HEAD 400 without
        a body), and delete nothing.  (SeaweedFS answers 404 NoSuchVersion
        to the GET.)
        """
        self.put(self.bucket, "k", b"one")
        error = self.assertS3Error(400, "InvalidArgument", self.alice.get_object, Bucket=self.bucket, Key="k",
                                   VersionId=MALFORMED_VERSION_ID)
        self.assertEqual(error.response["Error"]["Message"], "Invalid version id specified")
        self.assertS3Error(400, None, self.alice.head_object, Bucket=self.bucket, Key="k",
                           VersionId=MALFORMED_VERSION_ID)
        self.assertS3Error(400, "InvalidArgument", self.alice.delete_object, Bucket=self.bucket, Key="k",
                           VersionId=MALFORMED_VERSION_ID)
        self.assertEqual(self.read(self.bucket, "k"), b"one")

    def test_object_listings_show_the_latest_live_versions(self) -> None:
        """
        ListObjects and ListObjectsV2 list each key once, with its latest
        version's ETag and size, and not a key whose latest version is a
        delete marker.
        """
        self.put(self.bucket, "a", b"old")
        latest = self.alice.put_object(Bucket=self.bucket, Key="a", Body=b"newest")
        self.put(self.bucket, "gone", b"x")
        self.alice.delete_object(Bucket=self.bucket, Key="gone")
        for answer in (self.alice.list_objects(Bucket=self.bucket), self.alice.list_objects_v2(Bucket=self.bucket)):
            self.assertEqual([(o["Key"], o["ETag"], o["Size"]) for o in answer.get("Contents", [])],
                             [("a", latest["ETag"], 6)])


class NullVersionChecks(VersioningChecks):
    def test_an_object_from_before_versioning_is_the_null_version(self) -> None:
        """
        An object written before versioning was enabled is the "null"
        version: its PUT and GET answered no x-amz-version-id; once newer
        versions are written it is listed last, noncurrent, as "null", and
        GET and HEAD with versionId=null still answer it, with
        x-amz-version-id: null.
        """
        bucket = self.new_bucket()
        written = self.alice.put_object(Bucket=bucket, Key="k", Body=b"from before")
        self.assertNotIn("x-amz-version-id", headers(written))
        self.assertNotIn("x-amz-version-id", headers(self.alice.get_object(Bucket=bucket, Key="k")))
        self.set_versioning(bucket, "Enabled")
        v1 = self.put(bucket, "k", b"one")
        v2 = self.put(bucket, "k", b"two")
        self.assertEqual(self.entries(bucket), [version("k", v2, True), version("k", v1), version("k", "null")])
        got = self.alice.get_object(Bucket=bucket, Key="k", VersionId="null")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"from before", "null"))
        self.assertEqual(headers(got)["x-amz-version-id"], "null")
        self.assertEqual(self.alice.head_object(Bucket=bucket, Key="k", VersionId="null")["ETag"], written["ETag"])

    def test_a_never_versioned_bucket_lists_null_versions(self) -> None:
        """ListObjectVersions of a bucket never versioned lists each object once, as its latest "null" version."""
        bucket = self.new_bucket()
        for key in ("a", "b"):
            self.put(bucket, key, b"x")
        self.put(bucket, "a", b"again")
        self.assertEqual(self.entries(bucket), [version("a", "null", True), version("b", "null", True)])

    def test_deleting_the_null_version(self) -> None:
        """
        DELETE with versionId=null of an object written before versioning
        answers 204 and x-amz-version-id: null and removes it: GET answers
        404 NoSuchKey, no version is listed, GET of versionId=null answers
        404 NoSuchVersion.
        """
        bucket = self.new_bucket()
        self.put(bucket, "k", b"from before")
        self.set_versioning(bucket, "Enabled")
        answer = self.alice.delete_object(Bucket=bucket, Key="k", VersionId="null")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(answer["VersionId"], "null")
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=bucket, Key="k")
        self.assertEqual(self.entries(bucket), [])
        self.assertS3Error(404, "NoSuchVersion", self.alice.get_object, Bucket=bucket, Key="k", VersionId="null")

    def test_the_null_version_goes_and_the_others_stay(self) -> None:
        """Deleting the null version under newer versions leaves them, the latest still the latest."""
        bucket = self.new_bucket()
        self.put(bucket, "k", b"from before")
        self.set_versioning(bucket, "Enabled")
        v1 = self.put(bucket, "k", b"one")
        self.alice.delete_object(Bucket=bucket, Key="k", VersionId="null")
        self.assertEqual(self.entries(bucket), [version("k", v1, True)])
        self.assertEqual(self.read(bucket, "k"), b"one")

    def test_a_suspended_put_replaces_the_null_version(self) -> None:
        """
        While versioning is Suspended, a PUT writes the null version,
        replacing the previous null version, and keeps the other versions:
        the key lists the null version (latest) and the versions written
        while Enabled, and GET answers x-amz-version-id: null.  The PUT
        answers no version id other than "null": S3's PutObject reference
        shows the answer of a versioning-suspended bucket without
        x-amz-version-id, and some implementations answer "null"; a client
        reads both as the null version.  (SeaweedFS lists the null version
        after the older ones.)
        """
        bucket = self.new_bucket()
        self.put(bucket, "k", b"from before")
        self.set_versioning(bucket, "Enabled")
        v1 = self.put(bucket, "k", b"one")
        self.set_versioning(bucket, "Suspended")
        for body in (b"suspended 1", b"suspended 2"):
            answer = self.alice.put_object(Bucket=bucket, Key="k", Body=body)
            self.assertEqual(answer.get("VersionId", "null"), "null")
        self.assertEqual(self.entries(bucket), [version("k", "null", True), version("k", v1)])
        got = self.alice.get_object(Bucket=bucket, Key="k")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"suspended 2", "null"))
        self.assertEqual(self.read(bucket, "k", "null"), b"suspended 2")
        self.assertEqual(self.read(bucket, "k", v1), b"one")

    def test_a_suspended_delete_adds_a_null_delete_marker(self) -> None:
        """
        While versioning is Suspended, DELETE without a versionId answers
        x-amz-delete-marker: true and replaces the null version by a delete
        marker of version id "null"; the versions written while Enabled stay.
        (SeaweedFS lists the null marker after the older versions.)
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        self.set_versioning(bucket, "Suspended")
        self.put(bucket, "k", b"suspended")
        answer = self.alice.delete_object(Bucket=bucket, Key="k")
        self.assertTrue(answer["DeleteMarker"])
        self.assertEqual(answer.get("VersionId", "null"), "null")
        self.assertEqual(self.entries(bucket), [marker("k", "null", True), version("k", v1)])
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=bucket, Key="k")
        self.assertEqual(self.read(bucket, "k", v1), b"one")

    def test_deleting_the_null_delete_marker(self) -> None:
        """DELETE of the null delete marker (versionId=null) removes it: the version before it is the latest again."""
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        self.set_versioning(bucket, "Suspended")
        self.alice.delete_object(Bucket=bucket, Key="k")
        answer = self.alice.delete_object(Bucket=bucket, Key="k", VersionId="null")
        self.assertEqual(answer["VersionId"], "null")
        self.assertEqual(self.entries(bucket), [version("k", v1, True)])
        self.assertEqual(self.read(bucket, "k"), b"one")

    def test_enabling_again_keeps_the_null_version(self) -> None:
        """A null version written while Suspended stays, noncurrent, under versions written once Enabled again."""
        bucket = self.versioned_bucket("Suspended")
        self.put(bucket, "k", b"suspended")
        self.set_versioning(bucket, "Enabled")
        v2 = self.put(bucket, "k", b"two")
        self.assertNotEqual(v2, "null")
        self.assertEqual(self.entries(bucket), [version("k", v2, True), version("k", "null")])
        self.assertEqual(self.read(bucket, "k", "null"), b"suspended")


class VersionListingChecks(VersioningChecks):
    KEYS = ("a", "b/1", "b/2", "c/d/e", "f")

    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.versioned_bucket()
        # Two versions of every key, newest last; "f" ends with a delete marker.
        self.ids = {key: [self.put(self.bucket, key, b"%s %d" % (key.encode(), n)) for n in range(2)]
                    for key in self.KEYS}
        self.marker = self.alice.delete_object(Bucket=self.bucket, Key="f")["VersionId"]

    def expected(self, *keys: str) -> list[tuple[str, str, str, bool]]:
        found = []
        for key in keys:
            if key == "f":
                found.append(marker(key, self.marker, True))
                found += [version(key, self.ids[key][1]), version(key, self.ids[key][0])]
            else:
                found += [version(key, self.ids[key][1], True), version(key, self.ids[key][0])]
        return found

    def test_everything(self) -> None:
        """ListObjectVersions lists every version and marker: keys in order, each key's newest first."""
        self.assertEqual(self.entries(self.bucket), self.expected(*self.KEYS))

    def test_a_prefix(self) -> None:
        """Prefix lists the versions of the keys under it only, and is answered back."""
        answer, entries = self.listing(self.bucket, Prefix="b/")
        self.assertEqual(entries, self.expected("b/1", "b/2"))
        self.assertEqual(answer["Prefix"], "b/")

    def test_a_delimiter(self) -> None:
        """Delimiter "/" rolls the keys under "b/" and "c/" up into CommonPrefixes, listed once each."""
        answer, entries = self.listing(self.bucket, Delimiter="/")
        self.assertEqual(entries, self.expected("a", "f"))
        self.assertEqual(answer["CommonPrefixes"], [{"Prefix": "b/"}, {"Prefix": "c/"}])
        self.assertEqual(answer["Delimiter"], "/")
        answer, entries = self.listing(self.bucket, Delimiter="/", Prefix="c/")
        self.assertEqual(entries, [])
        self.assertEqual(answer["CommonPrefixes"], [{"Prefix": "c/d/"}])

    def test_max_keys_and_the_next_markers(self) -> None:
        """
        MaxKeys 3 answers three entries (versions and markers alike),
        IsTruncated and NextKeyMarker / NextVersionIdMarker naming the last
        entry answered; following them page by page lists every entry once,
        in order, the last page not truncated and without next markers.
        """
        pages = []
        params: dict[str, Any] = {}
        for _ in range(20):
            answer, entries = self.listing(self.bucket, MaxKeys=3, **params)
            pages.append(entries)
            self.assertEqual(answer["MaxKeys"], 3)
            if not answer["IsTruncated"]:
                self.assertNotIn("NextKeyMarker", answer)
                self.assertNotIn("NextVersionIdMarker", answer)
                break
            self.assertEqual(len(entries), 3)
            self.assertEqual((answer["NextKeyMarker"], answer["NextVersionIdMarker"]), entries[-1][1:3])
            params = {"KeyMarker": answer["NextKeyMarker"], "VersionIdMarker": answer["NextVersionIdMarker"]}
        else:
            self.fail("still truncated after 20 pages")
        self.assertEqual([entry for page in pages for entry in page], self.expected(*self.KEYS))
        self.assertEqual(len(pages), 4)

    def test_a_version_id_marker_within_a_key(self) -> None:
        """
        KeyMarker with VersionIdMarker starts right after that version: the
        key's older versions, then the next keys; the markers are answered
        back.
        """
        newest = self.ids["b/1"][1]
        answer, entries = self.listing(self.bucket, KeyMarker="b/1", VersionIdMarker=newest)
        self.assertEqual(entries, [version("b/1", self.ids["b/1"][0])] + self.expected("b/2", "c/d/e", "f"))
        self.assertEqual((answer["KeyMarker"], answer["VersionIdMarker"]), ("b/1", newest))

    def test_a_key_marker_alone(self) -> None:
        """KeyMarker without VersionIdMarker starts at the key after it: none of the marker key's versions."""
        self.assertEqual(self.entries(self.bucket, KeyMarker="b/1"), self.expected("b/2", "c/d/e", "f"))

    def test_encoding_type_url(self) -> None:
        """
        EncodingType=url answers EncodingType url and the keys and common
        prefixes URL-encoded in the XML (a space, "+", "é" and a control
        character are not sent as such).  boto3, which asks for url encoding
        on every ListObjectVersions of its own accord, decodes them back to
        the keys written (it leaves them encoded when the caller asked).
        (SeaweedFS ignores EncodingType in ListObjectVersions.)
        """
        bucket = self.versioned_bucket()
        keys = ["a b+c", "d\u00e9f", "g\x01h", "p q/r"]
        for key in keys:
            self.put(bucket, key, b"x")
        body = self.raw_body(self.alice, "ListObjectVersions",
                             lambda: self.alice.list_object_versions(Bucket=bucket, EncodingType="url",
                                                                     Delimiter="/"))
        root = ET.fromstring(body)
        self.assertEqual(_child(root, "EncodingType"), "url")
        raw_keys = [_child(element, "Key") or "" for element in root if _local(element.tag) == "Version"]
        raw_prefixes = [_child(element, "Prefix") or "" for element in root if _local(element.tag) == "CommonPrefixes"]
        self.assertEqual([urllib.parse.unquote_plus(key) for key in raw_keys], keys[:3])
        self.assertEqual([urllib.parse.unquote_plus(prefix) for prefix in raw_prefixes], ["p q/"])
        for raw in raw_keys + raw_prefixes:
            self.assertFalse(set(raw) & {" ", "\u00e9", "\x01"}, raw)
        answer = self.alice.list_object_versions(Bucket=bucket, Delimiter="/")
        self.assertEqual([v["Key"] for v in answer["Versions"]], keys[:3])
        self.assertEqual(answer["CommonPrefixes"], [{"Prefix": "p q/"}])


class DeleteObjectsChecks(VersioningChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.versioned_bucket()

    def deleted(self, answer: dict) -> dict[str, dict]:
        self.assertNotIn("Errors", answer)
        return {entry["Key"]: entry for entry in answer["Deleted"]}

    def test_without_version_ids_delete_markers_are_added(self) -> None:
        """
        DeleteObjects without version ids adds a delete marker for each key
        (one never written too): each Deleted entry carries DeleteMarker true
        and the marker's DeleteMarkerVersionId, which ListObjectVersions
        lists as the key's latest.
        """
        v1 = self.put(self.bucket, "a", b"a")
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "never"}]})
        deleted = self.deleted(answer)
        self.assertEqual(set(deleted), {"a", "never"})
        for entry in deleted.values():
            self.assertTrue(entry["DeleteMarker"], entry)
        markers = {key: entry["DeleteMarkerVersionId"] for key, entry in deleted.items()}
        self.assertEqual(self.entries(self.bucket), [marker("a", markers["a"], True), version("a", v1),
                                                     marker("never", markers["never"], True)])

    def test_with_version_ids_those_versions_are_removed(self) -> None:
        """
        DeleteObjects with version ids removes those versions only: each
        Deleted entry echoes the Key and VersionId, without DeleteMarker; no
        marker is added.
        """
        a = [self.put(self.bucket, "a", b"%d" % n) for n in range(2)]
        b = [self.put(self.bucket, "b", b"%d" % n) for n in range(2)]
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [
            {"Key": "a", "VersionId": a[1]}, {"Key": "b", "VersionId": b[0]}]})
        deleted = self.deleted(answer)
        self.assertEqual({key: entry["VersionId"] for key, entry in deleted.items()}, {"a": a[1], "b": b[0]})
        self.assertFalse(any(entry.get("DeleteMarker") for entry in deleted.values()), deleted)
        self.assertEqual(self.entries(self.bucket), [version("a", a[0], True), version("b", b[1], True)])

    def test_deleting_delete_markers_by_version_id(self) -> None:
        """
        DeleteObjects naming delete markers by version id removes them and
        restores the objects: each Deleted entry carries the VersionId,
        DeleteMarker true and DeleteMarkerVersionId, both the marker's id (as
        S3's DeleteObjects reference shows).  (SeaweedFS leaves VersionId
        out.)
        """
        v1 = self.put(self.bucket, "a", b"a")
        deleted_marker = self.alice.delete_object(Bucket=self.bucket, Key="a")["VersionId"]
        answer = self.alice.delete_objects(Bucket=self.bucket, Delete={"Objects": [
            {"Key": "a", "VersionId": deleted_marker}]})
        entry = self.deleted(answer)["a"]
        self.assertEqual((entry.get("VersionId"), entry.get("DeleteMarker"), entry.get("DeleteMarkerVersionId")),
                         (deleted_marker, True, deleted_marker))
        self.assertEqual(self.entries(self.bucket), [version("a", v1, True)])
        self.assertEqual(self.read(self.bucket, "a"), b"a")


class CopyAndMultipartChecks(VersioningChecks):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.versioned_bucket()
        self.v1 = self.put(self.bucket, "src", b"first version")
        self.v2 = self.put(self.bucket, "src", b"second")

    def test_copy_of_a_source_version(self) -> None:
        """
        CopyObject from a source versionId copies that version's bytes; the
        copy answers its own new version id, which is the copy's latest.
        """
        answer = self.alice.copy_object(Bucket=self.bucket, Key="dst",
                                        CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": self.v1})
        self.assertNotIn(answer["VersionId"], (self.v1, self.v2, "null"))
        self.assertEqual(headers(answer)["x-amz-version-id"], answer["VersionId"])
        got = self.alice.get_object(Bucket=self.bucket, Key="dst")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"first version", answer["VersionId"]))
        self.assertEqual(self.entries(self.bucket, Prefix="dst"), [version("dst", answer["VersionId"], True)])
        self.assertEqual(self.read(self.bucket, "src"), b"second")

    def test_copies_answer_the_source_version_id(self) -> None:
        """
        CopyObject and UploadPartCopy answer x-amz-copy-source-version-id
        (CopySourceVersionId): the source version named, or without one the
        source's latest.  (SeaweedFS answers no
        x-amz-copy-source-version-id.)
        """
        answer = self.alice.copy_object(Bucket=self.bucket, Key="dst",
                                        CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": self.v1})
        self.assertEqual(answer.get("CopySourceVersionId"), self.v1)
        answer = self.alice.copy_object(Bucket=self.bucket, Key="dst", CopySource={"Bucket": self.bucket, "Key": "src"})
        self.assertEqual(answer.get("CopySourceVersionId"), self.v2)
        self.assertEqual(self.read(self.bucket, "dst"), b"second")
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        self.addCleanup(self.alice.abort_multipart_upload, Bucket=self.bucket, Key="mp", UploadId=upload)
        copied = self.alice.upload_part_copy(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=1,
                                             CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": self.v1})
        self.assertEqual(copied.get("CopySourceVersionId"), self.v1)

    def test_copying_an_old_version_over_its_key_restores_it(self) -> None:
        """
        Copying an old version onto its own key (how S3's user guide restores
        a previous version) makes a new latest version of those bytes; the
        others stay.  S3 refuses a copy of an object onto itself that changes
        nothing (400 InvalidRequest) only when no source version is named.
        """
        answer = self.alice.copy_object(Bucket=self.bucket, Key="src",
                                        CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": self.v1})
        self.assertEqual(self.entries(self.bucket), [version("src", answer["VersionId"], True),
                                                     version("src", self.v2), version("src", self.v1)])
        self.assertEqual(self.read(self.bucket, "src"), b"first version")

    def test_copy_of_a_delete_marker(self) -> None:
        """
        CopyObject from a key whose latest version is a delete marker answers
        404 NoSuchKey; naming the marker by version id answers 400
        InvalidRequest (S3: "The source of a copy request may not
        specifically refer to a delete marker by version id").  Nothing is
        written.  (SeaweedFS answers 404 NoSuchKey to both.)
        """
        deleted = self.alice.delete_object(Bucket=self.bucket, Key="src")["VersionId"]
        self.assertS3Error(404, "NoSuchKey", self.alice.copy_object, Bucket=self.bucket, Key="dst",
                           CopySource={"Bucket": self.bucket, "Key": "src"})
        self.assertS3Error(400, "InvalidRequest", self.alice.copy_object, Bucket=self.bucket, Key="dst",
                           CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": deleted})
        self.assertEqual(self.entries(self.bucket, Prefix="dst"), [])

    def test_upload_part_copy_from_a_source_version(self) -> None:
        """
        UploadPartCopy from a source versionId copies that version's bytes
        (not the latest's) into the part; the completed object holds them.
        """
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        first = self.alice.upload_part(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=1,
                                       Body=b"p" * (5 * MIB))
        copied = self.alice.upload_part_copy(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=2,
                                             CopySource={"Bucket": self.bucket, "Key": "src", "VersionId": self.v1})
        parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": copied["CopyPartResult"]["ETag"]}]
        self.alice.complete_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=upload,
                                             MultipartUpload={"Parts": parts})
        tail = self.alice.get_object(Bucket=self.bucket, Key="mp", Range=f"bytes={5 * MIB - 2}-")["Body"].read()
        self.assertEqual(tail, b"pp" + b"first version")

    def test_a_completed_multipart_upload_answers_its_version_id(self) -> None:
        """
        CompleteMultipartUpload in an Enabled bucket answers x-amz-version-id
        (VersionId), a new version that is the key's latest; GET by it
        answers the whole object.
        """
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="src")["UploadId"]
        bodies = (b"a" * (5 * MIB), b"tail")
        parts = []
        for number, body in enumerate(bodies, 1):
            answer = self.alice.upload_part(Bucket=self.bucket, Key="src", UploadId=upload, PartNumber=number,
                                            Body=body)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        done = self.alice.complete_multipart_upload(Bucket=self.bucket, Key="src", UploadId=upload,
                                                    MultipartUpload={"Parts": parts})
        version_id = done["VersionId"]
        self.assertNotIn(version_id, (self.v1, self.v2, "null"))
        self.assertEqual(headers(done)["x-amz-version-id"], version_id)
        self.assertEqual(self.entries(self.bucket), [version("src", version_id, True), version("src", self.v2),
                                                     version("src", self.v1)])
        self.assertEqual(self.read(self.bucket, "src", version_id), b"".join(bodies))


class VersionTaggingChecks(VersioningChecks):
    def test_tags_of_one_version(self) -> None:
        """
        Put, Get and DeleteObjectTagging with a versionId act on that version
        only; without one they act on the latest.  HEAD of each version
        answers its own tag count.
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        v2 = self.put(bucket, "k", b"two")
        self.alice.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1,
                                      Tagging={"TagSet": [{"Key": "v", "Value": "1"}]})
        self.alice.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "v", "Value": "2"}]})
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"],
                         [{"Key": "v", "Value": "1"}])
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=v2)["TagSet"],
                         [{"Key": "v", "Value": "2"}])
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k")["TagSet"],
                         [{"Key": "v", "Value": "2"}])
        self.alice.delete_object_tagging(Bucket=bucket, Key="k", VersionId=v1)
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"], [])
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k", VersionId=v2)["TagSet"],
                         [{"Key": "v", "Value": "2"}])
        self.assertEqual(self.alice.head_object(Bucket=bucket, Key="k", VersionId=v2)["TagCount"], 1)
        self.assertNotIn("TagCount", self.alice.head_object(Bucket=bucket, Key="k", VersionId=v1))

    def test_tagging_answers_the_version_id(self) -> None:
        """
        Put, Get and DeleteObjectTagging answer x-amz-version-id: the version
        named, or without one the latest's.  (SeaweedFS answers none.)
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        v2 = self.put(bucket, "k", b"two")
        tagging = {"TagSet": [{"Key": "v", "Value": "1"}]}
        for named, expected in (({"VersionId": v1}, v1), ({}, v2)):
            self.assertEqual(self.alice.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagging, **named).get(
                "VersionId"), expected)
            self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="k", **named).get("VersionId"), expected)
            self.assertEqual(self.alice.delete_object_tagging(Bucket=bucket, Key="k", **named).get("VersionId"),
                             expected)


class VersionAclChecks(VersioningChecks):
    def test_the_acl_of_one_version(self) -> None:
        """
        PutObjectAcl with a versionId changes that version's ACL only: Get
        ObjectAcl of it answers the AllUsers READ grant, of the latest only
        the owner's FULL_CONTROL.
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        self.put(bucket, "k", b"two")
        self.alice.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="public-read")
        old = [(grant[0], grant[1], grant[3]) for grant in grants(self.alice.get_object_acl(
            Bucket=bucket, Key="k", VersionId=v1))]
        self.assertIn(("Group", ALL_USERS, "READ"), old)
        latest = [(grant[0], grant[1], grant[3]) for grant in grants(self.alice.get_object_acl(Bucket=bucket,
                                                                                                Key="k"))]
        self.assertNotIn(("Group", ALL_USERS, "READ"), latest)
        self.assertEqual([grant[2] for grant in latest], ["FULL_CONTROL"])


    def test_the_acl_of_a_delete_marker(self) -> None:
        """
        GetObjectAcl of a delete marker by its version id answers 405
        MethodNotAllowed; of a key whose latest version is a delete marker,
        404 NoSuchKey.  (SeaweedFS answers 404 NoSuchKey to both.)
        """
        bucket = self.versioned_bucket()
        self.put(bucket, "k", b"one")
        deleted = self.alice.delete_object(Bucket=bucket, Key="k")["VersionId"]
        self.assertS3Error(405, "MethodNotAllowed", self.alice.get_object_acl, Bucket=bucket, Key="k",
                           VersionId=deleted)
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object_acl, Bucket=bucket, Key="k")


class ConcurrencyChecks(VersioningChecks):
    THREADS = 6
    ROUNDS = 4

    def run_threads(self, work: Callable[[Any, int], list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
        """Run C{work(client, thread)} in THREADS threads at once; what each answered, in its order."""
        clients = [self.another_alice() for _ in range(self.THREADS)]
        results: list[list[tuple[str, str]]] = [[] for _ in range(self.THREADS)]
        failures: list[BaseException] = []
        start = threading.Barrier(self.THREADS, timeout=30)

        def run(number: int) -> None:
            try:
                start.wait()
                results[number] = work(clients[number], number)
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)

        threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(self.THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertFalse(any(thread.is_alive() for thread in threads), "a writer thread did not finish in 120s")
        self.assertEqual(failures, [])
        return results

    def assertConsistent(self, bucket: str, results: list[list[tuple[str, str]]]) -> list[tuple[str, str, str, bool]]:
        """
        ListObjectVersions lists every version and marker the threads made
        exactly once, exactly one IsLatest (the first), and each thread's
        writes newest first (a thread's later write above its earlier ones).
        """
        entries = self.entries(bucket)
        made = [item for result in results for item in result]
        self.assertEqual(sorted((kind, version_id) for kind, _, version_id, _ in entries), sorted(made))
        self.assertEqual(len({version_id for _, version_id in made}), len(made))
        self.assertEqual([latest for *_, latest in entries], [True] + [False] * (len(entries) - 1))
        position = {version_id: n for n, (_, _, version_id, _) in enumerate(entries)}
        for result in results:
            places = [position[version_id] for _, version_id in result]
            self.assertEqual(places, sorted(places, reverse=True), result)
        return entries

    def test_concurrent_overwrites_of_one_key(self) -> None:
        """
        Threads overwriting one key at once each get a distinct version id;
        ListObjectVersions afterwards lists every one once, newest first
        (each thread's in its order), exactly one IsLatest; GET answers that
        latest version.
        """
        bucket = self.versioned_bucket()

        def work(client: Any, number: int) -> list[tuple[str, str]]:
            return [("version", client.put_object(Bucket=bucket, Key="k", Body=b"%d.%d" % (number, n))["VersionId"])
                    for n in range(self.ROUNDS)]

        entries = self.assertConsistent(bucket, self.run_threads(work))
        got = self.alice.get_object(Bucket=bucket, Key="k")
        self.assertEqual(got["VersionId"], entries[0][2])
        self.assertEqual(got["Body"].read(), self.read(bucket, "k", entries[0][2]))

    def test_concurrent_writes_and_deletes_of_one_key(self) -> None:
        """
        Threads writing and deleting (adding delete markers to) one key at
        once: every version and marker is listed once, in each thread's
        order, one IsLatest; GET answers according to the latest.
        """
        bucket = self.versioned_bucket()

        def work(client: Any, number: int) -> list[tuple[str, str]]:
            made = []
            for n in range(self.ROUNDS):
                if (number + n) % 2:
                    made.append(("marker", client.delete_object(Bucket=bucket, Key="k")["VersionId"]))
                else:
                    made.append(("version", client.put_object(Bucket=bucket, Key="k", Body=b"%d" % n)["VersionId"]))
            return made

        entries = self.assertConsistent(bucket, self.run_threads(work))
        if entries[0][0] == "marker":
            self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=bucket, Key="k")
        else:
            self.assertEqual(self.alice.get_object(Bucket=bucket, Key="k")["VersionId"], entries[0][2])


class BucketDeletionChecks(VersioningChecks):
    def test_noncurrent_versions_and_markers_keep_a_bucket(self) -> None:
        """
        DeleteBucket answers 409 BucketNotEmpty while the bucket holds
        noncurrent versions behind a delete marker, or only a delete marker
        (ListObjects shows nothing); once every version and marker is deleted
        by id, DeleteBucket answers 204.  (SeaweedFS deletes the bucket.)
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        deleted = self.alice.delete_object(Bucket=bucket, Key="k")["VersionId"]
        self.assertEqual(self.alice.list_objects_v2(Bucket=bucket)["KeyCount"], 0)
        self.assertS3Error(409, "BucketNotEmpty", self.alice.delete_bucket, Bucket=bucket)
        self.alice.delete_object(Bucket=bucket, Key="k", VersionId=v1)
        self.assertEqual(self.entries(bucket), [marker("k", deleted, True)])
        self.assertS3Error(409, "BucketNotEmpty", self.alice.delete_bucket, Bucket=bucket)
        self.alice.delete_object(Bucket=bucket, Key="k", VersionId=deleted)
        self.assertEqual(self.alice.delete_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"], 204)

    def test_a_suspended_bucket_with_versions_is_not_empty(self) -> None:
        """A Suspended bucket whose only versions are noncurrent ones from when it was Enabled answers 409."""
        bucket = self.versioned_bucket()
        self.put(bucket, "k", b"one")
        self.set_versioning(bucket, "Suspended")
        self.alice.delete_object(Bucket=bucket, Key="k")
        self.assertS3Error(409, "BucketNotEmpty", self.alice.delete_bucket, Bucket=bucket)


# -- through s3balance ----------------------------------------------------------------------------------------


class BalancedCase(ConformanceCase):
    """The checks through the shared daemon."""

    def another_alice(self) -> Any:
        return self.gateway.client("alice", SECRETS["alice"])


class BucketVersioningTests(BucketVersioningChecks, BalancedCase):
    def test_another_account_without_a_grant(self) -> None:
        """Without a grant, bob may neither read nor change alice's bucket's versioning (403 AccessDenied)."""
        bucket = self.versioned_bucket()
        self.assertDenied(self.bob.get_bucket_versioning, Bucket=bucket)
        self.assertDenied(self.bob.put_bucket_versioning, Bucket=bucket,
                          VersioningConfiguration={"Status": "Suspended"})
        self.assertDenied(self.nobody.get_bucket_versioning, Bucket=bucket)
        self.assertEqual(self.alice.get_bucket_versioning(Bucket=bucket)["Status"], "Enabled")


class VersionedObjectTests(VersionedObjectChecks, BalancedCase):
    def test_another_account_without_a_grant(self) -> None:
        """
        Without a grant, bob may neither read a version, list versions nor
        delete a version (403 AccessDenied); the versions stay.
        """
        v1 = self.put(self.bucket, "k", b"one")
        self.assertDenied(self.bob.get_object, Bucket=self.bucket, Key="k", VersionId=v1)
        self.assertDenied(self.bob.head_object, Bucket=self.bucket, Key="k", VersionId=v1)
        self.assertDenied(self.bob.list_object_versions, Bucket=self.bucket)
        self.assertDenied(self.bob.delete_object, Bucket=self.bucket, Key="k", VersionId=v1)
        self.assertDenied(self.bob.delete_object, Bucket=self.bucket, Key="k")
        self.assertEqual(self.entries(self.bucket), [version("k", v1, True)])


class NullVersionTests(NullVersionChecks, BalancedCase):
    pass


class VersionListingTests(VersionListingChecks, BalancedCase):
    pass


class DeleteObjectsTests(DeleteObjectsChecks, BalancedCase):
    pass


class CopyAndMultipartTests(CopyAndMultipartChecks, BalancedCase):
    pass


class VersionTaggingTests(VersionTaggingChecks, BalancedCase):
    pass


class VersionAclTests(VersionAclChecks, BalancedCase):
    def test_a_public_version_is_readable_by_anyone(self) -> None:
        """
        A version made public-read by PutObjectAcl with its versionId may be
        read by anyone (unsigned) by that versionId; the latest version, still
        private, answers 403 AccessDenied.
        """
        bucket = self.versioned_bucket()
        v1 = self.put(bucket, "k", b"one")
        self.put(bucket, "k", b"two")
        self.alice.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="public-read")
        self.assertEqual(self.nobody.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read(), b"one")
        self.assertDenied(self.nobody.get_object, Bucket=bucket, Key="k")


class ConcurrencyTests(ConcurrencyChecks, BalancedCase):
    pass


class BucketDeletionTests(BucketDeletionChecks, BalancedCase):
    pass


# -- the same checks directly against SeaweedFS (the reference) --------------------------------------------------


class SeaweedFSCase(ConformanceCase):
    """
    The checks run directly against the shared SeaweedFS, with its one
    identity as alice: what they expect is answered by another
    implementation of S3 versioning.
    """

    def setUp(self) -> None:
        self.server = shared_seaweedfs()
        self.alice = self.server.client()

    def another_alice(self) -> Any:
        return self.server.client()

    def new_bucket(self, acl: Optional[str] = None, client: Any = None) -> str:
        name = unique_bucket_name("vref")
        (client or self.alice).create_bucket(Bucket=name, **({"ACL": acl} if acl else {}))
        return name


class SeaweedFSBucketVersioningTests(BucketVersioningChecks, SeaweedFSCase):
    test_an_invalid_status_is_malformed_xml = known_deviation(
        BucketVersioningChecks.test_an_invalid_status_is_malformed_xml, "SeaweedFS answers 400 InvalidRequest")
    test_mfa_delete_is_not_implemented = known_deviation(
        BucketVersioningChecks.test_mfa_delete_is_not_implemented, "SeaweedFS accepts and ignores MFADelete")


class SeaweedFSVersionedObjectTests(VersionedObjectChecks, SeaweedFSCase):
    test_a_key_behind_a_delete_marker_is_not_found = known_deviation(
        VersionedObjectChecks.test_a_key_behind_a_delete_marker_is_not_found,
        "SeaweedFS answers the 404 without x-amz-delete-marker")
    test_get_and_head_of_a_delete_marker_are_not_allowed = known_deviation(
        VersionedObjectChecks.test_get_and_head_of_a_delete_marker_are_not_allowed,
        "SeaweedFS answers 404 NoSuchKey")
    test_a_malformed_version_id_is_an_invalid_argument = known_deviation(
        VersionedObjectChecks.test_a_malformed_version_id_is_an_invalid_argument,
        "SeaweedFS answers 404 NoSuchVersion")


class SeaweedFSNullVersionTests(NullVersionChecks, SeaweedFSCase):
    test_a_suspended_put_replaces_the_null_version = known_deviation(
        NullVersionChecks.test_a_suspended_put_replaces_the_null_version,
        "SeaweedFS lists the latest (null) version after the older versions")
    test_a_suspended_delete_adds_a_null_delete_marker = known_deviation(
        NullVersionChecks.test_a_suspended_delete_adds_a_null_delete_marker,
        "SeaweedFS lists the latest (null) delete marker after the older versions")
    test_deleting_the_null_delete_marker = known_deviation(
        NullVersionChecks.test_deleting_the_null_delete_marker,
        "SeaweedFS answers 204 but leaves the null delete marker")


class SeaweedFSVersionListingTests(VersionListingChecks, SeaweedFSCase):
    test_encoding_type_url = known_deviation(
        VersionListingChecks.test_encoding_type_url, "SeaweedFS ignores EncodingType in ListObjectVersions")


class SeaweedFSDeleteObjectsTests(DeleteObjectsChecks, SeaweedFSCase):
    test_deleting_delete_markers_by_version_id = known_deviation(
        DeleteObjectsChecks.test_deleting_delete_markers_by_version_id,
        "SeaweedFS leaves VersionId out of the Deleted entry of a delete marker")


class SeaweedFSCopyAndMultipartTests(CopyAndMultipartChecks, SeaweedFSCase):
    test_copies_answer_the_source_version_id = known_deviation(
        CopyAndMultipartChecks.test_copies_answer_the_source_version_id,
        "SeaweedFS answers no x-amz-copy-source-version-id")
    test_copy_of_a_delete_marker = known_deviation(
        CopyAndMultipartChecks.test_copy_of_a_delete_marker, "SeaweedFS answers 404 NoSuchKey for the marker's id")


class SeaweedFSVersionTaggingTests(VersionTaggingChecks, SeaweedFSCase):
    test_tagging_answers_the_version_id = known_deviation(
        VersionTaggingChecks.test_tagging_answers_the_version_id, "SeaweedFS answers no x-amz-version-id")


class SeaweedFSVersionAclTests(VersionAclChecks, SeaweedFSCase):
    test_the_acl_of_a_delete_marker = known_deviation(
        VersionAclChecks.test_the_acl_of_a_delete_marker, "SeaweedFS answers 404 NoSuchKey for the marker's id")


class SeaweedFSConcurrencyTests(ConcurrencyChecks, SeaweedFSCase):
    pass


class SeaweedFSBucketDeletionTests(BucketDeletionChecks, SeaweedFSCase):
    test_noncurrent_versions_and_markers_keep_a_bucket = known_deviation(
        BucketDeletionChecks.test_noncurrent_versions_and_markers_keep_a_bucket,
        "SeaweedFS deletes a bucket that holds versions")
    test_a_suspended_bucket_with_versions_is_not_empty = known_deviation(
        BucketDeletionChecks.test_a_suspended_bucket_with_versions_is_not_empty,
        "SeaweedFS deletes a bucket that holds versions")
