"""
Every S3 client through the daemon (auth required, two SeaweedFS backends):
put, head, list, get and delete of a small, an 8 MiB and a 64 MiB file,
the download compared with the source by SHA-256.

  - boto3 (default and C{when_required} checksums), the aws cli (C{s3 cp}
    and C{s3api}), s3cmd, rclone and the minio SDK, each set up to send one
    PUT: multipart thresholds are raised where the client allows it;
  - the clients over TLS, where botocore sends aws-chunked bodies with a
    trailing CRC32 (C{STREAMING-UNSIGNED-PAYLOAD-TRAILER});
  - L{MultipartClientTests}: the clients with their default thresholds, so
    large files go up as multipart uploads.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Optional

import attr
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase
from urllib3.exceptions import InsecureRequestWarning

from tests.daemon import ACCESS_KEY, SECRET_KEY, shared_gateway
from tests.gateways import assert_nothing_left, lazy_gateway
from tests.harness import harness_dir, minio_client, run_aws, run_rclone, run_s3cmd
from tests.signing import STREAMING_UNSIGNED_TRAILER

MIB = 1024 * 1024
SMALL = 100_003
SINGLE_PUT_AWS = {"multipart_threshold": "200MB"}
SINGLE_PUT_S3CMD = ["--disable-multipart"]
SINGLE_PUT_RCLONE = ["--s3-upload-cutoff", "200M"]
SINGLE_PUT_MINIO = 128 * MIB  # part size: one part up to 128 MiB

tls_gateway = lazy_gateway("clients-tls", tls=True)

# The TLS daemon's certificate is self-signed; clients are told not to check it.
warnings.filterwarnings("ignore", category=InsecureRequestWarning)


# -- source files ------------------------------------------------------------


@attr.s(frozen=True, auto_attribs=True)
class SourceFile:
    path: Path
    size: int
    sha256: str
    md5: str
    crc32: str  # base64, as in x-amz-checksum-crc32

    def read(self) -> bytes:
        return self.path.read_bytes()


_sources: dict[int, SourceFile] = {}
_sources_dir: list[Path] = []


def source_file(size: int) -> SourceFile:
    """A file of C{size} random bytes, made once per test process."""
    if size not in _sources:
        if not _sources_dir:
            directory = Path(tempfile.mkdtemp(prefix="client-sources-", dir=harness_dir()))
            atexit.register(shutil.rmtree, directory, True)
            _sources_dir.append(directory)
        path = _sources_dir[0] / f"source-{size}.bin"
        sha256, md5, crc = hashlib.sha256(), hashlib.md5(), 0
        with open(path, "wb") as out:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 4 * MIB))
                out.write(block)
                sha256.update(block)
                md5.update(block)
                crc = zlib.crc32(block, crc)
                remaining -= len(block)
        _sources[size] = SourceFile(
            path, size, sha256.hexdigest(), md5.hexdigest(), base64.b64encode(crc.to_bytes(4, "big")).decode()
        )
    return _sources[size]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# -- clients: how each one puts, gets, heads, lists and deletes ----------------


class Boto3Driver:
    """boto3: C{put_object}/C{get_object}, or C{upload_file}/C{download_file} (s3transfer)."""

    def __init__(self, client, transfer: bool = False) -> None:
        self.client = client
        self.transfer = transfer

    def put(self, path: Path, bucket: str, key: str) -> None:
        if self.transfer:
            self.client.upload_file(str(path), bucket, key)
            return
        with open(path, "rb") as body:
            self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str, path: Path) -> None:
        if self.transfer:
            self.client.download_file(bucket, key, str(path))
            return
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        with open(path, "wb") as out:
            for chunk in body.iter_chunks(MIB):
                out.write(chunk)

    def head(self, bucket: str, key: str) -> int:
        return self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]

    def listing(self, bucket: str) -> dict[str, int]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)


class AwsCliDriver:
    """
    The aws cli: C{s3 cp} up and down, C{s3 ls}, C{s3 rm} (high level), or
    C{s3api put-object/get-object/list-objects-v2/delete-object}; heads
    with C{s3api head-object} either way.
    """

    def __init__(
        self, endpoint: str, api: bool = False, s3_config: Optional[dict] = None, options: tuple = ()
    ) -> None:
        self.endpoint = endpoint
        self.api = api
        self.s3_config = s3_config
        self.options = list(options)

    def run(self, *args: str) -> str:
        return run_aws(
            [*self.options, *args], self.endpoint, ACCESS_KEY, SECRET_KEY, s3_config=self.s3_config
        ).stdout

    def put(self, path: Path, bucket: str, key: str) -> None:
        if self.api:
            self.run("s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(path))
        else:
            self.run("s3", "cp", str(path), f"s3://{bucket}/{key}")

    def get(self, bucket: str, key: str, path: Path) -> None:
        if self.api:
            self.run("s3api", "get-object", "--bucket", bucket, "--key", key, str(path))
        else:
            self.run("s3", "cp", f"s3://{bucket}/{key}", str(path))

    def head(self, bucket: str, key: str) -> int:
        return json.loads(self.run("s3api", "head-object", "--bucket", bucket, "--key", key))["ContentLength"]

    def listing(self, bucket: str) -> dict[str, int]:
        if self.api:
            answer = json.loads(self.run("s3api", "list-objects-v2", "--bucket", bucket) or "{}")
            return {item["Key"]: item["Size"] for item in answer.get("Contents") or []}
        found = {}
        for line in self.run("s3", "ls", "--recursive", f"s3://{bucket}/").splitlines():
            _date, _time, size, key = line.split(None, 3)
            found[key] = int(size)
        return found

    def delete(self, bucket: str, key: str) -> None:
        if self.api:
            self.run("s3api", "delete-object", "--bucket", bucket, "--key", key)
        else:
            self.run("s3", "rm", f"s3://{bucket}/{key}")


class S3cmdDriver:
    """s3cmd: put, get, info, ls, del."""

    def __init__(self, endpoint: str, put_options: tuple = ()) -> None:
        self.endpoint = endpoint
        self.put_options = list(put_options)

    def run(self, *args: str) -> str:
        return run_s3cmd(list(args), self.endpoint, ACCESS_KEY, SECRET_KEY).stdout

    def put(self, path: Path, bucket: str, key: str) -> None:
        self.run("put", *self.put_options, str(path), f"s3://{bucket}/{key}")

    def get(self, bucket: str, key: str, path: Path) -> None:
        self.run("get", "--force", f"s3://{bucket}/{key}", str(path))

    def head(self, bucket: str, key: str) -> int:
        for line in self.run("info", f"s3://{bucket}/{key}").splitlines():
            name, _, value = line.strip().partition(":")
            if name == "File size":
                return int(value)
        raise AssertionError("s3cmd info printed no file size")

    def listing(self, bucket: str) -> dict[str, int]:
        found = {}
        prefix = f"s3://{bucket}/"
        for line in self.run("ls", "--recursive", prefix).splitlines():
            _date, _time, size, uri = line.split(None, 3)
            found[uri[len(prefix) :]] = int(size)
        return found

    def delete(self, bucket: str, key: str) -> None:
        self.run("del", f"s3://{bucket}/{key}")


class RcloneDriver:
    """rclone: copyto up and down, lsjson --stat, lsf, deletefile."""

    def __init__(self, endpoint: str, put_options: tuple = (), options: tuple = ()) -> None:
        self.endpoint = endpoint
        self.put_options = list(put_options)
        self.options = list(options)

    def run(self, *args: str) -> str:
        return run_rclone([*self.options, *args], self.endpoint, ACCESS_KEY, SECRET_KEY).stdout

    def put(self, path: Path, bucket: str, key: str) -> None:
        self.run("copyto", *self.put_options, str(path), f"s3:{bucket}/{key}")

    def get(self, bucket: str, key: str, path: Path) -> None:
        self.run("copyto", f"s3:{bucket}/{key}", str(path))

    def head(self, bucket: str, key: str) -> int:
        return json.loads(self.run("lsjson", "--stat", f"s3:{bucket}/{key}"))["Size"]

    def listing(self, bucket: str) -> dict[str, int]:
        found = {}
        for line in self.run("lsf", "-R", "--files-only", "--format", "sp", f"s3:{bucket}").splitlines():
            size, _, key = line.partition(";")
            found[key] = int(size)
        return found

    def delete(self, bucket: str, key: str) -> None:
        self.run("deletefile", f"s3:{bucket}/{key}")


class MinioDriver:
    """The minio SDK: put_object/get_object, or fput_object/fget_object."""

    def __init__(self, endpoint: str, part_size: int = 0, files: bool = False) -> None:
        self.client = minio_client(endpoint, ACCESS_KEY, SECRET_KEY)
        self.part_size = part_size
        self.files = files

    def put(self, path: Path, bucket: str, key: str) -> None:
        if self.files:
            self.client.fput_object(bucket, key, str(path), part_size=self.part_size)
            return
        with open(path, "rb") as body:
            self.client.put_object(bucket, key, body, path.stat().st_size, part_size=self.part_size)

    def get(self, bucket: str, key: str, path: Path) -> None:
        if self.files:
            self.client.fget_object(bucket, key, str(path))
            return
        response = self.client.get_object(bucket, key)
        try:
            with open(path, "wb") as out:
                for chunk in response.stream(MIB):
                    out.write(chunk)
        finally:
            response.close()
            response.release_conn()

    def head(self, bucket: str, key: str) -> int:
        return self.client.stat_object(bucket, key).size

    def listing(self, bucket: str) -> dict[str, int]:
        return {item.object_name: item.size for item in self.client.list_objects(bucket, recursive=True)}

    def delete(self, bucket: str, key: str) -> None:
        self.client.remove_object(bucket, key)


# -- the round trip ------------------------------------------------------------


class RoundTripMixin:
    """
    C{round_trip}: a client puts a file, heads, lists, gets and deletes it;
    boto3 checks what the daemon stored in between (size, ETag); at the end
    nothing is left in the store or on the backends.
    """

    gateway_factory = staticmethod(shared_gateway)
    observer_options: dict = {}

    def setUp(self) -> None:
        self.gateway = self.gateway_factory()
        self.observer = self.gateway.client(**self.observer_options)
        self.bucket = self.gateway.new_bucket(self.observer, prefix="clients")
        self.workdir = Path(tempfile.mkdtemp(prefix="client-", dir=harness_dir()))
        self.addCleanup(shutil.rmtree, self.workdir, True)

    @property
    def endpoint(self) -> str:
        return getattr(self.gateway, "endpoint", None) or self.gateway.daemon.endpoint

    def round_trip(self, driver, size: int, multipart: bool = False, key: Optional[str] = None) -> None:
        source = source_file(size)
        key = key or f"dir/{type(driver).__name__.lower()}-{size}.bin"
        driver.put(source.path, self.bucket, key)

        stored = self.observer.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(stored["ContentLength"], size)
        if multipart:
            self.assertRegex(stored["ETag"], r'^"[0-9a-f]{32}-[0-9]+"$', "not stored as a multipart upload")
        else:
            self.assertEqual(stored["ETag"], f'"{source.md5}"', "not stored by a single PUT")

        self.assertEqual(driver.head(self.bucket, key), size)
        self.assertEqual(driver.listing(self.bucket), {key: size})
        downloaded = self.workdir / "downloaded.bin"
        driver.get(self.bucket, key, downloaded)
        self.assertEqual(downloaded.stat().st_size, size)
        self.assertEqual(sha256_file(downloaded), source.sha256, "the download differs from the upload")

        driver.delete(self.bucket, key)
        self.assertEqual(self.observer.list_objects_v2(Bucket=self.bucket).get("Contents", []), [])
        with self.assertRaises(ClientError) as raised:
            self.observer.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
        assert_nothing_left(self.gateway, self.bucket)


class SinglePutSizesMixin(RoundTripMixin):
    """A small, an 8 MiB and a 64 MiB file, each sent as one PUT by C{driver()}."""

    def driver(self):
        raise NotImplementedError

    def test_small_object(self) -> None:
        self.round_trip(self.driver(), SMALL)

    def test_8mib_object(self) -> None:
        self.round_trip(self.driver(), 8 * MIB)

    def test_64mib_object(self) -> None:
        self.round_trip(self.driver(), 64 * MIB)


# -- one PUT per object, plain http ----------------------------------------------


class Boto3DefaultTests(SinglePutSizesMixin, SynchronousTestCase):
    """boto3 as shipped: a CRC32 header on every upload (over http: no aws-chunked)."""

    def driver(self):
        return Boto3Driver(self.gateway.client())

    def test_crc32_is_stored_and_returned_with_checksum_mode(self) -> None:
        source = source_file(SMALL)
        s3 = self.gateway.client()
        s3.put_object(Bucket=self.bucket, Key="crc", Body=source.read())
        head = s3.head_object(Bucket=self.bucket, Key="crc", ChecksumMode="ENABLED")
        self.assertEqual(head.get("ChecksumCRC32"), source.crc32)
        # boto3 validates the returned checksum against the body it reads.
        got = s3.get_object(Bucket=self.bucket, Key="crc", ChecksumMode="ENABLED")
        self.assertEqual(got["Body"].read(), source.read())
        self.assertEqual(got.get("ChecksumCRC32"), source.crc32)

    def test_upload_file_below_threshold_is_one_put(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(), transfer=True), SMALL)


class Boto3WhenRequiredTests(SinglePutSizesMixin, SynchronousTestCase):
    """boto3 with C{request_checksum_calculation=when_required}: no checksum header at all."""

    def driver(self):
        return Boto3Driver(self.gateway.client(checksums="when_required"))

    def test_upload_file_below_threshold_is_one_put(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(checksums="when_required"), transfer=True), SMALL)


class AwsCliS3CpTests(SinglePutSizesMixin, SynchronousTestCase):
    """C{aws s3 cp} with C{s3.multipart_threshold = 200MB} in its config file."""

    def driver(self):
        return AwsCliDriver(self.endpoint, s3_config=SINGLE_PUT_AWS)

    def test_64mib_download_with_default_ranged_gets(self) -> None:
        """The default config downloads a large object with parallel ranged GETs."""
        source = source_file(64 * MIB)
        Boto3Driver(self.observer).put(source.path, self.bucket, "big")
        target = self.workdir / "ranged.bin"
        AwsCliDriver(self.endpoint).get(self.bucket, "big", target)
        self.assertEqual(sha256_file(target), source.sha256)


class AwsCliS3apiTests(SinglePutSizesMixin, SynchronousTestCase):
    """C{aws s3api put-object/get-object/head-object/list-objects-v2/delete-object}."""

    def driver(self):
        return AwsCliDriver(self.endpoint, api=True)


class S3cmdTests(SinglePutSizesMixin, SynchronousTestCase):
    """s3cmd put/get/info/ls/del, with C{--disable-multipart}."""

    def driver(self):
        return S3cmdDriver(self.endpoint, put_options=SINGLE_PUT_S3CMD)


class RcloneTests(SinglePutSizesMixin, SynchronousTestCase):
    """rclone copyto/lsjson/lsf/deletefile with C{--s3-upload-cutoff 200M}."""

    def driver(self):
        return RcloneDriver(self.endpoint, put_options=SINGLE_PUT_RCLONE)

    def test_cat_prints_the_object(self) -> None:
        text = "".join(f"line {n}: {os.urandom(8).hex()}\n" for n in range(2000))
        self.observer.put_object(Bucket=self.bucket, Key="text.txt", Body=text.encode())
        printed = run_rclone(
            ["cat", f"s3:{self.bucket}/text.txt"], self.endpoint, ACCESS_KEY, SECRET_KEY
        ).stdout
        self.assertEqual(printed, text)

    def test_hashsum_download_matches(self) -> None:
        source = source_file(8 * MIB)
        RcloneDriver(self.endpoint, put_options=SINGLE_PUT_RCLONE).put(source.path, self.bucket, "h.bin")
        printed = run_rclone(
            ["hashsum", "sha256", "--download", f"s3:{self.bucket}/h.bin"],
            self.endpoint,
            ACCESS_KEY,
            SECRET_KEY,
        ).stdout
        self.assertEqual(printed.split(), [source.sha256, "h.bin"])


class MinioTests(SinglePutSizesMixin, SynchronousTestCase):
    """The minio SDK's put_object/get_object with a part size above the file size."""

    def driver(self):
        return MinioDriver(self.endpoint, part_size=SINGLE_PUT_MINIO)


