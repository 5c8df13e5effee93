"""
Verification of incoming AWS Signature Version 4 requests (service C{s3}).

Two mechanisms are handled: the C{Authorization} header and presigned query
authentication (C{X-Amz-Signature} in the query).  L{authenticate} is pure: it
looks only at the L{SigV4Request} it is given, the credential lookup and the
current time, and either returns an L{AuthContext}, returns C{None} (the
request carries no authentication at all), or raises L{S3Error}.

A signature vouches only for what it covers, so, as in S3, every C{x-amz-*}
header must be among the signed headers (C{x-amz-content-sha256} aside): one
added by whoever holds a presigned URL or a captured request is refused with
C{AccessDenied} naming it in C{HeadersNotSigned}.  The query is always
covered whole.

The body is not looked at here.  The L{AuthContext} says how the payload is
protected (C{payload_mode}) and carries what L{s3balance.auth.chunked} and
L{s3balance.auth.checksums} need to verify it while it streams.

The canonical forms and the signing key are in L{s3balance.auth.canonical};
the credential scope, signed headers and request time are read by
L{s3balance.auth.fields}.

Over 500 lines: the header, presigned and streaming (chunk) verifications
share the signing key and their errors, which S3 defines together.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs

from s3balance.auth.canonical import (
    canonical_headers,
    canonical_query,
    canonical_uris,
    parse_query,
    percent_decode,
    signing_key,
)
from s3balance.auth.fields import (
    format_amz_date,
    format_iso,
    header_value,
    parse_amz_date,
    parse_credential,
    parse_signed_headers,
    request_date,
    require_signed_amz_headers,
)
from s3balance.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 15 * 60
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}\Z")


class PayloadMode(enum.StrEnum):
    """How the request body is protected, as announced by C{x-amz-content-sha256}."""

    UNSIGNED = "UNSIGNED"
    SHA256 = "SHA256"
    STREAMING_SIGNED = "STREAMING_SIGNED"
    STREAMING_SIGNED_TRAILER = "STREAMING_SIGNED_TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING_UNSIGNED_TRAILER"
    PRESIGNED = "PRESIGNED"


_STREAMING_MODES = {
    STREAMING_SIGNED: PayloadMode.STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER: PayloadMode.STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER: PayloadMode.STREAMING_UNSIGNED_TRAILER,
}


class CredentialLike(Protocol):
    """What authentication needs of a credential (C{s3balance.config.Credential})."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...


CredentialLookup = Callable[[str], "CredentialLike | None"]


@attrs.frozen
class SigV4Request:
    """
    The parts of an HTTP request that SigV4 signs.

    @ivar raw_path: the path exactly as on the request line, without the query.
    @ivar raw_query: the query exactly as on the request line, without C{?}.
    @ivar headers: lower-case header names to the values as received.
    @ivar host_override: when set, used instead of the C{Host} header value
        for the canonical C{host} header (e.g. behind a proxy that rewrote it).
    """

    method: str
    raw_path: bytes
    raw_query: bytes
    headers: Mapping[str, Sequence[str]]
    host_override: str = ""


@attrs.frozen(repr=False)
class AuthContext:
    """
    The outcome of a successful authentication.

    @ivar credential: the credential that signed the request.
    @ivar payload_mode: a L{PayloadMode}.
    @ivar content_sha256: the hex SHA-256 of the body the client committed to,
        or C{None} when the body is not covered by a hex digest.
    @ivar signing_key: the derived SigV4 key (for chunk signatures).
    @ivar seed_signature: the request signature (the first link of the
        chunk signature chain).
    @ivar scope: C{yyyymmdd/region/s3/aws4_request}.
    @ivar amz_date: the request time as C{yyyymmddTHHMMSSZ}.
    @ivar region: the region the client signed for.
    @ivar signature_version: 4, or 2 for a request verified by
        L{s3balance.auth.sigv2} (which leaves C{signing_key}, C{scope} and
        C{region} empty: nothing chains on a SigV2 signature).
    """

    credential: CredentialLike
    payload_mode: PayloadMode
    content_sha256: str | None
    signing_key: bytes
    seed_signature: str
    scope: str
    amz_date: str
    region: str
    signature_version: int = 4

    def __repr__(self) -> str:
        # Never show the signing key (or the credential's secret).
        return (
            f"AuthContext(access_key={self.credential.access_key!r}, "
            f"signature_version={self.signature_version}, payload_mode={self.payload_mode!s}, "
            f"scope={self.scope!r}, amz_date={self.amz_date!r})"
        )


