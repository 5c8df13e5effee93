"""
Values the metadata store cannot hold are refused at the request's headers
(s3balance.s3.limits): the rules on their own, then through a running daemon
over real SeaweedFS backends with boto3, where nothing may reach a backend.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from sqlalchemy.dialects import mysql
from twisted.trial.unittest import SynchronousTestCase

from s3balance.errors import S3Error
from s3balance.s3 import limits
from s3balance.s3.call import S3Call
from s3balance.s3.routing import Target
from s3balance.store import tables
from tests.daemon import database_counts, shared_gateway

# 513 two-byte characters: 1026 bytes of UTF-8, under 1024 characters.
LONG_KEY = "é" * 513
LONGEST_KEY = "k" * 1021 + "é€"[:1] + "x"  # 1021 + 2 + 1 = 1024 bytes


def call(operation: str, key: str = "k", **headers: str) -> S3Call:
    return S3Call(
        method="PUT",
        target=Target("vb", key),
        operation=operation,
        query={},
        headers={name.lower(): [value] for name, value in headers.items()},
        credential=None,
        auth=None,
        raw_path=b"/vb/k",
    )


def refusal(f, *args) -> S3Error:
    try:
        f(*args)
    except S3Error as error:
        return error
    raise AssertionError(f"{f.__name__}{args!r} raised nothing")


class RuleTests(SynchronousTestCase):
    def test_limits_are_the_columns_sizes(self):
        for table in (tables.objects, tables.multipart_uploads):
            self.assertEqual(table.c.content_type.type.length, limits.MAX_CONTENT_TYPE)
        self.assertEqual(tables.objects.c.key.type.dialect_impl(mysql.dialect()).length, limits.MAX_KEY_BYTES)

    def test_key_length_counts_utf8_bytes(self):
        self.assertEqual(len(LONGEST_KEY.encode()), 1024)
        limits.check_request(call("PutObject", LONGEST_KEY))
        error = refusal(limits.check_request, call("PutObject", LONG_KEY))
        self.assertEqual((error.code, error.status), ("KeyTooLongError", 400))
        self.assertEqual(error.extra, {"Size": "1026", "MaxSizeAllowed": "1024"})

    def test_every_write_of_a_key_is_checked(self):
        for operation in ("PutObject", "CopyObject", "CreateMultipartUpload"):
            self.assertEqual(refusal(limits.check_request, call(operation, LONG_KEY)).code, "KeyTooLongError")

    def test_reads_and_deletes_are_not_checked(self):
        for operation in ("GetObject", "HeadObject", "DeleteObject", "ListParts"):
            limits.check_request(call(operation, LONG_KEY, **{"Content-Type": "x" * 300}))

    def test_content_type_over_255_characters_is_invalid(self):
        limits.check_request(call("PutObject", **{"Content-Type": "t/" + "x" * 253}))
        for operation in ("PutObject", "CreateMultipartUpload"):
            error = refusal(limits.check_request, call(operation, **{"Content-Type": "t/" + "x" * 254}))
            self.assertEqual((error.code, error.status), ("InvalidArgument", 400))
            self.assertEqual(error.extra, {"ArgumentName": "Content-Type"})

    def test_copy_checks_headers_only_when_it_replaces_them(self):
        long_type = {"Content-Type": "x" * 300}
        limits.check_request(call("CopyObject", **long_type))
        replacing = call("CopyObject", **long_type, **{"x-amz-metadata-directive": "REPLACE"})
        self.assertEqual(refusal(limits.check_request, replacing).code, "InvalidArgument")

    def test_user_metadata_over_2kb_is_too_large(self):
        limits.check_request(call("PutObject", **{"x-amz-meta-a": "v" * 2047}))
        error = refusal(limits.check_request, call("PutObject", **{"x-amz-meta-a": "v" * 2048}))
        self.assertEqual((error.code, error.status), ("MetadataTooLarge", 400))

    def test_stored_headers_the_column_cannot_hold_are_refused(self):
        # Each of these bytes is six characters of JSON (\u00ff).
        error = refusal(limits.check_request, call("PutObject", **{"Cache-Control": "\xff" * 11000}))
        self.assertEqual((error.code, error.status), ("RequestHeaderSectionTooLarge", 400))
        limits.check_request(call("PutObject", **{"Cache-Control": "\xff" * 10000}))


class ThroughTheDaemonTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def assertRefused(self, code: str, f, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            f(Bucket=self.bucket, **kwargs)
        self.assertEqual(raised.exception.response["Error"]["Code"], code)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)

    def assertNothingStored(self) -> None:
        counts = database_counts(self.gateway.daemon, self.bucket)
        self.assertEqual(counts, {"objects": 0, "write_intents": 0, "deletion_queue": 0})
        self.assertEqual(sum(len(keys) for keys in self.gateway.backend_keys(self.bucket + "/").values()), 0)

    def test_put_of_a_key_over_1024_bytes_is_key_too_long(self) -> None:
        self.assertRefused("KeyTooLongError", self.s3.put_object, Key=LONG_KEY, Body=b"data")
        self.assertNothingStored()

    def test_a_1024_byte_key_round_trips(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=LONGEST_KEY, Body=b"data")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=LONGEST_KEY)["Body"].read(), b"data")

    def test_copy_to_a_key_over_1024_bytes_is_key_too_long(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="source", Body=b"data")
        self.assertRefused(
            "KeyTooLongError", self.s3.copy_object, Key=LONG_KEY, CopySource={"Bucket": self.bucket, "Key": "source"}
        )
        self.assertEqual([o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]], ["source"])

    def test_multipart_upload_of_a_key_over_1024_bytes_is_key_too_long(self) -> None:
        self.assertRefused("KeyTooLongError", self.s3.create_multipart_upload, Key=LONG_KEY)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])

    def test_get_of_a_key_over_1024_bytes_is_no_such_key(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object(Bucket=self.bucket, Key=LONG_KEY)
        self.assertEqual(raised.exception.response["Error"]["Code"], "NoSuchKey")

    def test_content_type_over_255_characters_is_refused_before_the_upload(self) -> None:
        self.assertRefused("InvalidArgument", self.s3.put_object, Key="k", Body=b"data", ContentType="t/" + "x" * 254)
        self.assertNothingStored()
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", ContentType="t/" + "x" * 253)
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="k")["ContentType"], "t/" + "x" * 253)
