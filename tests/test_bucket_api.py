"""
Bucket operations through the S3 API of a running daemon (CreateBucket,
HeadBucket, ListBuckets, DeleteBucket) with boto3, the aws cli and rclone,
and DeleteObjects (POST /bucket?delete).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import shutil
import urllib.error
import urllib.request

from botocore.exceptions import ClientError
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.daemon import ACCESS_KEY, SECRET_KEY, poll, shared_gateway, sign, start_gateway
from tests.gateways import Lazy
from tests.harness import run_aws, run_rclone, unique_bucket_name


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def status(error: ClientError) -> int:
    return error.response["ResponseMetadata"]["HTTPStatusCode"]


def signed_request(
    method: str, url: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, bytes, dict]:
    """A SigV4-signed request with urllib. -> (status, body, headers); errors are answers too."""
    headers = dict(headers or {})
    headers["Content-Length"] = str(len(body))
    signed = sign(method, url, headers, payload=hashlib.sha256(body).hexdigest())
    request = urllib.request.Request(
        url, data=body if method in ("PUT", "POST") else None, method=method, headers=signed
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers.items())


def delete_document(keys, quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{key}</Key></Object>" for key in keys)
    flag = "<Quiet>true</Quiet>" if quiet else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Delete>{flag}{objects}</Delete>'.encode()


class BucketTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()

    def assertNoSuchBucket(self, name: str) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.head_bucket(Bucket=name)
        self.assertEqual(status(raised.exception), 404)
        with self.assertRaises(ClientError) as raised:
            self.s3.list_objects_v2(Bucket=name)
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")


class CreateBucketTests(BucketTestCase):
    def test_created_bucket_is_headed_and_listed(self) -> None:
        name = unique_bucket_name("created")
        answer = self.s3.create_bucket(Bucket=name)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(answer["Location"], f"/{name}")
        head = self.s3.head_bucket(Bucket=name)
        self.assertEqual(head["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"], "us-east-1")
        listed = self.s3.list_buckets()["Buckets"]
        names = [bucket["Name"] for bucket in listed]
        self.assertIn(name, names)
        self.assertIn("vb-default", names)
        self.assertEqual(names, sorted(names))
        self.s3.put_object(Bucket=name, Key="k", Body=b"in a new bucket")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"in a new bucket")

    def test_invalid_names_are_invalid_bucket_name(self) -> None:
        endpoint = self.gateway.daemon.endpoint
        for name in (
            "UPPER",
            "a",
            "ab..c",
            "192.168.1.1",
            "-dash",
            "dash-",
            "a" * 64,
            "under_score",
            "xn--punycode",
        ):
            code, body, _ = signed_request("PUT", f"{endpoint}/{name}")
            self.assertEqual(code, 400, (name, body))
            self.assertIn(b"<Code>InvalidBucketName</Code>", body, name)
            self.assertNotIn(name, [bucket["Name"] for bucket in self.s3.list_buckets()["Buckets"]])

    def test_invalid_name_through_boto3(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.create_bucket(Bucket="ab..c")
        self.assertEqual(error_code(raised.exception), "InvalidBucketName")

    def test_existing_bucket_is_already_owned_by_you(self) -> None:
        name = self.gateway.new_bucket(self.s3)
        self.s3.put_object(Bucket=name, Key="survivor", Body=b"still here")
        with self.assertRaises(ClientError) as raised:
            self.s3.create_bucket(Bucket=name)
        self.assertEqual(error_code(raised.exception), "BucketAlreadyOwnedByYou")
        self.assertEqual(status(raised.exception), 409)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="survivor")["Body"].read(), b"still here")

    def test_config_bucket_is_already_owned_by_you(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.create_bucket(Bucket="vb-default")
        self.assertEqual(error_code(raised.exception), "BucketAlreadyOwnedByYou")

    def test_create_bucket_refused_when_disabled(self) -> None:
        gateway = _no_create_gateway()
        s3 = gateway.client()
        name = unique_bucket_name("refused")
        with self.assertRaises(ClientError) as raised:
            s3.create_bucket(Bucket=name)
        self.assertEqual(error_code(raised.exception), "AccessDenied")
        self.assertEqual(status(raised.exception), 403)
        self.assertNotIn(name, [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]])
        with self.assertRaises(ClientError):
            s3.put_object(Bucket=name, Key="k", Body=b"x")
        # The configured bucket still works.
        s3.put_object(Bucket="vb-default", Key="k", Body=b"x")


class DeleteBucketTests(BucketTestCase):
    def test_non_empty_bucket_is_bucket_not_empty(self) -> None:
        name = self.gateway.new_bucket(self.s3)
        self.s3.put_object(Bucket=name, Key="k", Body=b"x")
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_bucket(Bucket=name)
        self.assertEqual(error_code(raised.exception), "BucketNotEmpty")
        self.assertEqual(status(raised.exception), 409)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"x")

    def test_bucket_with_only_an_open_multipart_upload_is_deleted(self) -> None:
        # As on S3 (tests/test_s3_semantics.py checks the backend upload is aborted).
        name = self.gateway.new_bucket(self.s3)
        self.s3.create_multipart_upload(Bucket=name, Key="pending")
        self.assertEqual(self.s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNoSuchBucket(name)

    def test_empty_api_bucket_is_deleted(self) -> None:
        name = self.gateway.new_bucket(self.s3)
        self.s3.put_object(Bucket=name, Key="k", Body=b"x")
        self.s3.delete_object(Bucket=name, Key="k")
        answer = self.s3.delete_bucket(Bucket=name)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNoSuchBucket(name)
        self.assertNotIn(name, [bucket["Name"] for bucket in self.s3.list_buckets()["Buckets"]])
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_bucket(Bucket=name)
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")
        # The name can be taken again, and the new bucket starts empty.
        self.s3.create_bucket(Bucket=name)
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    def test_missing_bucket_is_no_such_bucket(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_bucket(Bucket=unique_bucket_name("never"))
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")

    def test_config_bucket_cannot_be_deleted(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_bucket(Bucket="vb-default")
        self.assertIn(status(raised.exception), (403, 405, 409))
        self.s3.head_bucket(Bucket="vb-default")
        self.assertIn("vb-default", [bucket["Name"] for bucket in self.s3.list_buckets()["Buckets"]])


class BucketClientTests(BucketTestCase):
    def test_aws_s3_mb_and_rb(self) -> None:
        name = unique_bucket_name("awsmb")
        endpoint = self.gateway.daemon.endpoint
        run_aws(["s3", "mb", f"s3://{name}"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.s3.head_bucket(Bucket=name)
        listed = run_aws(["s3", "ls"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertIn(name, listed.stdout)
        run_aws(["s3", "rb", f"s3://{name}"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertNoSuchBucket(name)

    def test_aws_s3_rb_force_empties_the_bucket(self) -> None:
        name = self.gateway.new_bucket(self.s3)
        for index in range(3):
            self.s3.put_object(Bucket=name, Key=f"dir/{index}", Body=b"x")
        endpoint = self.gateway.daemon.endpoint
        run_aws(["s3", "rb", "--force", f"s3://{name}"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertNoSuchBucket(name)

    def test_rclone_mkdir_and_rmdir(self) -> None:
        if shutil.which("rclone") is None:
            raise SkipTest("rclone is not installed (Debian package 'rclone'; scripts/install-system-deps)")
        name = unique_bucket_name("rcmk")
        endpoint = self.gateway.daemon.endpoint
        run_rclone(["mkdir", f"s3:{name}"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.s3.head_bucket(Bucket=name)
        run_rclone(["rmdir", f"s3:{name}"], endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertNoSuchBucket(name)


class DeleteObjectsTests(BucketTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.gateway.new_bucket(self.s3)

    def put_many(self, count: int) -> list[str]:
        keys = [f"many/{index:04d}" for index in range(count)]
        client = self.gateway.client(max_pool_connections=16)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(lambda key: client.put_object(Bucket=self.bucket, Key=key, Body=key.encode()), keys)
            )
        return keys

    def backend_count(self) -> int:
        return sum(len(keys) for keys in self.gateway.backend_keys(f"{self.bucket}/").values())

    def test_1000_keys_are_deleted_with_per_key_results(self) -> None:
        keys = self.put_many(1000)
        answer = self.s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys]}
        )
        self.assertEqual(sorted(item["Key"] for item in answer["Deleted"]), keys)
        self.assertEqual(answer.get("Errors", []), [])
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)
        poll(
            lambda: self.backend_count() == 0,
            timeout=60,
            interval=0.5,
            message=f"{self.backend_count()} backend copies left",
        )

    def test_quiet_mode_answers_an_empty_result(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="a", Body=b"a")
        self.s3.put_object(Bucket=self.bucket, Key="b", Body=b"b")
        answer = self.s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}], "Quiet": True}
        )
        self.assertEqual(answer.get("Deleted", []), [])
        self.assertEqual(answer.get("Errors", []), [])
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)

    def test_missing_keys_are_reported_deleted_and_others_stay(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="present", Body=b"p")
        self.s3.put_object(Bucket=self.bucket, Key="kept", Body=b"k")
        answer = self.s3.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": "present"}, {"Key": "absent"}, {"Key": "ü nicode&<x>"}]},
        )
        self.assertEqual(
            sorted(item["Key"] for item in answer["Deleted"]), ["absent", "present", "ü nicode&<x>"]
        )
        self.assertEqual(
            [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]], ["kept"]
        )
        poll(lambda: self.backend_count() == 1)

    def test_boto3_sends_a_crc32_checksum_not_md5_and_it_works(self) -> None:
        seen: dict = {}

        def capture(request, **_):
            seen.update({name.lower(): value for name, value in request.headers.items()})

        self.s3.meta.events.register("before-send.s3.DeleteObjects", capture)
        self.s3.put_object(Bucket=self.bucket, Key="crc", Body=b"c")
        answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "crc"}]})
        self.assertEqual([item["Key"] for item in answer["Deleted"]], ["crc"])
        self.assertNotIn("content-md5", seen)
        self.assertTrue(any(name.startswith("x-amz-checksum-crc") for name in seen), seen)
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)

    def test_content_md5_works(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="md5", Body=b"m")
        body = delete_document(["md5"])
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        code, answer, _ = signed_request(
            "POST", f"{self.gateway.daemon.endpoint}/{self.bucket}?delete", body, {"Content-MD5": md5}
        )
        self.assertEqual(code, 200, answer)
        self.assertIn(b"<Deleted><Key>md5</Key></Deleted>", answer)
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)

    def test_wrong_content_md5_is_bad_digest_and_deletes_nothing(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="stay", Body=b"s")
        body = delete_document(["stay"])
        md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
        code, answer, _ = signed_request(
            "POST", f"{self.gateway.daemon.endpoint}/{self.bucket}?delete", body, {"Content-MD5": md5}
        )
        self.assertEqual(code, 400, answer)
        self.assertIn(b"<Code>BadDigest</Code>", answer)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="stay")["Body"].read(), b"s")

    def test_request_without_md5_or_checksum_is_invalid_request(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="stay", Body=b"s")
        code, answer, _ = signed_request(
            "POST", f"{self.gateway.daemon.endpoint}/{self.bucket}?delete", delete_document(["stay"])
        )
        self.assertEqual(code, 400, answer)
        self.assertIn(b"<Code>InvalidRequest</Code>", answer)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="stay")["Body"].read(), b"s")

    def test_1001_keys_is_malformed_xml(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k0000", Body=b"s")
        keys = [f"k{index:04d}" for index in range(1001)]
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys]})
        self.assertEqual(error_code(raised.exception), "MalformedXML")
        self.assertEqual(status(raised.exception), 400)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k0000")["Body"].read(), b"s")

    def test_delete_objects_in_a_missing_bucket_is_no_such_bucket(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.delete_objects(Bucket=unique_bucket_name("gone"), Delete={"Objects": [{"Key": "k"}]})
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")


# The module's own daemon with s3api.allow_create_bucket: false.
_no_create_gateway = Lazy(
    lambda: start_gateway("nocreate", s3api={"allow_create_bucket": False}),
    stop=lambda gateway: gateway.daemon.stop(),
)


class ListObjectVersionsTests(BucketTestCase):
    """GET /bucket?versions: every object is its own "null" version (versioning is never on)."""

    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.gateway.new_bucket(self.s3)
        self.keys = ["a", "b/c", "b/d", "e f", "z"]
        for key in self.keys:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=key.encode())

    def test_every_object_is_its_latest_null_version(self) -> None:
        answer = self.s3.list_object_versions(Bucket=self.bucket)
        self.assertEqual([v["Key"] for v in answer["Versions"]], self.keys)
        for version in answer["Versions"]:
            self.assertEqual((version["VersionId"], version["IsLatest"]), ("null", True))
            self.assertEqual(version["Size"], len(version["Key"]))
        self.assertNotIn("DeleteMarkers", answer)
        self.assertFalse(answer["IsTruncated"])
        grouped = self.s3.list_object_versions(Bucket=self.bucket, Delimiter="/")
        self.assertEqual([v["Key"] for v in grouped["Versions"]], ["a", "e f", "z"])
        self.assertEqual([p["Prefix"] for p in grouped["CommonPrefixes"]], ["b/"])
        encoded = self.s3.list_object_versions(Bucket=self.bucket, Prefix="e", EncodingType="url")
        # Asked for explicitly, the encoding reaches the caller as it is.
        self.assertEqual([v["Key"] for v in encoded["Versions"]], ["e%20f"])

    def test_pages_follow_the_markers(self) -> None:
        seen = []
        for page in self.s3.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, PaginationConfig={"PageSize": 2}
        ):
            seen.extend(v["Key"] for v in page.get("Versions", []))
            if page["IsTruncated"]:
                self.assertEqual(page["NextVersionIdMarker"], "null")
        self.assertEqual(seen, self.keys)
        after = self.s3.list_object_versions(Bucket=self.bucket, KeyMarker="b/d", VersionIdMarker="null")
        self.assertEqual([v["Key"] for v in after["Versions"]], ["e f", "z"])

    def test_bad_markers_are_invalid_argument(self) -> None:
        for params in ({"VersionIdMarker": "null"}, {"KeyMarker": "a", "VersionIdMarker": "no such marker"}):
            with self.assertRaises(ClientError) as raised:
                self.s3.list_object_versions(Bucket=self.bucket, **params)
            self.assertEqual(error_code(raised.exception), "InvalidArgument", params)

    def test_emptying_a_bucket_by_its_versions_then_deleting_it(self) -> None:
        """What boto3's bucket.object_versions.delete() and Terraform's force_destroy do."""
        import boto3

        resource = boto3.resource(
            "s3",
            endpoint_url=self.gateway.daemon.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        resource.Bucket(self.bucket).object_versions.delete()
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 0)
        self.s3.delete_bucket(Bucket=self.bucket)
        self.assertNoSuchBucket(self.bucket)
        poll(lambda: not any(self.gateway.backend_keys(f"{self.bucket}/").values()))

    def test_a_missing_bucket_is_no_such_bucket(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.list_object_versions(Bucket=unique_bucket_name("gone"))
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")
