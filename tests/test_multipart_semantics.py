"""
CompleteMultipartUpload as S3 answers it, through a running daemon over real
SeaweedFS backends, driven by boto3: preconditions, a retried Complete, a
backend that completed while our follow-up failed, a part sent twice, and the
checksums of multipart uploads (per part, composite and full-object).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import io
import os
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth.checksums import checksum_b64
from s3balance.s3.checksum_parts import composite, crc_combine, full_object, python_crc_combine
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import Location, MultipartRecord, ObjectRecord
from s3balance.store.parts import COMPLETED_KEPT, PartRecord
from tests import dbfixtures
from tests.daemon import Daemon, backend_entry, base_config, shared_gateway
from tests.harness import harness_dir, shared_seaweedfs, unique_bucket_name

MiB = 1024 * 1024


def error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


class _MultipartCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def start(self, key: str, parts: list[bytes], **create) -> tuple[str, list[dict]]:
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, **create)["UploadId"]
        listed = []
        for number, data in enumerate(parts, 1):
            etag = self.s3.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
            listed.append({"PartNumber": number, "ETag": etag})
        return upload_id, listed

    def complete(self, key: str, upload_id: str, parts: list[dict], **extra) -> dict:
        return self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
        )

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def upload_with(self, key: str, algorithm: str, parts: list[bytes], **create) -> tuple[str, list[dict]]:
        created = self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm=algorithm.upper(), **create
        )
        self.assertEqual(created.get("ChecksumAlgorithm"), algorithm.upper())
        upload_id = created["UploadId"]
        element = "Checksum" + algorithm.upper()
        listed = []
        for number, data in enumerate(parts, 1):
            answer = self.s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm=algorithm.upper(),
            )
            self.assertEqual(answer[element], checksum_b64(algorithm, data))
            listed.append({"PartNumber": number, "ETag": answer["ETag"], element: answer[element]})
        return upload_id, listed


class CompletePreconditionTests(_MultipartCase):
    def test_if_none_match_star_on_an_existing_key_is_refused_and_changes_nothing(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"before")
        upload_id, parts = self.start("k", [os.urandom(5 * MiB), b"tail"])
        with self.assertRaises(ClientError) as raised:
            self.complete("k", upload_id, parts, IfNoneMatch="*")
        self.assertEqual(error_code(raised.exception), "PreconditionFailed")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.assertEqual(self.read("k"), b"before")
        # The upload is still there: completed without the condition it wins.
        self.complete("k", upload_id, parts)
        self.assertEqual(len(self.read("k")), 5 * MiB + 4)

    def test_if_none_match_star_on_a_new_key_completes(self) -> None:
        upload_id, parts = self.start("new", [b"only part"])
        self.complete("new", upload_id, parts, IfNoneMatch="*")
        self.assertEqual(self.read("new"), b"only part")

    def test_if_match_needs_the_current_etag(self) -> None:
        current = self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"before")["ETag"]
        upload_id, parts = self.start("k", [b"after"])
        with self.assertRaises(ClientError) as raised:
            self.complete("k", upload_id, parts, IfMatch='"0123456789abcdef0123456789abcdef"')
        self.assertEqual(error_code(raised.exception), "PreconditionFailed")
        self.assertEqual(self.read("k"), b"before")
        self.complete("k", upload_id, parts, IfMatch=current)
        self.assertEqual(self.read("k"), b"after")


class RetriedCompleteTests(_MultipartCase):
    def test_complete_sent_again_answers_the_same_etag(self) -> None:
        upload_id, parts = self.start("k", [os.urandom(5 * MiB), b"tail"])
        first = self.complete("k", upload_id, parts)
        again = self.complete("k", upload_id, parts)
        self.assertEqual(again["ETag"], first["ETag"])
        self.assertEqual(again["Key"], "k")
        listed = self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]
        self.assertEqual([(o["Key"], o["ETag"]) for o in listed], [("k", first["ETag"])])

    def test_complete_of_another_key_with_a_completed_upload_id_is_no_such_upload(self) -> None:
        upload_id, parts = self.start("k", [b"data"])
        self.complete("k", upload_id, parts)
        with self.assertRaises(ClientError) as raised:
            self.complete("other", upload_id, parts)
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")

    def test_aborted_upload_stays_no_such_upload(self) -> None:
        upload_id, parts = self.start("k", [b"data"])
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="k", UploadId=upload_id)
        with self.assertRaises(ClientError) as raised:
            self.complete("k", upload_id, parts)
        self.assertEqual(error_code(raised.exception), "NoSuchUpload")


class PartSentTwiceTests(_MultipartCase):
    def test_list_parts_names_a_part_sent_twice_once_and_completing_from_it_works(self) -> None:
        first, second, tail = os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"
        upload_id, _ = self.start("k", [first, tail])
        self.s3.upload_part(Bucket=self.bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=second)
        listed = self.s3.list_parts(Bucket=self.bucket, Key="k", UploadId=upload_id)["Parts"]
        self.assertEqual([part["PartNumber"] for part in listed], [1, 2])
        # A client resuming an upload completes it from ListParts.
        parts = [{"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in listed]
        self.complete("k", upload_id, parts)
        self.assertEqual(self.read("k"), second + tail)


class _HeldBody(io.BytesIO):
    """A part body whose sending stops after its first read until C{release} is set."""

    def __init__(self, data: bytes, release: threading.Event) -> None:
        super().__init__(data)
        self.release = release
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.reads == 2 and not self.release.wait(30):
            raise TimeoutError("the held part was never released")
        return super().read(size)


class PartRaceTests(_MultipartCase):
    def test_part_resent_while_its_first_upload_runs_lists_the_one_finished_last(self) -> None:
        first, resent, tail = os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key="k")["UploadId"]
        release = threading.Event()
        outcome: dict = {}

        def slow_first_upload() -> None:
            client = self.gateway.client(checksums="when_required")
            try:
                outcome["etag"] = client.upload_part(
                    Bucket=self.bucket,
                    Key="k",
                    UploadId=upload_id,
                    PartNumber=1,
                    Body=_HeldBody(first, release),
                    ContentLength=len(first),
                )["ETag"]
            except Exception as error:  # reported by the assertion below
                outcome["error"] = error

        sender = threading.Thread(target=slow_first_upload)
        sender.start()
        try:
            self.s3.upload_part(Bucket=self.bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=resent)
        finally:
            release.set()
            sender.join(60)
        self.assertNotIn("error", outcome)
        self.s3.upload_part(Bucket=self.bucket, Key="k", UploadId=upload_id, PartNumber=2, Body=tail)
        listed = self.s3.list_parts(Bucket=self.bucket, Key="k", UploadId=upload_id)["Parts"]
        # The first upload finished last: it is the part, as on S3.
        self.assertEqual([(p["PartNumber"], p["ETag"]) for p in listed][:1], [(1, outcome["etag"])])
        self.assertEqual(len(listed), 2)
        self.complete("k", upload_id, [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed])
        self.assertEqual(self.read("k"), first + tail)


class _CompletionFaults:
    """
    An HTTP proxy in front of a backend that behaves like an S3 that forgets
    a completed upload (a CompleteMultipartUpload sent again is NoSuchUpload)
    and, while C{fail_object_heads} is above 0, answers that many HEADs of an
    object with 503.  The Host header goes through unchanged, so the
    daemon's signatures stay valid.
    """

    NO_SUCH_UPLOAD = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>"
    )
    SLOW_DOWN = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message></Error>"
    )

    def __init__(self, target: str) -> None:
        self.fail_object_heads = 0
        self.completed: set[str] = set()
        self.lock = threading.Lock()
        parts = urlsplit(target)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path, _, query = self.path.partition("?")
                upload_id = parse_qs(query).get("uploadId", [""])[0]
                with shim.lock:
                    if self.command == "POST" and upload_id in shim.completed:
                        self.answer(404, [("Content-Type", "application/xml")], shim.NO_SUCH_UPLOAD)
                        return
                    if self.command == "HEAD" and path.count("/") >= 2 and shim.fail_object_heads > 0:
                        shim.fail_object_heads -= 1
                        self.answer(503, [("Content-Type", "application/xml")], shim.SLOW_DOWN)
                        return
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        upstream.putheader(name, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    headers = response.getheaders()
                finally:
                    upstream.close()
                if self.command == "POST" and upload_id and response.status == 200 and b"<Error>" not in data:
                    with shim.lock:
                        shim.completed.add(upload_id)
                self.answer(response.status, headers, data)

            def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response_only(status)
                for name, value in headers:
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                if self.command == "HEAD":
                    length = {k.lower(): v for k, v in headers}.get("content-length", "0")
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class BackendCompletedTests(SynchronousTestCase):
    def test_upload_the_backend_completed_before_a_failed_head_completes_on_retry(self) -> None:
        server = shared_seaweedfs()
        real = unique_bucket_name("real")
        server.create_bucket(real)
        shim = _CompletionFaults(server.endpoint)
        self.addCleanup(shim.close)
        behind = types.SimpleNamespace(endpoint=shim.endpoint, access_key=server.access_key, secret_key=server.secret_key)
        workdir = harness_dir() / unique_bucket_name("mpsem")
        workdir.mkdir(parents=True)
        daemon = Daemon(base_config([backend_entry(behind, real)], ["vb-main"], workdir), name="mpsem").start()
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        upload_id = s3.create_multipart_upload(Bucket="vb-main", Key="k")["UploadId"]
        data = os.urandom(5 * MiB)
        parts = []
        for number, body in enumerate([data, b"tail"], 1):
            etag = s3.upload_part(Bucket="vb-main", Key="k", UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        shim.fail_object_heads = 1
        # The first attempt's HEAD fails (503); the SDK sends the Complete
        # again, which the backend answers NoSuchUpload: it completed it.
        answer = s3.complete_multipart_upload(
            Bucket="vb-main", Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        self.assertEqual(shim.fail_object_heads, 0)
        head = s3.head_object(Bucket="vb-main", Key="k")
        self.assertEqual(head["ETag"], answer["ETag"])
        self.assertEqual(head["ContentLength"], 5 * MiB + 4)
        self.assertEqual(s3.get_object(Bucket="vb-main", Key="k")["Body"].read(), data + b"tail")


class MultipartChecksumTests(_MultipartCase):
    def test_composite_crc32_is_answered_by_list_parts_complete_and_head(self) -> None:
        parts = [os.urandom(5 * MiB), b"tail"]
        upload_id, listed = self.upload_with("c", "crc32", parts)
        page = self.s3.list_parts(Bucket=self.bucket, Key="c", UploadId=upload_id)
        self.assertEqual(page.get("ChecksumAlgorithm"), "CRC32")
        self.assertEqual([p.get("ChecksumCRC32") for p in page["Parts"]], [checksum_b64("crc32", p) for p in parts])
        expected = composite("crc32", [checksum_b64("crc32", p) for p in parts])
        self.assertTrue(expected.endswith("-2"))
        done = self.complete("c", upload_id, listed)
        self.assertEqual(done.get("ChecksumCRC32"), expected)
        self.assertEqual(done.get("ChecksumType"), "COMPOSITE")
        head = self.s3.head_object(Bucket=self.bucket, Key="c", ChecksumMode="ENABLED")
        self.assertEqual(head.get("ChecksumCRC32"), expected)
        self.assertEqual(head.get("ChecksumType"), "COMPOSITE")
        got = self.s3.get_object(Bucket=self.bucket, Key="c", ChecksumMode="ENABLED")
        self.assertEqual(got["Body"].read(), b"".join(parts))
        # The object's headers never show the upload's checksum settings.
        self.assertNotIn("x-amz-checksum-algorithm", head["ResponseMetadata"]["HTTPHeaders"])

    def test_full_object_crc64nvme_sent_with_complete_is_checked_against_the_data(self) -> None:
        parts = [os.urandom(5 * MiB), os.urandom(1000)]
        upload_id, listed = self.upload_with("f", "crc64nvme", parts, ChecksumType="FULL_OBJECT")
        whole = checksum_b64("crc64nvme", b"".join(parts))
        done = self.complete("f", upload_id, listed, ChecksumType="FULL_OBJECT", ChecksumCRC64NVME=whole)
        self.assertEqual(done.get("ChecksumCRC64NVME"), whole)
        self.assertEqual(done.get("ChecksumType"), "FULL_OBJECT")
        # botocore checks the body against a full-object checksum.
        got = self.s3.get_object(Bucket=self.bucket, Key="f", ChecksumMode="ENABLED")
        self.assertEqual(got.get("ChecksumCRC64NVME"), whole)
        self.assertEqual(got["Body"].read(), b"".join(parts))

    def test_full_object_crc32_that_differs_is_bad_digest(self) -> None:
        parts = [os.urandom(5 * MiB), b"tail"]
        upload_id, listed = self.upload_with("w", "crc32", parts, ChecksumType="FULL_OBJECT")
        wrong = checksum_b64("crc32", b"not the object")
        with self.assertRaises(ClientError) as raised:
            self.complete("w", upload_id, listed, ChecksumType="FULL_OBJECT", ChecksumCRC32=wrong)
        self.assertEqual(error_code(raised.exception), "BadDigest")
        right = checksum_b64("crc32", b"".join(parts))
        done = self.complete("w", upload_id, listed, ChecksumType="FULL_OBJECT", ChecksumCRC32=right)
        self.assertEqual(done.get("ChecksumCRC32"), right)

    def test_part_checksum_listed_wrong_in_complete_is_invalid_part(self) -> None:
        upload_id, listed = self.upload_with("p", "crc32", [b"only"])
        listed[0]["ChecksumCRC32"] = checksum_b64("crc32", b"other")
        with self.assertRaises(ClientError) as raised:
            self.complete("p", upload_id, listed)
        self.assertEqual(error_code(raised.exception), "InvalidPart")

    def test_mp_object_size_must_be_the_object_size(self) -> None:
        upload_id, listed = self.start("z", [os.urandom(5 * MiB), b"tail"])
        with self.assertRaises(ClientError) as raised:
            self.complete("z", upload_id, listed, MpuObjectSize=5 * MiB)
        self.assertEqual(error_code(raised.exception), "InvalidRequest")
        self.complete("z", upload_id, listed, MpuObjectSize=5 * MiB + 4)
        self.assertEqual(len(self.read("z")), 5 * MiB + 4)

    def test_part_of_another_algorithm_is_refused(self) -> None:
        upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key="m", ChecksumAlgorithm="SHA256")["UploadId"]
        with self.assertRaises(ClientError) as raised:
            self.s3.upload_part(
                Bucket=self.bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"x", ChecksumAlgorithm="CRC32"
            )
        self.assertEqual(error_code(raised.exception), "InvalidRequest")

    def test_transfer_manager_upload_has_a_composite_checksum(self) -> None:
        from boto3.s3.transfer import TransferConfig

        data = os.urandom(10 * MiB + 17)
        import io

        config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        self.s3.upload_fileobj(io.BytesIO(data), self.bucket, "tm", Config=config)
        head = self.s3.head_object(Bucket=self.bucket, Key="tm", ChecksumMode="ENABLED")
        sums = [checksum_b64("crc32", data[i : i + 5 * MiB]) for i in range(0, len(data), 5 * MiB)]
        self.assertEqual(head.get("ChecksumCRC32"), composite("crc32", sums))


class GetObjectAttributesTests(_MultipartCase):
    ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]

    def attributes(self, key: str, **extra) -> dict:
        return self.s3.get_object_attributes(Bucket=self.bucket, Key=key, ObjectAttributes=self.ALL, **extra)

    def test_single_put_object(self) -> None:
        put = self.s3.put_object(Bucket=self.bucket, Key="s", Body=b"hello", ChecksumAlgorithm="CRC32")
        answer = self.attributes("s")
        self.assertEqual(answer["ETag"], put["ETag"].strip('"'))
        self.assertEqual(answer["ObjectSize"], 5)
        self.assertEqual(answer["StorageClass"], "STANDARD")
        self.assertEqual(answer["Checksum"]["ChecksumCRC32"], checksum_b64("crc32", b"hello"))
        self.assertNotIn("ObjectParts", answer)
        self.assertIn("LastModified", answer)

    def test_multipart_object_with_checksums_pages_its_parts(self) -> None:
        parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
        upload_id, listed = self.upload_with("m", "crc32", parts)
        done = self.complete("m", upload_id, listed)
        first = self.attributes("m", MaxParts=2)
        self.assertEqual(first["Checksum"], {"ChecksumCRC32": done["ChecksumCRC32"], "ChecksumType": "COMPOSITE"})
        self.assertEqual(first["ObjectSize"], 10 * MiB + 4)
        pages = first["ObjectParts"]
        self.assertEqual(pages["TotalPartsCount"], 3)
        self.assertTrue(pages["IsTruncated"])
        self.assertEqual(pages["NextPartNumberMarker"], 2)
        self.assertEqual(
            [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in pages["Parts"]],
            [(1, 5 * MiB, checksum_b64("crc32", parts[0])), (2, 5 * MiB, checksum_b64("crc32", parts[1]))],
        )
        rest = self.attributes("m", MaxParts=2, PartNumberMarker=2)["ObjectParts"]
        self.assertFalse(rest["IsTruncated"])
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in rest["Parts"]], [(3, 4)])

    def test_multipart_object_without_checksums_counts_its_parts(self) -> None:
        upload_id, listed = self.start("n", [os.urandom(5 * MiB), b"tail"])
        self.complete("n", upload_id, listed)
        answer = self.attributes("n")
        self.assertEqual(answer["ObjectParts"]["TotalPartsCount"], 2)
        self.assertNotIn("Parts", answer["ObjectParts"])

    def test_only_the_attributes_asked_for(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="s", Body=b"hello")
        answer = self.s3.get_object_attributes(Bucket=self.bucket, Key="s", ObjectAttributes=["ObjectSize"])
        self.assertEqual(answer["ObjectSize"], 5)
        self.assertNotIn("ETag", answer)

    def test_errors(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.attributes("missing")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")
        self.s3.put_object(Bucket=self.bucket, Key="s", Body=b"hello")
        with self.assertRaises(ClientError) as raised:
            self.s3.get_object_attributes(Bucket=self.bucket, Key="s", ObjectAttributes=["Bogus"])
        self.assertEqual(error_code(raised.exception), "InvalidArgument")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)


class CrcCombineTests(SynchronousTestCase):
    def test_combined_crcs_equal_the_crc_of_the_concatenation(self) -> None:
        pieces = [os.urandom(n) for n in (0, 1, 7, 4096, 65537)]
        for algorithm in ("crc32", "crc32c", "crc64nvme"):
            combined = full_object(algorithm, [(checksum_b64(algorithm, p), len(p)) for p in pieces])
            self.assertEqual(combined, checksum_b64(algorithm, b"".join(pieces)), algorithm)

    def test_the_python_combine_equals_the_crc_of_the_concatenation(self) -> None:
        first, second = os.urandom(1000), os.urandom(5 * MiB + 3)
        for algorithm in ("crc32", "crc32c", "crc64nvme"):
            values = [int.from_bytes(base64.b64decode(checksum_b64(algorithm, p)), "big") for p in (first, second)]
            combined = python_crc_combine(algorithm, values[0], values[1], len(second))
            self.assertEqual(combined, int.from_bytes(base64.b64decode(checksum_b64(algorithm, first + second)), "big"))

    def test_combining_with_an_empty_piece_keeps_the_crc(self) -> None:
        value = int.from_bytes(base64.b64decode(checksum_b64("crc32", b"abc")), "big")
        self.assertEqual(crc_combine("crc32", value, 0, 0), value)


class PartRecordStoreMixin:
    """The store's records of parts and of completed uploads; subclasses set C{kind}."""

    kind: str

    async def setUp(self) -> None:
        self.now = datetime.datetime(2026, 3, 31, 12, 0, tzinfo=datetime.UTC)
        url = dbfixtures.fresh_database(self, self.kind)
        self.store = MetadataStore(url, max_threads=2, now=lambda: self.now)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.sync_config_buckets(["vb"])
        await self.store.create_multipart(
            MultipartRecord(
                upload_id="u1",
                bucket="vb",
                key="k",
                backend="b1",
                real_key="vb/u1",
                backend_upload_id="backend-u1",
                initiated=self.now,
                content_type=None,
                headers={},
            )
        )

    def object(self) -> ObjectRecord:
        return ObjectRecord(
            bucket="vb",
            key="k",
            size=8,
            etag='"abc-2"',
            last_modified=self.now,
            content_type=None,
            headers={},
            checksums={"crc32": "AAAAAA==-2", "type": "COMPOSITE"},
            locations=(Location("b1", "vb/u1"),),
        )

    async def test_a_part_sent_again_replaces_its_record(self) -> None:
        await self.store.record_part_checksums("u1", 1, 5, '"a"', {"crc32": "AAAAAA=="})
        await self.store.record_part_checksums("u1", 1, 6, '"b"', {})
        self.assertEqual(await self.store.multipart_parts("u1"), [PartRecord(1, 6, '"b"', {})])
        # The same part again, byte for byte: still one record.
        await self.store.record_part_checksums("u1", 1, 6, '"b"', {})
        self.assertEqual(await self.store.multipart_parts("u1"), [PartRecord(1, 6, '"b"', {})])

    async def test_completion_is_remembered_for_a_while_and_parts_until_the_copy_is_deleted(self) -> None:
        await self.store.record_part_checksums("u1", 1, 5, '"a"', {"crc32": "AAAAAA=="})
        await self.store.record_part_checksums("u1", 2, 3, '"b"', {"crc32": "AAAAAQ=="})
        kept = await self.store.multipart_parts("u1")
        await self.store.complete_multipart("u1", self.object(), None, None, kept)
        self.assertEqual(await self.store.multipart_parts("u1"), [])
        done = await self.store.completed_upload("u1")
        self.assertEqual((done.key, done.etag, done.checksums["crc32"]), ("k", '"abc-2"', "AAAAAA==-2"))
        parts, truncated = await self.store.object_parts_page("vb/u1", 1, 10)
        self.assertEqual(([(p.number, p.size) for p in parts], truncated), ([(2, 3)], False))

        self.now += COMPLETED_KEPT + datetime.timedelta(seconds=1)
        self.assertIsNone(await self.store.completed_upload("u1"))

        await self.store.delete_object("vb", "k")
        for item in await self.store.queued_deletions():
            await self.store.finish_deletion(item.id)
        self.assertEqual(await self.store.object_parts_page("vb/u1", 0, 10), ([], False))

    async def test_abort_drops_the_parts(self) -> None:
        await self.store.record_part_checksums("u1", 1, 5, '"a"', {})
        await self.store.abort_multipart("u1", False)
        self.assertEqual(await self.store.multipart_parts("u1"), [])


class SQLitePartRecordStoreTests(PartRecordStoreMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLPartRecordStoreTests(PartRecordStoreMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBPartRecordStoreTests(PartRecordStoreMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