def authenticate(
    req: SigV4Request,
    lookup: CredentialLookup,
    now: float,
    region: str | None = None,
) -> AuthContext | None:
    """
    Verify the SigV4 signature of C{req}.

    @param lookup: maps an access key to its credential, or C{None}.
    @param now: the current POSIX time.
    @param region: the region clients must sign for; C{None} accepts any.
    @return: the L{AuthContext}, or C{None} when the request carries no
        authentication at all (the caller decides about anonymous access).
    @raise S3Error: the request carries authentication that is not valid.
    """
    query = parse_query(req.raw_query)
    names = {percent_decode(name) for name, _ in query}
    authorization = header_value(req.headers, "authorization")
    if authorization is not None and not authorization.strip():
        # An empty Authorization header authenticates nothing: anonymous, as on S3.
        authorization = None
    presigned = "X-Amz-Signature" in names or "X-Amz-Credential" in names
    if authorization is not None and presigned:
        raise only_one_mechanism()
    if authorization is not None:
        return _authenticate_header(req, query, authorization, lookup, now, region)
    if presigned or "X-Amz-Algorithm" in names:
        return _authenticate_presigned(req, query, lookup, now, region)
    if "Signature" in names and "AWSAccessKeyId" in names:
        raise unsupported_mechanism()
    return None


# -- header authentication ---------------------------------------------------


def _authenticate_header(
    req: SigV4Request,
    query: list[tuple[bytes, bytes]],
    authorization: str,
    lookup: CredentialLookup,
    now: float,
    region: str | None,
) -> AuthContext:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise unsupported_mechanism()
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name in fields:
            raise _header_malformed(f"the component {part.strip()!r} is malformed")
        fields[name] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise _header_malformed(f"missing {required}")

    amz_date, request_time = request_date(req.headers)
    if abs(now - request_time) > MAX_SKEW:
        raise S3Error(
            "RequestTimeTooSkewed",
            RequestTime=amz_date,
            ServerTime=format_amz_date(now),
            MaxAllowedSkewMilliseconds=str(MAX_SKEW * 1000),
        )
    access_key, scope, signed_region = parse_credential(
        fields["Credential"],
        amz_date,
        region,
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed",
    )
    signed_headers = parse_signed_headers(
        fields["SignedHeaders"],
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed",
    )

    content_sha256 = header_value(req.headers, "x-amz-content-sha256")
    if content_sha256 is None:
        # S3 insists on the header; we accept a client that left it out and
        # signed either UNSIGNED-PAYLOAD or (for an empty body) the empty hash.
        mode = PayloadMode.UNSIGNED
        payload_hashes = [UNSIGNED_PAYLOAD]
        if header_value(req.headers, "content-length") in (None, "0"):
            payload_hashes.append(EMPTY_SHA256)
    else:
        content_sha256 = content_sha256.strip()
        mode = announced_payload_mode(content_sha256)
        # The client signed the value as it sent it; we keep it lower-case.
        payload_hashes = [content_sha256]
        if mode is PayloadMode.SHA256:
            content_sha256 = content_sha256.lower()

    credential = _lookup(lookup, access_key)
    key = signing_key(credential.secret_key, scope.split("/", 1)[0], signed_region)
    provided = fields["Signature"]
    for payload_hash in payload_hashes:
        signature = _verify(
            req,
            query,
            signed_headers,
            payload_hash,
            amz_date,
            scope,
            key,
            provided,
            exclude_signature=False,
        )
        if signature is not None:
            if payload_hash == EMPTY_SHA256 and content_sha256 is None:
                mode, content_sha256 = PayloadMode.SHA256, EMPTY_SHA256
            break
    else:
        raise _signature_mismatch()
    require_signed_amz_headers(req.headers, signed_headers)
    return AuthContext(
        credential=credential,
        payload_mode=mode,
        content_sha256=content_sha256 if mode is PayloadMode.SHA256 else None,
        signing_key=key,
        seed_signature=signature,
        scope=scope,
        amz_date=amz_date,
        region=signed_region,
    )


def announced_payload_mode(value: str) -> PayloadMode:
    """The L{PayloadMode} an C{x-amz-content-sha256} value announces; refuses other values."""
    if value == UNSIGNED_PAYLOAD:
        return PayloadMode.UNSIGNED
    if value in _STREAMING_MODES:
        return _STREAMING_MODES[value]
    if _HEX_SHA256.match(value):
        return PayloadMode.SHA256
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
        raise S3Error("NotImplemented", "SigV4a streaming payloads are not supported.")
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        ArgumentName="x-amz-content-sha256",
        ArgumentValue=value,
    )


# -- presigned query authentication ------------------------------------------

_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


