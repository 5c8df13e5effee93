"""
Request bodies: how long the object data of a request is, and small bodies
(XML documents) read whole, decoded and verified like object data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from s3balance.auth.checksums import PayloadVerifier
from s3balance.auth.chunked import AwsChunkedDecoder
from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call
    from s3balance.s3.request import S3Request

STREAMING_MODES = frozenset(
    {"STREAMING_SIGNED", "STREAMING_SIGNED_TRAILER", "STREAMING_UNSIGNED_TRAILER"}
)


def trailer_names(call: S3Call) -> list[str]:
    return [t.strip().lower() for t in (call.header("x-amz-trailer") or "").split(",") if t.strip()]


def decoded_length(call: S3Call, length: Optional[int]) -> tuple[Optional[int], bool]:
    """
    The length of the object bytes, and whether the body is aws-chunked.
    """
    mode = getattr(call.auth, "payload_mode", None)
    encoding = (call.header("content-encoding") or "").lower()
    chunked = mode in STREAMING_MODES or "aws-chunked" in encoding
    if chunked:
        declared = call.header("x-amz-decoded-content-length")
        if declared is None:
            raise S3Error("MissingContentLength", "x-amz-decoded-content-length is required with aws-chunked bodies.")
        try:
            size = int(declared)
        except ValueError:
            raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number.") from None
        if size < 0:
            raise S3Error("InvalidArgument", "x-amz-decoded-content-length is negative.")
        return size, True
    return length, False



CHECKSUM_PREFIX = "x-amz-checksum-"


def small_body(request: S3Request, call: S3Call, object_checksums: bool = False) -> bytes:
    """
    The whole (small, already buffered) body of a request, aws-chunked
    framing removed, every digest and checksum the client sent verified.

    @param object_checksums: the request's C{x-amz-checksum-*} headers and
        trailers are the object's, not this body's (CompleteMultipartUpload:
        L{s3balance.s3.checksum_parts.object_checksums} checks them), so
        they are left out here; Content-MD5 and the SHA-256 still apply.
    """
    raw = request.content.getvalue() if request.content is not None else b""
    length, chunked = decoded_length(call, len(raw))
    trailers: dict[str, str] = {}
    if chunked:
        decoder = AwsChunkedDecoder(call.auth, trailer_names(call))
        data = decoder.feed(raw)
        trailers = decoder.finish()
        if len(data) != length:
            raise S3Error("IncompleteBody")
    else:
        data = raw
    headers = call.headers
    if object_checksums:
        trailers = {name: value for name, value in trailers.items() if not name.startswith(CHECKSUM_PREFIX)}
        headers = {name: values for name, values in headers.items() if not name.startswith(CHECKSUM_PREFIX)}
        headers.pop("x-amz-trailer", None)
    verifier = PayloadVerifier(headers, call.auth)
    verifier.update(data)
    verifier.finish(trailers)
    return data
