"""
The backend request signer computes exactly what botocore's S3 SigV4 signer
computes for the same request (UNSIGNED-PAYLOAD, every header signed).
"""

from __future__ import annotations

import datetime
from unittest import mock

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.signing import BackendSigner, quote_key

WHEN = datetime.datetime(2026, 11, 25, 12, 34, 56, tzinfo=datetime.UTC)


class _Unsigned(S3SigV4Auth):
    def _should_sha256_sign_payload(self, request) -> bool:
        return False


def botocore_headers(method: str, url: str, headers: dict, region: str) -> dict:
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN.replace(tzinfo=None)):
        _Unsigned(Credentials("AKIDEXAMPLE", "secret/key+"), "s3", region).add_auth(request)
    return dict(request.headers.items())


class SignerTests(SynchronousTestCase):
    def check(self, endpoint: str, path_style: bool, method: str, key: str | None, query: str, headers: dict) -> None:
        signer = BackendSigner(endpoint, "real-bucket", "eu-west-3", "AKIDEXAMPLE", "secret/key+", path_style)
        url = signer.url(key, query)
        ours = signer.sign(method, url, headers, now=WHEN.timestamp())
        theirs = botocore_headers(method, url, headers, "eu-west-3")
        self.assertEqual(ours["Authorization"], theirs["Authorization"], url)
        self.assertEqual(ours["X-Amz-Date"], theirs["X-Amz-Date"])

    def test_put_with_metadata_path_style(self) -> None:
        self.check(
            "http://127.0.0.1:8333",
            True,
            "PUT",
            "vb/ü ñ/odd key+(1)~!*'.txt",
            "",
            {
                "Content-Length": "123",
                "Content-Type": "text/plain; charset=utf-8",
                "Cache-Control": "max-age=60,  public",
                "x-amz-meta-colour": "blue",
                "x-amz-meta-s3balance-key": quote_key("a/b c"),
            },
        )

    def test_get_with_range_virtual_host_default_port(self) -> None:
        self.check("https://s3.eu-west-3.amazonaws.com:443", False, "GET", "vb/abc", "", {"Range": "bytes=0-9"})

    def test_multipart_queries(self) -> None:
        self.check("http://minio.local:9000", True, "PUT", "vb/k", "partNumber=3&uploadId=a%2Fb%3D%3D", {"Content-Length": "5"})
        self.check("http://minio.local:9000", True, "POST", "vb/k", "uploads=", {"Content-Length": "0"})
        self.check("http://minio.local:9000", True, "GET", None, "prefix=vb%2Fk&uploads=", {})

    def test_head_bucket(self) -> None:
        self.check("http://127.0.0.1:8333", True, "HEAD", None, "", {})

    def test_signing_key_is_cached_per_day(self) -> None:
        signer = BackendSigner("http://h:1", "b", "us-east-1", "AK", "SK", True)
        signer.sign("GET", signer.url("k"), {}, now=WHEN.timestamp())
        key = signer._key
        signer.sign("GET", signer.url("k"), {}, now=WHEN.timestamp() + 60)
        self.assertIs(signer._key, key)
        signer.sign("GET", signer.url("k"), {}, now=WHEN.timestamp() + 86400)
        self.assertIsNot(signer._key, key)
