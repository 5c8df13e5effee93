"""
Tests for POST Object (browser form uploads): the streaming form parser
(L{s3balance.http.multipart_form}), the policy and its signatures
(L{s3balance.auth.post_policy}), and the whole operation against a running
daemon (L{s3balance.s3.form_upload}) with botocore's C{generate_presigned_post},
a hand-built SigV2 form, and a real HTML form in headless Chromium.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from unittest import SkipTest
from urllib.parse import parse_qsl, urlsplit

import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth import post_policy
from s3balance.auth.canonical import signing_key
from s3balance.errors import S3Error
from s3balance.http.multipart_form import (
    FileStart,
    FormTooLarge,
    MalformedForm,
    MissingFile,
    MultipartFormParser,
    boundary_of,
)
from tests.gateways import lazy_gateway

BOUNDARY = b"----WebKitFormBoundaryx7Yq2"


def form_body(fields: list[tuple[str, bytes]], file: bytes, filename: str = "a.txt",
              after: list[tuple[str, bytes]] = (), boundary: bytes = BOUNDARY) -> bytes:  # type: ignore[assignment]
    out = []
    for name, value in fields:
        out.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
                   + value + b"\r\n")
    out.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode()
               + b'"\r\nContent-Type: text/plain\r\n\r\n' + file + b"\r\n")
    for name, value in after:
        out.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
                   + value + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


class Collected:
    def __init__(self, boundary: bytes = BOUNDARY, cap: int = 20 * 1024) -> None:
        self.fields: list[tuple[str, bytes]] = []
        self.start: Optional[FileStart] = None
        self.data: list[bytes] = []
        self.ended = 0
        self.parser = MultipartFormParser(boundary, lambda n, v: self.fields.append((n, v)), self._start,
                                          self.data.append, self._end, cap)

    def _start(self, start: FileStart) -> None:
        self.start = start

    def _end(self) -> None:
        self.ended += 1

    def feed(self, body: bytes, chunks: list[int]) -> None:
        position = 0
        for cut in chunks:
            self.parser.feed(body[position:cut])
            position = cut
        self.parser.feed(body[position:])
        self.parser.finish()


class FormParserTests(SynchronousTestCase):
    FIELDS = [("key", b"up/${filename}"), ("x-amz-meta-a", b"caf\xc3\xa9\r\nline")]

    def test_whole_body(self) -> None:
        body = form_body(self.FIELDS, b"hello\r\nworld--", after=[("submit", b"Upload")])
        got = Collected()
        got.feed(body, [])
        self.assertEqual(got.fields, self.FIELDS)
        self.assertEqual(got.start, FileStart("a.txt", "text/plain"))
        self.assertEqual(b"".join(got.data), b"hello\r\nworld--")
        self.assertEqual(got.ended, 1)

    def test_split_at_every_offset(self) -> None:
        # A file that holds near-delimiters ("\r\n--" + a prefix of the boundary).
        content = b"a\r\n--" + BOUNDARY[:10] + b"\r\n-\r" + b"z" * 50 + b"\r\n--" + BOUNDARY[:-1] + b"X"
        body = form_body(self.FIELDS, content)
        for offset in range(len(body) + 1):
            got = Collected()
            got.feed(body, [offset])
            self.assertEqual((got.fields, b"".join(got.data), got.ended), (self.FIELDS, content, 1), offset)

    def test_byte_by_byte(self) -> None:
        content = os.urandom(300)
        body = form_body(self.FIELDS, content)
        got = Collected()
        got.feed(body, list(range(1, len(body))))
        self.assertEqual(b"".join(got.data), content)

    def test_file_is_streamed_not_held(self) -> None:
        got = Collected()
        head = form_body(self.FIELDS, b"")
        head = head[: head.rindex(b"text/plain\r\n\r\n") + len(b"text/plain\r\n\r\n")]
        got.parser.feed(head)
        for _ in range(100):
            got.parser.feed(b"x" * 65536)
        self.assertGreater(sum(map(len, got.data)), 100 * 65536 - 100)
        self.assertLess(len(got.parser._buffer), 200)

    def test_quoted_and_unquoted_parameters(self) -> None:
        body = (b"--B\r\ncontent-disposition: form-data; name=key\r\n\r\nk\r\n"
                b'--B\r\nContent-Disposition: form-data; filename="C:\\\\dir\\\\my \\"x\\".txt"; name="file"\r\n\r\n'
                b"data\r\n--B--")
        got = Collected(b"B")
        got.feed(body, [])
        self.assertEqual(got.fields, [("key", b"k")])
        assert got.start is not None
        self.assertEqual(got.start.filename, 'my "x".txt')
        self.assertEqual(b"".join(got.data), b"data")

    def test_filename_with_path(self) -> None:
        body = form_body([("key", b"k")], b"d", filename="/home/me/photo.jpg")
        got = Collected()
        got.feed(body, [])
        assert got.start is not None
        self.assertEqual(got.start.filename, "photo.jpg")

    def test_preamble_is_skipped(self) -> None:
        body = b"ignored preamble\r\n" + form_body([("key", b"k")], b"d")
        got = Collected()
        got.feed(body, [])
        self.assertEqual(got.fields, [("key", b"k")])

    def test_missing_file(self) -> None:
        body = b"--B\r\nContent-Disposition: form-data; name=key\r\n\r\nk\r\n--B--\r\n"
        with self.assertRaises(MissingFile):
            Collected(b"B").feed(body, [])

    def test_empty_body(self) -> None:
        with self.assertRaises(MalformedForm):
            Collected(b"B").feed(b"", [])

    def test_unterminated_file(self) -> None:
        body = form_body([("key", b"k")], b"data")
        with self.assertRaises(MalformedForm):
            Collected().feed(body[: body.rindex(b"data") + 4], [])

    def test_unterminated_field(self) -> None:
        with self.assertRaises(MalformedForm):
            Collected(b"B").feed(b"--B\r\nContent-Disposition: form-data; name=key\r\n\r\nk", [])

    def test_huge_field(self) -> None:
        got = Collected(b"B", cap=1000)
        got.parser.feed(b"--B\r\nContent-Disposition: form-data; name=key\r\n\r\n")
        with self.assertRaises(FormTooLarge):
            for _ in range(10):
                got.parser.feed(b"x" * 200)

    def test_many_small_fields_over_the_cap(self) -> None:
        body = form_body([(f"x-amz-meta-{i}", b"v") for i in range(100)], b"d")
        with self.assertRaises(FormTooLarge):
            Collected(cap=2000).feed(body, [])

    def test_part_without_disposition(self) -> None:
        with self.assertRaises(MalformedForm):
            Collected(b"B").feed(b"--B\r\nContent-Type: text/plain\r\n\r\nk\r\n--B--", [])

    def test_garbage_after_delimiter(self) -> None:
        with self.assertRaises(MalformedForm):
            Collected(b"B").feed(b"--Bxyz\r\nContent-Disposition: form-data; name=a\r\n\r\nk\r\n--B--", [])

    def test_endless_headers(self) -> None:
        got = Collected(b"B")
        got.parser.feed(b"--B\r\nX: ")
        with self.assertRaises((MalformedForm, FormTooLarge)):
            for _ in range(100):
                got.parser.feed(b"y" * 1000)

    def test_boundary_of(self) -> None:
        self.assertEqual(boundary_of("multipart/form-data; boundary=abc"), b"abc")
        self.assertEqual(boundary_of('Multipart/Form-Data; charset=utf-8; boundary="a b;c"'), b"a b;c")
        for bad in ("multipart/form-data", "text/plain; boundary=x", "multipart/form-data; boundary=",
                    "multipart/form-data; boundary=" + "x" * 71, "multipart/form-data; boundary=\u00e9"):
            with self.assertRaises(MalformedForm, msg=bad):
                boundary_of(bad)


# -- the policy ------------------------------------------------------------------

ACCESS, SECRET = "AKPOSTTEST", "post-secret"
NOW = 1_800_000_000.0


class Cred:
    access_key = ACCESS
    secret_key = SECRET


def lookup(key: str) -> Optional[Cred]:
    return Cred() if key == ACCESS else None


def encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def expiry(offset: float) -> str:
    return datetime.datetime.fromtimestamp(NOW + offset, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def v4_form(policy: str, fields: list[tuple[str, str]], secret: str = SECRET) -> post_policy.PostForm:
    date = "20270115"
    key = signing_key(secret, date, "us-east-1")
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    return post_policy.PostForm([
        *fields,
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-credential", f"{ACCESS}/{date}/us-east-1/s3/aws4_request"),
        ("x-amz-date", date + "T000000Z"),
        ("policy", policy),
        ("x-amz-signature", signature),
    ])


def v2_form(policy: str, fields: list[tuple[str, str]], secret: str = SECRET) -> post_policy.PostForm:
    signature = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return post_policy.PostForm([*fields, ("AWSAccessKeyId", ACCESS), ("policy", policy), ("signature", signature)])


V4_CONDITIONS: list[Any] = [
    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
    ["starts-with", "$x-amz-credential", ""],
    ["starts-with", "$x-amz-date", ""],
]


class PolicySignatureTests(SynchronousTestCase):
    def test_v4(self) -> None:
        policy = encode({"expiration": expiry(60), "conditions": []})
        context = post_policy.authenticate(v4_form(policy, []), lookup)
        assert context is not None
        self.assertEqual((context.credential.access_key, context.signature_version), (ACCESS, 4))

    def test_v4_wrong_secret(self) -> None:
        policy = encode({"expiration": expiry(60), "conditions": []})
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(v4_form(policy, [], secret="nope"), lookup)
        self.assertEqual(raised.exception.code, "SignatureDoesNotMatch")

    def test_v4_policy_changed_after_signing(self) -> None:
        form = v4_form(encode({"expiration": expiry(60), "conditions": []}), [])
        fields = [(n, encode({"expiration": expiry(9999), "conditions": []}) if n == "policy" else v)
                  for n, v in form.fields]
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm(fields), lookup)
        self.assertEqual(raised.exception.code, "SignatureDoesNotMatch")

    def test_v4_unknown_key(self) -> None:
        form = v4_form("e30=", [])
        fields = [(n, v.replace(ACCESS, "OTHER") if n == "x-amz-credential" else v) for n, v in form.fields]
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm(fields), lookup)
        self.assertEqual(raised.exception.code, "InvalidAccessKeyId")

    def test_v4_missing_date(self) -> None:
        form = v4_form("e30=", [])
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm([f for f in form.fields if f[0] != "x-amz-date"]), lookup)
        self.assertEqual((raised.exception.code, raised.exception.extra["ArgumentName"]), ("InvalidArgument", "x-amz-date"))

    def test_v2(self) -> None:
        policy = encode({"expiration": expiry(60), "conditions": []})
        context = post_policy.authenticate(v2_form(policy, []), lookup)
        assert context is not None
        self.assertEqual(context.signature_version, 2)

    def test_v2_wrong_secret(self) -> None:
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(v2_form("e30=", [], secret="nope"), lookup)
        self.assertEqual(raised.exception.code, "SignatureDoesNotMatch")

    def test_v2_disabled(self) -> None:
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(v2_form("e30=", []), lookup, sigv2_enabled=False)
        self.assertEqual(raised.exception.code, "InvalidRequest")

    def test_anonymous(self) -> None:
        self.assertIsNone(post_policy.authenticate(post_policy.PostForm([("key", "k")]), lookup))

    def test_policy_without_signature(self) -> None:
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm([("key", "k"), ("policy", "e30=")]), lookup)
        self.assertEqual(raised.exception.extra["ArgumentName"], "AWSAccessKeyId")

    def test_signature_without_policy(self) -> None:
        form = [f for f in v2_form("e30=", []).fields if f[0] != "policy"]
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm(form), lookup)
        self.assertEqual(raised.exception.extra["ArgumentName"], "policy")

    def test_both_mechanisms(self) -> None:
        form = [*v2_form("e30=", []).fields, ("x-amz-signature", "00")]
        with self.assertRaises(S3Error) as raised:
            post_policy.authenticate(post_policy.PostForm(form), lookup)
        self.assertEqual(raised.exception.code, "InvalidArgument")


class PolicyCheckTests(SynchronousTestCase):
    def check(self, conditions: list[Any], fields: list[tuple[str, str]], offset: float = 60) -> post_policy.PolicyOutcome:
        policy = post_policy.parse_policy(encode({"expiration": expiry(offset), "conditions": conditions}))
        return post_policy.check_policy(policy, post_policy.PostForm(fields), "bkt", NOW)

    def denied(self, conditions: list[Any], fields: list[tuple[str, str]], offset: float = 60) -> str:
        with self.assertRaises(S3Error) as raised:
            self.check(conditions, fields, offset)
        self.assertEqual((raised.exception.code, raised.exception.status), ("AccessDenied", 403))
        return raised.exception.message

    def test_all_condition_kinds_met(self) -> None:
        outcome = self.check(
            [{"bucket": "bkt"}, ["eq", "$key", "a/b"], ["starts-with", "$Content-Type", "image/"],
             ["starts-with", "$x-amz-meta-x", ""], ["content-length-range", 1, "100"]],
            [("key", "a/b"), ("Content-Type", "image/png"), ("x-amz-meta-x", "anything"), ("x-ignore-me", "1")],
        )
        self.assertEqual(outcome.length_range, (1, 100))

    def test_expired(self) -> None:
        self.assertEqual(self.denied([], [], offset=-1), "Invalid according to Policy: Policy expired.")

    def test_eq_failed(self) -> None:
        self.assertEqual(self.denied([["eq", "$key", "a"]], [("key", "b")]),
                         'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "a"]')

    def test_simple_condition_failed(self) -> None:
        self.assertEqual(self.denied([{"bucket": "other"}], []),
                         'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "other"]')

    def test_starts_with_failed(self) -> None:
        self.assertIn("Policy Condition failed", self.denied([["starts-with", "$key", "user/"]], [("key", "admin/x")]))

    def test_content_type_list_each_checked(self) -> None:
        self.denied([["starts-with", "$Content-Type", "image/"]], [("Content-Type", "image/png, text/html")])

    def test_extra_field(self) -> None:
        self.assertEqual(self.denied([{"bucket": "bkt"}, ["eq", "$key", "k"]],
                                     [("key", "k"), ("x-amz-meta-sneaky", "1"), ("acl", "x")]),
                         "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky, acl")

    def test_the_bucket_must_be_covered(self) -> None:
        # The form's bucket is the URL's, yet S3 wants a condition on it.
        self.assertEqual(self.denied([["eq", "$key", "k"]], [("key", "k")]),
                         "Invalid according to Policy: Extra input fields: bucket")
        self.check([["starts-with", "$bucket", "b"], ["eq", "$key", "k"]], [("key", "k")])

    def test_field_names_case_insensitive(self) -> None:
        self.check([{"BuCkEt": "bkt"}, ["eq", "$KEY", "k"]], [("Key", "k")])

    def test_missing_field_fails_eq(self) -> None:
        self.denied([["eq", "$success_action_status", "201"]], [])

    def test_malformed_policies(self) -> None:
        for document in ("not base64!", base64.b64encode(b"{bad json").decode(), encode([1]),
                         encode({"conditions": []}), encode({"expiration": expiry(60)}),
                         encode({"expiration": "tomorrow", "conditions": []}),
                         encode({"expiration": expiry(60).replace("T", " "), "conditions": []}),
                         encode({"expiration": expiry(60)[:10], "conditions": []}),
                         encode({"expiration": expiry(60), "conditions": [["between", "$key", "a"]]}),
                         encode({"expiration": expiry(60), "conditions": [["content-length-range", -1, 5]]}),
                         encode({"expiration": expiry(60), "conditions": [["content-length-range", "x", 5]]}),
                         encode({"expiration": expiry(60), "conditions": [["eq", "key", "a"]]}),
                         encode({"expiration": expiry(60), "conditions": [{"a": "b", "c": "d"}]}),
                         encode({"expiration": expiry(60), "conditions": [{"a": 1}]}),
                         encode({"expiration": expiry(60), "conditions": [[]]}),
                         encode({"expiration": expiry(60), "conditions": {}}),
                         base64.b64encode(b"[" * 100000).decode()):
            with self.assertRaises(S3Error, msg=document) as raised:
                post_policy.parse_policy(document)
            self.assertEqual((raised.exception.code, raised.exception.status), ("InvalidPolicyDocument", 400))


class FuzzTests(SynchronousTestCase):
    """Hostile input: only the parser's own errors, or S3Error, never anything else."""

    @given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
    @settings(max_examples=300, deadline=None)
    def test_parser_on_random_bodies(self, noise: bytes, cuts: list[int]) -> None:
        body = form_body([("key", b"k")], b"data")
        body = body[: len(noise) % len(body)] + noise
        got = Collected()
        try:
            got.feed(body, sorted(c for c in cuts if c <= len(body)))
        except (MalformedForm, MissingFile, FormTooLarge):
            pass

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=12,
    )

    @given(st.lists(json_values, max_size=4), st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4))
    @settings(max_examples=300, deadline=None)
    def test_policy_on_random_conditions(self, conditions: list[Any], fields: list[tuple[str, str]]) -> None:
        document = encode({"expiration": expiry(60), "conditions": conditions})
        try:
            policy = post_policy.parse_policy(document)
            post_policy.check_policy(policy, post_policy.PostForm(fields), "bkt", NOW)
        except S3Error as error:
            self.assertIn(error.status, (400, 403))
            return
        # Met: then every field was covered (or is exempt).
        covered = {c.name for c in policy.conditions}
        for name, _ in fields:
            lower = name.lower()
            self.assertTrue(lower in covered or lower in post_policy.UNCOVERED_FIELDS
                            or lower.startswith(post_policy.IGNORED_PREFIX), name)


