"""
Multipart uploads through a running daemon over two real SeaweedFS backends,
driven by boto3: the transfer manager, the low-level calls, the errors S3
defines, listing, abort, and the cleaner of uploads left idle.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import file_sha256, poll, shared_gateway, start_gateway, write_pattern_file
from tests.gateways import Lazy

MiB = 1024 * 1024


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def pattern(size: int, seed: int = 0) -> bytes:
    """
    size bytes that are cheap to make and never repeat at a MiB boundary: a
    random MiB whose first bytes are replaced by the block's index, so parts
    swapped or shifted by whole MiBs change the digest.
    """
    base = bytearray(os.urandom(MiB))
    blocks = []
    for index in range((size + MiB - 1) // MiB):
        base[:16] = (seed * 1_000_003 + index).to_bytes(16, "big")
        blocks.append(bytes(base))
    return b"".join(blocks)[:size]






def backend_uploads(gateway) -> dict[str, list[tuple[str, str]]]:
    """Open multipart uploads on each real bucket, asked of the backend directly: name -> [(key, id)]."""
    found = {}
    for server, bucket in zip(gateway.backends, gateway.real_buckets, strict=True):
        answer = server.client().list_multipart_uploads(Bucket=bucket)
        found[bucket] = [(upload["Key"], upload["UploadId"]) for upload in answer.get("Uploads", [])]
    return found


def backend_uploads_under(gateway, prefix: str) -> list[tuple[str, str]]:
    return [
        item
        for uploads in backend_uploads(gateway).values()
        for item in uploads
        if item[0].startswith(prefix)
    ]


class MultipartTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def upload_parts(
        self, key: str, parts: list[tuple[int, bytes]], bucket: str | None = None
    ) -> tuple[str, list[dict]]:
        """Start an upload of key and send parts in the order given. -> (upload id, parts for Complete)."""
        bucket = bucket or self.bucket
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done = []
        for number, data in parts:
            etag = self.s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
            done.append({"PartNumber": number, "ETag": etag})
        return upload_id, done

    def complete(self, key: str, upload_id: str, parts: list[dict], bucket: str | None = None) -> dict:
        return self.s3.complete_multipart_upload(
            Bucket=bucket or self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def read(self, key: str, bucket: str | None = None) -> bytes:
        return self.s3.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()

    def assertNoSuchUpload(self, key: str, upload_id: str) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")


class TransferManagerTests(MultipartTestCase):
    def transfer(self, size: int, part_size: int, parts: int) -> None:
        config = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4
        )
        with tempfile.TemporaryDirectory() as scratch:
            source = os.path.join(scratch, "source")
            expected = write_pattern_file(source, size)
            self.s3.upload_file(source, self.bucket, "transfer/object.bin", Config=config)
            head = self.s3.head_object(Bucket=self.bucket, Key="transfer/object.bin")
            self.assertEqual(head["ContentLength"], size)
            self.assertTrue(head["ETag"].endswith(f'-{parts}"'), head["ETag"])
            target = os.path.join(scratch, "target")
            self.s3.download_file(self.bucket, "transfer/object.bin", target, Config=config)
            self.assertEqual(file_sha256(target), expected)

    def test_upload_file_with_5mib_parts_is_byte_exact(self) -> None:
        self.transfer(17 * MiB, 5 * MiB, 4)

    def test_upload_file_with_64mib_parts_is_byte_exact(self) -> None:
        self.transfer(130 * MiB, 64 * MiB, 3)


class CompleteTests(MultipartTestCase):
    def test_parts_uploaded_out_of_order_complete_in_order(self) -> None:
        one, two, three = pattern(5 * MiB, 1), pattern(5 * MiB, 2), pattern(1234, 3)
        upload_id, parts = self.upload_parts("ooo", [(3, three), (1, one), (2, two)])
        parts.sort(key=lambda part: part["PartNumber"])
        answer = self.complete("ooo", upload_id, parts)
        self.assertTrue(answer["ETag"].endswith('-3"'), answer["ETag"])
        self.assertEqual(
            hashlib.sha256(self.read("ooo")).digest(), hashlib.sha256(one + two + three).digest()
        )
        self.assertNoSuchUpload("ooo", upload_id)

    def test_complete_with_parts_out_of_order_is_invalid_part_order(self) -> None:
        upload_id, parts = self.upload_parts("order", [(1, pattern(5 * MiB, 1)), (2, b"tail")])
        with self.assertRaises(ClientError) as raised:
            self.complete("order", upload_id, list(reversed(parts)))
        self.assertEqual(error_code(raised.exception), "InvalidPartOrder")
        # The upload is still there and can be completed properly.
        self.complete("order", upload_id, parts)
        self.assertEqual(len(self.read("order")), 5 * MiB + 4)

    def test_complete_with_a_wrong_part_etag_is_invalid_part(self) -> None:
        upload_id, parts = self.upload_parts("etag", [(1, b"only part")])
        parts[0]["ETag"] = '"0123456789abcdef0123456789abcdef"'
        with self.assertRaises(ClientError) as raised:
            self.complete("etag", upload_id, parts)
        self.assertEqual(error_code(raised.exception), "InvalidPart")
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key="etag")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_complete_with_a_too_small_non_last_part_is_entity_too_small(self) -> None:
        upload_id, parts = self.upload_parts("small", [(1, b"a" * 1000), (2, b"b" * 1000)])
        with self.assertRaises(ClientError) as raised:
            self.complete("small", upload_id, parts)
        self.assertEqual(error_code(raised.exception), "EntityTooSmall")
        with self.assertRaises(ClientError):
            self.s3.head_object(Bucket=self.bucket, Key="small")

    def test_overwrite_by_multipart_replaces_the_old_object_only_on_complete(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="over", Body=b"old version")
        prefix = f"{self.bucket}/"
        poll(lambda: sum(len(keys) for keys in self.gateway.backend_keys(prefix).values()) == 1)
        new = pattern(5 * MiB, 7) + b"end"
        upload_id, parts = self.upload_parts("over", [(1, new[: 5 * MiB]), (2, new[5 * MiB :])])
        self.assertEqual(self.read("over"), b"old version")
        self.assertEqual(
            self.s3.head_object(Bucket=self.bucket, Key="over")["ContentLength"], len(b"old version")
        )
        self.complete("over", upload_id, parts)
        self.assertEqual(self.read("over"), new)
        poll(
            lambda: sum(len(keys) for keys in self.gateway.backend_keys(prefix).values()) == 1,
            message=f"the replaced copy stayed on its backend: {self.gateway.backend_keys(prefix)}",
        )

    def test_same_key_in_two_buckets_does_not_collide(self) -> None:
        other = self.gateway.new_bucket(self.s3)
        first_data, second_data = pattern(5 * MiB, 11) + b"1", pattern(5 * MiB, 12) + b"2"
        first, first_parts = self.upload_parts("same", [(1, first_data[: 5 * MiB])])
        second, second_parts = self.upload_parts("same", [(1, second_data[: 5 * MiB])], bucket=other)
        self.assertNotEqual(first, second)
        first_parts.append(
            {
                "PartNumber": 2,
                "ETag": self.s3.upload_part(
                    Bucket=self.bucket, Key="same", UploadId=first, PartNumber=2, Body=b"1"
                )["ETag"],
            }
        )
        second_parts.append(
            {
                "PartNumber": 2,
                "ETag": self.s3.upload_part(
                    Bucket=other, Key="same", UploadId=second, PartNumber=2, Body=b"2"
                )["ETag"],
            }
        )
        # An upload id is only valid in its own bucket.
        with self.assertRaises(ClientError) as raised:
            self.s3.list_parts(Bucket=other, Key="same", UploadId=first)
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")
        self.complete("same", second, second_parts, bucket=other)
        self.complete("same", first, first_parts)
        self.assertEqual(self.read("same"), first_data)
        self.assertEqual(self.read("same", bucket=other), second_data)


class AbortTests(MultipartTestCase):
    def test_abort_forgets_the_upload_and_aborts_it_on_the_backend(self) -> None:
        upload_id, _ = self.upload_parts("gone", [(1, b"x" * 1000), (2, b"y" * 1000)])
        prefix = f"{self.bucket}/"
        self.assertEqual(len(backend_uploads_under(self.gateway, prefix)), 1)
        answer = self.s3.abort_multipart_upload(Bucket=self.bucket, Key="gone", UploadId=upload_id)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])
        self.assertNoSuchUpload("gone", upload_id)
        with self.assertRaises(ClientError) as raised:
            self.s3.upload_part(Bucket=self.bucket, Key="gone", UploadId=upload_id, PartNumber=3, Body=b"z")
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")
        poll(
            lambda: not backend_uploads_under(self.gateway, prefix),
            message=f"the upload is still open on its backend: {backend_uploads_under(self.gateway, prefix)}",
        )

    def test_abort_leaves_the_old_object_intact(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="keep", Body=b"precious")
        upload_id, _ = self.upload_parts("keep", [(1, pattern(5 * MiB, 5))])
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="keep", UploadId=upload_id)
        self.assertEqual(self.read("keep"), b"precious")
        poll(lambda: not backend_uploads_under(self.gateway, f"{self.bucket}/"))
        self.assertEqual(self.read("keep"), b"precious")
        self.assertEqual(sum(len(keys) for keys in self.gateway.backend_keys(f"{self.bucket}/").values()), 1)

    def test_upload_ids_are_not_the_backends_ids(self) -> None:
        by_key = {f"ids/{index}": self.upload_parts(f"ids/{index}", [(1, b"p")])[0] for index in range(3)}
        ours = set(by_key.values())
        theirs = {upload_id for _, upload_id in backend_uploads_under(self.gateway, f"{self.bucket}/")}
        self.assertEqual(len(theirs), 3)
        self.assertEqual(ours & theirs, set())
        listed = {u["UploadId"] for u in self.s3.list_multipart_uploads(Bucket=self.bucket)["Uploads"]}
        self.assertEqual(listed, ours)
        for key, upload_id in by_key.items():
            parts = self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
            self.assertEqual(parts["UploadId"], upload_id)
        # A backend's id is not accepted in place of ours.
        key = next(iter(by_key))
        for backend_id in theirs:
            with self.assertRaises(ClientError) as raised:
                self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=backend_id)
            self.assertEqual(error_code(raised.exception), "NoSuchUpload")


class ListingTests(MultipartTestCase):
    def test_list_parts_pages_with_max_parts(self) -> None:
        upload_id, uploaded = self.upload_parts("lp", [(1, b"a" * 10), (2, b"b" * 20), (3, b"c" * 30)])
        first = self.s3.list_parts(Bucket=self.bucket, Key="lp", UploadId=upload_id, MaxParts=1)
        self.assertEqual([p["PartNumber"] for p in first["Parts"]], [1])
        self.assertTrue(first["IsTruncated"])
        self.assertEqual(first["NextPartNumberMarker"], 1)
        self.assertEqual(first["UploadId"], upload_id)
        seen = [(p["PartNumber"], p["ETag"], p["Size"]) for p in first["Parts"]]
        marker = first["NextPartNumberMarker"]
        for _ in range(5):
            page = self.s3.list_parts(
                Bucket=self.bucket, Key="lp", UploadId=upload_id, MaxParts=1, PartNumberMarker=marker
            )
            seen += [(p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", [])]
            if not page["IsTruncated"]:
                break
            marker = page["NextPartNumberMarker"]
        self.assertEqual(
            seen, [(p["PartNumber"], p["ETag"], size) for p, size in zip(uploaded, (10, 20, 30), strict=True)]
        )
        every = self.s3.list_parts(Bucket=self.bucket, Key="lp", UploadId=upload_id)
        self.assertFalse(every["IsTruncated"])
        self.assertEqual(len(every["Parts"]), 3)

    def start_uploads(self) -> dict[str, list[str]]:
        ids: dict[str, list[str]] = {}
        for key in ("a/1", "a/1", "a/2", "a/3", "b/1", "c"):
            ids.setdefault(key, []).append(
                self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            )
        return ids

    def listed(self, **params) -> tuple[list[tuple[str, str]], list[str], dict]:
        answer = self.s3.list_multipart_uploads(Bucket=self.bucket, **params)
        uploads = [(u["Key"], u["UploadId"]) for u in answer.get("Uploads", [])]
        prefixes = [p["Prefix"] for p in answer.get("CommonPrefixes", [])]
        return uploads, prefixes, answer

    def test_list_uploads_with_prefix_and_delimiter(self) -> None:
        ids = self.start_uploads()
        uploads, prefixes, _ = self.listed(Prefix="a/")
        self.assertEqual([key for key, _ in uploads], ["a/1", "a/1", "a/2", "a/3"])
        self.assertEqual(sorted(i for key, i in uploads if key == "a/1"), sorted(ids["a/1"]))
        self.assertEqual(prefixes, [])
        uploads, prefixes, answer = self.listed(Delimiter="/")
        self.assertEqual(uploads, [("c", ids["c"][0])])
        self.assertEqual(prefixes, ["a/", "b/"])
        self.assertEqual(answer["Delimiter"], "/")
        uploads, prefixes, _ = self.listed(Prefix="b", Delimiter="/")
        self.assertEqual((uploads, prefixes), ([], ["b/"]))

    def test_list_uploads_with_key_and_upload_id_markers(self) -> None:
        ids = self.start_uploads()
        everything, _, _ = self.listed()
        self.assertEqual([key for key, _ in everything], ["a/1", "a/1", "a/2", "a/3", "b/1", "c"])
        uploads, _, _ = self.listed(KeyMarker="a/1")
        self.assertEqual([key for key, _ in uploads], ["a/2", "a/3", "b/1", "c"])
        first_a1 = everything[0][1]
        uploads, _, _ = self.listed(KeyMarker="a/1", UploadIdMarker=first_a1)
        self.assertEqual(uploads, everything[1:])
        # Page through two at a time: every upload once, in order.
        pages, seen, params = 0, [], {"MaxUploads": 2}
        while True:
            uploads, _, answer = self.listed(**params)
            seen += uploads
            pages += 1
            if not answer["IsTruncated"]:
                break
            params = {
                "MaxUploads": 2,
                "KeyMarker": answer["NextKeyMarker"],
                "UploadIdMarker": answer["NextUploadIdMarker"],
            }
            self.assertLess(pages, 10)
        self.assertEqual(seen, everything)
        self.assertEqual(pages, 3)
        self.assertEqual(sorted(i for i in ids["a/1"]), sorted(i for key, i in everything if key == "a/1"))

    def test_list_uploads_with_delimiter_pages_through_everything(self) -> None:
        ids = self.start_uploads()
        prefixes, uploads, params = [], [], {"MaxUploads": 2, "Delimiter": "/"}
        for _ in range(10):
            page_uploads, page_prefixes, answer = self.listed(**params)
            uploads += page_uploads
            prefixes += page_prefixes
            if not answer["IsTruncated"]:
                break
            params = {
                "MaxUploads": 2,
                "Delimiter": "/",
                "KeyMarker": answer["NextKeyMarker"],
                "UploadIdMarker": answer.get("NextUploadIdMarker", ""),
            }
        self.assertEqual(prefixes, ["a/", "b/"])
        self.assertEqual(uploads, [("c", ids["c"][0])])


class StaleUploadTests(SynchronousTestCase):
    """An upload left idle past balancer.multipart_max_age is aborted on its backend and forgotten."""

    def test_idle_upload_is_aborted_and_forgotten(self) -> None:
        gateway = _aging_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="idle")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="idle", UploadId=upload_id, PartNumber=1, Body=b"part")
        prefix = f"{bucket}/"

        def forgotten() -> bool:
            if s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                return False
            return not backend_uploads_under(gateway, prefix)

        poll(
            forgotten,
            timeout=20,
            interval=0.5,
            message=f"the idle upload is still known: {backend_uploads_under(gateway, prefix)}",
        )
        with self.assertRaises(ClientError) as raised:
            s3.list_parts(Bucket=bucket, Key="idle", UploadId=upload_id)
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")


# The module's own daemon with a 2 s multipart age.
_aging_gateway = Lazy(
    lambda: start_gateway("mpage", balancer={"multipart_max_age": "2s", "cleanup_period": "1s"}),
    stop=lambda gateway: gateway.daemon.stop(),
)
