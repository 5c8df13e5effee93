"""
Conformance of POST Object (browser form uploads) through a running
daemon: the behaviours a standard S3 conformance suite checks (anonymous
uploads into a public-read-write bucket, forms signed with SigV2 under a
policy document, every way such a form or policy can be wrong, success
statuses and redirects, key from the file name, metadata and tagging
fields), each as S3 answers it, with forms sent by C{requests}.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

import requests

from tests.conformance import SECRETS, ConformanceCase

TAGGING = "<Tagging><TagSet><Tag><Key>0</Key><Value>0</Value></Tag><Tag><Key>1</Key><Value>1</Value></Tag></TagSet></Tagging>"


def expiration(seconds: float = 6000) -> str:
    """A policy expiration C{seconds} from now, in the ISO 8601 form S3 reads."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def v2_signature(policy: str, secret: str = SECRETS["alice"]) -> str:
    return base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()


class PostObjectTests(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.new_bucket()

    def conditions(self, *extra: Any, content_length: Optional[list] = None) -> list[Any]:
        """The usual conditions: this bucket, keys starting "foo", acl private, text/plain, at most 1 KiB."""
        return [{"bucket": self.bucket}, ["starts-with", "$key", "foo"], {"acl": "private"},
                ["starts-with", "$Content-Type", "text/plain"],
                content_length if content_length is not None else ["content-length-range", 0, 1024], *extra]

    def signed_fields(self, document: dict, key: Optional[str] = "foo.txt", *, access_key: str = "alice",
                      signature: Optional[str] = None, extra: tuple[tuple[str, str], ...] = (),
                      content_type: bool = True) -> list[tuple[str, str]]:
        """The form fields of a SigV2-signed upload of C{key} under the policy C{document}."""
        policy = encoded(document)
        fields = [("key", key)] if key is not None else []
        fields += [("AWSAccessKeyId", access_key), ("acl", "private"),
                   ("signature", v2_signature(policy) if signature is None else signature), ("policy", policy)]
        if content_type:
            fields.append(("Content-Type", "text/plain"))
        return fields + list(extra)

    def post(self, fields: list[tuple[str, str]], content: bytes = b"bar", filename: Optional[str] = None,
             bucket: Optional[str] = None) -> requests.Response:
        form: list[tuple[str, Any]] = [(name, (None, value)) for name, value in fields if value is not None]
        form.append(("file", (filename, content) if filename else (None, content)))
        return requests.post(self.url(bucket or self.bucket), files=form, allow_redirects=False, timeout=60)

    def assertAnswer(self, response: requests.Response, status: int, code: Optional[str] = None) -> None:
        self.assertEqual(response.status_code, status, response.text)
        if code is not None:
            self.assertEqual(ET.fromstring(response.content).findtext("Code"), code, response.text)

    def body(self, key: str = "foo.txt") -> bytes:
        return self.alice.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    # -- accepted uploads -------------------------------------------------------------

    def test_anonymous_upload_into_a_public_read_write_bucket(self) -> None:
        """An unsigned form upload into a public-read-write bucket answers 204 and writes the object with its acl."""
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        response = self.post([("key", "foo.txt"), ("acl", "public-read"), ("Content-Type", "text/plain")])
        self.assertAnswer(response, 204)
        self.assertEqual(self.body(), b"bar")
        self.assertEqual(self.nobody.get_object(Bucket=self.bucket, Key="foo.txt")["Body"].read(), b"bar")

    def test_anonymous_upload_into_a_private_bucket_is_refused(self) -> None:
        """An unsigned form upload into a private bucket answers 403 AccessDenied."""
        response = self.post([("key", "foo.txt"), ("Content-Type", "text/plain")])
        self.assertAnswer(response, 403, "AccessDenied")

    def test_signed_upload(self) -> None:
        """A SigV2-signed form whose fields meet its policy answers 204 and writes the object."""
        response = self.post(self.signed_fields({"expiration": expiration(), "conditions": self.conditions()}))
        self.assertAnswer(response, 204)
        self.assertEqual(self.body(), b"bar")
        self.assertEqual(self.alice.head_object(Bucket=self.bucket, Key="foo.txt")["ContentType"], "text/plain")

    def test_signed_upload_without_a_content_type(self) -> None:
        """A signed form without Content-Type, whose policy names none, answers 204."""
        conditions = [c for c in self.conditions() if "$Content-Type" not in c]
        response = self.post(self.signed_fields({"expiration": expiration(), "conditions": conditions},
                                                content_type=False))
        self.assertAnswer(response, 204)
        self.assertEqual(self.body(), b"bar")

    def test_success_action_status_201(self) -> None:
        """success_action_status 201 answers 201 with a PostResponse naming the key."""
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        response = self.post([("key", "foo.txt"), ("acl", "public-read"), ("success_action_status", "201"),
                              ("Content-Type", "text/plain")])
        self.assertAnswer(response, 201)
        self.assertEqual(ET.fromstring(response.content).findtext("Key"), "foo.txt")

    def test_an_unknown_success_action_status_answers_204(self) -> None:
        """A success_action_status other than 200 and 201 answers 204 with an empty body."""
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        response = self.post([("key", "foo.txt"), ("acl", "public-read"), ("success_action_status", "404"),
                              ("Content-Type", "text/plain")])
        self.assertAnswer(response, 204)
        self.assertEqual(response.content, b"")

    def test_a_file_larger_than_one_read(self) -> None:
        """A signed form with a 3 MiB file (content-length-range up to 5 MiB) answers 204 and stores every byte."""
        content = b"foo" * 1024 * 1024
        document = {"expiration": expiration(),
                    "conditions": self.conditions(content_length=["content-length-range", 0, 5 * 1024 * 1024])}
        self.assertAnswer(self.post(self.signed_fields(document), content), 204)
        self.assertEqual(self.body(), content)

    def test_key_from_the_file_name(self) -> None:
        """A key of ${filename} names the object after the uploaded file."""
        document = {"expiration": expiration(), "conditions": self.conditions()}
        response = self.post(self.signed_fields(document, "${filename}"), filename="foo.txt")
        self.assertAnswer(response, 204)
        self.assertEqual(self.body("foo.txt"), b"bar")

    def test_fields_the_policy_ignores(self) -> None:
        """A field S3 ignores in the policy check (x-ignore-*) does not fail the upload."""
        document = {"expiration": expiration(), "conditions": self.conditions()}
        response = self.post(self.signed_fields(document, extra=(("x-ignore-foo", "bar"),)))
        self.assertAnswer(response, 204)

    def test_condition_and_field_names_are_case_insensitive(self) -> None:
        """Condition names, field names in conditions and form field names match whatever their case."""
        document = {"expiration": expiration(), "conditions": [
            {"bUcKeT": self.bucket}, ["StArTs-WiTh", "$KeY", "foo"], {"AcL": "private"},
            ["StArTs-WiTh", "$CoNtEnT-TyPe", "text/plain"], ["content-length-range", 0, 1024]]}
        policy = encoded(document)
        fields = [("kEy", "foo.txt"), ("AWSAccessKeyId", "alice"), ("aCl", "private"),
                  ("signature", v2_signature(policy)), ("pOLICy", policy), ("Content-Type", "text/plain")]
        self.assertAnswer(self.post(fields), 204)
        self.assertEqual(self.body(), b"bar")

    def test_a_key_starting_with_an_escaped_dollar(self) -> None:
        """A key and a starts-with value beginning with a backslash and a dollar are taken literally."""
        conditions = self.conditions()
        conditions[1] = ["starts-with", "$key", "\\$foo"]
        response = self.post(self.signed_fields({"expiration": expiration(), "conditions": conditions}, "\\$foo.txt"))
        self.assertAnswer(response, 204)
        self.assertEqual(self.body("\\$foo.txt"), b"bar")

    def test_success_action_redirect(self) -> None:
        """success_action_redirect answers 303 to that URL with the bucket, key and quoted ETag in its query."""
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        redirect = self.url(self.bucket)
        document = {"expiration": expiration(),
                    "conditions": self.conditions(["eq", "$success_action_redirect", redirect])}
        response = self.post(self.signed_fields(document, extra=(("success_action_redirect", redirect),)))
        self.assertAnswer(response, 303)
        etag = self.alice.head_object(Bucket=self.bucket, Key="foo.txt")["ETag"]
        location = urlsplit(response.headers["Location"])
        self.assertEqual(f"{location.scheme}://{location.netloc}{location.path}", redirect)
        self.assertEqual(dict(parse_qsl(location.query)), {"bucket": self.bucket, "key": "foo.txt", "etag": etag})
        self.assertIn("etag=%22", response.headers["Location"])

    def test_metadata_field_under_starts_with(self) -> None:
        """An x-amz-meta-* field meeting its starts-with condition becomes the object's metadata."""
        document = {"expiration": expiration(),
                    "conditions": self.conditions(["starts-with", "$x-amz-meta-foo", "bar"])}
        response = self.post(self.signed_fields(document, extra=(("x-amz-meta-foo", "barclamp"),)))
        self.assertAnswer(response, 204)
        self.assertEqual(self.alice.head_object(Bucket=self.bucket, Key="foo.txt")["Metadata"], {"foo": "barclamp"})

    def test_anonymous_upload_with_tagging(self) -> None:
        """An unsigned form's tagging field (a Tagging document) becomes the object's tags."""
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        response = self.post([("key", "foo.txt"), ("acl", "public-read"), ("Content-Type", "text/plain"),
                              ("tagging", TAGGING)])
        self.assertAnswer(response, 204)
        self.assertEqual(self.alice.get_object_tagging(Bucket=self.bucket, Key="foo.txt")["TagSet"],
                         [{"Key": "0", "Value": "0"}, {"Key": "1", "Value": "1"}])

    def test_signed_upload_with_tagging(self) -> None:
        """A signed form's tagging field, allowed by a starts-with condition, becomes the object's tags."""
        document = {"expiration": expiration(), "conditions": self.conditions(["starts-with", "$tagging", ""])}
        response = self.post(self.signed_fields(document, extra=(("tagging", TAGGING),)))
        self.assertAnswer(response, 204)
        self.assertEqual(self.body(), b"bar")
        self.assertEqual(len(self.alice.get_object_tagging(Bucket=self.bucket, Key="foo.txt")["TagSet"]), 2)

    # -- refused uploads --------------------------------------------------------------

    def assertRefused(self, response: requests.Response, status: int, code: str) -> None:
        """The upload answers C{status} C{code} and writes nothing."""
        self.assertAnswer(response, status, code)
        self.assertNotIn("Contents", self.alice.list_objects_v2(Bucket=self.bucket))

    def test_unknown_access_key(self) -> None:
        """A form signed with an unknown access key (or its reverse) answers 403 InvalidAccessKeyId."""
        document = {"expiration": expiration(), "conditions": self.conditions()}
        for access_key in ("foo", "ecila"):
            self.assertRefused(self.post(self.signed_fields(document, access_key=access_key)), 403,
                               "InvalidAccessKeyId")

    def test_wrong_signature(self) -> None:
        """A form whose signature is not the policy's (reversed) answers 403 SignatureDoesNotMatch."""
        document = {"expiration": expiration(), "conditions": self.conditions()}
        policy = encoded(document)
        response = self.post(self.signed_fields(document, signature=v2_signature(policy)[::-1]))
        self.assertRefused(response, 403, "SignatureDoesNotMatch")

    def test_expiration_not_in_iso_8601(self) -> None:
        """A policy expiration not written as ISO 8601 answers 400 InvalidPolicyDocument."""
        when = str(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=6000))
        response = self.post(self.signed_fields({"expiration": when, "conditions": self.conditions()}))
        self.assertRefused(response, 400, "InvalidPolicyDocument")

    def test_no_key_field(self) -> None:
        """A form without a key field answers 400 InvalidArgument."""
        document = {"expiration": expiration(), "conditions": self.conditions()[:1] + self.conditions()[2:]}
        self.assertRefused(self.post(self.signed_fields(document, None)), 400, "InvalidArgument")

    def test_no_signature_field(self) -> None:
        """A form with a policy and an access key but no signature answers 400 InvalidArgument."""
        fields = [f for f in self.signed_fields({"expiration": expiration(), "conditions": self.conditions()})
                  if f[0] != "signature"]
        self.assertRefused(self.post(fields), 400, "InvalidArgument")

    def test_a_field_the_policy_does_not_cover(self) -> None:
        """A form field (here the bucket) that no policy condition covers answers 403 AccessDenied."""
        document = {"expiration": expiration(), "conditions": self.conditions()[1:]}
        self.assertRefused(self.post(self.signed_fields(document)), 403, "AccessDenied")

    def test_a_policy_for_another_bucket(self) -> None:
        """A form whose policy names another bucket than the one it is posted to answers 403 AccessDenied."""
        other = self.new_bucket()
        document = {"expiration": expiration(), "conditions": self.conditions()}
        response = self.post(self.signed_fields(document), bucket=other)
        self.assertAnswer(response, 403, "AccessDenied")
        self.assertNotIn("Contents", self.alice.list_objects_v2(Bucket=other))

    def test_a_field_the_policy_requires_is_missing(self) -> None:
        """A form lacking a field a starts-with condition names answers 403 AccessDenied."""
        document = {"expiration": expiration(),
                    "conditions": self.conditions(["starts-with", "$x-amz-meta-foo", "bar"])}
        self.assertRefused(self.post(self.signed_fields(document)), 403, "AccessDenied")

    def test_a_field_failing_an_eq_condition(self) -> None:
        """A field whose value fails its eq condition answers 403 AccessDenied."""
        document = {"expiration": expiration(), "conditions": self.conditions(["eq", "$x-amz-meta-foo", ""])}
        response = self.post(self.signed_fields(document, extra=(("x-amz-meta-foo", "barclamp"),)))
        self.assertRefused(response, 403, "AccessDenied")

    def test_policy_element_names_are_case_sensitive(self) -> None:
        """A policy with CONDITIONS or EXPIRATION in capitals answers 400 InvalidPolicyDocument."""
        for document in ({"expiration": expiration(), "CONDITIONS": self.conditions()},
                         {"EXPIRATION": expiration(), "conditions": self.conditions()}):
            self.assertRefused(self.post(self.signed_fields(document)), 400, "InvalidPolicyDocument")

    def test_an_expired_policy(self) -> None:
        """A policy whose expiration has passed answers 403 AccessDenied."""
        document = {"expiration": expiration(-6000), "conditions": self.conditions()}
        self.assertRefused(self.post(self.signed_fields(document)), 403, "AccessDenied")

    def test_a_policy_without_expiration_or_conditions(self) -> None:
        """A policy lacking its expiration, or its conditions, answers 400 InvalidPolicyDocument."""
        for document in ({"conditions": self.conditions()}, {"expiration": expiration()}):
            self.assertRefused(self.post(self.signed_fields(document)), 400, "InvalidPolicyDocument")

    def test_an_empty_condition(self) -> None:
        """A policy whose only condition is an empty object answers 400 InvalidPolicyDocument."""
        document = {"expiration": expiration(), "conditions": [{}]}
        self.assertRefused(self.post(self.signed_fields(document)), 400, "InvalidPolicyDocument")

    def test_content_length_range_errors(self) -> None:
        """
        A file over content-length-range answers 400 EntityTooLarge, under it
        400 EntityTooSmall; a range with one bound or a negative one answers
        400 InvalidPolicyDocument.
        """
        for length_range, code in ((["content-length-range", 0, 0], "EntityTooLarge"),
                                   (["content-length-range", 512, 1000], "EntityTooSmall"),
                                   (["content-length-range", 0], "InvalidPolicyDocument"),
                                   (["content-length-range", -1, 0], "InvalidPolicyDocument")):
            document = {"expiration": expiration(), "conditions": self.conditions(content_length=length_range)}
            self.assertRefused(self.post(self.signed_fields(document)), 400, code)
