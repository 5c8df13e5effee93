"""
Conformance of request authentication through a running daemon: the
SigV2 header cases a standard S3 conformance suite checks (malformed
Authorization headers, missing, invalid and skewed dates, bad Content-MD5,
empty or missing User-Agent, missing Authorization) and its presigned URL
cases (expiry, out-of-range expiry, gone objects and buckets), each as S3
answers it.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from typing import Any, Optional
from urllib.parse import urlsplit

import requests

from tests.conformance import SECRETS, ConformanceCase
from tests.gateways import s3_error


def _on(client: Any, event: str, change: Any) -> Any:
    client.meta.events.register(event, change)
    return client


class SigV2HeaderTests(ConformanceCase):
    def v2_client(self, operation: str, signed: Optional[dict[str, str]] = None,
                  after: Optional[dict[str, Optional[str]]] = None) -> Any:
        """
        A SigV2 client of alice's that adds the headers C{signed} before
        signing C{operation}, and sets (or, for None, removes) the headers
        C{after} once it is signed.
        """
        client = self.gateway.client("alice", SECRETS["alice"], signature_version="s3")

        def sign(request: Any, **_: Any) -> None:
            for name, value in (signed or {}).items():
                request.headers[name] = value

        def send(request: Any, **_: Any) -> None:
            for name, value in (after or {}).items():
                if name in request.headers:
                    del request.headers[name]
                if value is not None:
                    request.headers[name] = value

        _on(client, f"before-sign.s3.{operation}", sign)
        return _on(client, f"before-send.s3.{operation}", send)

    def test_a_sigv2_client_works(self) -> None:
        """A SigV2-signed client creates a bucket, writes, reads and lists (the baseline of the cases below)."""
        client = self.gateway.client("alice", SECRETS["alice"], signature_version="s3")
        bucket = self.new_bucket(client=client)
        client.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        self.assertEqual(client.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")
        self.assertEqual([o["Key"] for o in client.list_objects(Bucket=bucket)["Contents"]], ["foo"])

    def test_an_authorization_without_a_signature_is_invalid_argument(self) -> None:
        """Authorization "AWS HAHAHA" answers 400 InvalidArgument, on PutObject and on CreateBucket."""
        bucket = self.new_bucket()
        client = self.v2_client("PutObject", after={"Authorization": "AWS HAHAHA"})
        self.assertS3Error(400, "InvalidArgument", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")
        client = self.v2_client("CreateBucket", after={"Authorization": "AWS HAHAHA"})
        self.assertS3Error(400, "InvalidArgument", client.create_bucket, Bucket=bucket + "-x")

    def test_an_unknown_access_key_is_invalid_access_key_id(self) -> None:
        """A well-formed SigV2 Authorization naming an unknown access key answers 403 InvalidAccessKeyId."""
        bucket = self.new_bucket()
        client = self.v2_client("PutObject",
                                after={"Authorization": "AWS AKIAIGR7ZNNBHC5BKSUB:FWeDfwojDSdS2Ztmpfeubhd9isU="})
        self.assertS3Error(403, "InvalidAccessKeyId", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")

    def test_an_empty_or_missing_authorization_is_anonymous(self) -> None:
        """CreateBucket with an empty Authorization header, or none, is anonymous: 403 AccessDenied."""
        client = self.v2_client("CreateBucket", after={"Authorization": ""})
        self.assertS3Error(403, "AccessDenied", client.create_bucket, Bucket=self.new_bucket() + "-x")
        client = self.v2_client("CreateBucket", after={"Authorization": None})
        self.assertS3Error(403, "AccessDenied", client.create_bucket, Bucket=self.new_bucket() + "-y")

    def test_invalid_dates(self) -> None:
        """
        An x-amz-date that is no date, is empty or lies before 1970, and a
        request with neither Date nor x-amz-date, answer 403 AccessDenied, on
        PutObject and on CreateBucket.
        """
        bucket = self.new_bucket()
        for date in ("Bad Date", "", "Tue, 07 Jul 1950 21:53:04 GMT"):
            client = self.v2_client("PutObject", {"x-amz-date": date})
            self.assertS3Error(403, "AccessDenied", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")
            client = self.v2_client("CreateBucket", {"x-amz-date": date})
            self.assertS3Error(403, "AccessDenied", client.create_bucket, Bucket=bucket + "-x")
        client = self.v2_client("PutObject", after={"Date": None})
        self.assertS3Error(403, "AccessDenied", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")
        client = self.v2_client("CreateBucket", after={"Date": None})
        self.assertS3Error(403, "AccessDenied", client.create_bucket, Bucket=bucket + "-x")
        self.assertNotIn("Contents", self.alice.list_objects_v2(Bucket=bucket))

    def test_skewed_dates(self) -> None:
        """An x-amz-date in 2010, a day ahead or in 9999 answers 403 RequestTimeTooSkewed, on PutObject and CreateBucket."""
        import email.utils
        import time

        bucket = self.new_bucket()
        tomorrow = email.utils.formatdate(time.time() + 86400, usegmt=True)
        for date in ("Tue, 07 Jul 2010 21:53:04 GMT", tomorrow, "Tue, 07 Jul 9999 21:53:04 GMT"):
            client = self.v2_client("PutObject", {"x-amz-date": date})
            self.assertS3Error(403, "RequestTimeTooSkewed", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")
            client = self.v2_client("CreateBucket", {"x-amz-date": date})
            self.assertS3Error(403, "RequestTimeTooSkewed", client.create_bucket, Bucket=bucket + "-x")

    def test_garbage_content_md5(self) -> None:
        """A Content-MD5 that is not base64 of 16 bytes answers 400 InvalidDigest."""
        bucket = self.new_bucket()
        client = self.v2_client("PutObject", {"Content-MD5": "AWS HAHAHA"})
        self.assertS3Error(400, "InvalidDigest", client.put_object, Bucket=bucket, Key="foo", Body=b"bar")

    def test_a_body_shorter_than_its_content_md5(self) -> None:
        """A body cut short of what its (signed) Content-MD5 names answers 400 BadDigest and writes nothing."""
        from botocore.auth import HmacV1Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        bucket = self.new_bucket()
        md5 = base64.b64encode(hashlib.md5(b"bar").digest()).decode()
        url = self.url(bucket, "foo")
        request = AWSRequest(method="PUT", url=url, headers={"Content-MD5": md5, "Content-Length": "2"})
        HmacV1Auth(Credentials("alice", SECRETS["alice"])).add_auth(request)
        parts = urlsplit(url)
        head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
            connection.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode() + b"ba")
            answer = b""
            while b"</Error>" not in answer:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        self.assertEqual((status, s3_error(answer[answer.index(b"<?xml"):])[0]), (400, "BadDigest"), answer)
        self.assertNotIn("Contents", self.alice.list_objects_v2(Bucket=bucket))

    def test_empty_or_missing_user_agent(self) -> None:
        """A SigV2 PutObject and CreateBucket with an empty User-Agent, or none, succeed."""
        bucket = self.new_bucket()
        for after in ({"User-Agent": ""}, {"User-Agent": None}):
            self.v2_client("PutObject", after=after).put_object(Bucket=bucket, Key="foo", Body=b"bar")
            self.v2_client("CreateBucket", after=after).create_bucket(Bucket=self.new_bucket() + "-ua")
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")


class PresignedURLTests(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.new_bucket("public-read")
        self.alice.put_object(Bucket=self.bucket, Key="foo", Body=b"bar", ACL="public-read")
        self.v2 = self.gateway.client("alice", SECRETS["alice"], signature_version="s3")

    def presigned(self, client: Any, method: str, expires: int, key: str = "foo") -> str:
        """
        A presigned URL of alice's, by C{client}'s signature version; SigV4
        ones are signed by botocore's own signer, which (unlike the CRT
        signer boto3 may use) signs an X-Amz-Expires of zero or below.
        """
        if client is not self.alice:
            operation = {"GET": "get_object", "PUT": "put_object"}[method]
            return client.generate_presigned_url(operation, Params={"Bucket": self.bucket, "Key": key},
                                                 ExpiresIn=expires, HttpMethod=method)
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method=method, url=self.url(self.bucket, key))
        S3SigV4QueryAuth(Credentials("alice", SECRETS["alice"]), "s3", "us-east-1", expires=expires).add_auth(request)
        return request.url

    def assertAnswer(self, response: requests.Response, status: int, code: Optional[str]) -> None:
        self.assertEqual(response.status_code, status, response.text)
        if code is not None:
            self.assertEqual(s3_error(response.content)[0], code, response.text)

    def test_a_presigned_get_within_its_expiry(self) -> None:
        """A presigned GET valid for 100000 seconds (SigV4) or 1000 (SigV2) answers 200."""
        for url in (self.presigned(self.alice, "GET", 100000), self.presigned(self.v2, "GET", 1000)):
            response = requests.get(url, timeout=30)
            self.assertEqual((response.status_code, response.content), (200, b"bar"))

    def test_expired_presigned_urls(self) -> None:
        """A presigned URL past its expiry answers 403 AccessDenied: a SigV4 GET of 0 seconds, SigV2 GET and PUT."""
        self.assertAnswer(requests.get(self.presigned(self.alice, "GET", 0), timeout=30), 403, "AccessDenied")
        self.assertAnswer(requests.get(self.presigned(self.v2, "GET", -7), timeout=30), 403, "AccessDenied")
        self.assertAnswer(requests.put(self.presigned(self.v2, "PUT", -1000), data=b"foo", timeout=30), 403,
                          "AccessDenied")
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="foo")["Body"].read(), b"bar")

    def test_sigv4_expiry_out_of_range(self) -> None:
        """
        A SigV4 presigned URL with X-Amz-Expires over a week or below zero
        answers 400 AuthorizationQueryParametersError, as S3 answers (the
        conformance suite accepts any refusal, asking 403).
        """
        for expires in (609901, -7):
            self.assertAnswer(requests.get(self.presigned(self.alice, "GET", expires), timeout=30), 400,
                              "AuthorizationQueryParametersError")
        self.assertAnswer(requests.put(self.presigned(self.alice, "PUT", -1000), data=b"foo", timeout=30), 400,
                          "AuthorizationQueryParametersError")

    def test_presigned_reads_of_gone_objects_and_buckets(self) -> None:
        """A presigned GET of a deleted object answers 404 NoSuchKey; once its bucket is deleted, 404 NoSuchBucket."""
        for client in (self.alice, self.v2):
            self.alice.put_object(Bucket=self.bucket, Key="gone", Body=b"x")
            url = self.presigned(client, "GET", 1000, "gone")
            self.alice.delete_object(Bucket=self.bucket, Key="gone")
            self.assertAnswer(requests.get(url, timeout=30), 404, "NoSuchKey")
        urls = [self.presigned(self.alice, "GET", 1000), self.presigned(self.v2, "GET", 1000)]
        self.alice.delete_object(Bucket=self.bucket, Key="foo")
        self.alice.delete_bucket(Bucket=self.bucket)
        for url in urls:
            self.assertAnswer(requests.get(url, timeout=30), 404, "NoSuchBucket")
