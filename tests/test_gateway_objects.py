"""
Object operations through a running daemon over two real SeaweedFS backends,
driven by boto3 in its default configuration.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import urllib.error
import urllib.request

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import poll, shared_gateway


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


class ObjectRoundTripTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def test_small_object_round_trip_keeps_headers_and_metadata(self) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key="docs/hello.txt",
            Body=b"hello world",
            ContentType="text/plain; charset=utf-8",
            ContentEncoding="identity",
            ContentDisposition='attachment; filename="h.txt"',
            CacheControl="max-age=60",
            ContentLanguage="en",
            Expires=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
            Metadata={"colour": "blue", "Mixed-Case": "x"},
        )
        got = self.s3.get_object(Bucket=self.bucket, Key="docs/hello.txt")
        self.assertEqual(got["Body"].read(), b"hello world")
        self.assertEqual(got["ContentType"], "text/plain; charset=utf-8")
        self.assertEqual(got["ContentEncoding"], "identity")
        self.assertEqual(got["ContentDisposition"], 'attachment; filename="h.txt"')
        self.assertEqual(got["CacheControl"], "max-age=60")
        self.assertEqual(got["ContentLanguage"], "en")
        self.assertEqual(got["Metadata"], {"colour": "blue", "mixed-case": "x"})
        self.assertEqual(got["ETag"], f'"{hashlib.md5(b"hello world").hexdigest()}"')
        head = self.s3.head_object(Bucket=self.bucket, Key="docs/hello.txt")
        self.assertEqual(head["ContentLength"], 11)
        self.assertEqual(head["ETag"], got["ETag"])

    def test_gzip_encoded_object_is_returned_byte_exact(self) -> None:
        import gzip

        body = gzip.compress(b"x" * 10000)
        self.s3.put_object(Bucket=self.bucket, Key="z.gz", Body=body, ContentEncoding="gzip")
        got = self.s3.get_object(Bucket=self.bucket, Key="z.gz")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ContentEncoding"], "gzip")

    def test_8mib_object_is_byte_exact(self) -> None:
        data = os.urandom(8 * 1024 * 1024 + 3)
        self.s3.put_object(Bucket=self.bucket, Key="big.bin", Body=data)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="big.bin")["Body"].read(), data)

    def test_empty_object(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="empty", Body=b"")
        got = self.s3.get_object(Bucket=self.bucket, Key="empty")
        self.assertEqual(got["Body"].read(), b"")
        self.assertEqual(got["ContentLength"], 0)

    def test_unicode_and_odd_keys(self) -> None:
        keys = ["ü/ñ é.txt", "a+b=c&d", "tilde~!'()*", "percent%20literal", "sp ace/", "//double"]
        for index, key in enumerate(keys):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=str(index).encode())
        for index, key in enumerate(keys):
            self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(), str(index).encode())
        listed = [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(listed, sorted(keys, key=lambda k: k.encode()))

    def test_ranges(self) -> None:
        data = bytes(range(256)) * 4
        self.s3.put_object(Bucket=self.bucket, Key="r", Body=data)
        part = self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=10-19")
        self.assertEqual(part["Body"].read(), data[10:20])
        self.assertEqual(part["ContentRange"], "bytes 10-19/1024")
        self.assertEqual(part["ResponseMetadata"]["HTTPStatusCode"], 206)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=-5")["Body"].read(), data[-5:])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=1000-")["Body"].read(), data[1000:])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=1000-5000")["Body"].read(), data[1000:])
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="r", Range="bytes=1024-")
        self.assertEqual(error_code(raised.exception), "InvalidRange")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 416)

    def test_conditional_get(self) -> None:
        put = self.s3.put_object(Bucket=self.bucket, Key="c", Body=b"conditional")
        etag = put["ETag"]
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="c", IfMatch=etag)["Body"].read(), b"conditional")
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="c", IfMatch='"nope"')
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="c", IfNoneMatch=etag)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 304)
        future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key="c", IfModifiedSince=future)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 304)
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="c", IfUnmodifiedSince=past)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="c", IfModifiedSince=past)["Body"].read(), b"conditional")

    def test_overwrite_replaces_and_removes_old_backend_copy(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="o", Body=b"one")
        prefix = f"{self.bucket}/"
        poll(lambda: sum(len(v) for v in self.gateway.backend_keys(prefix).values()) == 1)
        self.s3.put_object(Bucket=self.bucket, Key="o", Body=b"two")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="o")["Body"].read(), b"two")
        poll(
            lambda: sum(len(v) for v in self.gateway.backend_keys(prefix).values()) == 1,
            message="the old copy was not removed from its backend",
        )

    def test_delete_removes_backend_copy(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="d", Body=b"bye")
        self.assertEqual(self.s3.delete_object(Bucket=self.bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"], 204)
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="d")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        poll(lambda: not any(self.gateway.backend_keys(f"{self.bucket}/").values()))
        # Deleting a missing key is not an error in S3.
        self.s3.delete_object(Bucket=self.bucket, Key="d")

    def test_a_delete_of_another_version_leaves_the_object(self) -> None:
        """
        In a bucket never versioned the only version is "null": deleting any
        other id removes nothing (204, as a delete of what is not there), a
        malformed one is InvalidArgument (an Error entry in DeleteObjects).
        """
        self.s3.put_object(Bucket=self.bucket, Key="v", Body=b"keep me")
        self.s3.delete_object(Bucket=self.bucket, Key="v", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH")
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_object(Bucket=self.bucket, Key="v", VersionId="not a version")
        self.assertEqual(error_code(raised.exception), "InvalidArgument")
        answer = self.s3.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": "v", "VersionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH"},
                                {"Key": "v", "VersionId": "not a version"}, {"Key": "gone"}]},
        )
        self.assertEqual([(e["Key"], e["Code"]) for e in answer["Errors"]], [("v", "NoSuchVersion")])
        self.assertEqual([d["Key"] for d in answer["Deleted"]], ["v", "gone"])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="v")["Body"].read(), b"keep me")
        # The "null" version is the object itself (what version-aware tools send).
        answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "v", "VersionId": "null"}]})
        self.assertEqual(answer["Deleted"], [{"Key": "v", "VersionId": "null"}])
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key="v")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        self.s3.put_object(Bucket=self.bucket, Key="w", Body=b"x")
        self.s3.delete_object(Bucket=self.bucket, Key="w", VersionId="null")
        poll(lambda: not any(self.gateway.backend_keys(f"{self.bucket}/").values()))

    def test_same_key_in_two_buckets_does_not_collide(self) -> None:
        other = self.gateway.new_bucket(self.s3)
        self.s3.put_object(Bucket=self.bucket, Key="same", Body=b"first")
        self.s3.put_object(Bucket=other, Key="same", Body=b"second")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="same")["Body"].read(), b"first")
        self.assertEqual(self.s3.get_object(Bucket=other, Key="same")["Body"].read(), b"second")

    def test_round_robin_spreads_objects_over_both_backends(self) -> None:
        for index in range(6):
            self.s3.put_object(Bucket=self.bucket, Key=f"spread/{index}", Body=b"x")
        counts = {name: len(keys) for name, keys in self.gateway.backend_keys(f"{self.bucket}/").items()}
        self.assertEqual(sorted(counts.values()), [3, 3], counts)


class ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()

    def test_missing_bucket_and_key(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket="no-such-bucket-here", Key="k")
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")
        bucket = self.gateway.new_bucket(self.s3)
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=bucket, Key="missing")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        self.assertTrue(raised.exception.response["ResponseMetadata"]["RequestId"])

    def test_errors_are_s3_xml_with_request_id(self) -> None:
        request = urllib.request.Request(f"{self.gateway.daemon.endpoint}/vb-default/x", method="GET")
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request)
        body = raised.exception.read()
        self.assertEqual(raised.exception.code, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", body)
        self.assertIn(b"<RequestId>", body)
        self.assertTrue(raised.exception.headers["x-amz-request-id"])

    def test_method_not_allowed(self) -> None:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials

        from tests.daemon import ACCESS_KEY, SECRET_KEY

        url = f"{self.gateway.daemon.endpoint}/vb-default/key"
        aws = botocore.awsrequest.AWSRequest(method="PATCH", url=url, data=b"")
        botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(aws)
        request = urllib.request.Request(url, method="PATCH", headers=dict(aws.headers.items()))
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request)
        self.assertEqual(raised.exception.code, 405)
        self.assertIn(b"<Code>MethodNotAllowed</Code>", raised.exception.read())

    def test_health_lists_backends(self) -> None:
        health = self.gateway.daemon.health()
        self.assertEqual(health["status"], "ok")
        self.assertEqual(sorted(health["backends"]), sorted(self.gateway.real_buckets))
        for state in health["backends"].values():
            self.assertTrue(state["up"])


class MalformedRequestTests(SynchronousTestCase):
    def test_unparseable_request_gets_an_s3_error_document(self) -> None:
        import socket

        gateway = shared_gateway()
        for raw in (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
            b"PUT /vb-default/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", gateway.daemon.port), timeout=10) as sock:
                sock.sendall(raw)
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400"), head)
            self.assertIn(b"x-amz-request-id:", head)
            self.assertIn(b"<Code>BadRequest</Code>", body)
