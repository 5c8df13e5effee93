"""
Incremental decoder for C{Content-Encoding: aws-chunked} request bodies.

The framing is::

    hex-size[;chunk-signature=<sig>]\\r\\n <payload> \\r\\n
    ...
    0[;chunk-signature=<sig>]\\r\\n
    [name:value\\r\\n ...]              (trailers, e.g. x-amz-checksum-crc32)
    [x-amz-trailer-signature:<sig>\\r\\n] (signed trailer mode)
    \\r\\n

For signed streams (C{STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]}) each
chunk signature chains on the previous one, starting from the request's seed
signature.  Payload bytes are released as soon as they arrive, signed or not,
while the chunk's hash is computed incrementally; a chunk whose signature does
not match fails the C{feed} that completes it.  Holding a whole chunk (up to
16 MiB) until it verified would cost that much memory per upload, so the
guarantee is the caller's: bytes released by C{feed} are I{unverified} until
C{finish} returned, and a caller that forwards them must hold back the last
bytes it received until then (L{s3balance.s3.streamed_body} does), so that nothing
downstream completes from a body that does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from s3balance.auth.sigv4 import EMPTY_SHA256, AuthContext, PayloadMode
from s3balance.errors import S3Error

MAX_LINE = 4096
MAX_SIGNED_CHUNK = 16 * 1024 * 1024
MAX_TRAILERS = 16
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}\Z")
_HEX_SIGNATURE = re.compile(rb"[0-9a-fA-F]{64}\Z")
_SIGNATURE_PREFIX = b"chunk-signature="

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class AwsChunkedDecoder:
    """
    Decode (and, for signed streams, verify) an aws-chunked body piece by piece.

    @param ctx: the request's L{AuthContext}; its C{payload_mode} says whether
        chunks are signed.  C{None} (anonymous) means unsigned.
    @param trailer_names: the trailers announced in C{x-amz-trailer}; any other
        trailer is refused.
    @ivar decoded_bytes: how many payload bytes were released so far (compare
        with C{x-amz-decoded-content-length}).

    Memory: one line buffer (at most L{MAX_LINE}) and the running hash of the
    current chunk; payload bytes are never held.
    """

    def __init__(self, ctx: AuthContext | None, trailer_names: Sequence[str] = ()) -> None:
        mode = ctx.payload_mode if ctx is not None else None
        self._signed = mode in (
            PayloadMode.STREAMING_SIGNED,
            PayloadMode.STREAMING_SIGNED_TRAILER,
        )
        self._signed_trailer = mode is PayloadMode.STREAMING_SIGNED_TRAILER
        self._trailers_allowed = mode is not PayloadMode.STREAMING_SIGNED
        self._declared = frozenset(name.strip().lower() for name in trailer_names)
        if self._signed:
            assert ctx is not None
            self._key = ctx.signing_key
            self._previous = ctx.seed_signature.encode("ascii")
            scope = f"{ctx.amz_date}\n{ctx.scope}\n".encode("ascii")
            self._chunk_prefix = b"AWS4-HMAC-SHA256-PAYLOAD\n" + scope
            self._trailer_prefix = b"AWS4-HMAC-SHA256-TRAILER\n" + scope
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._chunk_hash = hashlib.sha256()
        self._chunk_signature = b""
        self._trailers: dict[str, str] = {}
        self._trailer_text: list[bytes] = []
        self._trailer_signature: bytes | None = None
        self.decoded_bytes = 0

    @property
    def done(self) -> bool:
        """Whether the terminating empty line was received."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """
        Decode the next piece of the encoded body.

        @return: the payload bytes that became available (possibly empty),
            not verified yet (see the module docstring).
        @raise S3Error: on bad framing or a chunk signature that does not match.
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        view = memoryview(data)
        end = len(data)
        pos = 0
        out: list[bytes | memoryview] = []
        while pos < end:
            if self._state == _DATA:
                take = min(self._remaining, end - pos)
                piece = view[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._signed:
                    self._chunk_hash.update(piece)
                    if not self._remaining:
                        # Raises before this piece is released: the bytes of
                        # a chunk that does not verify never all get out.
                        self._verify_chunk()
                out.append(piece)
                self.decoded_bytes += take
                if not self._remaining:
                    self._state = _DATA_END
            elif self._state == _DONE:
                raise S3Error("InvalidRequest", "Unexpected data after the end of the aws-chunked body.")
            else:
                newline = data.find(b"\n", pos, pos + MAX_LINE + 1 - len(self._line))
                if newline < 0:
                    if len(self._line) + end - pos > MAX_LINE:
                        raise _framing("an aws-chunked line is too long")
                    self._line += view[pos:]
                    break
                self._line += view[pos : newline + 1]
                pos = newline + 1
                line = bytes(self._line)
                self._line.clear()
                if not line.endswith(b"\r\n"):
                    raise _framing("an aws-chunked line does not end with CRLF")
                self._line_received(line[:-2])
        if len(out) == 1:
            only = out[0]
            # The common case on the hot path: the whole piece was payload.
            return data if isinstance(only, memoryview) and len(only) == end else bytes(only)
        return b"".join(out)

    def finish(self) -> dict[str, str]:
        """
        Check that the body was complete.

        @return: the trailers, lower-case names to values (without the
            trailer signature).
        @raise S3Error: C{IncompleteBody} when the body ended early.
        """
        if self._state == _TRAILER and not self._signed:
            # Some SDKs end an unsigned trailer stream without the final CRLF
            # (or even without the CRLF of the last trailer line).
            if self._line:
                line = bytes(self._line)
                self._line.clear()
                self._line_received(line.removesuffix(b"\r"))
            self._state = _DONE
        if self._state != _DONE:
            raise S3Error("IncompleteBody", "The aws-chunked body ended before its last chunk.")
        return dict(self._trailers)

    def _line_received(self, line: bytes) -> None:
        if self._state == _HEADER:
            self._chunk_header(line)
        elif self._state == _DATA_END:
            if line:
                raise _framing("a chunk is longer than its declared size")
            self._state = _HEADER
        elif line:
            self._trailer_line(line)
        else:
            self._end_of_trailers()

    def _chunk_header(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        if not _HEX_SIZE.match(size_text):
            raise _framing("a chunk size is not a hexadecimal number")
        size = int(size_text, 16)
        if self._signed:
            signature = extension[len(_SIGNATURE_PREFIX) :]
            if not extension.startswith(_SIGNATURE_PREFIX) or not _HEX_SIGNATURE.match(signature):
                raise _framing("a chunk of a signed stream has no valid chunk-signature")
            if size > MAX_SIGNED_CHUNK:
                raise _framing("a signed chunk is larger than 16 MiB")
            self._chunk_signature = signature.lower()
            self._chunk_hash = hashlib.sha256()
        if size:
            self._remaining = size
            self._state = _DATA
            return
        if self._signed:
            self._verify_chunk()
        self._state = _TRAILER

    def _verify_chunk(self) -> None:
        string_to_sign = b"%s%s\n%s\n%s" % (
            self._chunk_prefix,
            self._previous,
            EMPTY_SHA256.encode("ascii"),
            self._chunk_hash.hexdigest().encode("ascii"),
        )
        expected = hmac.new(self._key, string_to_sign, hashlib.sha256).hexdigest()
        expected_bytes = expected.encode("ascii")
        if not hmac.compare_digest(expected_bytes, self._chunk_signature):
            raise S3Error(
                "SignatureDoesNotMatch",
                "The chunk signature we calculated does not match the signature you provided.",
            )
        self._previous = expected_bytes

    def _trailer_line(self, line: bytes) -> None:
        if self._trailer_signature is not None:
            raise _framing("a trailer follows the trailer signature")
        name_bytes, colon, value_bytes = line.partition(b":")
        if not colon:
            raise _framing("a trailer line has no ':'")
        try:
            name = name_bytes.decode("ascii").strip().lower()
            value = value_bytes.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _framing("a trailer is not ASCII") from None
        if name == TRAILER_SIGNATURE and self._signed_trailer:
            signature = value.encode("ascii")
            if not _HEX_SIGNATURE.match(signature):
                raise _framing("the trailer signature is malformed")
            self._trailer_signature = signature.lower()
            return
        if not self._trailers_allowed or name not in self._declared:
            raise S3Error("InvalidRequest", f"The trailer {name} was not announced in x-amz-trailer.")
        if name in self._trailers or len(self._trailers) >= MAX_TRAILERS:
            raise _framing(f"the trailer {name} is repeated")
        self._trailers[name] = value
        self._trailer_text.append(f"{name}:{value}\n".encode("ascii"))

    def _end_of_trailers(self) -> None:
        if self._signed_trailer:
            if self._trailer_signature is None:
                raise S3Error("SignatureDoesNotMatch", "The signed trailer has no x-amz-trailer-signature.")
            digest = hashlib.sha256(b"".join(self._trailer_text)).hexdigest()
            string_to_sign = b"%s%s\n%s" % (
                self._trailer_prefix,
                self._previous,
                digest.encode("ascii"),
            )
            expected = hmac.new(self._key, string_to_sign, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected.encode("ascii"), self._trailer_signature):
                raise S3Error(
                    "SignatureDoesNotMatch",
                    "The trailer signature we calculated does not match the signature you provided.",
                )
        self._state = _DONE


def _framing(detail: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {detail}.")


__all__ = ["AwsChunkedDecoder", "MAX_LINE", "MAX_SIGNED_CHUNK"]
