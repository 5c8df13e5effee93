"""
Every S3 sub-resource, sent with GET, PUT and DELETE at bucket and object
level to a running daemon: the answer is a definite one (200/204, or an S3
XML error 404/405/501, never another 5xx) and nothing about the object
changes -- a C{PUT /b/k?tagging} must never be taken for a PutObject, a
C{DELETE /b/k?tagging} never for a DeleteObject.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from xml.etree import ElementTree

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import database_counts, shared_gateway, sign

SUBRESOURCES = (
    "acl",
    "versioning",
    "location",
    "tagging",
    "cors",
    "policy",
    "lifecycle",
    "versions",
    "object-lock",
    "retention",
    "legal-hold",
    "attributes",
    "website",
    "encryption",
    "replication",
    "notification",
    "logging",
    "accelerate",
    "requestPayment",
    "ownershipControls",
    "publicAccessBlock",
)

ALLOWED_STATUSES = {200, 204, 404, 405, 501}
# Implemented operations that refuse these bare requests as S3 does: GET
# ?attributes (GetObjectAttributes) without its x-amz-object-attributes header,
# PUT ?lifecycle (PutBucketLifecycleConfiguration) without Content-MD5, PUT
# ?acl (Put*Acl) with a body that is no AccessControlPolicy (MalformedACLError),
# ?policy, ?publicAccessBlock, ?versioning and ?object-lock with a body that
# is not their document; ?retention and ?legal-hold of an object in a bucket
# without Object Lock (InvalidRequest).
REFUSED_AS_S3_DOES = {
    ("versioning", "PUT", "bucket"): 400,
    ("object-lock", "PUT", "bucket"): 400,
    ("retention", "GET", "object"): 400,
    ("retention", "PUT", "object"): 400,
    ("legal-hold", "GET", "object"): 400,
    ("legal-hold", "PUT", "object"): 400,
    ("attributes", "GET", "object"): 400,
    ("lifecycle", "PUT", "bucket"): 400,
    ("acl", "PUT", "bucket"): 400,
    ("acl", "PUT", "object"): 400,
    ("policy", "PUT", "bucket"): 400,
    ("publicAccessBlock", "PUT", "bucket"): 400,
}
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# A small, plausible body for each PUT; the exact shape does not matter to a
# gateway that must not mistake it for object data.
PUT_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>'
    b"<Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
)
OBJECT_BODY = b"the object that must not change"


def request(method: str, url: str, body: bytes = b"") -> tuple[int, bytes]:
    headers = {"Content-Length": str(len(body))} if method in ("PUT", "POST") else {}
    signed = sign(method, url, headers, payload=hashlib.sha256(body).hexdigest())
    outgoing = urllib.request.Request(
        url, data=body if method in ("PUT", "POST") else None, method=method, headers=signed
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def strip(tag: str) -> str:
    return tag.split("}", 1)[-1]


class SubresourceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)
        self.etag = self.s3.put_object(Bucket=self.bucket, Key="obj", Body=OBJECT_BODY)["ETag"]
        self.endpoint = self.gateway.daemon.endpoint

    def url(self, level: str, query: str) -> str:
        path = f"/{self.bucket}" if level == "bucket" else f"/{self.bucket}/obj"
        return f"{self.endpoint}{path}?{query}"


class SubresourceMatrixTests(SubresourceTestCase):
    """One test per sub-resource; each sends six requests (3 methods x 2 levels)."""

    def check_subresource(self, name: str) -> None:
        counts = database_counts(self.gateway.daemon, self.bucket)
        backend = self.gateway.backend_keys(f"{self.bucket}/")
        problems = []
        for level in ("bucket", "object"):
            for method in ("GET", "PUT", "DELETE"):
                url = self.url(level, name)
                code, body = request(method, url, PUT_BODY if method == "PUT" else b"")
                where = f"{method} {level} ?{name} -> {code} {body[:200]!r}"
                if code not in ALLOWED_STATUSES and code != REFUSED_AS_S3_DOES.get((name, method, level)):
                    problems.append(where)
                    continue
                if code >= 400:
                    try:
                        root = ElementTree.fromstring(body)
                    except ElementTree.ParseError:
                        problems.append(where + " (not XML)")
                        continue
                    if strip(root.tag) != "Error" or not root.findtext("Code"):
                        problems.append(where + " (not an S3 error document)")
        self.assertEqual(problems, [])
        got = self.s3.get_object(Bucket=self.bucket, Key="obj")
        self.assertEqual(got["Body"].read(), OBJECT_BODY, name)
        self.assertEqual(got["ETag"], self.etag, name)
        self.assertEqual(database_counts(self.gateway.daemon, self.bucket), counts, name)
        self.assertEqual(self.gateway.backend_keys(f"{self.bucket}/"), backend, name)
        self.assertEqual([o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]], ["obj"])


def _matrix_test(name: str):
    def test(self: SubresourceMatrixTests) -> None:
        self.check_subresource(name)

    test.__name__ = f"test_{name.replace('-', '_')}_leaves_the_object_alone"
    test.__doc__ = f"GET/PUT/DELETE ?{name} on a bucket and an object: a definite answer, nothing changed."
    return test


for _name in SUBRESOURCES:
    _test = _matrix_test(_name)
    setattr(SubresourceMatrixTests, _test.__name__, _test)
del _name, _test


class ImplementedSubresourceTests(SubresourceTestCase):
    def test_get_location_is_a_location_constraint(self) -> None:
        code, body = request("GET", self.url("bucket", "location"))
        self.assertEqual(code, 200, body)
        root = ElementTree.fromstring(body)
        self.assertEqual(root.tag, NS + "LocationConstraint")
        self.assertIn(root.text, (None, ""))  # us-east-1
        self.assertIn(self.s3.get_bucket_location(Bucket=self.bucket)["LocationConstraint"], (None, ""))

    def test_get_versioning_has_no_status(self) -> None:
        code, body = request("GET", self.url("bucket", "versioning"))
        self.assertEqual(code, 200, body)
        root = ElementTree.fromstring(body)
        self.assertEqual(root.tag, NS + "VersioningConfiguration")
        self.assertIsNone(root.find(NS + "Status"))
        self.assertNotIn("Status", self.s3.get_bucket_versioning(Bucket=self.bucket))

    def test_get_acl_of_a_private_bucket_and_object_is_full_control(self) -> None:
        for level in ("bucket", "object"):
            code, body = request("GET", self.url(level, "acl"))
            self.assertEqual(code, 200, body)
            root = ElementTree.fromstring(body)
            self.assertEqual(root.tag, NS + "AccessControlPolicy")
            permissions = [p.text for p in root.iter(NS + "Permission")]
            self.assertEqual(permissions, ["FULL_CONTROL"], level)
        acl = self.s3.get_object_acl(Bucket=self.bucket, Key="obj")
        self.assertEqual([grant["Permission"] for grant in acl["Grants"]], ["FULL_CONTROL"])
        acl = self.s3.get_bucket_acl(Bucket=self.bucket)
        self.assertEqual([grant["Permission"] for grant in acl["Grants"]], ["FULL_CONTROL"])

    def test_object_acl_of_a_missing_key_is_no_such_key(self) -> None:
        code, body = request("GET", f"{self.endpoint}/{self.bucket}/missing?acl")
        self.assertEqual(code, 404)
        self.assertIn(b"<Code>NoSuchKey</Code>", body)

    def test_subresource_of_a_missing_bucket_is_not_a_5xx(self) -> None:
        for name in ("location", "versioning", "acl"):
            code, body = request("GET", f"{self.endpoint}/no-such-bucket-anywhere?{name}")
            self.assertEqual(code, 404, (name, body))
            self.assertIn(b"<Code>NoSuchBucket</Code>", body)

    def test_put_tagging_through_boto3_does_not_overwrite_the_object(self) -> None:
        self.s3.put_object_tagging(Bucket=self.bucket, Key="obj", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
        got = self.s3.get_object(Bucket=self.bucket, Key="obj")
        self.assertEqual(got["Body"].read(), OBJECT_BODY)
        self.assertEqual((got["ETag"], got["TagCount"]), (self.etag, 1))

    def test_get_tagging_of_an_untagged_object_and_bucket(self) -> None:
        """An object without tags has an empty set, a bucket without tags none; copy tools read this."""
        from botocore.exceptions import ClientError

        self.assertEqual(self.s3.get_object_tagging(Bucket=self.bucket, Key="obj")["TagSet"], [])
        self.assertEqual(self.s3.get_object_tagging(Bucket=self.bucket, Key="obj", VersionId="null")["TagSet"], [])
        for params, code in (
            ({"Key": "missing"}, "NoSuchKey"),
            ({"Key": "obj", "VersionId": "3HL4kqtJlcpXroDTDmJ"}, "NoSuchVersion"),
        ):
            with self.assertRaises(ClientError) as raised:
                self.s3.get_object_tagging(Bucket=self.bucket, **params)
            self.assertEqual(raised.exception.response["Error"]["Code"], code, params)
        with self.assertRaises(ClientError) as raised:
            self.s3.get_bucket_tagging(Bucket=self.bucket)
        self.assertEqual(raised.exception.response["Error"]["Code"], "NoSuchTagSet")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
