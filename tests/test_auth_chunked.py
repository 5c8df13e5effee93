"""
Tests for L{s3balance.auth.chunked}.

Signed streams come from a small encoder written here, first checked against
the worked examples of the Amazon S3 API reference ("Signature Calculations
for the Authorization Header: Transferring Payload in Multiple Chunks" and
"... Including Trailing Headers": 66560 bytes of C{a} in a 64 KiB and a 1 KiB
chunk).  Unsigned streams with trailing checksums come from botocore's own
C{AwsChunkedWrapper}.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Sequence

import attrs
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth.checksums import PayloadVerifier, checksum_b64
from s3balance.auth.chunked import MAX_LINE, AwsChunkedDecoder
from s3balance.auth.sigv4 import AuthContext, PayloadMode
from s3balance.errors import S3Error
from tests.signing import encode_chunks, encode_unsigned_chunks

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"

# From the published examples.
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNK_SIGNATURES = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
EXAMPLE_CHUNKS = [b"a" * 65536, b"a" * 1024]


@attrs.frozen
class FakeCredential:
    access_key: str
    secret_key: str = attrs.field(repr=False)


def signing_key(secret: str = SECRET_KEY) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in SCOPE.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def context(mode: PayloadMode, seed: str = SEED) -> AuthContext:
    return AuthContext(
        credential=FakeCredential("AKIAIOSFODNN7EXAMPLE", SECRET_KEY),
        payload_mode=mode,
        content_sha256=None,
        signing_key=signing_key(),
        seed_signature=seed,
        scope=SCOPE,
        amz_date=AMZ_DATE,
        region="us-east-1",
    )


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def encode_signed(
    ctx: AuthContext,
    chunks: Sequence[bytes],
    trailers: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """An aws-chunked body signed as the S3 documentation describes."""
    return encode_chunks(ctx.signing_key, ctx.amz_date, ctx.scope, ctx.seed_signature, chunks, trailers)


encode_unsigned = encode_unsigned_chunks


def decode(decoder: AwsChunkedDecoder, body: bytes, sizes: Sequence[int] = ()) -> bytes:
    out = []
    pos = 0
    for size in sizes:
        out.append(decoder.feed(body[pos : pos + size]))
        pos += size
    out.append(decoder.feed(body[pos:]))
    return b"".join(out)


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in sizes:
        if pos >= len(data):
            break
        chunks.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        chunks.append(data[pos:])
    return chunks


def published_body() -> bytes:
    return (
        b"10000;chunk-signature=%s\r\n%s\r\n400;chunk-signature=%s\r\n%s\r\n"
        b"0;chunk-signature=%s\r\n\r\n"
        % (
            CHUNK_SIGNATURES[0].encode(),
            EXAMPLE_CHUNKS[0],
            CHUNK_SIGNATURES[1].encode(),
            EXAMPLE_CHUNKS[1],
            CHUNK_SIGNATURES[2].encode(),
        )
    )


class PublishedExampleTests(SynchronousTestCase):
    def test_signed_stream(self) -> None:
        body = published_body()
        self.assertEqual(len(body), 66824)  # the published Content-Length
        decoder = AwsChunkedDecoder(context(PayloadMode.STREAMING_SIGNED))
        self.assertEqual(decode(decoder, body), b"a" * 66560)
        self.assertEqual(decoder.finish(), {})
        self.assertEqual(decoder.decoded_bytes, 66560)

    def test_encoder_reproduces_published_stream(self) -> None:
        self.assertEqual(
            encode_signed(context(PayloadMode.STREAMING_SIGNED), EXAMPLE_CHUNKS),
            published_body(),
        )

    def test_signed_trailer_stream(self) -> None:
        ctx = context(PayloadMode.STREAMING_SIGNED_TRAILER, seed=TRAILER_SEED)
        body = encode_signed(ctx, EXAMPLE_CHUNKS, [("x-amz-checksum-crc32c", "sOO8/Q==")])
        self.assertEqual(len(body), 66946)  # the published Content-Length
        for signature in [*TRAILER_CHUNK_SIGNATURES, TRAILER_SIGNATURE]:
            self.assertIn(signature.encode(), body)
        decoder = AwsChunkedDecoder(ctx, ["x-amz-checksum-crc32c"])
        self.assertEqual(decode(decoder, body, [1] * 200 + [9999] * 7), b"a" * 66560)
        self.assertEqual(decoder.finish(), {"x-amz-checksum-crc32c": "sOO8/Q=="})


class SignedStreamTests(SynchronousTestCase):
    ctx = context(PayloadMode.STREAMING_SIGNED)

    @settings(max_examples=60, deadline=None)
    @given(
        payload=st.binary(max_size=40000),
        chunk_sizes=st.lists(st.integers(1, 9000), max_size=10),
        feed_sizes=st.lists(st.integers(0, 5000), max_size=30),
    )
    def test_round_trip(self, payload: bytes, chunk_sizes: list[int], feed_sizes: list[int]) -> None:
        body = encode_signed(self.ctx, split(payload, chunk_sizes))
        decoder = AwsChunkedDecoder(self.ctx)
        self.assertEqual(decode(decoder, body, feed_sizes), payload)
        self.assertEqual(decoder.finish(), {})
        self.assertEqual(decoder.decoded_bytes, len(payload))

    def test_payload_streams_before_its_chunk_is_verified(self) -> None:
        """A signed chunk's bytes are released as they arrive: no whole chunk is held in memory."""
        body = encode_signed(self.ctx, [b"x" * 1000, b"y" * 10])
        decoder = AwsChunkedDecoder(self.ctx)
        header_end = body.index(b"\r\n") + 2
        self.assertEqual(decoder.feed(body[: header_end + 999]), b"x" * 999)
        self.assertEqual(decoder.feed(body[header_end + 999 : header_end + 1000]), b"x")
        self.assertEqual(decode(decoder, body[header_end + 1000 :]), b"y" * 10)

    def test_feed_completing_a_bad_chunk_raises(self) -> None:
        """The last byte of a chunk that does not verify is never released."""
        body = encode_signed(self.ctx, [b"x" * 1000, b"y" * 10])
        tampered = body.replace(b"x" * 1000, b"x" * 999 + b"X")
        decoder = AwsChunkedDecoder(self.ctx)
        header_end = body.index(b"\r\n") + 2
        self.assertEqual(decoder.feed(tampered[: header_end + 999]), b"x" * 999)
        error = self.assertRaises(S3Error, decoder.feed, tampered[header_end + 999 : header_end + 1000])
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_broken_chunk_signature(self) -> None:
        body = bytearray(encode_signed(self.ctx, [b"x" * 100, b"y" * 100]))
        second = body.index(b"chunk-signature=", 100) + len(b"chunk-signature=")
        body[second] = ord("0") if body[second] != ord("0") else ord("1")
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decode, decoder, bytes(body))
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_tampered_payload(self) -> None:
        body = encode_signed(self.ctx, [b"x" * 100])
        at = body.index(b"x")
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decoder.feed, body[:at] + b"X" + body[at + 1 :])
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_reordered_chunks(self) -> None:
        body = encode_signed(self.ctx, [b"first!", b"second"])
        first_end = body.index(b"\r\n", body.index(b"first!")) + 2
        second_end = body.index(b"\r\n", body.index(b"second")) + 2
        swapped = body[first_end:second_end] + body[:first_end] + body[second_end:]
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decoder.feed, swapped)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_dropped_final_chunk_signature(self) -> None:
        body = encode_signed(self.ctx, [b"data"])
        final = body.rindex(b"0;chunk-signature=")
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decoder.feed, body[:final] + b"0\r\n\r\n")
        self.assertEqual(error.code, "InvalidRequest")

    def test_every_truncation_is_incomplete(self) -> None:
        body = encode_signed(self.ctx, [b"abc" * 7, b"de"])
        for length in range(len(body)):
            decoder = AwsChunkedDecoder(self.ctx)
            decoder.feed(body[:length])
            error = self.assertRaises(S3Error, decoder.finish)
            self.assertEqual(error.code, "IncompleteBody", length)

    def test_oversize_chunk_refused(self) -> None:
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decoder.feed, b"1000001;chunk-signature=" + b"0" * 64 + b"\r\n")
        self.assertEqual(error.code, "InvalidRequest")

    def test_signed_trailer_tampered(self) -> None:
        ctx = context(PayloadMode.STREAMING_SIGNED_TRAILER)
        body = encode_signed(ctx, [b"hello"], [("x-amz-checksum-crc32", "NhCmhg==")])
        decoder = AwsChunkedDecoder(ctx, ["x-amz-checksum-crc32"])
        self.assertEqual(decode(decoder, body), b"hello")
        self.assertEqual(decoder.finish(), {"x-amz-checksum-crc32": "NhCmhg=="})
        bad = body.replace(b"NhCmhg==", b"AAAAAA==")
        decoder = AwsChunkedDecoder(ctx, ["x-amz-checksum-crc32"])
        error = self.assertRaises(S3Error, decode, decoder, bad)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_signed_trailer_without_signature(self) -> None:
        ctx = context(PayloadMode.STREAMING_SIGNED_TRAILER)
        body = encode_signed(ctx, [b"hello"], [("x-amz-checksum-crc32", "NhCmhg==")])
        start = body.index(b"x-amz-trailer-signature:")
        stripped = body[:start] + b"\r\n"
        decoder = AwsChunkedDecoder(ctx, ["x-amz-checksum-crc32"])
        error = self.assertRaises(S3Error, decode, decoder, stripped)
        self.assertEqual(error.code, "SignatureDoesNotMatch")
        # Signed streams must end with the CRLF.
        decoder = AwsChunkedDecoder(ctx, ["x-amz-checksum-crc32"])
        decoder.feed(body[:-2])
        self.assertEqual(self.assertRaises(S3Error, decoder.finish).code, "IncompleteBody")

    def test_trailer_in_stream_without_trailers(self) -> None:
        body = encode_signed(self.ctx, [b"hello"])[:-2] + b"x-amz-checksum-crc32:NhCmhg==\r\n\r\n"
        decoder = AwsChunkedDecoder(self.ctx, ["x-amz-checksum-crc32"])
        self.assertEqual(self.assertRaises(S3Error, decode, decoder, body).code, "InvalidRequest")