class MinioFileTests(SinglePutSizesMixin, SynchronousTestCase):
    """The minio SDK's fput_object/fget_object with a part size above the file size."""

    def driver(self):
        return MinioDriver(self.endpoint, part_size=SINGLE_PUT_MINIO, files=True)


# -- TLS: aws-chunked bodies with trailing checksums -----------------------------


class RecordedRequests:
    """The headers of every request a boto3 client sends (a C{before-send} hook)."""

    def __init__(self, client) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, **kwargs) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        headers = {n: v.decode() if isinstance(v, bytes) else v for n, v in headers.items()}
        self.requests.append((request.method, request.url, headers))

    def uploads(self) -> list[dict]:
        return [headers for method, _url, headers in self.requests if method == "PUT"]


class TlsClientTests(RoundTripMixin, SynchronousTestCase):
    """
    Over https botocore (and the aws cli) send uploads as aws-chunked bodies
    with an x-amz-checksum-crc32 trailer; every other client must keep
    working over TLS too.
    """

    gateway_factory = staticmethod(tls_gateway)
    observer_options = {"verify": False}

    def assertTrailerUpload(self, headers: dict, size: int) -> None:
        self.assertEqual(headers.get("x-amz-content-sha256"), STREAMING_UNSIGNED_TRAILER)
        self.assertEqual(headers.get("x-amz-trailer"), "x-amz-checksum-crc32")
        self.assertIn("aws-chunked", headers.get("content-encoding", ""))
        self.assertEqual(headers.get("x-amz-decoded-content-length"), str(size))

    def assertChecksumStored(self, key: str, source: SourceFile) -> None:
        head = self.observer.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        self.assertEqual(head.get("ChecksumCRC32"), source.crc32)
        self.assertEqual(head["ContentLength"], source.size)
        self.assertEqual(head["ETag"], f'"{source.md5}"')

    def put_object_with_trailer(self, size: int) -> None:
        source = source_file(size)
        s3 = self.gateway.client(verify=False)
        recorded = RecordedRequests(s3)
        with open(source.path, "rb") as body:
            s3.put_object(Bucket=self.bucket, Key="trailer.bin", Body=body)
        self.assertTrailerUpload(recorded.uploads()[0], size)
        self.assertChecksumStored("trailer.bin", source)
        got = s3.get_object(Bucket=self.bucket, Key="trailer.bin", ChecksumMode="ENABLED")
        self.assertEqual(hashlib.sha256(got["Body"].read()).hexdigest(), source.sha256)

    def test_boto3_put_object_file_small_sends_crc32_trailer(self) -> None:
        self.put_object_with_trailer(SMALL)

    def test_boto3_put_object_file_8mib_sends_crc32_trailer(self) -> None:
        self.put_object_with_trailer(8 * MIB)

    def test_boto3_put_object_file_64mib_sends_crc32_trailer(self) -> None:
        self.put_object_with_trailer(64 * MIB)

    def test_boto3_upload_fileobj_below_threshold_sends_crc32_trailer(self) -> None:
        source = source_file(SMALL)
        s3 = self.gateway.client(verify=False)
        recorded = RecordedRequests(s3)
        s3.upload_fileobj(io.BytesIO(source.read()), self.bucket, "fileobj.bin")
        self.assertTrailerUpload(recorded.uploads()[0], SMALL)
        self.assertChecksumStored("fileobj.bin", source)
        target = io.BytesIO()
        s3.download_fileobj(self.bucket, "fileobj.bin", target)
        self.assertEqual(target.getvalue(), source.read())

    def test_boto3_empty_object_with_trailer(self) -> None:
        s3 = self.gateway.client(verify=False)
        recorded = RecordedRequests(s3)
        s3.upload_fileobj(io.BytesIO(b""), self.bucket, "empty")
        self.assertEqual(recorded.uploads()[0].get("x-amz-content-sha256"), STREAMING_UNSIGNED_TRAILER)
        got = s3.get_object(Bucket=self.bucket, Key="empty")
        self.assertEqual(got["Body"].read(), b"")
        self.assertEqual(got["ContentLength"], 0)

    def test_boto3_default_round_trip(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(verify=False)), 8 * MIB)

    def test_boto3_when_required_round_trip(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(verify=False, checksums="when_required")), 8 * MIB)

    def test_aws_cli_s3_cp_round_trip(self) -> None:
        driver = AwsCliDriver(self.endpoint, s3_config=SINGLE_PUT_AWS, options=("--no-verify-ssl",))
        self.round_trip(driver, 8 * MIB)

    def test_aws_cli_s3api_round_trip_with_checksum(self) -> None:
        source = source_file(SMALL)
        driver = AwsCliDriver(self.endpoint, api=True, options=("--no-verify-ssl",))
        driver.put(source.path, self.bucket, "cli.bin")
        head = json.loads(
            driver.run(
                "s3api",
                "head-object",
                "--bucket",
                self.bucket,
                "--key",
                "cli.bin",
                "--checksum-mode",
                "ENABLED",
            )
        )
        self.assertEqual(head.get("ChecksumCRC32"), source.crc32)
        driver.delete(self.bucket, "cli.bin")
        self.round_trip(driver, SMALL, key="cli2.bin")

    def test_s3cmd_round_trip(self) -> None:
        self.round_trip(S3cmdDriver(self.endpoint, put_options=SINGLE_PUT_S3CMD), SMALL)

    def test_rclone_round_trip(self) -> None:
        driver = RcloneDriver(
            self.endpoint, put_options=SINGLE_PUT_RCLONE, options=("--no-check-certificate",)
        )
        self.round_trip(driver, SMALL)

    def test_minio_round_trip(self) -> None:
        self.round_trip(MinioDriver(self.endpoint, part_size=SINGLE_PUT_MINIO), SMALL)