def _authenticate_presigned(
    req: SigV4Request,
    query: list[tuple[bytes, bytes]],
    lookup: CredentialLookup,
    now: float,
    region: str | None,
) -> AuthContext:
    params: dict[str, str] = {}
    for raw_name, raw_value in query:
        name = percent_decode(raw_name)
        if name in _PRESIGN_REQUIRED and name not in params:
            params[name] = percent_decode(raw_value)
    if any(name not in params for name in _PRESIGN_REQUIRED):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    amz_date = params["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = params["X-Amz-Expires"]
    digits = expires_text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise _query_error("X-Amz-Expires should be a number")
    if expires_text.startswith("-"):
        raise _query_error("X-Amz-Expires must be non-negative")
    expires = int(expires_text)
    if expires > MAX_PRESIGN_EXPIRES:
        raise _query_error("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    access_key, scope, signed_region = parse_credential(
        params["X-Amz-Credential"],
        amz_date,
        region,
        "AuthorizationQueryParametersError",
        "Error parsing the X-Amz-Credential parameter",
    )
    signed_headers = parse_signed_headers(
        params["X-Amz-SignedHeaders"],
        "AuthorizationQueryParametersError",
        "Error parsing the X-Amz-SignedHeaders parameter",
    )
    # A presigned URL is meant to be used later, so only a request from the
    # future is subject to the clock-skew rule.
    if request_time - now > MAX_SKEW:
        raise S3Error("AccessDenied", "Request is not valid yet")
    # A URL valid for zero seconds is expired at once, as on S3.
    if now > request_time + expires or expires == 0:
        expired = S3Error("AccessDenied", "Request has expired")
        expired.extra.update(
            {
                "X-Amz-Expires": expires_text,
                "Expires": format_iso(request_time + expires),
                "ServerTime": format_iso(now),
            }
        )
        raise expired

    content_sha256 = header_value(req.headers, "x-amz-content-sha256")
    mode = PayloadMode.PRESIGNED
    if content_sha256 is None:
        payload_hash = UNSIGNED_PAYLOAD
    else:
        payload_hash = content_sha256 = content_sha256.strip()
        announced = announced_payload_mode(content_sha256)
        if announced in _STREAMING_MODES.values():
            mode = announced
        if announced is PayloadMode.SHA256:
            content_sha256 = content_sha256.lower()
        else:
            content_sha256 = None

    credential = _lookup(lookup, access_key)
    key = signing_key(credential.secret_key, scope.split("/", 1)[0], signed_region)
    signature = _verify(
        req,
        query,
        signed_headers,
        payload_hash,
        amz_date,
        scope,
        key,
        params["X-Amz-Signature"],
        exclude_signature=True,
    )
    if signature is None:
        raise _signature_mismatch()
    require_signed_amz_headers(req.headers, signed_headers)
    return AuthContext(
        credential=credential,
        payload_mode=mode,
        content_sha256=content_sha256,
        signing_key=key,
        seed_signature=signature,
        scope=scope,
        amz_date=amz_date,
        region=signed_region,
    )


# -- verification ------------------------------------------------------------


def _lookup(lookup: CredentialLookup, access_key: str) -> CredentialLike:
    credential = lookup(access_key)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return credential


def _verify(
    req: SigV4Request,
    query: list[tuple[bytes, bytes]],
    signed_headers: list[str],
    payload_hash: str,
    amz_date: str,
    scope: str,
    key: bytes,
    provided: str,
    exclude_signature: bool,
) -> str | None:
    """
    Compute the signature over each canonical URI candidate.

    @return: the (matching) signature, or C{None} when none matched.
    """
    provided_bytes = provided.strip().lower().encode("utf-8", "replace")
    tail = b"\n".join(
        [
            canonical_query(query, exclude_signature),
            canonical_headers(req.headers, req.host_override, signed_headers),
            ";".join(signed_headers).encode("ascii"),
            payload_hash.encode("ascii", "replace"),
        ]
    )
    head = req.method.upper().encode("ascii", "replace")
    sts_prefix = f"{ALGORITHM}\n{amz_date}\n{scope}\n".encode("ascii", "replace")
    for uri in canonical_uris(req.raw_path):
        canonical_request = b"%s\n%s\n%s" % (head, uri, tail)
        string_to_sign = sts_prefix + hashlib.sha256(canonical_request).hexdigest().encode("ascii")
        signature = hmac.new(key, string_to_sign, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.encode("ascii"), provided_bytes):
            return signature
    return None


# -- errors ------------------------------------------------------------------


def _signature_mismatch() -> S3Error:
    return S3Error("SignatureDoesNotMatch")


def _header_malformed(detail: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}.")


def _query_error(message: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message)


def only_one_mechanism() -> S3Error:
    """A request that carries more than one signature (header and query, or SigV2 and SigV4)."""
    return S3Error(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
        "parameter, Signature query string parameter or the Authorization "
        "header should be specified",
        ArgumentName="Authorization",
    )


def unsupported_mechanism() -> S3Error:
    """A signature this endpoint does not verify (SigV2 when C{s3api.sigv2} is off, unknown schemes)."""
    return S3Error(
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )


__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "AuthContext",
    "CredentialLike",
    "CredentialLookup",
    "PayloadMode",
    "SigV4Request",
    "announced_payload_mode",
    "authenticate",
    "only_one_mechanism",
    "unsupported_mechanism",
]
