"""
An C{x-amz-*} header outside C{SignedHeaders} is refused, as S3 refuses it,
through the running daemon in front of SeaweedFS.

botocore presigns a PUT over C{host} alone.  Whoever holds that URL must not be
able to add C{x-amz-copy-source} (the PUT would become a copy of any object the
signer may read), C{x-amz-meta-*} or C{x-amz-tagging}: each is answered
C{403 AccessDenied} naming the header in C{<HeadersNotSigned>}, and nothing is
written.  The same URL without the added header still works.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_gateway
from tests.gateways import assert_nothing_left, s3_error
from tests.signing import send, sign_request

NOT_SIGNED = "There were headers present in the request which were not signed"
SECRET = b"only the signer may read this"


def headers_not_signed(body: bytes) -> str:
    return ET.fromstring(body).findtext("HeadersNotSigned") or ""


class UnsignedHeaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        # The source of the attempted copy lives in its own bucket, which the
        # target bucket's leak check does not look at.
        self.secret_bucket = self.gateway.new_bucket(self.s3, prefix="unsigned-src")
        self.s3.put_object(Bucket=self.secret_bucket, Key="secret", Body=SECRET)
        self.bucket = self.gateway.new_bucket(self.s3, prefix="unsigned")

    def presigned_put(self, key: str) -> str:
        return self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=300
        )

    def assert_refused(self, answer: tuple[int, dict, bytes], names: str) -> None:
        status, _headers, body = answer
        self.assertEqual((status, s3_error(body)), (403, ("AccessDenied", NOT_SIGNED)), body)
        self.assertEqual(headers_not_signed(body), names)

    def assert_absent(self, key: str) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_presigned_put_with_added_copy_source_copies_nothing(self) -> None:
        url = self.presigned_put("stolen")
        backend_before = self.gateway.backend_keys()
        answer = send("PUT", url, {"x-amz-copy-source": f"/{self.secret_bucket}/secret"})
        self.assert_refused(answer, "x-amz-copy-source")
        self.assert_absent("stolen")
        self.assertEqual(self.gateway.backend_keys(), backend_before)
        assert_nothing_left(self.gateway, self.bucket)

    def test_presigned_put_with_added_metadata_refused(self) -> None:
        url = self.presigned_put("meta")
        answer = send("PUT", url, {"x-amz-meta-owner": "mallory", "X-Amz-Meta-Role": "admin"}, b"data")
        self.assert_refused(answer, "x-amz-meta-owner, x-amz-meta-role")
        self.assert_absent("meta")
        assert_nothing_left(self.gateway, self.bucket)

    def test_presigned_put_with_added_tagging_refused(self) -> None:
        url = self.presigned_put("tagged")
        answer = send("PUT", url, {"x-amz-tagging": "classification=public"}, b"data")
        self.assert_refused(answer, "x-amz-tagging")
        self.assert_absent("tagged")
        assert_nothing_left(self.gateway, self.bucket)

    def test_presigned_put_without_added_headers_still_works(self) -> None:
        url = self.presigned_put("plain")
        self.assert_refused(send("PUT", url, {"x-amz-meta-a": "1"}, b"first"), "x-amz-meta-a")
        status, _headers, body = send("PUT", url, {}, b"plain body")
        self.assertEqual(status, 200, body)
        got = self.s3.get_object(Bucket=self.bucket, Key="plain")
        self.assertEqual((got["Body"].read(), got["Metadata"]), (b"plain body", {}))

    def test_header_auth_with_unsigned_metadata_refused(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/header-auth"
        signed = sign_request("PUT", url, {"content-type": "text/plain"})
        answer = send("PUT", url, {**signed.headers, "x-amz-meta-injected": "1"}, b"data")
        self.assert_refused(answer, "x-amz-meta-injected")
        self.assert_absent("header-auth")
        status, _headers, body = send("PUT", url, signed.headers, b"data")
        self.assertEqual(status, 200, body)

    def test_header_auth_with_unsigned_copy_source_copies_nothing(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/copy"
        signed = sign_request("PUT", url)
        answer = send("PUT", url, {**signed.headers, "x-amz-copy-source": f"/{self.secret_bucket}/secret"})
        self.assert_refused(answer, "x-amz-copy-source")
        self.assert_absent("copy")
        assert_nothing_left(self.gateway, self.bucket)

    def test_signed_copy_source_still_copies(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/copied"
        signed = sign_request("PUT", url, {"x-amz-copy-source": f"/{self.secret_bucket}/secret"})
        status, _headers, body = send("PUT", url, signed.headers)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="copied")["Body"].read(), SECRET)
