"""
AWS Signature Version 4 as a client computes it, written out here so that
integration tests control every input botocore would choose for them: the
request time (clock skew), the host that is signed (a proxy's public name),
the payload hash (streaming modes), and aws-chunked bodies with their chunk
signatures (the encoder follows the worked examples of the S3 API reference,
like the one in tests/test_auth_chunked.py).

Also a raw HTTP sender that puts exactly these bytes on the wire.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import socket
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Optional
from urllib.parse import parse_qsl, quote, urlsplit

import attr

from tests.daemon import ACCESS_KEY, SECRET_KEY

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@attr.s(frozen=True, auto_attribs=True)
class Signed:
    """
    A signed request: the headers to send (without C{Host}, which the sender
    sets from where it connects) and what chunk signatures chain on.
    """

    headers: dict
    signature: str
    amz_date: str
    scope: str
    key: bytes = attr.ib(repr=False)


def signing_key(secret_key: str, date: str, region: str = "us-east-1") -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def sign_request(
    method: str,
    url: str,
    headers: Optional[Mapping[str, str]] = None,
    payload: str = UNSIGNED_PAYLOAD,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    when: Optional[datetime.datetime] = None,
    region: str = "us-east-1",
    host: Optional[str] = None,
) -> Signed:
    """
    Sign C{method url} with the Authorization header.

    Every header in C{headers} is signed, with C{host} (C{host} if given,
    else the URL's authority), C{x-amz-date} (C{when}, default now) and
    C{x-amz-content-sha256} (C{payload}).  The URL path must already be
    encoded as AWS encodes it (tests use plain keys).
    """
    parts = urlsplit(url)
    when = when or datetime.datetime.now(datetime.UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    values = {name.lower(): str(value).strip() for name, value in (headers or {}).items()}
    values["host"] = host or parts.netloc
    values["x-amz-date"] = amz_date
    values["x-amz-content-sha256"] = payload
    names = sorted(values)
    query = sorted(
        (_encode(name), _encode(value)) for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            "&".join(f"{name}={value}" for name, value in query),
            "".join(f"{name}:{values[name]}\n" for name in names),
            ";".join(names),
            payload,
        ]
    )
    string_to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = signing_key(secret_key, amz_date[:8], region)
    signature = _hmac_hex(key, string_to_sign)
    out = {name: value for name, value in values.items() if name != "host"}
    out["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return Signed(out, signature, amz_date, scope, key)


def encode_signed_chunks(
    signed: Signed,
    chunks: Sequence[bytes],
    trailers: Optional[Sequence[tuple[str, str]]] = None,
) -> bytes:
    """
    An aws-chunked body whose chunk signatures chain on C{signed.signature}
    (C{STREAMING-AWS4-HMAC-SHA256-PAYLOAD}, or C{...-TRAILER} with C{trailers}).
    """
    return encode_chunks(signed.key, signed.amz_date, signed.scope, signed.signature, chunks, trailers)


def encode_chunks(
    key: bytes,
    amz_date: str,
    scope: str,
    seed: str,
    chunks: Sequence[bytes],
    trailers: Optional[Sequence[tuple[str, str]]] = None,
) -> bytes:
    """An aws-chunked body signed as the S3 documentation describes, chained on C{seed}."""
    previous = seed
    out = []
    for chunk in [*chunks, b""]:
        previous = _hmac_hex(
            key,
            f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n"
            f"{EMPTY_SHA256}\n{hashlib.sha256(chunk).hexdigest()}",
        )
        out.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode()))
        if chunk:
            out.append(chunk + b"\r\n")
    if trailers is not None:
        text = "".join(f"{name}:{value}\n" for name, value in trailers)
        out.extend(f"{name}:{value}\r\n".encode() for name, value in trailers)
        signature = _hmac_hex(
            key,
            f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{previous}\n"
            f"{hashlib.sha256(text.encode()).hexdigest()}",
        )
        out.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)


def encode_unsigned_chunks(chunks: Sequence[bytes], trailers: Sequence[tuple[str, str]] = ()) -> bytes:
    """An aws-chunked body as botocore sends it with C{STREAMING-UNSIGNED-PAYLOAD-TRAILER}."""
    out = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk]
    out.append(b"0\r\n")
    out.extend(f"{name}:{value}\r\n".encode() for name, value in trailers)
    out.append(b"\r\n")
    return b"".join(out)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def send(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    connect_to: Optional[tuple[str, int]] = None,
    host: Optional[str] = None,
) -> tuple[int, dict, bytes]:
    """
    Send exactly C{body} with C{headers} (Content-Length is the body's unless
    given); C{Host} is C{host} or the URL's authority.  Connects to the URL's
    address unless C{connect_to} says otherwise.

    @return: (status, headers with lower-case names, body).
    """
    parts = urlsplit(url)
    address = connect_to or (parts.hostname, parts.port or 80)
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Host": host or parts.netloc}
        sent.update(headers)
        if not any(name.lower() == "content-length" for name in sent) and (body or method in ("PUT", "POST")):
            sent["Content-Length"] = str(len(body))
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def send_in_parts(
    address: tuple[str, int],
    method: str,
    path: str,
    headers: Mapping[str, str],
    parts: Sequence[bytes],
    pause: float = 0.3,
    timeout: float = 15.0,
) -> bytes:
    """
    Send a request whose body goes out in C{parts}, C{pause} seconds apart,
    so that the server reads each part separately (the first part travels
    with the request head).  Returns everything the server sent until it
    closed the connection or C{timeout} passed (b"" when it closed without
    answering).

    The pause is the point of the helper: it shapes how the bytes arrive.
    """
    connection = socket.create_connection(address, timeout=timeout)
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"{method} {path} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        connection.sendall(head.encode("latin-1") + b"\r\n" + (parts[0] if parts else b""))
        for part in parts[1:]:
            time.sleep(pause)
            connection.sendall(part)
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = connection.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            answer += data
            if _complete_response(answer):
                break
        return answer
    finally:
        connection.close()


def _complete_response(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    while separator and head.startswith(b"HTTP/1.1 100"):
        head, separator, body = body.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse_response(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a raw HTTP/1.1 response, skipping 100 Continue; (0, b"") for none."""
    head, _, body = data.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return 0, b""
    return int(head.split(b" ", 2)[1]), body