# -- against a running daemon ------------------------------------------------------

RO_SECRET = "post-read-only-secret"
LIMITED_SECRET = "post-limited-secret"
DOMAIN = "s3.test"

# Any origin may read the answers (the browser test's page is served from
# another port); a read-only key and a key limited to another bucket; the
# virtual-host domain s3.test.
anonymous_gateway = lazy_gateway("post-anonymous", s3api={"auth_required": False})
form_gateway = lazy_gateway(
    "post-form",
    ["vb-post", "vb-other"],
    s3api={
        "cors": {"allowed_origins": ["*"]},
        "virtual_host": DOMAIN,
        "credentials": [
            {"access_key": "post-ro", "secret_key": RO_SECRET, "read_only": True},
            {"access_key": "post-limited", "secret_key": LIMITED_SECRET, "buckets": ["vb-other"]},
        ],
    },
)


def multipart(fields: list[tuple[str, str]], content: bytes, filename: str = "hello.txt") -> list[tuple[str, Any]]:
    """The form as requests sends it (fields in order, the file last)."""
    return [*((name, (None, value)) for name, value in fields), ("file", (filename, content, "text/plain"))]


def post_error(response: requests.Response) -> tuple[str, str]:
    root = ET.fromstring(response.content)
    return root.findtext("Code") or "", root.findtext("Message") or ""


class PostObjectIntegrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        from tests.daemon import shared_gateway

        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="post")
        self.endpoint = self.gateway.daemon.endpoint

    def presigned(self, key: str, fields: Optional[dict[str, str]] = None,
                  conditions: Optional[list[Any]] = None) -> dict[str, Any]:
        # botocore puts Fields in the form, not in the policy: each needs its condition.
        conditions = list(conditions or [])
        named = {str(c[1]).lower().lstrip("$") if isinstance(c, list) else next(iter(c)).lower() for c in conditions}
        conditions += [{name: value} for name, value in (fields or {}).items() if name.lower() not in named]
        return self.s3.generate_presigned_post(self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=300)

    def post(self, post: dict[str, Any], content: bytes, filename: str = "hello.txt",
             extra: Optional[list[tuple[str, str]]] = None, **kwargs: Any) -> requests.Response:
        fields = list(post["fields"].items()) + list(extra or [])
        return requests.post(post["url"], files=multipart(fields, content, filename), allow_redirects=False,
                             timeout=60, **kwargs)

    def test_presigned_post_v4(self) -> None:
        content = os.urandom(300_000)
        post = self.presigned("uploads/${filename}", fields={"Content-Type": "image/png", "x-amz-meta-who": "me"},
                              conditions=[["starts-with", "$Content-Type", "image/"], {"x-amz-meta-who": "me"}])
        response = self.post(post, content, filename="pic.png")
        self.assertEqual(response.status_code, 204, response.text)
        self.assertTrue(response.headers["ETag"].startswith('"'))
        self.assertTrue(response.headers["Location"].endswith(f"/{self.bucket}/uploads/pic.png"))
        got = self.s3.get_object(Bucket=self.bucket, Key="uploads/pic.png")
        self.assertEqual(got["Body"].read(), content)
        self.assertEqual(got["ContentType"], "image/png")
        self.assertEqual(got["Metadata"], {"who": "me"})
        self.assertEqual(got["ETag"], response.headers["ETag"])

    def test_sigv2_policy(self) -> None:
        from tests.daemon import ACCESS_KEY, SECRET_KEY

        policy = encode({"expiration": (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5))
                         .strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "conditions": [{"bucket": self.bucket}, ["starts-with", "$key", "v2/"]]})
        signature = base64.b64encode(hmac.new(SECRET_KEY.encode(), policy.encode(), hashlib.sha1).digest()).decode()
        fields = [("key", "v2/obj"), ("AWSAccessKeyId", ACCESS_KEY), ("policy", policy), ("signature", signature)]
        response = requests.post(f"{self.endpoint}/{self.bucket}", files=multipart(fields, b"v2 body"), timeout=30)
        self.assertEqual(response.status_code, 204, response.text)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="v2/obj")["Body"].read(), b"v2 body")
        bad = fields[:-1] + [("signature", base64.b64encode(b"x" * 20).decode())]
        response = requests.post(f"{self.endpoint}/{self.bucket}", files=multipart(bad, b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (403, "SignatureDoesNotMatch"))

    def test_success_action_status_201(self) -> None:
        post = self.presigned("s201", fields={"success_action_status": "201"})
        response = self.post(post, b"abc")
        self.assertEqual(response.status_code, 201, response.text)
        root = ET.fromstring(response.content)
        self.assertEqual(root.tag, "PostResponse")
        self.assertEqual((root.findtext("Bucket"), root.findtext("Key")), (self.bucket, "s201"))
        self.assertEqual(root.findtext("ETag"), response.headers["ETag"])

    def test_success_action_status_200(self) -> None:
        post = self.presigned("s200", fields={"success_action_status": "200"})
        response = self.post(post, b"abc")
        self.assertEqual((response.status_code, response.content), (200, b""))

    def test_success_action_redirect(self) -> None:
        post = self.presigned("redir", fields={"success_action_redirect": "https://example.com/done?x=1"})
        response = self.post(post, b"abc")
        self.assertEqual(response.status_code, 303, response.text)
        location = urlsplit(response.headers["Location"])
        self.assertEqual((location.netloc, location.path), ("example.com", "/done"))
        self.assertEqual(dict(parse_qsl(location.query)),
                         {"x": "1", "bucket": self.bucket, "key": "redir", "etag": response.headers["ETag"]})

    def test_content_length_range_too_large_streams(self) -> None:
        # 64 MiB against a 1 MiB maximum: refused, nothing stored, never buffered
        # (the daemon's RSS stays far below the body's size).
        post = self.presigned("big", conditions=[["content-length-range", 0, 1024 * 1024]])
        size = 64 * 1024 * 1024
        before = self.gateway.daemon.rss_kib()[0]

        def body() -> Iterator[bytes]:
            fields = list(post["fields"].items())
            head = form_body([(n, v.encode()) for n, v in fields], b"")
            head = head[: head.rindex(b"text/plain\r\n\r\n") + len(b"text/plain\r\n\r\n")]
            yield head
            block = b"z" * (1 << 20)
            for _ in range(size // len(block)):
                yield block
            yield b"\r\n--" + BOUNDARY + b"--\r\n"

        response = requests.post(post["url"], data=body(), timeout=120,
                                 headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()})
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "EntityTooLarge"), response.text)
        self.assertLess(self.gateway.daemon.rss_kib()[0] - before, 32 * 1024)
        self.assertNotIn("Contents", self.s3.list_objects_v2(Bucket=self.bucket))

    def test_content_length_range_too_small(self) -> None:
        post = self.presigned("small", conditions=[["content-length-range", 10, 100]])
        response = self.post(post, b"abc")
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "EntityTooSmall"))
        self.assertNotIn("Contents", self.s3.list_objects_v2(Bucket=self.bucket))

    def test_policy_errors(self) -> None:
        post = self.presigned("k")
        response = self.post(post, b"x", extra=[("x-amz-meta-extra", "1")])
        self.assertEqual((response.status_code, post_error(response)),
                         (403, ("AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-extra")))
        fields = dict(post["fields"])
        fields["key"] = "other"
        response = requests.post(post["url"], files=multipart(list(fields.items()), b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)),
                         (403, ("AccessDenied", 'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "k"]')))
        self.assertNotIn("Contents", self.s3.list_objects_v2(Bucket=self.bucket))

    def test_form_errors(self) -> None:
        url = f"{self.endpoint}/{self.bucket}"
        response = requests.post(url, data=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"},
                                 timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (412, "PreconditionFailed"))
        response = requests.post(url, files=[("key", (None, "k"))], timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "InvalidArgument"))
        response = requests.post(url, data=b"--B\r\nnonsense", timeout=30,
                                 headers={"Content-Type": "multipart/form-data; boundary=B"})
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "MalformedPOSTRequest"))
        response = requests.post(url, files=multipart([("key", "k"), ("x-amz-meta-a", "v" * 30000)], b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "MaxPostPreDataLengthExceeded"))

    def test_anonymous_refused(self) -> None:
        response = requests.post(f"{self.endpoint}/{self.bucket}", files=multipart([("key", "anon")], b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (403, "AccessDenied"))

    def test_tagging_and_acl(self) -> None:
        tags = "<Tagging><TagSet><Tag><Key>a</Key><Value>b c</Value></Tag></TagSet></Tagging>"
        post = self.presigned("tagged", fields={"tagging": tags, "acl": "private"})
        self.assertEqual(self.post(post, b"t").status_code, 204)
        got = self.s3.get_object_tagging(Bucket=self.bucket, Key="tagged")["TagSet"]
        self.assertEqual(got, [{"Key": "a", "Value": "b c"}])
        post = self.presigned("public", fields={"acl": "public-read"})
        self.assertEqual(self.post(post, b"t").status_code, 204)
        grants = self.s3.get_object_acl(Bucket=self.bucket, Key="public")["Grants"]
        self.assertIn(
            {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"},
            grants,
        )
        post = self.presigned("refused", fields={"acl": "aws-exec-read"})
        response = self.post(post, b"t")
        self.assertEqual((response.status_code, post_error(response)[0]), (501, "NotImplemented"))

    def test_content_md5_verified(self) -> None:
        good = base64.b64encode(hashlib.md5(b"md5 body").digest()).decode()
        post = self.presigned("md5", fields={"Content-MD5": good})
        self.assertEqual(self.post(post, b"md5 body").status_code, 204)
        post = self.presigned("md5-bad", fields={"Content-MD5": good})
        response = self.post(post, b"other body")
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "BadDigest"))
        keys = [item["Key"] for item in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])]
        self.assertEqual(keys, ["md5"])

    def test_utf8_filename_and_redirect_field(self) -> None:
        post = self.presigned("in/${filename}", fields={"redirect": "http://example.com/r"})
        response = self.post(post, b"u", filename="r\u00e9sum\u00e9 \u2713.txt")
        self.assertEqual(response.status_code, 303, response.text)
        key = "in/r\u00e9sum\u00e9 \u2713.txt"
        self.assertEqual(dict(parse_qsl(urlsplit(response.headers["Location"]).query))["key"], key)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(), b"u")

    def test_fields_after_file_ignored(self) -> None:
        post = self.presigned("after")
        fields = [(n, (None, v)) for n, v in post["fields"].items()]
        files = [*fields, ("file", ("f", b"body", "text/plain")), ("x-amz-meta-late", (None, "1"))]
        response = requests.post(post["url"], files=files, timeout=30)
        self.assertEqual(response.status_code, 204, response.text)
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="after")["Metadata"], {})

    def test_encryption_refused(self) -> None:
        post = self.presigned("sse", fields={"x-amz-server-side-encryption": "AES256"})
        response = self.post(post, b"t")
        self.assertEqual((response.status_code, post_error(response)[0]), (501, "NotImplemented"))



