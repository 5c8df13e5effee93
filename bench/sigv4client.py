"""
A lightweight S3 client for load generation: one keep-alive C{http.client}
connection, SigV4 header signing written out here (UNSIGNED-PAYLOAD, so the
body is never hashed), a signing key computed once per day, bodies sent from
a flat generator and responses read into one reused buffer.

It costs a few tens of microseconds of client CPU per request, where boto3
costs about a millisecond, so the numbers measure the servers rather than
the client.  Only the standard library is used: client worker processes
import nothing else.

    client = S3Client("http://127.0.0.1:8333", "ak", "sk")
    client.put("bucket", "key", FlatBody(4096))
    status, length = client.get("bucket", "key")
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Optional
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SERVICE = "s3"
BLOCK = 1 << 20

_block: Optional[bytes] = None


def data_block() -> bytes:
    """1 MiB of random bytes, made once per process (random: nothing compresses it)."""
    global _block
    if _block is None:
        _block = os.urandom(BLOCK)
    return _block


class FlatBody:
    """
    C{size} bytes produced from one 1 MiB block: memory stays flat whatever
    the size, and nothing is copied (memoryview slices of the same block).
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        view = memoryview(data_block())
        left = self.size
        while left > 0:
            n = min(left, BLOCK)
            yield view[:n]
            left -= n


class S3Error(Exception):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300].decode('utf-8', 'replace')}")


def aws_quote(text: str, safe: str = "") -> str:
    """Percent-encode all but RFC 3986's unreserved characters (and C{safe})."""
    return quote(text, safe="-_.~" + safe)


class Signer:
    """SigV4 header signing for one access key, region and service C{s3}."""

    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._day = ""
        self._key = b""
        self._second = -1
        self._amz_date = ""

    def signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = ("AWS4" + self.secret_key).encode()
            for part in (day, self.region, SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def amz_date(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        return self._amz_date

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str = "",
        headers: Optional[Mapping[str, str]] = None,
    ) -> dict[str, str]:
        """
        The headers to send (besides Host): C{x-amz-date},
        C{x-amz-content-sha256} and C{Authorization}, plus C{headers}, which
        are signed too.  C{path} and C{query} must already be encoded the way
        they go on the wire (query pairs sorted, see L{canonical_query}).
        """
        amz_date = self.amz_date()
        day = amz_date[:8]
        out = {"x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": amz_date}
        if headers:
            out.update({name.lower(): value for name, value in headers.items()})
        signed = {"host": host, **out}
        names = sorted(signed)
        canonical_headers = "".join(f"{name}:{' '.join(str(signed[name]).split())}\n" for name in names)
        signed_names = ";".join(names)
        canonical = f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\n{UNSIGNED_PAYLOAD}"
        scope = f"{day}/{self.region}/{SERVICE}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self.signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        out["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
        )
        return out


def canonical_query(params: Optional[Mapping[str, str]]) -> str:
    if not params:
        return ""
    pairs = sorted((aws_quote(str(k)), aws_quote(str(v))) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def object_path(bucket: str, key: str = "") -> str:
    path = "/" + aws_quote(bucket)
    if key:
        path += "/" + aws_quote(key, safe="/")
    return path


class S3Client:
    """
    One keep-alive connection to an S3 endpoint (path-style addressing).

    The request head is written by hand and sent with the body in one
    C{sendall} when the body is small (http.client sends them apart, which
    costs a syscall and a packet per request); the response is parsed by
    C{http.client.HTTPResponse}.  Not thread-safe: give every thread or
    process its own.  A kept-alive connection the server closed meanwhile is
    reopened once.
    """

    SMALL_BODY = 256 * 1024

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        timeout: float = 300.0,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http":
            raise ValueError(f"only http:// endpoints: {endpoint}")
        self.hostname = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        # What http.client would send as Host, and so what the server verifies.
        self.host = self.hostname if self.port == 80 else f"{self.hostname}:{self.port}"
        self.signer = Signer(access_key, secret_key, region)
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None
        self.buffer = bytearray(BLOCK)
        self.view = memoryview(self.buffer)

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection((self.hostname, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        return self.sock

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        params: Optional[Mapping[str, str]] = None,
        body: Optional[FlatBody | bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        keep_body: bool = True,
    ) -> tuple[int, Optional[bytes], int]:
        """
        -> (status, body or None, body length).  With C{keep_body=False} a 2xx
        body is read into the reused buffer and only counted.
        """
        path = object_path(bucket, key)
        query = canonical_query(params)
        signed = self.signer.sign(method, self.host, path, query, headers)
        target = path + ("?" + query if query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in signed.items()]
        length = len(body) if body is not None else 0
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (1, 2):
            reused = self.sock is not None
            sock = self.connect()
            try:
                if isinstance(body, FlatBody):
                    if length <= self.SMALL_BODY:
                        sock.sendall(head + b"".join(body))
                    else:
                        sock.sendall(head)
                        for piece in body:
                            sock.sendall(piece)
                elif body:
                    sock.sendall(head + bytes(body))
                else:
                    sock.sendall(head)
                response = http.client.HTTPResponse(sock, method=method)
                response.begin()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                # A kept-alive connection the server closed meanwhile: once more.
                if attempt == 1 and reused:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            break
        status = response.status
        if keep_body or status >= 300 or method == "HEAD":
            data = response.read()
            size = len(data)
        else:
            data = None
            size = 0
            view = self.view
            while True:
                n = response.readinto(view)
                if not n:
                    break
                size += n
        if response.will_close:
            self.close()
        response.close()
        return status, data, size

    # -- the operations the benchmarks use -----------------------------------

    def put(self, bucket: str, key: str, body: FlatBody | bytes) -> None:
        status, data, _ = self.request("PUT", bucket, key, body=body)
        if status != 200:
            raise S3Error("PUT", f"{bucket}/{key}", status, data or b"")

    def get(self, bucket: str, key: str, expected: Optional[int] = None) -> int:
        """GET and discard; -> the byte count (checked against C{expected})."""
        status, data, size = self.request("GET", bucket, key, keep_body=False)
        if status != 200:
            raise S3Error("GET", f"{bucket}/{key}", status, data or b"")
        if expected is not None and size != expected:
            raise S3Error("GET", f"{bucket}/{key}", status, f"got {size} of {expected} bytes".encode())
        return size

    def delete(self, bucket: str, key: str) -> None:
        status, data, _ = self.request("DELETE", bucket, key)
        if status not in (200, 204):
            raise S3Error("DELETE", f"{bucket}/{key}", status, data or b"")

    def create_bucket(self, bucket: str) -> None:
        status, data, _ = self.request("PUT", bucket)
        if status != 200 and b"BucketAlreadyOwnedByYou" not in (data or b""):
            raise S3Error("PUT", bucket, status, data or b"")

    def list_v2(self, bucket: str, **params: str) -> bytes:
        query = {"list-type": "2", **{k.replace("_", "-"): v for k, v in params.items()}}
        status, data, _ = self.request("GET", bucket, params=query)
        if status != 200:
            raise S3Error("GET", f"{bucket}?list-type=2", status, data or b"")
        return data or b""