# -- multipart: the clients' default thresholds ------------------------------------


class MultipartClientTests(RoundTripMixin, SynchronousTestCase):
    """
    The clients as shipped: above their thresholds (aws cli and boto3's
    upload_file 8 MiB, s3cmd 15 MiB, minio 5 MiB parts, rclone forced to
    5 MiB) they upload with CreateMultipartUpload/UploadPart/Complete.
    """

    def test_aws_cli_s3_cp_8mib(self) -> None:
        self.round_trip(AwsCliDriver(self.endpoint), 8 * MIB, multipart=True)

    def test_aws_cli_s3_cp_64mib(self) -> None:
        self.round_trip(AwsCliDriver(self.endpoint), 64 * MIB, multipart=True)

    def test_boto3_upload_file_8mib(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(), transfer=True), 8 * MIB, multipart=True)

    def test_boto3_upload_file_64mib(self) -> None:
        self.round_trip(Boto3Driver(self.gateway.client(), transfer=True), 64 * MIB, multipart=True)

    def test_boto3_when_required_upload_file_64mib(self) -> None:
        client = self.gateway.client(checksums="when_required")
        self.round_trip(Boto3Driver(client, transfer=True), 64 * MIB, multipart=True)

    def test_s3cmd_8mib_with_5mib_chunks(self) -> None:
        driver = S3cmdDriver(self.endpoint, put_options=("--multipart-chunk-size-mb=5",))
        self.round_trip(driver, 8 * MIB, multipart=True)

    def test_s3cmd_64mib(self) -> None:
        self.round_trip(S3cmdDriver(self.endpoint), 64 * MIB, multipart=True)

    def test_rclone_8mib(self) -> None:
        driver = RcloneDriver(
            self.endpoint, put_options=("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
        )
        self.round_trip(driver, 8 * MIB, multipart=True)

    def test_rclone_64mib(self) -> None:
        driver = RcloneDriver(
            self.endpoint, put_options=("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
        )
        self.round_trip(driver, 64 * MIB, multipart=True)

    def test_minio_put_object_8mib(self) -> None:
        self.round_trip(MinioDriver(self.endpoint), 8 * MIB, multipart=True)

    def test_minio_put_object_64mib(self) -> None:
        self.round_trip(MinioDriver(self.endpoint), 64 * MIB, multipart=True)

    def test_minio_fput_object_64mib(self) -> None:
        self.round_trip(MinioDriver(self.endpoint, files=True), 64 * MIB, multipart=True)


class MultipartTlsClientTests(RoundTripMixin, SynchronousTestCase):
    """Multipart over TLS: every UploadPart is aws-chunked with a CRC32 trailer."""

    gateway_factory = staticmethod(tls_gateway)
    observer_options = {"verify": False}

    def test_boto3_upload_fileobj_16mib_parts_have_trailers(self) -> None:
        source = source_file(16 * MIB)
        s3 = self.gateway.client(verify=False)
        recorded = RecordedRequests(s3)
        with open(source.path, "rb") as body:
            s3.upload_fileobj(body, self.bucket, "parts.bin")
        parts = [h for h in recorded.uploads() if "x-amz-trailer" in h]
        self.assertEqual(len(parts), 2, recorded.requests)
        for headers in parts:
            self.assertEqual(headers.get("x-amz-content-sha256"), STREAMING_UNSIGNED_TRAILER)
        stored = self.observer.head_object(Bucket=self.bucket, Key="parts.bin")
        self.assertRegex(stored["ETag"], r'^"[0-9a-f]{32}-2"$')
        target = io.BytesIO()
        s3.download_fileobj(self.bucket, "parts.bin", target)
        self.assertEqual(hashlib.sha256(target.getvalue()).hexdigest(), source.sha256)

    def test_aws_cli_s3_cp_64mib(self) -> None:
        self.round_trip(AwsCliDriver(self.endpoint, options=("--no-verify-ssl",)), 64 * MIB, multipart=True)