# -- a real HTML form in headless Chromium -------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


PAGE = """<!doctype html>
<html><body>
<form id="form" method="post" enctype="multipart/form-data" action="{action}">
{inputs}
<input type="file" name="file" id="file">
</form>
<div id="fetched">pending</div>
<script>
const content = {content};
const fetchFields = {fetch_fields};
function fileOf(name) {{
  return new File([content], name, {{type: "text/plain"}});
}}
async function run() {{
  // A cross-origin upload by script (FormData), reading the answer through CORS.
  const data = new FormData();
  for (const [name, value] of Object.entries(fetchFields)) data.append(name, value);
  data.append("file", fileOf("by-fetch.txt"));
  let report;
  try {{
    const answer = await fetch("{action}", {{method: "POST", body: data}});
    report = answer.status + " " + answer.headers.get("ETag");
  }} catch (error) {{
    report = "error " + error;
  }}
  await fetch("/report?result=" + encodeURIComponent(report));
  // A plain form submission (a navigation, no CORS), its file input filled as a user would.
  const transfer = new DataTransfer();
  transfer.items.add(fileOf("by-form.txt"));
  document.getElementById("file").files = transfer.files;
  document.getElementById("form").submit();
}}
run();
</script>
</body></html>
"""


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (Debian package 'chromium', see scripts/install-system-deps)"
    if os.environ.get("CI") == "true":
        raise AssertionError(message + "; CI must run this test")
    raise SkipTest(message)