class UnsignedStreamTests(SynchronousTestCase):
    ctx = context(PayloadMode.STREAMING_UNSIGNED_TRAILER)

    @settings(max_examples=60, deadline=None)
    @given(
        payload=st.binary(max_size=40000),
        chunk_sizes=st.lists(st.integers(1, 9000), max_size=10),
        feed_sizes=st.lists(st.integers(0, 5000), max_size=30),
        anonymous=st.booleans(),
    )
    def test_round_trip(
        self, payload: bytes, chunk_sizes: list[int], feed_sizes: list[int], anonymous: bool
    ) -> None:
        value = checksum_b64("crc32", payload)
        body = encode_unsigned(split(payload, chunk_sizes), [("x-amz-checksum-crc32", value)])
        decoder = AwsChunkedDecoder(None if anonymous else self.ctx, ["x-amz-checksum-crc32"])
        self.assertEqual(decode(decoder, body, feed_sizes), payload)
        self.assertEqual(decoder.finish(), {"x-amz-checksum-crc32": value})

    def test_payload_released_as_it_arrives(self) -> None:
        decoder = AwsChunkedDecoder(self.ctx)
        self.assertEqual(decoder.feed(b"a\r\n01234"), b"01234")
        self.assertEqual(decoder.decoded_bytes, 5)
        self.assertEqual(decoder.feed(b"56789\r\n0\r\n\r\n"), b"56789")
        self.assertEqual(decoder.finish(), {})

    def test_botocore_streams(self) -> None:
        """botocore's aws-chunked bodies, with each checksum, decode and verify."""
        payload = bytes(range(256)) * 700
        for algorithm, checksum_cls in [
            ("crc32", Crc32Checksum),
            ("crc32c", CrtCrc32cChecksum),
            ("crc64nvme", CrtCrc64NvmeChecksum),
            ("sha1", Sha1Checksum),
            ("sha256", Sha256Checksum),
        ]:
            name = "x-amz-checksum-" + algorithm
            body = AwsChunkedWrapper(
                io.BytesIO(payload), checksum_cls=checksum_cls, checksum_name=name, chunk_size=65536
            ).read()
            headers = {"x-amz-trailer": [name], "x-amz-decoded-content-length": [str(len(payload))]}
            verifier = PayloadVerifier(headers, self.ctx)
            decoder = AwsChunkedDecoder(self.ctx, verifier.trailer_names)
            for at in range(0, len(body), 10000):
                verifier.update(decoder.feed(body[at : at + 10000]))
            trailers = decoder.finish()
            self.assertEqual(decoder.decoded_bytes, len(payload))
            verified = verifier.finish(trailers)
            self.assertEqual(verified, {algorithm: checksum_b64(algorithm, payload)})

    def test_botocore_stream_with_wrong_checksum(self) -> None:
        body = AwsChunkedWrapper(
            io.BytesIO(b"payload"), checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32"
        ).read()
        verifier = PayloadVerifier({"x-amz-trailer": ["x-amz-checksum-crc32"]}, self.ctx)
        decoder = AwsChunkedDecoder(self.ctx, verifier.trailer_names)
        verifier.update(decoder.feed(body.replace(b"payload", b"Payload")))
        error = self.assertRaises(S3Error, verifier.finish, decoder.finish())
        self.assertEqual(error.code, "BadDigest")

    def test_final_crlf_missing_at_eof(self) -> None:
        for body in (
            b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n",
            b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==",
        ):
            decoder = AwsChunkedDecoder(self.ctx, ["x-amz-checksum-crc32"])
            self.assertEqual(decoder.feed(body), b"abc")
            self.assertEqual(decoder.finish(), {"x-amz-checksum-crc32": "NSRBwg=="})

    def test_truncated_before_last_chunk(self) -> None:
        body = encode_unsigned([b"abc", b"def"])
        for length in range(body.index(b"0\r\n")):
            decoder = AwsChunkedDecoder(self.ctx)
            decoder.feed(body[:length])
            self.assertEqual(self.assertRaises(S3Error, decoder.finish).code, "IncompleteBody")

    def test_undeclared_trailer(self) -> None:
        decoder = AwsChunkedDecoder(self.ctx, ["x-amz-checksum-crc32"])
        error = self.assertRaises(S3Error, decoder.feed, b"0\r\nx-amz-checksum-sha1:AAAA\r\n\r\n")
        self.assertEqual(error.code, "InvalidRequest")

    def test_oversize_header_line(self) -> None:
        decoder = AwsChunkedDecoder(self.ctx)
        error = self.assertRaises(S3Error, decoder.feed, b"1;" + b"x" * MAX_LINE)
        self.assertEqual(error.code, "InvalidRequest")
        decoder = AwsChunkedDecoder(self.ctx)
        for _ in range(MAX_LINE // 100):
            decoder.feed(b"x" * 100)
        self.assertRaises(S3Error, decoder.feed, b"x" * 100)

    def test_malformed_framing(self) -> None:
        for body in (
            b"zz\r\n",  # not hex
            b"0x3\r\nabc\r\n",  # int() would accept it
            b"1_0\r\n",
            b" 3\r\nabc\r\n",
            b"3\nabc\r\n",  # bare LF
            b"3\r\nabcd\r\n",  # longer than declared
            b"3\r\nabc\r\n0\r\n\r\nextra",  # data after the end
            b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n",
        ):
            decoder = AwsChunkedDecoder(self.ctx, ["x-amz-checksum-crc32"])
            error = self.assertRaises(S3Error, decoder.feed, body)
            self.assertEqual(error.code, "InvalidRequest", body)

    def test_chunk_signature_ignored_when_unsigned(self) -> None:
        decoder = AwsChunkedDecoder(None)
        self.assertEqual(decoder.feed(b"3;chunk-signature=00\r\nabc\r\n0\r\n\r\n"), b"abc")
        self.assertEqual(decoder.finish(), {})
