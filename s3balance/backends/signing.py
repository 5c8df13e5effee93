"""
Outgoing SigV4 for backend requests, with botocore's signer.

txaws would have been the Twisted-native choice, but its only PyPI release is
Python 2 code; botocore's signer is maintained, handles every S3 quirk of the
canonical request, and is pure computation, so it is safe to call on the
reactor thread.

Bodies are never hashed: we sign C{UNSIGNED-PAYLOAD} and always send a
Content-Length, which every S3 implementation accepts (AWS, MinIO, R2, B2,
OSS, SeaweedFS).  Hashing would need the whole body before the first byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class _UnsignedPayloadAuth(S3SigV4Auth):
    def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
        return False


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
        self._credentials = Credentials(access_key, secret_key)
        self._region = region or "us-east-1"
        self.bucket = bucket
        endpoint_url = endpoint_url.rstrip("/")
        scheme, _, hostport = endpoint_url.partition("://")
        if path_style:
            self._base = f"{endpoint_url}/{quote(bucket, safe='')}"
        else:
            self._base = f"{scheme}://{bucket}.{hostport}"

    def url(self, real_key: str | None = None, query: str = "") -> str:
        url = self._base + "/"
        if real_key:
            url += quote_key(real_key)
        if query:
            url += "?" + query
        return url

    def sign(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """
        Return C{headers} plus the authentication headers for this request.
        """
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        _UnsignedPayloadAuth(self._credentials, "s3", self._region).add_auth(request)
        return dict(request.headers.items())

    def presign(
        self,
        method: str,
        real_key: str,
        expires: int,
        query: str = "",
    ) -> str:
        """A presigned URL for C{real_key}; C{query} (already encoded) is signed too."""
        request = AWSRequest(method=method, url=self.url(real_key, query))
        S3SigV4QueryAuth(
            self._credentials, "s3", self._region, expires=expires
        ).add_auth(request)
        return str(request.url)