class PageServer:
    """The web application's origin: serves the upload page, takes the redirect and the script's report."""

    def __init__(self) -> None:
        self.page = b""
        self.seen: dict[str, dict[str, str]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path, _, query = self.path.partition("?")
                outer.seen[path] = dict(parse_qsl(query))
                body = outer.page if path == "/" else b"<html><body>done</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BrowserFormTests(SynchronousTestCase):
    def test_html_form_and_fetch_upload(self) -> None:
        from html import escape

        browser = chromium()
        gateway = form_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, prefix="browser")
        content = "hello from a browser form\n" * 1000
        server = PageServer()
        self.addCleanup(server.stop)
        form_post = s3.generate_presigned_post(
            bucket, "browser/${filename}",
            Fields={"success_action_redirect": server.origin + "/done", "Content-Type": "text/plain"},
            Conditions=[{"success_action_redirect": server.origin + "/done"},
                        {"Content-Type": "text/plain"}],
            ExpiresIn=300,
        )
        fetch_post = s3.generate_presigned_post(
            bucket, "fetch/${filename}", Fields={"success_action_status": "201"},
            Conditions=[{"success_action_status": "201"}], ExpiresIn=300,
        )
        fields = dict(form_post["fields"])
        inputs = "\n".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
                           for name, value in fields.items())
        server.page = PAGE.format(
            action=form_post["url"], inputs=inputs, content=json.dumps(content),
            fetch_fields=json.dumps(fetch_post["fields"]),
        ).encode()
        profile = tempfile.mkdtemp(prefix="s3balance-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", server.origin + "/",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(_stop_browser, process)
        deadline = time.monotonic() + 90
        while "/done" not in server.seen and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if "/done" not in server.seen:
            _stop_browser(process)
            diagnostics = process.stderr.read().decode(errors="replace")[-3000:] if process.stderr else ""
            self.fail(f"the form's redirect never came back; seen {sorted(server.seen)}; chromium said: {diagnostics}")
        done = server.seen["/done"]
        self.assertEqual((done["bucket"], done["key"]), (bucket, "browser/by-form.txt"))
        got = s3.get_object(Bucket=bucket, Key="browser/by-form.txt")
        self.assertEqual(got["Body"].read(), content.encode())
        self.assertEqual(got["ContentType"], "text/plain")
        self.assertEqual(done["etag"], got["ETag"])
        # The fetch's answer was readable cross-origin, ETag included (CORS).
        fetched = s3.head_object(Bucket=bucket, Key="fetch/by-fetch.txt")
        self.assertEqual(server.seen["/report"]["result"], "201 " + fetched["ETag"])


def _stop_browser(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser we started and its helpers (its own process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, 15)
        except ProcessLookupError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)
    if process.stderr is not None:
        process.stderr.close()



class PostObjectLimitsTests(SynchronousTestCase):
    """On a daemon of its own: the credentials' limits, virtual hosts, cleanup of refused uploads."""

    def setUp(self) -> None:
        self.gateway = form_gateway()
        self.s3 = self.gateway.client()
        self.endpoint = self.gateway.endpoint

    def presigned(self, client: Any, bucket: str, key: str, conditions: Optional[list[Any]] = None) -> dict[str, Any]:
        return client.generate_presigned_post(bucket, key, Conditions=conditions, ExpiresIn=300)

    def test_anonymous_when_allowed(self) -> None:
        gateway = anonymous_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, prefix="postanon")
        response = requests.post(f"{gateway.endpoint}/{bucket}", files=multipart([("key", "anon")], b"open"), timeout=30)
        self.assertEqual(response.status_code, 204, response.text)
        self.assertEqual(s3.get_object(Bucket=bucket, Key="anon")["Body"].read(), b"open")

    def test_read_only_key_refused(self) -> None:
        bucket = self.gateway.new_bucket(self.s3, prefix="postro")
        post = self.presigned(self.gateway.client("post-ro", RO_SECRET), bucket, "k")
        response = requests.post(post["url"], files=multipart(list(post["fields"].items()), b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (403, "AccessDenied"))
        self.assertNotIn("Contents", self.s3.list_objects_v2(Bucket=bucket))

    def test_key_limited_to_other_buckets_refused(self) -> None:
        limited = self.gateway.client("post-limited", LIMITED_SECRET)
        post = self.presigned(limited, "vb-post", "k")
        response = requests.post(post["url"], files=multipart(list(post["fields"].items()), b"x"), timeout=30)
        self.assertEqual((response.status_code, post_error(response)[0]), (403, "AccessDenied"))
        post = self.presigned(limited, "vb-other", "mine")
        response = requests.post(post["url"], files=multipart(list(post["fields"].items()), b"x"), timeout=30)
        self.assertEqual(response.status_code, 204, response.text)

    def test_virtual_host_style(self) -> None:
        bucket = self.gateway.new_bucket(self.s3, prefix="postvh")
        post = self.presigned(self.s3, bucket, "vh/${filename}")
        response = requests.post(self.endpoint + "/", headers={"Host": f"{bucket}.{DOMAIN}:{self.gateway.port}"},
                                 files=multipart(list(post["fields"].items()), b"virtual", "f.bin"), timeout=30)
        self.assertEqual(response.status_code, 204, response.text)
        self.assertEqual(response.headers["Location"], f"http://{bucket}.{DOMAIN}:{self.gateway.port}/vh/f.bin")
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="vh/f.bin")["Body"].read(), b"virtual")

    def test_too_large_after_several_parts_leaves_nothing(self) -> None:
        # Past the first 5 MiB part, the upload is a multipart upload on the
        # backend: refused at 12 MiB, it is aborted there and nothing is recorded.
        bucket = self.gateway.new_bucket(self.s3, prefix="postbig")
        post = self.presigned(self.s3, bucket, "big", [["content-length-range", 0, 12 * 1024 * 1024]])
        content = os.urandom(1 << 20) * 16
        response = requests.post(post["url"], files=multipart(list(post["fields"].items()), content), timeout=120)
        self.assertEqual((response.status_code, post_error(response)[0]), (400, "EntityTooLarge"))
        self.gateway.assert_nothing_left(bucket)

    def test_large_file_round_trip(self) -> None:
        bucket = self.gateway.new_bucket(self.s3, prefix="postlarge")
        post = self.presigned(self.s3, bucket, "large")
        content = os.urandom(1 << 20) * 11 + b"tail"
        response = requests.post(post["url"], files=multipart(list(post["fields"].items()), content), timeout=120)
        self.assertEqual(response.status_code, 204, response.text)
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="large")["Body"].read(), content)

    def test_client_gone_mid_file_leaves_nothing(self) -> None:
        import socket

        bucket = self.gateway.new_bucket(self.s3, prefix="postgone")
        post = self.presigned(self.s3, bucket, "gone")
        head = form_body([(n, v.encode()) for n, v in post["fields"].items()], b"")
        head = head[: head.rindex(b"text/plain\r\n\r\n") + len(b"text/plain\r\n\r\n")]
        with socket.create_connection(("127.0.0.1", self.gateway.port), timeout=30) as connection:
            connection.sendall(
                f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(head) + 20_000_000}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n\r\n".encode() + head
            )
            for _ in range(7):
                connection.sendall(b"y" * (1 << 20))
        self.gateway.assert_nothing_left(bucket)

    def test_expect_100_continue(self) -> None:
        import socket

        bucket = self.gateway.new_bucket(self.s3, prefix="postcont")
        post = self.presigned(self.s3, bucket, "cont")
        body = form_body([(n, v.encode()) for n, v in post["fields"].items()], b"after continue")
        with socket.create_connection(("127.0.0.1", self.gateway.port), timeout=30) as connection:
            connection.sendall(
                f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"Expect: 100-continue\r\nContent-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n\r\n"
                .encode()
            )
            self.assertEqual(connection.recv(25), b"HTTP/1.1 100 Continue\r\n\r\n")
            connection.sendall(body)
            answer = connection.recv(4096)
        self.assertTrue(answer.startswith(b"HTTP/1.1 204 "), answer)
        self.assertNotIn(b"100 Continue", answer)
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="cont")["Body"].read(), b"after continue")
