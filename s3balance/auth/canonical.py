"""
The byte-level parts of SigV4: the canonical forms of a request's path,
query and signed headers, the encoding AWS uses in them, and the derived
signing key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote_to_bytes

SERVICE = "s3"
TERMINATOR = "aws4_request"

# RFC 3986 unreserved characters, the only ones AWS leaves unencoded.
# A path of unreserved characters and slashes only is its own canonical form.
_PLAIN_PATH = re.compile(rb"[A-Za-z0-9\-_.~/]*\Z")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_ENCODED_BYTE = tuple(chr(b).encode("ascii") if b in _UNRESERVED else b"%%%02X" % b for b in range(256))


def canonical_uris(raw_path: bytes) -> list[bytes]:
    """
    The canonical URIs to try, most likely first.

    Clients sign the already-encoded path, but encode different characters
    (C{!'()*}, space, ...), so the path is first normalised to the AWS
    encoding; the path exactly as received is the fallback.
    """
    raw = raw_path or b"/"
    if _PLAIN_PATH.match(raw):
        return [raw]
    normalised = b"/".join(aws_encode(unquote_to_bytes(s)) for s in raw.split(b"/"))
    if normalised == raw:
        return [raw]
    return [normalised, raw]


def canonical_query(query: list[tuple[bytes, bytes]], exclude_signature: bool) -> bytes:
    pairs = []
    for name, value in query:
        encoded_name = aws_encode(unquote_to_bytes(name))
        if exclude_signature and encoded_name == b"X-Amz-Signature":
            continue
        pairs.append((encoded_name, aws_encode(unquote_to_bytes(value))))
    pairs.sort()
    return b"&".join(b"%s=%s" % pair for pair in pairs)


def canonical_headers(
    headers: Mapping[str, Sequence[str]], host_override: str, signed_headers: list[str]
) -> bytes:
    """The canonical header lines; a non-empty C{host_override} stands for the Host header."""
    lines = []
    for name in signed_headers:
        if name == "host" and host_override:
            values: Sequence[str] = [host_override]
        else:
            values = headers.get(name, ())
        value = ",".join(" ".join(v.split()) for v in values)
        # Header values are str of the received bytes as latin-1: sign those
        # bytes (UTF-8 metadata arrives, and is signed, as UTF-8 bytes).
        lines.append(f"{name}:{value}\n".encode("latin-1", "replace"))
    return b"".join(lines)


def parse_query(raw_query: bytes) -> list[tuple[bytes, bytes]]:
    """Split on C{&} and the first C{=}; names and values stay encoded."""
    pairs = []
    for piece in raw_query.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((name, value))
    return pairs


def aws_encode(data: bytes) -> bytes:
    """Percent-encode everything but the RFC 3986 unreserved characters."""
    encoded = _ENCODED_BYTE
    return b"".join([encoded[b] for b in data])


def percent_decode(value: bytes) -> str:
    return unquote_to_bytes(value).decode("utf-8", "replace")


@functools.lru_cache(maxsize=256)
def signing_key(secret_key: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, SERVICE, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


__all__ = [
    "SERVICE",
    "TERMINATOR",
    "aws_encode",
    "canonical_headers",
    "canonical_query",
    "canonical_uris",
    "parse_query",
    "percent_decode",
    "signing_key",
]
