"""
Authentication through the running daemon, end to end:

  - presigned URLs made by boto3, used with curl and urllib, and their expiry;
  - several credentials: a read-only key, a key limited to some buckets, and
    anonymous access when C{auth_required: false};
  - requests that must be refused, each with its S3 error code, and leaving
    no object, no store row and no backend copy behind: bad or unknown keys,
    tampered or expired presigned URLs, clock skew, bodies that do not match
    their digests, and broken aws-chunked bodies (signed chunks, framing,
    trailing checksums).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import botocore
import botocore.auth
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

try:
    # With awscrt installed botocore signs with the CRT signers.
    import botocore.crt.auth as crt_auth
except ImportError:
    crt_auth = None

from tests.daemon import ACCESS_KEY, SECRET_KEY, shared_gateway
from tests.gateways import assert_nothing_left, error_code, http, lazy_gateway, s3_client, s3_error
from tests.harness import harness_dir, unique_bucket_name
from tests.signing import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    crc32_b64,
    encode_signed_chunks,
    encode_unsigned_chunks,
    md5_b64,
    parse_response,
    send,
    send_in_parts,
    sign_request,
)

KIB = 1024
RO_SECRET = "read-only-secret-0123456789"
LIMITED_SECRET = "limited-secret-0123456789"

credentials_gateway = lazy_gateway(
    "credentials",
    ["vb-a", "vb-b"],
    s3api={
        "credentials": [
            {"access_key": "ro", "secret_key": RO_SECRET, "read_only": True},
            {"access_key": "limited", "secret_key": LIMITED_SECRET, "buckets": ["vb-a"]},
        ]
    },
)
anonymous_gateway = lazy_gateway("anonymous", s3api={"auth_required": False})
# Refused uploads currently count as backend failures (see BackendHealthTests);
# a high threshold keeps that from turning later refusals into 503s here.
refusals_gateway = lazy_gateway("refusals", balancer={"unhealthy_threshold": 1000})
# No health probe between the refusals: only the refusals can change the state.
health_gateway = lazy_gateway("refusals-health", balancer={"health_check_period": "1h"})


def status_of(error: ClientError) -> int:
    return error.response["ResponseMetadata"]["HTTPStatusCode"]


@contextlib.contextmanager
def botocore_clock(minutes: float) -> Iterator[None]:
    """botocore signs (python and CRT signers) as if its clock were C{minutes} off."""

    def now(remove_tzinfo: bool = True) -> datetime.datetime:
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
        return when.replace(tzinfo=None) if remove_tzinfo else when

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(botocore.auth, "get_current_datetime", now))
        if crt_auth is not None:
            stack.enter_context(mock.patch.object(crt_auth, "get_current_datetime", now))
        yield


# -- presigned URLs ----------------------------------------------------------------


class PresignedUrlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="presign")
        self.workdir = Path(tempfile.mkdtemp(prefix="presign-", dir=harness_dir()))
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def presign(self, operation: str, key: str, expires: int = 300, **params) -> str:
        return self.s3.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key, **params}, ExpiresIn=expires
        )

    def curl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["curl", "-sS", "--noproxy", "*", *args], capture_output=True, timeout=60, check=False
        )

    def test_curl_put_get_head_delete(self) -> None:
        data = os.urandom(2 * 1024 * KIB + 11)
        source = self.workdir / "up.bin"
        source.write_bytes(data)
        put = self.curl("--fail", "-T", str(source), self.presign("put_object", "curl.bin"))
        self.assertEqual(put.returncode, 0, put.stdout + put.stderr)
        self.assertEqual(
            self.s3.head_object(Bucket=self.bucket, Key="curl.bin")["ETag"],
            f'"{hashlib.md5(data).hexdigest()}"',
        )

        got = self.curl("--fail", self.presign("get_object", "curl.bin"))
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(hashlib.sha256(got.stdout).hexdigest(), hashlib.sha256(data).hexdigest())

        head = self.curl("--fail", "-I", self.presign("head_object", "curl.bin"))
        self.assertEqual(head.returncode, 0, head.stderr)
        self.assertIn(f"content-length: {len(data)}", head.stdout.decode().lower())

        deleted = self.curl(
            "--fail", "-X", "DELETE", "-w", "%{http_code}", self.presign("delete_object", "curl.bin")
        )
        self.assertEqual(deleted.stdout, b"204", deleted.stderr)
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key="curl.bin")
        self.assertEqual(status_of(raised.exception), 404)
        assert_nothing_left(self.gateway, self.bucket)

    def test_urllib_put_get_head_delete(self) -> None:
        data = os.urandom(300 * KIB)
        status, _headers, body = http(
            "PUT",
            self.presign("put_object", "urllib.bin"),
            data,
            {"Content-Type": "application/octet-stream"},
        )
        self.assertEqual(status, 200, body)

        status, headers, body = http("GET", self.presign("get_object", "urllib.bin"))
        self.assertEqual((status, body), (200, data))
        self.assertEqual(headers["content-type"], "application/octet-stream")

        status, headers, body = http("HEAD", self.presign("head_object", "urllib.bin"))
        self.assertEqual((status, headers["content-length"], body), (200, str(len(data)), b""))

        status, _headers, body = http("DELETE", self.presign("delete_object", "urllib.bin"))
        self.assertEqual(status, 204, body)
        status, _headers, body = http("GET", self.presign("get_object", "urllib.bin"))
        self.assertEqual((status, s3_error(body)[0]), (404, "NoSuchKey"))
        assert_nothing_left(self.gateway, self.bucket)

    def test_presigned_get_with_response_overrides(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="o.txt", Body=b"override")
        url = self.presign(
            "get_object",
            "o.txt",
            ResponseContentDisposition='attachment; filename="x.txt"',
            ResponseContentType="text/plain",
        )
        status, headers, body = http("GET", url)
        self.assertEqual((status, body), (200, b"override"))
        self.assertEqual(headers["content-disposition"], 'attachment; filename="x.txt"')
        self.assertEqual(headers["content-type"], "text/plain")

    def test_url_expires(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="soon", Body=b"gone soon")
        url = self.presign("get_object", "soon", expires=1)
        deadline = time.monotonic() + 5
        while True:
            status, _headers, body = http("GET", url)
            if status != 200 or time.monotonic() > deadline:
                break
            self.assertEqual(body, b"gone soon")
            time.sleep(0.2)
        self.assertEqual(status, 403, body)
        self.assertEqual(s3_error(body), ("AccessDenied", "Request has expired"))
        curl = self.curl("-w", "\n%{http_code}", url)
        self.assertTrue(curl.stdout.endswith(b"\n403"), curl.stdout)
        self.assertIn(b"<Code>AccessDenied</Code>", curl.stdout)


# -- several credentials -------------------------------------------------------------


class CredentialTests(SynchronousTestCase):
    """The Go pair, a read-only key and a key limited to vb-a, on one daemon."""

    def setUp(self) -> None:
        self.gateway = credentials_gateway()
        self.admin = self.gateway.client()
        self.read_only = self.gateway.client("ro", RO_SECRET)
        self.limited = self.gateway.client("limited", LIMITED_SECRET)
        self.key = unique_bucket_name("key")

    def assertDenied(self, call, *args, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            call(*args, **kwargs)
        self.assertEqual(status_of(raised.exception), 403)
        if raised.exception.operation_name not in ("HeadObject", "HeadBucket"):
            self.assertEqual(error_code(raised.exception), "AccessDenied")

    def test_go_pair_sees_and_writes_every_bucket(self) -> None:
        names = [b["Name"] for b in self.admin.list_buckets()["Buckets"]]
        self.assertTrue({"vb-a", "vb-b"} <= set(names), names)
        for bucket in ("vb-a", "vb-b"):
            self.admin.put_object(Bucket=bucket, Key=self.key, Body=b"admin")
            self.assertEqual(self.admin.get_object(Bucket=bucket, Key=self.key)["Body"].read(), b"admin")
            self.admin.delete_object(Bucket=bucket, Key=self.key)

    def test_read_only_key_reads(self) -> None:
        bucket = self.gateway.new_bucket(self.admin, prefix="ro")
        self.admin.put_object(Bucket=bucket, Key="k", Body=b"readable")
        self.assertEqual(self.read_only.get_object(Bucket=bucket, Key="k")["Body"].read(), b"readable")
        self.assertEqual(self.read_only.head_object(Bucket=bucket, Key="k")["ContentLength"], 8)
        self.assertEqual([o["Key"] for o in self.read_only.list_objects_v2(Bucket=bucket)["Contents"]], ["k"])
        self.assertIn(bucket, [b["Name"] for b in self.read_only.list_buckets()["Buckets"]])
        self.read_only.head_bucket(Bucket=bucket)
        url = self.read_only.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        self.assertEqual(http("GET", url)[2], b"readable")

    def test_read_only_key_cannot_write(self) -> None:
        bucket = self.gateway.new_bucket(self.admin, prefix="ro")
        self.assertDenied(self.read_only.put_object, Bucket=bucket, Key="new", Body=os.urandom(200 * KIB))
        self.assertDenied(self.read_only.create_multipart_upload, Bucket=bucket, Key="new")
        self.assertDenied(self.read_only.create_bucket, Bucket=unique_bucket_name("ro-new"))
        assert_nothing_left(self.gateway, bucket)
        self.admin.put_object(Bucket=bucket, Key="kept", Body=b"kept")
        self.assertDenied(self.read_only.delete_object, Bucket=bucket, Key="kept")
        self.assertDenied(self.read_only.delete_objects, Bucket=bucket, Delete={"Objects": [{"Key": "kept"}]})
        self.assertDenied(self.read_only.copy_object, Bucket=bucket, Key="copy", CopySource=f"{bucket}/kept")
        self.assertEqual(self.admin.get_object(Bucket=bucket, Key="kept")["Body"].read(), b"kept")
        self.assertEqual([o["Key"] for o in self.admin.list_objects_v2(Bucket=bucket)["Contents"]], ["kept"])
        url = self.read_only.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "presigned"}
        )
        status, _headers, body = http("PUT", url, b"sneaky")
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessDenied"))

    def test_limited_key_lists_only_its_buckets(self) -> None:
        self.gateway.new_bucket(self.admin, prefix="hidden")
        self.assertEqual([b["Name"] for b in self.limited.list_buckets()["Buckets"]], ["vb-a"])

    def test_limited_key_uses_its_bucket(self) -> None:
        data = os.urandom(100 * KIB)
        self.limited.put_object(Bucket="vb-a", Key=self.key, Body=data)
        self.assertEqual(self.limited.get_object(Bucket="vb-a", Key=self.key)["Body"].read(), data)
        self.assertIn(
            self.key, [o["Key"] for o in self.limited.list_objects_v2(Bucket="vb-a").get("Contents", [])]
        )
        self.limited.delete_object(Bucket="vb-a", Key=self.key)

    def test_limited_key_is_denied_other_buckets(self) -> None:
        self.admin.put_object(Bucket="vb-b", Key=self.key, Body=b"other")
        self.addCleanup(self.admin.delete_object, Bucket="vb-b", Key=self.key)
        self.assertDenied(self.limited.get_object, Bucket="vb-b", Key=self.key)
        self.assertDenied(self.limited.head_object, Bucket="vb-b", Key=self.key)
        self.assertDenied(self.limited.list_objects_v2, Bucket="vb-b")
        self.assertDenied(self.limited.head_bucket, Bucket="vb-b")
        self.assertDenied(self.limited.delete_object, Bucket="vb-b", Key=self.key)
        self.assertDenied(self.limited.put_object, Bucket="vb-b", Key=self.key + "-new", Body=b"x")
        self.assertDenied(self.limited.create_bucket, Bucket=unique_bucket_name("limited-new"))
        self.assertDenied(
            self.limited.copy_object, Bucket="vb-a", Key=self.key, CopySource=f"vb-b/{self.key}"
        )
        self.assertEqual(self.admin.get_object(Bucket="vb-b", Key=self.key)["Body"].read(), b"other")
        with self.assertRaises(ClientError):
            self.admin.head_object(Bucket="vb-a", Key=self.key)
        with self.assertRaises(ClientError):
            self.admin.head_object(Bucket="vb-b", Key=self.key + "-new")


class AnonymousAccessTests(SynchronousTestCase):
    """C{auth_required: false}: unsigned requests are served; signed ones still verified."""

    def setUp(self) -> None:
        self.gateway = anonymous_gateway()
        self.base = f"{self.gateway.endpoint}/vb-default"
        self.key = unique_bucket_name("anon")

    def test_anonymous_put_get_head_delete(self) -> None:
        data = os.urandom(150 * KIB)
        url = f"{self.base}/{self.key}"
        status, _headers, body = http("PUT", url, data, {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200, body)
        self.assertEqual(http("GET", url)[::2], (200, data))
        status, headers, _body = http("HEAD", url)
        self.assertEqual((status, headers["content-length"]), (200, str(len(data))))
        self.assertEqual(http("DELETE", url)[0], 204)
        self.assertEqual(http("GET", url)[0], 404)

    def test_unsigned_boto3_client(self) -> None:
        client = s3_client(self.gateway.endpoint, signature_version=botocore.UNSIGNED)
        client.put_object(Bucket="vb-default", Key=self.key, Body=b"unsigned boto3")
        self.assertEqual(
            client.get_object(Bucket="vb-default", Key=self.key)["Body"].read(), b"unsigned boto3"
        )
        self.assertIn(self.key, [o["Key"] for o in client.list_objects_v2(Bucket="vb-default")["Contents"]])
        client.delete_object(Bucket="vb-default", Key=self.key)

    def test_bad_signature_is_not_downgraded_to_anonymous(self) -> None:
        wrong = self.gateway.client(ACCESS_KEY, "not-the-secret")
        with self.assertRaises(ClientError) as raised:
            wrong.put_object(Bucket="vb-default", Key=self.key, Body=b"x")
        self.assertEqual(error_code(raised.exception), "SignatureDoesNotMatch")
        unknown = self.gateway.client("nobody", SECRET_KEY)
        with self.assertRaises(ClientError) as raised:
            unknown.put_object(Bucket="vb-default", Key=self.key, Body=b"x")
        self.assertEqual(error_code(raised.exception), "InvalidAccessKeyId")
        self.assertEqual(http("GET", f"{self.base}/{self.key}")[0], 404)


# -- aws-chunked bodies ---------------------------------------------------------------------

CHUNKS = [os.urandom(64 * KIB), os.urandom(64 * KIB), os.urandom(1000)]
DATA = b"".join(CHUNKS)
CRC32_TRAILER = {"x-amz-trailer": "x-amz-checksum-crc32"}


def chunked_put(
    url: str,
    payload: str,
    decoded_length: int,
    encode,
    extra: dict | None = None,
    cut: int = 0,
) -> tuple[int, dict, bytes]:
    """Sign an aws-chunked PUT, encode its body with the signature, send it (less C{cut} bytes)."""
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded_length)}
    headers.update(extra or {})
    signed = sign_request("PUT", url, headers, payload=payload)
    body = encode(signed)
    if cut:
        body = body[:-cut]
    return send("PUT", url, signed.headers, body)


class ChunkedUploadTests(SynchronousTestCase):
    """aws-chunked bodies as SDKs send them are stored byte for byte."""

    def setUp(self) -> None:
        self.gateway = refusals_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="chunked")
        self.url = f"{self.gateway.endpoint}/{self.bucket}/k"

    def test_signed_chunked_body_is_stored(self) -> None:
        """The encoder is right: the refusals in RefusedRequestTests are for their one fault only."""
        status, _headers, body = chunked_put(
            self.url, STREAMING_SIGNED, len(DATA), lambda s: encode_signed_chunks(s, CHUNKS)
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), DATA)

    def test_unsigned_trailer_with_right_crc32_is_stored(self) -> None:
        answer = chunked_put(
            self.url,
            STREAMING_UNSIGNED_TRAILER,
            len(DATA),
            lambda s: encode_unsigned_chunks(CHUNKS, [("x-amz-checksum-crc32", crc32_b64(DATA))]),
            CRC32_TRAILER,
        )
        self.assertEqual(answer[0], 200, answer[2])
        head = self.s3.head_object(Bucket=self.bucket, Key="k", ChecksumMode="ENABLED")
        self.assertEqual(head.get("ChecksumCRC32"), crc32_b64(DATA))

    def test_signed_trailer_is_stored(self) -> None:
        answer = chunked_put(
            self.url,
            STREAMING_SIGNED_TRAILER,
            len(DATA),
            lambda s: encode_signed_chunks(s, CHUNKS, [("x-amz-checksum-crc32", crc32_b64(DATA))]),
            CRC32_TRAILER,
        )
        self.assertEqual(answer[0], 200, answer[2])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), DATA)

    def test_signed_chunk_split_across_reads_is_stored_exactly(self) -> None:
        """
        A signed chunk that arrives in two reads, the second as long as the
        chunk itself, is stored as sent (not the bytes of that read).
        """
        chunks = [os.urandom(100), os.urandom(50)]
        data = b"".join(chunks)
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
        signed = sign_request("PUT", self.url, headers, payload=STREAMING_SIGNED)
        body = encode_signed_chunks(signed, chunks)
        first = body.index(b"\r\n") + 2 + 40  # the first chunk's header and 40 of its 100 bytes
        parts = [body[:first], body[first : first + 100], body[first + 100 :]]
        sent = dict(signed.headers, **{"content-length": str(len(body))})
        answer = send_in_parts(("127.0.0.1", self.gateway.port), "PUT", f"/{self.bucket}/k", sent, parts)
        status, error = parse_response(answer)
        if status == 200:
            stored = self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read()
            self.assertEqual(stored, data, "the stored object is not what was sent")
        else:
            self.fail(f"a valid signed body was refused: {status} {error!r}")

    def test_empty_body_with_trailer_arriving_after_the_headers(self) -> None:
        """
        An empty object sent aws-chunked with a CRC32 trailer (boto3 over
        https), its few body bytes arriving after the headers: the backend
        has nothing to wait for and answers first; the upload must still
        wait for the body, verify the trailer and succeed.
        """
        path = f"/{self.bucket}/empty"
        headers = {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "0",
            "x-amz-trailer": "x-amz-checksum-crc32",
        }
        signed = sign_request(
            "PUT", self.gateway.endpoint + path, headers, payload=STREAMING_UNSIGNED_TRAILER
        )
        body = encode_unsigned_chunks([], [("x-amz-checksum-crc32", crc32_b64(b""))])
        sent = dict(signed.headers, **{"content-length": str(len(body))})
        answer = send_in_parts(("127.0.0.1", self.gateway.port), "PUT", path, sent, [b"", body])
        status, error = parse_response(answer)
        self.assertEqual(status, 200, error)
        got = self.s3.get_object(Bucket=self.bucket, Key="empty")
        self.assertEqual((got["ContentLength"], got["Body"].read()), (0, b""))


# -- refused requests leave nothing behind --------------------------------------------


class RefusedRequestTests(SynchronousTestCase):
    """
    Each refused request gets its S3 error code, and no object, no store row
    and no backend copy remain.
    """

    def setUp(self) -> None:
        self.gateway = refusals_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="refused")
        self.url = f"{self.gateway.endpoint}/{self.bucket}/k"

    def assertRefused(self, answer: tuple[int, dict, bytes], status: int, code: str) -> None:
        got_status, _headers, body = answer
        self.assertEqual((got_status, s3_error(body)[0]), (status, code), body)
        self.assertNothingStored()

    def assertClientRefused(self, call, code: str, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            call(Bucket=self.bucket, Key="k", **kwargs)
        self.assertEqual(error_code(raised.exception), code)
        self.assertNothingStored()

    def assertNothingStored(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key="k")
        self.assertEqual(status_of(raised.exception), 404)
        assert_nothing_left(self.gateway, self.bucket)

    # credentials

    def test_wrong_secret_is_signature_does_not_match(self) -> None:
        wrong = self.gateway.client(ACCESS_KEY, "not-the-secret")
        self.assertClientRefused(wrong.put_object, "SignatureDoesNotMatch", Body=b"small")
        # Large enough for botocore to wait for 100 Continue.
        self.assertClientRefused(wrong.put_object, "SignatureDoesNotMatch", Body=os.urandom(2 * 1024 * KIB))

    def test_unknown_key_is_invalid_access_key_id(self) -> None:
        unknown = self.gateway.client("AKIDNOBODY", SECRET_KEY)
        self.assertClientRefused(unknown.put_object, "InvalidAccessKeyId", Body=os.urandom(10 * KIB))

    def test_no_signature_is_access_denied(self) -> None:
        self.assertRefused(send("PUT", self.url, {}, b"anonymous"), 403, "AccessDenied")

    # presigned URLs

    def presigned_put(self, **kwargs) -> str:
        return self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": "k"}, ExpiresIn=300, **kwargs
        )

    def test_tampered_presigned_url_is_refused(self) -> None:
        url = self.presigned_put()
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        other_key = parts._replace(path=parts.path.replace("/k", "/other")).geturl()
        longer = parts._replace(query=urllib.parse.urlencode({**query, "X-Amz-Expires": "3000"})).geturl()
        flipped = query["X-Amz-Signature"][:-1] + ("0" if query["X-Amz-Signature"][-1] != "0" else "1")
        forged = parts._replace(query=urllib.parse.urlencode({**query, "X-Amz-Signature": flipped})).geturl()
        for tampered in (longer, forged):
            self.assertRefused(http("PUT", tampered, b"tampered"), 403, "SignatureDoesNotMatch")
        status, _headers, body = http("PUT", other_key, b"tampered")
        self.assertEqual((status, s3_error(body)[0]), (403, "SignatureDoesNotMatch"))
        self.assertNothingStored()
        # The untouched URL works: the refusals were about the tampering.
        self.assertEqual(http("PUT", url, b"genuine")[0], 200)

    def test_expired_presigned_put_is_access_denied(self) -> None:
        with botocore_clock(-20):
            url = self.presigned_put()
        status, _headers, body = http("PUT", url, os.urandom(50 * KIB))
        self.assertEqual(s3_error(body), ("AccessDenied", "Request has expired"))
        self.assertEqual(status, 403)
        self.assertNothingStored()

    # clock skew

    def test_request_signed_20_minutes_ago_is_too_skewed(self) -> None:
        with self.assertRaises(ClientError) as raised, botocore_clock(-20):
            self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"late")
        self.assertEqual(error_code(raised.exception), "RequestTimeTooSkewed")
        self.assertNothingStored()

    def test_request_signed_20_minutes_ahead_is_too_skewed(self) -> None:
        ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20)
        signed = sign_request("PUT", self.url, payload=hashlib.sha256(b"early").hexdigest(), when=ahead)
        self.assertRefused(send("PUT", self.url, signed.headers, b"early"), 403, "RequestTimeTooSkewed")

    # bodies that do not match their digests

    def test_body_not_matching_content_sha256(self) -> None:
        body = os.urandom(64 * KIB)
        signed = sign_request("PUT", self.url, payload=hashlib.sha256(body[:-1]).hexdigest())
        self.assertRefused(send("PUT", self.url, signed.headers, body), 400, "XAmzContentSHA256Mismatch")

    def test_body_not_matching_content_md5(self) -> None:
        body = os.urandom(64 * KIB)
        signed = sign_request("PUT", self.url, {"content-md5": md5_b64(body[1:])})
        self.assertRefused(send("PUT", self.url, signed.headers, body), 400, "BadDigest")

    def test_body_not_matching_checksum_crc32_header(self) -> None:
        body = os.urandom(64 * KIB)
        signed = sign_request("PUT", self.url, {"x-amz-checksum-crc32": crc32_b64(body + b"!")})
        self.assertRefused(send("PUT", self.url, signed.headers, body), 400, "BadDigest")

    def test_boto3_checksum_crc32_not_matching(self) -> None:
        client = self.gateway.client(checksums="when_required")
        self.assertClientRefused(
            client.put_object, "BadDigest", Body=b"payload", ChecksumCRC32=crc32_b64(b"other")
        )

    # aws-chunked bodies

    def test_broken_chunk_signature_is_signature_does_not_match(self) -> None:
        def encode(signed):
            body = encode_signed_chunks(signed, CHUNKS)
            second = body.index(b";chunk-signature=", 64 * KIB) + len(b";chunk-signature=")
            flipped = b"0" if body[second : second + 1] != b"0" else b"1"
            return body[:second] + flipped + body[second + 1 :]

        answer = chunked_put(self.url, STREAMING_SIGNED, len(DATA), encode)
        self.assertRefused(answer, 403, "SignatureDoesNotMatch")

    def test_tampered_chunk_data_is_signature_does_not_match(self) -> None:
        def encode(signed):
            body = bytearray(encode_signed_chunks(signed, CHUNKS))
            body[100 * KIB] ^= 0xFF
            return bytes(body)

        answer = chunked_put(self.url, STREAMING_SIGNED, len(DATA), encode)
        self.assertRefused(answer, 403, "SignatureDoesNotMatch")

    def test_chunked_body_without_final_chunk_is_incomplete(self) -> None:
        final = len(b"0;chunk-signature=") + 64 + len(b"\r\n\r\n")
        answer = chunked_put(
            self.url, STREAMING_SIGNED, len(DATA), lambda s: encode_signed_chunks(s, CHUNKS), cut=final
        )
        self.assertRefused(answer, 400, "IncompleteBody")

    def test_chunked_body_cut_inside_a_chunk_is_incomplete(self) -> None:
        answer = chunked_put(
            self.url, STREAMING_SIGNED, len(DATA), lambda s: encode_signed_chunks(s, CHUNKS), cut=600
        )
        self.assertRefused(answer, 400, "IncompleteBody")

    def test_chunks_shorter_than_decoded_length_are_incomplete(self) -> None:
        answer = chunked_put(
            self.url, STREAMING_SIGNED, len(DATA) + 10, lambda s: encode_signed_chunks(s, CHUNKS)
        )
        self.assertRefused(answer, 400, "IncompleteBody")

    def test_unsigned_trailer_with_wrong_crc32_is_bad_digest(self) -> None:
        answer = chunked_put(
            self.url,
            STREAMING_UNSIGNED_TRAILER,
            len(DATA),
            lambda s: encode_unsigned_chunks(CHUNKS, [("x-amz-checksum-crc32", crc32_b64(b"not the data"))]),
            CRC32_TRAILER,
        )
        self.assertRefused(answer, 400, "BadDigest")

    def test_unsigned_trailer_missing_is_refused(self) -> None:
        answer = chunked_put(
            self.url,
            STREAMING_UNSIGNED_TRAILER,
            len(DATA),
            lambda s: encode_unsigned_chunks(CHUNKS),
            CRC32_TRAILER,
        )
        self.assertRefused(answer, 400, "InvalidRequest")

    def test_signed_trailer_with_forged_trailer_signature_is_refused(self) -> None:

        def encode(signed):
            body = encode_signed_chunks(signed, CHUNKS, [("x-amz-checksum-crc32", crc32_b64(DATA))])
            at = body.index(b"x-amz-trailer-signature:") + len(b"x-amz-trailer-signature:")
            flipped = b"0" if body[at : at + 1] != b"0" else b"1"
            return body[:at] + flipped + body[at + 1 :]

        answer = chunked_put(self.url, STREAMING_SIGNED_TRAILER, len(DATA), encode, CRC32_TRAILER)
        self.assertRefused(answer, 403, "SignatureDoesNotMatch")

    def test_signed_trailer_with_wrong_crc32_is_bad_digest(self) -> None:
        answer = chunked_put(
            self.url,
            STREAMING_SIGNED_TRAILER,
            len(DATA),
            lambda s: encode_signed_chunks(s, CHUNKS, [("x-amz-checksum-crc32", crc32_b64(b"nope"))]),
            CRC32_TRAILER,
        )
        self.assertRefused(answer, 400, "BadDigest")

    def test_error_before_the_body_is_in_is_answered_without_expect(self) -> None:
        """
        A PUT refused while its body is still arriving (here: no such
        bucket), from a client that did not ask for 100 Continue, gets its
        error once the body is in, not a dropped connection.
        """
        body = os.urandom(100 * KIB)
        path = f"/{unique_bucket_name('missing')}/k"
        signed = sign_request(
            "PUT",
            self.gateway.endpoint + path,
            {"content-length": str(len(body))},
            payload=hashlib.sha256(body).hexdigest(),
        )
        answer = send_in_parts(
            ("127.0.0.1", self.gateway.port), "PUT", path, signed.headers, [body[:KIB], body[KIB:]]
        )
        status, error = parse_response(answer)
        self.assertEqual(status, 404, answer or "the daemon closed the connection without answering")
        self.assertEqual(s3_error(error)[0], "NoSuchBucket")


class BackendHealthTests(SynchronousTestCase):
    """A client's bad upload says nothing about the backend's health."""

    def test_refused_uploads_do_not_mark_backends_down(self) -> None:
        gateway = health_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, prefix="health")
        wrong_md5 = md5_b64(b"something else")
        codes = []
        for index in range(8):
            with self.assertRaises(ClientError) as raised:
                s3.put_object(
                    Bucket=bucket, Key=f"bad-{index}", Body=os.urandom(20 * KIB), ContentMD5=wrong_md5
                )
            codes.append(error_code(raised.exception))
        health = gateway.daemon.health()
        down = {name: state["last_error"] for name, state in health["backends"].items() if not state["up"]}
        self.assertEqual(down, {}, "backends marked down by clients' bad uploads")
        self.assertEqual(codes, ["BadDigest"] * 8)
        s3.put_object(Bucket=bucket, Key="good", Body=b"still served")
        self.assertEqual(s3.get_object(Bucket=bucket, Key="good")["Body"].read(), b"still served")
