"""
Server-side encryption is refused, never silently ignored (L{s3balance.s3.sse}).

s3balance stores bytes as the client sent them.  An SSE-S3, SSE-KMS or SSE-C
request, and an SSE-C copy source, are answered C{501 NotImplemented} on every
operation, and nothing is stored; PutBucketEncryption is not accepted;
GetBucketEncryption answers as S3 does for a bucket without a default
encryption configuration.  Through the running daemon with boto3, presigned
URLs over plain HTTP, and the pure check.
"""

from __future__ import annotations

import os
import urllib.parse

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from s3balance.errors import S3Error
from s3balance.s3.sse import encryption_requested, refuse_encryption
from tests.daemon import ACCESS_KEY, SECRET_KEY, shared_gateway
from tests.gateways import assert_nothing_left, s3_error
from tests.signing import send

SSE_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
)
CUSTOMER_KEY = bytes(range(32))


def answer_of(error: ClientError) -> tuple[int, str]:
    return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]


class RefuseEncryptionTests(SynchronousTestCase):
    """The pure check of L{refuse_encryption}."""

    def test_every_encryption_header_refused(self) -> None:
        for name in SSE_HEADERS:
            error = self.assertRaises(S3Error, refuse_encryption, {name: ["x"]}, {})
            self.assertEqual((error.code, error.status), ("NotImplemented", 501), name)
            self.assertEqual(error.extra, {"Header": name})
            self.assertIn(name, error.message)

    def test_hoisted_query_parameter_refused(self) -> None:
        """Presigners that move x-amz-* headers into the URL (aws-sdk-js v3) put SSE there."""
        error = self.assertRaises(S3Error, refuse_encryption, {}, {"X-Amz-Server-Side-Encryption": "AES256"})
        self.assertEqual(
            (error.code, error.extra), ("NotImplemented", {"Header": "X-Amz-Server-Side-Encryption"})
        )

    def test_every_name_in_message(self) -> None:
        headers = {
            "x-amz-server-side-encryption-customer-algorithm": ["AES256"],
            "x-amz-server-side-encryption-customer-key": ["k"],
        }
        self.assertEqual(
            encryption_requested(headers, {"x-amz-server-side-encryption": "aws:kms"}),
            [
                "x-amz-server-side-encryption-customer-algorithm",
                "x-amz-server-side-encryption-customer-key",
                "x-amz-server-side-encryption",
            ],
        )

    def test_other_headers_pass(self) -> None:
        refuse_encryption(
            {
                "x-amz-meta-server-side-encryption": ["AES256"],
                "x-amz-copy-source": ["/b/k"],
                "content-type": ["x"],
            },
            {"versionId": "null", "server-side-encryption": ""},
        )


