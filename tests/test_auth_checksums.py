"""Tests for L{s3balance.auth.checksums}."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import attrs
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth import checksums
from s3balance.auth.checksums import PayloadVerifier, checksum_b64, new_checksum
from s3balance.auth.sigv4 import PayloadMode
from s3balance.errors import S3Error

CHECK = b"123456789"
PAYLOAD = b"The quick brown fox jumps over the lazy dog" * 100


@attrs.frozen
class FakeContext:
    payload_mode: PayloadMode
    content_sha256: str | None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verify(headers: dict[str, list[str]], body: bytes = PAYLOAD, trailers=None, ctx=None, pieces: int = 3):
    verifier = PayloadVerifier(headers, ctx)
    step = max(1, len(body) // pieces)
    for at in range(0, len(body), step):
        verifier.update(body[at : at + step])
    return verifier.finish(trailers or {})


class KnownVectorTests(SynchronousTestCase):
    """The catalogued check values of each CRC ("123456789")."""

    def test_crc32(self) -> None:
        self.assertEqual(new_checksum_hex("crc32", CHECK), "cbf43926")

    def test_crc32c(self) -> None:
        self.assertEqual(new_checksum_hex("crc32c", CHECK), "e3069283")

    def test_crc64nvme(self) -> None:
        self.assertEqual(new_checksum_hex("crc64nvme", CHECK), "ae8b14860a799888")

    def test_sha(self) -> None:
        self.assertEqual(new_checksum_hex("sha1", CHECK), hashlib.sha1(CHECK).hexdigest())
        self.assertEqual(new_checksum_hex("sha256", CHECK), hashlib.sha256(CHECK).hexdigest())

    def test_base64_big_endian(self) -> None:
        self.assertEqual(checksum_b64("crc32", CHECK), b64(bytes.fromhex("cbf43926")))
        self.assertEqual(checksum_b64("crc32c", b"a" * 66560), "sOO8/Q==")  # AWS trailer example

    def test_pure_python_fallbacks(self) -> None:
        """The table-driven fallbacks agree with zlib/awscrt, across update boundaries."""
        crc32c = checksums._TableCrc(checksums._CRC32C_POLY, 32)
        crc64 = checksums._TableCrc(checksums._CRC64NVME_POLY, 64)
        for crc in (crc32c, crc64):
            crc.update(b"1234")
            crc.update(memoryview(b"56789"))
        self.assertEqual(crc32c.digest().hex(), "e3069283")
        self.assertEqual(crc64.digest().hex(), "ae8b14860a799888")
        data = os.urandom(100003)
        crc32c = checksums._TableCrc(checksums._CRC32C_POLY, 32)
        crc64 = checksums._TableCrc(checksums._CRC64NVME_POLY, 64)
        cuts = [0, 13, 50000, 50001, 100003]
        for start, end in zip(cuts, cuts[1:], strict=False):
            crc32c.update(data[start:end])
            crc64.update(data[start:end])
        self.assertEqual(int.from_bytes(crc32c.digest(), "big"), crt.crc32c(data))
        self.assertEqual(int.from_bytes(crc64.digest(), "big"), crt.crc64nvme(data))
        table_crc32 = checksums._TableCrc(0xEDB88320, 32)
        table_crc32.update(data)
        self.assertEqual(int.from_bytes(table_crc32.digest(), "big"), zlib.crc32(data))

    @settings(max_examples=50, deadline=None)
    @given(data=st.binary(max_size=3000), cut=st.integers(0, 3000))
    def test_incremental_matches_awscrt(self, data: bytes, cut: int) -> None:
        for algorithm, reference in (
            ("crc64nvme", crt.crc64nvme),
            ("crc32c", crt.crc32c),
            ("crc32", crt.crc32),
        ):
            digest = new_checksum(algorithm)
            digest.update(data[:cut])
            digest.update(data[cut:])
            self.assertEqual(int.from_bytes(digest.digest(), "big"), reference(data), algorithm)


def new_checksum_hex(algorithm: str, data: bytes) -> str:
    digest = new_checksum(algorithm)
    digest.update(data)
    return digest.digest().hex()


class ContentMD5Tests(SynchronousTestCase):
    def test_match(self) -> None:
        md5 = b64(hashlib.md5(PAYLOAD).digest())
        self.assertEqual(verify({"content-md5": [md5]}), {})

    def test_mismatch(self) -> None:
        md5 = b64(hashlib.md5(b"other").digest())
        error = self.assertRaises(S3Error, verify, {"content-md5": [md5]})
        self.assertEqual((error.code, error.status), ("BadDigest", 400))

    def test_malformed(self) -> None:
        for value in ("not base64!", b64(b"short"), b64(b"x" * 17), ""):
            error = self.assertRaises(S3Error, PayloadVerifier, {"content-md5": [value]}, None)
            self.assertEqual(error.code, "InvalidDigest", value)


class ContentSHA256Tests(SynchronousTestCase):
    def test_signed_hash_match(self) -> None:
        ctx = FakeContext(PayloadMode.SHA256, hashlib.sha256(PAYLOAD).hexdigest())
        self.assertEqual(verify({}, ctx=ctx), {})

    def test_signed_hash_mismatch(self) -> None:
        ctx = FakeContext(PayloadMode.SHA256, hashlib.sha256(b"x").hexdigest())
        error = self.assertRaises(S3Error, verify, {}, ctx=ctx)
        self.assertEqual(error.code, "XAmzContentSHA256Mismatch")

    def test_anonymous_header_checked(self) -> None:
        headers = {"x-amz-content-sha256": [hashlib.sha256(b"x").hexdigest()]}
        error = self.assertRaises(S3Error, verify, headers)
        self.assertEqual(error.code, "XAmzContentSHA256Mismatch")

    def test_not_computed_when_unsigned(self) -> None:
        verifier = PayloadVerifier({"x-amz-content-sha256": ["UNSIGNED-PAYLOAD"]}, None)
        self.assertEqual(verifier._digests, {})


class FlexibleChecksumTests(SynchronousTestCase):
    def test_each_header_verified(self) -> None:
        for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
            value = checksum_b64(algorithm, PAYLOAD)
            headers = {
                "x-amz-checksum-" + algorithm: [value],
                "x-amz-sdk-checksum-algorithm": [algorithm.upper()],
            }
            self.assertEqual(verify(headers), {algorithm: value})

    def test_each_header_mismatch(self) -> None:
        for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
            value = checksum_b64(algorithm, b"other")
            error = self.assertRaises(S3Error, verify, {"x-amz-checksum-" + algorithm: [value]})
            self.assertEqual(error.code, "BadDigest")
            self.assertEqual(
                error.message,
                f"The {algorithm.upper()} you specified did not match the calculated checksum.",
            )

    def test_each_trailer(self) -> None:
        for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
            name = "x-amz-checksum-" + algorithm
            headers = {"x-amz-trailer": [name]}
            value = checksum_b64(algorithm, PAYLOAD)
            self.assertEqual(verify(headers, trailers={name: value}), {algorithm: value})
            wrong = {name: checksum_b64(algorithm, b"")}
            self.assertEqual(self.assertRaises(S3Error, verify, headers, trailers=wrong).code, "BadDigest")

    def test_trailer_missing(self) -> None:
        error = self.assertRaises(S3Error, verify, {"x-amz-trailer": ["x-amz-checksum-crc32"]})
        self.assertEqual(error.code, "InvalidRequest")

    def test_unknown_algorithm(self) -> None:
        for headers in (
            {"x-amz-checksum-md4": ["AAAA"]},
            {"x-amz-trailer": ["x-amz-checksum-crc16"]},
            {"x-amz-trailer": ["x-amz-meta-foo"]},
        ):
            error = self.assertRaises(S3Error, PayloadVerifier, headers, None)
            self.assertEqual(error.code, "InvalidRequest", headers)

    def test_malformed_value(self) -> None:
        for value in ("!!!", b64(b"12345"), ""):
            error = self.assertRaises(S3Error, PayloadVerifier, {"x-amz-checksum-crc32": [value]}, None)
            self.assertEqual((error.code, error.status), ("BadDigest", 400), value)
        verifier = PayloadVerifier({"x-amz-trailer": ["x-amz-checksum-crc32"]}, None)
        error = self.assertRaises(S3Error, verifier.finish, {"x-amz-checksum-crc32": "zzz"})
        self.assertEqual(error.code, "BadDigest")

    def test_multiple_algorithms_refused(self) -> None:
        headers = {
            "x-amz-checksum-crc32": [checksum_b64("crc32", PAYLOAD)],
            "x-amz-checksum-sha1": [checksum_b64("sha1", PAYLOAD)],
        }
        self.assertEqual(self.assertRaises(S3Error, PayloadVerifier, headers, None).code, "InvalidRequest")

    def test_non_checksum_headers_ignored(self) -> None:
        headers = {
            "x-amz-checksum-algorithm": ["CRC32"],
            "x-amz-checksum-type": ["FULL_OBJECT"],
            "x-amz-checksum-mode": ["ENABLED"],
        }
        self.assertEqual(verify(headers), {})

    def test_md5_not_returned_and_combined(self) -> None:
        headers = {
            "content-md5": [b64(hashlib.md5(PAYLOAD).digest())],
            "x-amz-checksum-crc32c": [checksum_b64("crc32c", PAYLOAD)],
        }
        ctx = FakeContext(PayloadMode.SHA256, hashlib.sha256(PAYLOAD).hexdigest())
        self.assertEqual(verify(headers, ctx=ctx), {"crc32c": checksum_b64("crc32c", PAYLOAD)})

    def test_only_requested_digests_computed(self) -> None:
        verifier = PayloadVerifier({"x-amz-checksum-crc32": [checksum_b64("crc32", b"")]}, None)
        self.assertEqual(list(verifier._digests), ["crc32"])

    def test_empty_body(self) -> None:
        headers = {"x-amz-checksum-crc64nvme": [checksum_b64("crc64nvme", b"")]}
        self.assertEqual(verify(headers, body=b""), {"crc64nvme": "AAAAAAAAAAA="})
