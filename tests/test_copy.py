"""
CopyObject and UploadPartCopy through a running daemon over two real
SeaweedFS backends: server-side when the bytes can stay on their backend,
streamed (and byte-exact) when they can't, metadata directives, copy-source
preconditions and permissions.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, Gateway, backend_entry, base_config, poll, shared_gateway
from tests.gateways import Lazy
from tests.harness import boto3_client, harness_dir, shared_seaweedfs_pair, unique_bucket_name

MiB = 1024 * 1024
LIMITED_KEY = "s3b-limited-key"
LIMITED_SECRET = "s3b-limited-secret"


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def status(error: ClientError) -> int:
    return error.response["ResponseMetadata"]["HTTPStatusCode"]


def pattern(size: int, seed: int = 0) -> bytes:
    base = bytearray(os.urandom(MiB))
    blocks = []
    for index in range((size + MiB - 1) // MiB):
        base[:16] = (seed * 1_000_003 + index).to_bytes(16, "big")
        blocks.append(bytes(base))
    return b"".join(blocks)[:size]


def where(gateway, bucket: str) -> dict[str, str]:
    """Real key -> the real bucket holding it, for every backend object of a virtual bucket."""
    return {key: real for real, keys in gateway.backend_keys(f"{bucket}/").items() for key in keys}


def metric_total(daemon, name: str, **labels: str) -> float | None:
    """
    The sum of one series of the daemon's /metrics over the samples whose
    labels include C{labels}, or None when the daemon does not expose it.
    """
    try:
        with urllib.request.urlopen(f"{daemon.endpoint}/metrics", timeout=5) as response:
            text = response.read().decode()
    except urllib.error.HTTPError:
        return None
    family = name.removesuffix("_total").removesuffix("_count")
    total, found = 0.0, f"# TYPE {family} " in text
    wanted = [f'{label}="{value}"' for label, value in labels.items()]
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] != name:
            continue
        found = True
        if all(pair in series for pair in wanted):
            total += float(value)
    return total if found else None


class CopyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def copy(self, key: str, source_key: str, source_bucket: str | None = None, **extra) -> dict:
        return self.s3.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": source_bucket or self.bucket, "Key": source_key},
            **extra,
        )

    def read(self, key: str, bucket: str | None = None) -> bytes:
        return self.s3.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()


class ServerSideCopyTests(CopyTestCase):
    def test_same_backend_copy_is_server_side(self) -> None:
        data = pattern(2 * MiB, 1)
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=data)
        daemon = self.gateway.daemon
        counters = {
            # Client traffic: only the request and the small XML answer.
            "s3balance_received_bytes_total": {"operation": "CopyObject"},
            "s3balance_sent_bytes_total": {"operation": "CopyObject"},
            # Backend traffic: a streamed copy would GET the source; a server-side one doesn't.
            "s3balance_backend_request_duration_seconds_count": {"method": "GET"},
        }
        before = {name: metric_total(daemon, name, **labels) for name, labels in counters.items()}
        self.copy("dst", "src")
        for name, labels in counters.items():
            if before[name] is None:
                continue  # /metrics does not expose it (yet): the placement check below must do.
            grown = metric_total(daemon, name, **labels) - before[name]
            self.assertLess(grown, 1 if "backend" in name else 64 * 1024, name)
        locations = where(self.gateway, self.bucket)
        self.assertEqual(len(locations), 2, locations)
        self.assertEqual(len(set(locations.values())), 1, f"the copy left its source's backend: {locations}")
        self.assertEqual(self.read("dst"), data)

    def test_copy_answers_and_keeps_the_quoted_etag_of_the_bytes(self) -> None:
        data = b"etag of a copy"
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=data)
        answer = self.copy("dst", "src")
        self.assertEqual(answer["CopyObjectResult"]["ETag"], etag)
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="dst")["ETag"], etag)
        listed = self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]
        self.assertEqual([(o["Key"], o["ETag"]) for o in listed], [("dst", etag), ("src", etag)])

    def test_copy_into_another_bucket(self) -> None:
        other = self.gateway.new_bucket(self.s3)
        self.s3.put_object(Bucket=other, Key="there", Body=b"from another bucket")
        self.copy("here", "there", source_bucket=other)
        self.assertEqual(self.read("here"), b"from another bucket")
        self.assertEqual(self.read("there", bucket=other), b"from another bucket")


class MetadataDirectiveTests(CopyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.s3.put_object(
            Bucket=self.bucket,
            Key="src",
            Body=b"metadata source",
            ContentType="text/plain",
            CacheControl="max-age=5",
            Metadata={"colour": "blue"},
        )

    def test_copy_directive_keeps_the_source_metadata(self) -> None:
        self.copy("dst", "src", MetadataDirective="COPY", Metadata={"ignored": "yes"})
        head = self.s3.head_object(Bucket=self.bucket, Key="dst")
        self.assertEqual(head["Metadata"], {"colour": "blue"})
        self.assertEqual(head["ContentType"], "text/plain")
        self.assertEqual(head["CacheControl"], "max-age=5")

    def test_default_directive_is_copy(self) -> None:
        self.copy("dst", "src")
        head = self.s3.head_object(Bucket=self.bucket, Key="dst")
        self.assertEqual(head["Metadata"], {"colour": "blue"})
        self.assertEqual(head["ContentType"], "text/plain")

    def test_replace_directive_takes_the_request_metadata(self) -> None:
        self.copy(
            "dst", "src", MetadataDirective="REPLACE", Metadata={"shape": "round"}, ContentType="text/csv"
        )
        head = self.s3.head_object(Bucket=self.bucket, Key="dst")
        self.assertEqual(head["Metadata"], {"shape": "round"})
        self.assertEqual(head["ContentType"], "text/csv")
        self.assertNotIn("CacheControl", head)
        self.assertEqual(self.read("dst"), b"metadata source")

    def test_copy_onto_itself_with_replace_updates_metadata_and_keeps_bytes(self) -> None:
        before = self.s3.head_object(Bucket=self.bucket, Key="src")
        self.copy(
            "src", "src", MetadataDirective="REPLACE", Metadata={"colour": "red"}, ContentType="text/x-new"
        )
        head = self.s3.head_object(Bucket=self.bucket, Key="src")
        self.assertEqual(head["Metadata"], {"colour": "red"})
        self.assertEqual(head["ContentType"], "text/x-new")
        self.assertEqual(head["ETag"], before["ETag"])
        self.assertEqual(self.read("src"), b"metadata source")
        poll(
            lambda: len(where(self.gateway, self.bucket)) == 1,
            message=f"the replaced copy stayed: {where(self.gateway, self.bucket)}",
        )

    def test_copy_onto_itself_without_replace_is_invalid_request(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.copy("src", "src")
        self.assertEqual(error_code(raised.exception), "InvalidRequest")
        self.assertEqual(status(raised.exception), 400)
        self.assertEqual(self.read("src"), b"metadata source")


class PreconditionTests(CopyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.etag = self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"conditional source")["ETag"]
        self.past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        self.future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    def assertPreconditionFailed(self, **conditions) -> None:
        with self.assertRaises(ClientError) as raised:
            self.copy("dst", "src", **conditions)
        self.assertEqual(status(raised.exception), 412, conditions)
        self.assertEqual(error_code(raised.exception), "PreconditionFailed")
        with self.assertRaises(ClientError):
            self.s3.head_object(Bucket=self.bucket, Key="dst")

    def assertCopies(self, **conditions) -> None:
        self.copy("dst", "src", **conditions)
        self.assertEqual(self.read("dst"), b"conditional source")
        self.s3.delete_object(Bucket=self.bucket, Key="dst")

    def test_if_match(self) -> None:
        self.assertPreconditionFailed(CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
        self.assertCopies(CopySourceIfMatch=self.etag)

    def test_if_none_match(self) -> None:
        self.assertPreconditionFailed(CopySourceIfNoneMatch=self.etag)
        self.assertCopies(CopySourceIfNoneMatch='"0123456789abcdef0123456789abcdef"')

    def test_if_modified_since(self) -> None:
        self.assertPreconditionFailed(CopySourceIfModifiedSince=self.future)
        self.assertCopies(CopySourceIfModifiedSince=self.past)

    def test_if_unmodified_since(self) -> None:
        self.assertPreconditionFailed(CopySourceIfUnmodifiedSince=self.past)
        self.assertCopies(CopySourceIfUnmodifiedSince=self.future)


class SourceErrorTests(CopyTestCase):
    def test_copy_from_a_missing_key_is_no_such_key(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.copy("dst", "missing")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        self.assertEqual(status(raised.exception), 404)

    def test_copy_from_a_missing_bucket_is_no_such_bucket(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.copy("dst", "k", source_bucket=unique_bucket_name("absent"))
        self.assertEqual(error_code(raised.exception), "NoSuchBucket")

    def test_copy_source_the_key_may_not_see_is_access_denied(self) -> None:
        gateway = _copy_gateway()
        gateway.client().put_object(Bucket="vb-secret", Key="hidden", Body=b"secret bytes")
        limited = boto3_client(gateway.daemon.endpoint, LIMITED_KEY, LIMITED_SECRET)
        limited.put_object(Bucket="vb-default", Key="mine", Body=b"visible")
        with self.assertRaises(ClientError) as raised:
            limited.copy_object(
                Bucket="vb-default", Key="stolen", CopySource={"Bucket": "vb-secret", "Key": "hidden"}
            )
        self.assertEqual(error_code(raised.exception), "AccessDenied")
        self.assertEqual(status(raised.exception), 403)
        with self.assertRaises(ClientError):
            limited.head_object(Bucket="vb-default", Key="stolen")
        upload = limited.create_multipart_upload(Bucket="vb-default", Key="parts")["UploadId"]
        with self.assertRaises(ClientError) as raised:
            limited.upload_part_copy(
                Bucket="vb-default",
                Key="parts",
                UploadId=upload,
                PartNumber=1,
                CopySource={"Bucket": "vb-secret", "Key": "hidden"},
            )
        self.assertEqual(error_code(raised.exception), "AccessDenied")
        limited.abort_multipart_upload(Bucket="vb-default", Key="parts", UploadId=upload)
        # What it may see, it may copy.
        limited.copy_object(
            Bucket="vb-default", Key="copied", CopySource={"Bucket": "vb-default", "Key": "mine"}
        )
        self.assertEqual(limited.get_object(Bucket="vb-default", Key="copied")["Body"].read(), b"visible")


class CrossBackendCopyTests(SynchronousTestCase):
    def test_copy_that_does_not_fit_on_the_source_backend_is_streamed_byte_exact(self) -> None:
        gateway = _copy_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3)
        data = pattern(3 * MiB, 21)
        s3.put_object(Bucket=bucket, Key="cross/src", Body=data, Metadata={"kept": "yes"})
        before = where(gateway, bucket)
        ((source_real_key, source_backend),) = [(k, b) for k, b in before.items()]
        gets = "s3balance_backend_request_duration_seconds_count"
        gets_before = metric_total(gateway.daemon, gets, method="GET")
        s3.copy_object(Bucket=bucket, Key="cross/dst", CopySource={"Bucket": bucket, "Key": "cross/src"})
        if gets_before is not None:
            # The bytes came through the daemon: it read the source from its backend.
            self.assertGreaterEqual(metric_total(gateway.daemon, gets, method="GET") - gets_before, 1)
        got = s3.get_object(Bucket=bucket, Key="cross/dst")
        self.assertEqual(hashlib.sha256(got["Body"].read()).digest(), hashlib.sha256(data).digest())
        self.assertEqual(got["Metadata"], {"kept": "yes"})
        after = where(gateway, bucket)
        self.assertEqual(len(after), 2, after)
        copy_backend = [b for k, b in after.items() if k != source_real_key]
        self.assertEqual(len(copy_backend), 1)
        self.assertNotEqual(
            copy_backend[0], source_backend, "a copy that can't fit stayed on the source's backend"
        )
        self.assertEqual(s3.get_object(Bucket=bucket, Key="cross/src")["Body"].read(), data)


class UploadPartCopyTests(CopyTestCase):
    def test_upload_part_copy_with_and_without_range_is_byte_exact(self) -> None:
        source = pattern(6 * MiB, 31)
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=source)
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key="assembled")["UploadId"]
        whole = self.s3.upload_part_copy(
            Bucket=self.bucket,
            Key="assembled",
            UploadId=upload_id,
            PartNumber=1,
            CopySource={"Bucket": self.bucket, "Key": "src"},
        )["CopyPartResult"]["ETag"]
        ranged = self.s3.upload_part_copy(
            Bucket=self.bucket,
            Key="assembled",
            UploadId=upload_id,
            PartNumber=2,
            CopySource={"Bucket": self.bucket, "Key": "src"},
            CopySourceRange="bytes=1000-5243879",
        )["CopyPartResult"]["ETag"]
        tail = self.s3.upload_part(
            Bucket=self.bucket, Key="assembled", UploadId=upload_id, PartNumber=3, Body=b"the end"
        )["ETag"]
        parts = self.s3.list_parts(Bucket=self.bucket, Key="assembled", UploadId=upload_id)["Parts"]
        self.assertEqual(
            [(p["ETag"], p["Size"]) for p in parts], [(whole, 6 * MiB), (ranged, 5243880 - 1000), (tail, 7)]
        )
        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key="assembled",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": whole},
                    {"PartNumber": 2, "ETag": ranged},
                    {"PartNumber": 3, "ETag": tail},
                ]
            },
        )
        expected = source + source[1000:5243880] + b"the end"
        self.assertEqual(hashlib.sha256(self.read("assembled")).digest(), hashlib.sha256(expected).digest())

    def test_upload_part_copy_on_both_backends(self) -> None:
        # Round-robin puts successive uploads on alternating backends, so one
        # of these two parts copies on its backend and the other is streamed.
        source = pattern(MiB + 5, 41)
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=source)
        for index in range(2):
            key = f"two/{index}"
            upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            etag = self.s3.upload_part_copy(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=1,
                CopySource={"Bucket": self.bucket, "Key": "src"},
                CopySourceRange=f"bytes={index}-{MiB + index}",
            )["CopyPartResult"]["ETag"]
            # S3 quotes ETags.  (SeaweedFS answers a server-side part copy with
            # the source's ETag rather than the part's MD5, so only the form is checked.)
            self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
            listed = self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)["Parts"]
            self.assertEqual([(p["ETag"], p["Size"]) for p in listed], [(etag, MiB + 1)])
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            )
            self.assertEqual(self.read(key), source[index : MiB + index + 1])
        self.assertEqual(len(set(where(self.gateway, self.bucket).values())), 2)

    def test_upload_part_copy_with_a_range_past_the_end_is_invalid_range(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"short")
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key="r")["UploadId"]
        with self.assertRaises(ClientError) as raised:
            self.s3.upload_part_copy(
                Bucket=self.bucket,
                Key="r",
                UploadId=upload_id,
                PartNumber=1,
                CopySource={"Bucket": self.bucket, "Key": "src"},
                CopySourceRange="bytes=0-5",
            )
        self.assertEqual(error_code(raised.exception), "InvalidRange")
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="r", UploadId=upload_id)

    def test_upload_part_copy_from_a_missing_key_is_no_such_key(self) -> None:
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key="m")["UploadId"]
        with self.assertRaises(ClientError) as raised:
            self.s3.upload_part_copy(
                Bucket=self.bucket,
                Key="m",
                UploadId=upload_id,
                PartNumber=1,
                CopySource={"Bucket": self.bucket, "Key": "missing"},
            )
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="m", UploadId=upload_id)


def _make_copy_gateway() -> Gateway:
    """
    The module's own daemon: two backends of 5 MiB each (so a 3 MiB object's
    copy can't stay on its backend) and a second key limited to vb-default.
    """
    first, second = shared_seaweedfs_pair()
    real = [unique_bucket_name("real"), unique_bucket_name("real")]
    first.create_bucket(real[0])
    second.create_bucket(real[1])
    workdir = Path(harness_dir()) / f"copy-{time.monotonic_ns()}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = base_config(
        [backend_entry(first, real[0], max_size="5MB"), backend_entry(second, real[1], max_size="5MB")],
        ["vb-default", "vb-secret"],
        workdir,
        s3api={
            "credentials": [
                {"access_key": LIMITED_KEY, "secret_key": LIMITED_SECRET, "buckets": ["vb-default"]},
            ]
        },
    )
    daemon = Daemon(config, name="copy").start()
    return Gateway(daemon, [first, second], real)


_copy_gateway = Lazy(_make_copy_gateway, stop=lambda gateway: gateway.daemon.stop())


class LargeCopyTests(SynchronousTestCase):
    """Sources above s3api.multipart_copy_threshold (5 GiB by default) are copied part by part."""

    def copy_and_check(self, daemon, bucket: str, size: int) -> None:
        s3 = daemon.client()
        data = os.urandom(size)
        s3.put_object(Bucket=bucket, Key="src", Body=data)
        result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
        self.assertTrue(result["CopyObjectResult"]["ETag"].endswith('-3"'), result["CopyObjectResult"])
        self.assertEqual(s3.get_object(Bucket=bucket, Key="dst")["Body"].read(), data)

    def test_large_copy_on_one_backend_goes_in_server_side_parts(self) -> None:
        from tests.daemon import start_gateway

        gateway = start_gateway("bigcopy", s3api={"multipart_copy_threshold": "6MB"})
        self.addCleanup(gateway.daemon.stop)
        self.copy_and_check(gateway.daemon, gateway.new_bucket(), 13 * 1024 * 1024 + 7)

    def test_large_copy_across_backends_is_streamed_in_parts(self) -> None:
        first, second = shared_seaweedfs_pair()
        real = [unique_bucket_name("real"), unique_bucket_name("real")]
        first.create_bucket(real[0])
        second.create_bucket(real[1])
        workdir = harness_dir() / unique_bucket_name("bigcopy2")
        workdir.mkdir(parents=True)
        # 20 MB each: the 13 MiB source leaves no room for its copy on its own backend.
        config = base_config(
            [backend_entry(first, real[0], max_size="20MB"), backend_entry(second, real[1], max_size="20MB")],
            ["vb-bigcopy"],
            workdir,
            s3api={"multipart_copy_threshold": "6MB"},
        )
        daemon = Daemon(config, name="bigcopy2").start()
        self.addCleanup(daemon.stop)
        self.copy_and_check(daemon, "vb-bigcopy", 13 * 1024 * 1024 + 7)
