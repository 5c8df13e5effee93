"""
L{S3Call}: one routed, authenticated S3 request, as the gateway hands it to
a handler (see L{s3balance.s3.gateway.Gateway.prepare}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import attr

from s3balance.errors import S3Error
from s3balance.s3.routing import STREAMING_BODY, Target

if TYPE_CHECKING:
    from s3balance.auth.sigv4 import AuthContext
    from s3balance.config.schema import Credential


@attr.s(frozen=True, auto_attribs=True)
class S3Call:
    """One routed, authenticated S3 request."""

    method: str
    target: Target
    operation: str
    query: dict[str, str]
    headers: dict[str, list[str]]  # lower-case name -> list of str values
    credential: Optional[Credential]
    auth: Optional[AuthContext]
    raw_path: bytes
    # Where the request came from (the connection's peer address; None when
    # not known) and whether it came over TLS: what bucket policies' aws:SourceIp
    # and aws:SecureTransport conditions compare.
    client: Optional[str] = None
    secure: bool = False

    @property
    def streaming(self) -> bool:
        return self.operation in STREAMING_BODY and "x-amz-copy-source" not in self.headers

    @property
    def bucket(self) -> str:
        assert self.target.bucket is not None
        return self.target.bucket

    @property
    def key(self) -> str:
        assert self.target.key is not None
        return self.target.key

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.headers.get(name)
        return values[0] if values else default

    def max_keys(self) -> int:
        """A listing's C{max-keys}: 1000 without one, at most 1000; InvalidArgument if not a count."""
        raw = self.query.get("max-keys", "1000")
        try:
            value = int(raw)
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer.", ArgumentName="max-keys") from None
        if value < 0:
            raise S3Error("InvalidArgument", "max-keys must not be negative.", ArgumentName="max-keys")
        return min(value, 1000)
