"""
L{s3balance.auth.chunked.AwsChunkedDecoder} gives the same payload however
the encoded body is cut into reads: every way of cutting a small signed
(and unsigned) body into two pieces, and into three around every chunk.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth.chunked import AwsChunkedDecoder
from s3balance.auth.sigv4 import AuthContext, PayloadMode
from tests.signing import (
    STREAMING_SIGNED,
    Signed,
    crc32_b64,
    encode_signed_chunks,
    encode_unsigned_chunks,
    sign_request,
)
from tests.test_auth_chunked import FakeCredential

CHUNKS = [os.urandom(40), os.urandom(25), os.urandom(7)]
DATA = b"".join(CHUNKS)


def context(signed: Signed, mode: PayloadMode) -> AuthContext:
    return AuthContext(
        credential=FakeCredential("AKID", "secret"),
        payload_mode=mode,
        content_sha256=None,
        signing_key=signed.key,
        seed_signature=signed.signature,
        scope=signed.scope,
        amz_date=signed.amz_date,
        region="us-east-1",
    )


def decode(ctx: AuthContext | None, pieces: list[bytes], trailers: list[str]) -> tuple[bytes, dict]:
    decoder = AwsChunkedDecoder(ctx, trailers)
    out = b"".join(bytes(decoder.feed(piece)) for piece in pieces)
    return out, decoder.finish()


def cuts(body: bytes, pieces: int, middle: int = 48):
    """
    Every way of cutting C{body} into two non-empty pieces, or into three
    whose middle piece is at most C{middle} bytes (longer than any chunk).
    """
    size = len(body)
    for first in range(1, size):
        if pieces == 2:
            yield [body[:first], body[first:]]
            continue
        for second in range(first + 1, min(size, first + middle + 1)):
            yield [body[:first], body[first:second], body[second:]]


class SplitReadTests(SynchronousTestCase):
    def assertEveryCutDecodes(self, ctx, body: bytes, trailers: list[str] = ()) -> None:
        wrong = []
        for pieces in (2, 3):
            for parts in cuts(body, pieces):
                out, _ = decode(ctx, parts, list(trailers))
                if out != DATA:
                    wrong.append([len(part) for part in parts])
        self.assertEqual(wrong[:5], [], f"{len(wrong)} ways of cutting the body decode to other bytes")

    def test_signed_body_any_cut(self) -> None:
        signed = sign_request("PUT", "http://h/b/k", payload=STREAMING_SIGNED)
        body = encode_signed_chunks(signed, CHUNKS)
        self.assertEveryCutDecodes(context(signed, PayloadMode.STREAMING_SIGNED), body)

    def test_signed_chunk_completed_by_a_read_of_its_own_length(self) -> None:
        """The read that completes a chunk is exactly as long as the chunk (and holds the next header)."""
        signed = sign_request("PUT", "http://h/b/k", payload=STREAMING_SIGNED)
        body = encode_signed_chunks(signed, CHUNKS)
        start = body.index(b"\r\n") + 2 + 10
        parts = [body[:start], body[start : start + len(CHUNKS[0])], body[start + len(CHUNKS[0]) :]]
        out, _ = decode(context(signed, PayloadMode.STREAMING_SIGNED), parts, [])
        self.assertEqual(out, DATA)

    def test_unsigned_trailer_body_any_cut(self) -> None:
        body = encode_unsigned_chunks(CHUNKS, [("x-amz-checksum-crc32", crc32_b64(DATA))])
        self.assertEveryCutDecodes(None, body, ["x-amz-checksum-crc32"])
