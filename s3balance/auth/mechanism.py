"""
Which signature a request carries, and its verification by the module of
that mechanism:

  - C{Authorization: AWS4-HMAC-SHA256 ...} or C{X-Amz-Signature} in the
    query: SigV4 (L{s3balance.auth.sigv4});
  - C{Authorization: AWS key:signature} or C{AWSAccessKeyId} / C{Signature}
    in the query: SigV2 (L{s3balance.auth.sigv2}), unless switched off
    (C{s3api.sigv2: false}), when it is refused as by an S3 region that only
    takes SigV4;
  - none of them: anonymous (C{None}).

A request that carries two (a header and a query signature, or SigV2 and
SigV4 parameters together) is refused with S3's C{InvalidArgument} "Only one
auth mechanism allowed": which of them was meant is not ours to guess.
"""

from __future__ import annotations

from collections.abc import Collection

from s3balance.auth import sigv2, sigv4
from s3balance.auth.canonical import parse_query, percent_decode
from s3balance.auth.fields import header_value
from s3balance.auth.sigv4 import (
    AuthContext,
    CredentialLookup,
    SigV4Request,
    only_one_mechanism,
    unsupported_mechanism,
)

_SIGV4_QUERY = frozenset({"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm"})
_SIGV2_QUERY = frozenset({"AWSAccessKeyId", "Signature"})


def authenticate(
    req: SigV4Request,
    lookup: CredentialLookup,
    now: float,
    *,
    virtual_bucket: str | None = None,
    sigv2_enabled: bool = True,
    operation_parameters: Collection[str] = (),
    region: str | None = None,
) -> AuthContext | None:
    """
    Verify the signature of C{req}, whichever mechanism it uses.

    @param virtual_bucket: the bucket the Host header names (virtual-host
        style), C{None} for path style (SigV2 signs C{/bucket/key} either way).
    @param sigv2_enabled: whether SigV2 is accepted (C{s3api.sigv2}).
    @param operation_parameters: query parameters that select the S3
        operation; SigV2 header authentication refuses one it did not sign.
    @param region: the region SigV4 clients must sign for; C{None} accepts any.
    @return: the L{AuthContext}, or C{None} for a request without
        authentication (the caller decides about anonymous access).
    @raise S3Error: the authentication is not valid, or not accepted.
    """
    names = {percent_decode(name) for name, _ in parse_query(req.raw_query)}
    authorization = header_value(req.headers, "authorization")
    if authorization is not None and not authorization.strip():
        # An empty Authorization header authenticates nothing: anonymous, as on S3.
        authorization = None
    v4_query = bool(names & _SIGV4_QUERY)
    v2_query = bool(names & _SIGV2_QUERY)
    if v2_query and (authorization is not None or v4_query):
        raise only_one_mechanism()
    if authorization is not None and sigv2.is_sigv2_header(authorization) and v4_query:
        raise only_one_mechanism()
    if v2_query or (authorization is not None and sigv2.is_sigv2_header(authorization)):
        if not sigv2_enabled:
            raise unsupported_mechanism()
        request = sigv2.SigV2Request(
            method=req.method,
            raw_path=req.raw_path,
            raw_query=req.raw_query,
            headers=req.headers,
            virtual_bucket=virtual_bucket,
        )
        return sigv2.authenticate(request, lookup, now, operation_parameters)
    return sigv4.authenticate(req, lookup, now, region)


__all__ = ["authenticate"]
