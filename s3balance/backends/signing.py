"""
Outgoing SigV4 for backend requests.

txaws would have been the Twisted-native choice, but its only PyPI release is
Python 2 code.  Presigned URLs (redirect mode) come from botocore's signer.
Request headers are signed by L{BackendSigner.sign}, which computes the same
signature as botocore's S3 signer (tests/test_backend_signing.py holds it to
that) with the day's signing key cached, because botocore's per-request
object building was a quarter of the daemon's CPU per small GET.  Both are
pure computation, safe on the reactor thread.

Bodies are never hashed: we sign C{UNSIGNED-PAYLOAD} and always send a
Content-Length, which every S3 implementation accepts (AWS, MinIO, R2, B2,
OSS, SeaweedFS).  Hashing would need the whole body before the first byte.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Optional
from urllib.parse import SplitResult, quote, urlsplit

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _signing_key(secret: str, day: str, region: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_host(parts: SplitResult) -> str:
    """The Host as clients send it: without the scheme's default port."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (parts.scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return host


def quote_key(key: str) -> str:
    """Percent-encode an object key for a URL path the way S3 SDKs do."""
    return quote(key, safe="/~")


class BackendSigner:
    """Signs requests for one real bucket; addresses it path- or virtual-host style."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
        path_style: bool,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region or "us-east-1"
        self._key_day = ""
        self._key = b""
        self.bucket = bucket
        endpoint_url = endpoint_url.rstrip("/")
        scheme, _, hostport = endpoint_url.partition("://")
        if path_style:
            self._base = f"{endpoint_url}/{quote(bucket, safe='')}"
        else:
            self._base = f"{scheme}://{bucket}.{hostport}"
        parts = urlsplit(self._base)
        self._host = _canonical_host(parts)
        default_port = 443 if parts.scheme == "https" else 80
        self._endpoint = (parts.scheme, parts.hostname or "", parts.port or default_port)
        self._path = parts.path.rstrip("/")

    def url(self, real_key: str | None = None, query: str = "") -> str:
        url = self._base + "/"
        if real_key:
            url += quote_key(real_key)
        if query:
            url += "?" + query
        return url

    @property
    def endpoint(self) -> tuple[str, str, int]:
        """(scheme, host, port) requests for this bucket connect to."""
        return self._endpoint

    @property
    def host(self) -> str:
        """The Host header (and signed host) of requests for this bucket."""
        return self._host

    def target(self, real_key: str | None = None, query: str = "") -> tuple[str, str]:
        """-> (path, query) of a request, as sent on the request line."""
        path = self._path + "/"
        if real_key:
            path += quote_key(real_key)
        return path, query

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], now: Optional[float] = None
    ) -> dict[str, str]:
        """
        Return C{headers} plus the authentication headers for a request to
        C{url} (which must be this signer's, see L{url}).
        """
        parts = urlsplit(url)
        return self.sign_request(method, parts.path or "/", parts.query, headers, now, _canonical_host(parts))

    def sign_request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        now: Optional[float] = None,
        host: Optional[str] = None,
    ) -> dict[str, str]:
        """
        Return C{headers} plus the authentication headers for a request of
        C{path} and C{query} (both already encoded, see L{target}).

        The same SigV4 as botocore's S3 signer (every header signed, the
        payload C{UNSIGNED-PAYLOAD}), computed directly with the day's signing
        key cached: botocore builds several objects per request, which cost
        ten times more on the hot path.  tests/test_backend_signing.py checks
        that both produce the same signature.

        Header values are signed as the bytes that go out: a value is a
        C{str} of the client's header bytes as latin-1 (how they were
        decoded), and the request head is encoded back to latin-1.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        day = stamp[:8]
        if self._key_day != day:
            self._key_day, self._key = day, _signing_key(self._secret_key, day, self._region)
        signed = dict(headers)
        signed["X-Amz-Date"] = stamp
        signed["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD
        canonical = {"host": self._host if host is None else host}
        for name, value in signed.items():
            canonical[name.lower()] = " ".join(str(value).split())
        names = sorted(canonical)
        pairs = sorted(tuple(pair.partition("=")[::2]) for pair in query.split("&")) if query else []
        canonical_request = "\n".join(
            (
                method,
                path,
                "&".join(f"{k}={v}" for k, v in pairs),
                "".join(f"{name}:{canonical[name]}\n" for name in names),
                ";".join(names),
                UNSIGNED_PAYLOAD,
            )
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical_request.encode('latin-1')).hexdigest()}"
        )
        signature = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return signed

    def presign(
        self,
        method: str,
        real_key: str,
        expires: int,
        query: str = "",
        headers: Optional[Mapping[str, str]] = None,
    ) -> str:
        """
        A presigned URL for C{real_key}; C{query} (already encoded) is signed
        too, and so are C{headers} (in C{X-Amz-SignedHeaders}): whoever uses
        the URL must send exactly those headers with those values.
        """
        # botocore is imported here, not with the module: only redirect mode
        # presigns, and importing it costs every daemon start 0.15 s of CPU.
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method=method, url=self.url(real_key, query), headers=dict(headers or {}))
        S3SigV4QueryAuth(
            Credentials(self._access_key, self._secret_key), "s3", self._region, expires=expires
        ).add_auth(request)
        return str(request.url)