class EncryptionRefusedTests(SynchronousTestCase):
    """Through the daemon: every way of asking for encryption is refused and stores nothing."""

    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="sse")

    def assert_not_implemented(self, call, **params) -> None:
        with self.assertRaises(ClientError) as raised:
            call(Bucket=self.bucket, **params)
        self.assertEqual(answer_of(raised.exception), (501, "NotImplemented"))

    def assert_absent(self, key: str) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(answer_of(raised.exception)[0], 404)

    def test_sse_c_put_refused_nothing_stored(self) -> None:
        self.assert_not_implemented(
            self.s3.put_object,
            Key="sse-c",
            Body=os.urandom(1000),
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=CUSTOMER_KEY,
        )
        self.assert_absent("sse-c")
        assert_nothing_left(self.gateway, self.bucket)

    def test_sse_s3_put_refused_nothing_stored(self) -> None:
        self.assert_not_implemented(
            self.s3.put_object, Key="sse-s3", Body=b"data", ServerSideEncryption="AES256"
        )
        self.assert_absent("sse-s3")
        assert_nothing_left(self.gateway, self.bucket)

    def test_sse_kms_put_refused(self) -> None:
        self.assert_not_implemented(
            self.s3.put_object,
            Key="sse-kms",
            Body=b"data",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId="alias/mine",
            BucketKeyEnabled=True,
        )
        self.assert_absent("sse-kms")
        assert_nothing_left(self.gateway, self.bucket)

    def test_sse_c_read_refused(self) -> None:
        """A GET with a customer key must not hand out bytes as if they had been decrypted with it."""
        self.s3.put_object(Bucket=self.bucket, Key="plain", Body=b"plain")
        keyed = {"Key": "plain", "SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY}
        self.assert_not_implemented(self.s3.get_object, **keyed)
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, **keyed)
        self.assertEqual(answer_of(raised.exception)[0], 501)

    def test_copy_refused_with_source_key_or_target_encryption(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="source", Body=b"source")
        source = {"Bucket": self.bucket, "Key": "source"}
        self.assert_not_implemented(
            self.s3.copy_object,
            Key="copy-c",
            CopySource=source,
            CopySourceSSECustomerAlgorithm="AES256",
            CopySourceSSECustomerKey=CUSTOMER_KEY,
        )
        self.assert_not_implemented(
            self.s3.copy_object, Key="copy-s3", CopySource=source, ServerSideEncryption="AES256"
        )
        self.assert_absent("copy-c")
        self.assert_absent("copy-s3")

    def test_multipart_refused(self) -> None:
        self.assert_not_implemented(self.s3.create_multipart_upload, Key="mp", ServerSideEncryption="AES256")
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        self.addCleanup(self.s3.abort_multipart_upload, Bucket=self.bucket, Key="mp", UploadId=upload)
        self.assert_not_implemented(
            self.s3.upload_part,
            Key="mp",
            UploadId=upload,
            PartNumber=1,
            Body=b"part",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=CUSTOMER_KEY,
        )
        self.assertEqual(
            self.s3.list_parts(Bucket=self.bucket, Key="mp", UploadId=upload).get("Parts", []), []
        )

    def test_presigned_put_with_signed_sse_header_refused(self) -> None:
        url = self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": "presigned", "ServerSideEncryption": "AES256"}
        )
        status, _headers, body = send("PUT", url, {"x-amz-server-side-encryption": "AES256"}, b"data")
        self.assertEqual((status, s3_error(body)[0]), (501, "NotImplemented"), body)
        self.assert_absent("presigned")
        assert_nothing_left(self.gateway, self.bucket)

    def test_presigned_put_with_hoisted_sse_query_refused(self) -> None:
        """aws-sdk-js v3 hoists x-amz-* headers into the presigned URL's query; S3 honours them there."""
        base = f"{self.gateway.daemon.endpoint}/{self.bucket}/hoisted?x-amz-server-side-encryption=AES256"
        request = AWSRequest(method="PUT", url=base)
        S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", expires=300).add_auth(
            request
        )
        url = request.prepare().url
        self.assertIn("x-amz-server-side-encryption=AES256", urllib.parse.urlsplit(url).query)
        status, _headers, body = send("PUT", url, {}, b"data")
        self.assertEqual((status, s3_error(body)[0]), (501, "NotImplemented"), body)
        self.assert_absent("hoisted")
        assert_nothing_left(self.gateway, self.bucket)


class BucketEncryptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="sse-bucket")

    def test_put_bucket_encryption_not_implemented(self) -> None:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        with self.assertRaises(ClientError) as raised:
            self.s3.put_bucket_encryption(
                Bucket=self.bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}
            )
        self.assertEqual(answer_of(raised.exception), (501, "NotImplemented"))
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_bucket_encryption(Bucket=self.bucket)
        self.assertEqual(answer_of(raised.exception), (501, "NotImplemented"))

    def test_get_bucket_encryption_not_found(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.get_bucket_encryption(Bucket=self.bucket)
        self.assertEqual(answer_of(raised.exception), (404, "ServerSideEncryptionConfigurationNotFoundError"))
        self.assertEqual(raised.exception.response["Error"]["BucketName"], self.bucket)

    def test_get_bucket_encryption_of_missing_bucket(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.get_bucket_encryption(Bucket=self.bucket + "-missing")
        self.assertEqual(answer_of(raised.exception), (404, "NoSuchBucket"))
