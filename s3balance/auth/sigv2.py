"""
Verification of incoming AWS Signature Version 2 requests, as S3 defines
them ("Signing and authenticating REST requests"): the C{Authorization: AWS
<AccessKeyId>:<Signature>} header and query authentication
(C{AWSAccessKeyId}, C{Expires}, C{Signature}), an HMAC-SHA1 in base64 of::

    Method \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders CanonicalizedResource

L{authenticate} is pure like L{s3balance.auth.sigv4.authenticate}: it looks
only at the request, the credential lookup and the current time, and returns
the same L{AuthContext} (C{signature_version} 2) or raises L{S3Error}.

What a SigV2 signature covers, and what s3balance does about the rest:

  - every C{x-amz-*} header is in the string to sign, so the rule that every
    C{x-amz-*} header must be signed holds by construction;
  - of the query, only the signed sub-resources (L{SIGNED_SUBRESOURCES}).
    Header authentication accepts other parameters unsigned, as S3 does,
    except the ones the caller names in C{operation_parameters} (those that
    select the S3 operation): one of those outside the signature is refused,
    since it would turn a captured request into another operation.  Query
    authentication (a presigned URL, handed to someone else) refuses every
    parameter the signature does not cover, so that nobody can edit a
    shared URL (C{prefix=public/} into C{prefix=private/});
  - the body not at all: C{Content-MD5} (signed when present) and a hex
    C{x-amz-content-sha256} are verified while it streams, as for SigV4.

The request's C{x-amz-*} query parameters of query authentication are the
presigner's headers (botocore moves them into the URL) and are signed as
such; the caller hoists them into the headers once the signature verified
(see L{s3balance.s3.gateway.with_presigned_headers}).

Over 500 lines: header, query and POST-policy signatures share the one
canonical string and its sub-resource rules, which must not drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

import attrs

from s3balance.auth.fields import format_amz_date, format_iso, header_value, parse_amz_date
from s3balance.auth.sigv4 import (
    MAX_SKEW,
    AuthContext,
    CredentialLike,
    CredentialLookup,
    PayloadMode,
    announced_payload_mode,
)
from s3balance.errors import S3Error

SCHEME = "AWS"

# The query parameters that are part of the CanonicalizedResource: the
# sub-resources of S3's reference, the response-* overrides, and the newer
# ones clients sign (botocore's HmacV1Auth, minio-go).  A client that signs a
# parameter this list lacks (or the reverse) gets SignatureDoesNotMatch, so
# it is the union of theirs.
SIGNED_SUBRESOURCES = frozenset(
    """accelerate acl analytics cors defaultObjectAcl delete encryption
    intelligent-tiering inventory legal-hold lifecycle location logging metrics
    notification object-lock ownershipControls partNumber policy
    publicAccessBlock replication requestPayment restore retention select
    select-type storageClass tagging torrent uploadId uploads versionId
    versioning versions website response-cache-control
    response-content-disposition response-content-encoding
    response-content-language response-content-type response-expires""".split()
)

# The parameters of query authentication itself.
QUERY_AUTH_PARAMETERS = ("AWSAccessKeyId", "Expires", "Signature")

# Seconds since the epoch; more digits than this are no date (and int() of
# thousands of digits is slow, then refused).
_DIGITS = re.compile(r"[0-9]{1,18}\Z")
_BUCKET_ONLY = re.compile(rb"/[^/]+\Z")


@attrs.frozen
class SigV2Request:
    """
    The parts of an HTTP request that SigV2 signs.

    @ivar raw_path: the path exactly as on the request line, without the query.
    @ivar raw_query: the query exactly as on the request line, without C{?}.
    @ivar headers: lower-case header names to the values as received (the
        str of the received bytes as latin-1).
    @ivar virtual_bucket: the bucket the Host header names (virtual-host
        style), or C{None} for a path-style request: the CanonicalizedResource
        starts with C{/bucket} either way.
    """

    method: str
    raw_path: bytes
    raw_query: bytes
    headers: Mapping[str, Sequence[str]]
    virtual_bucket: str | None = None


def is_sigv2_header(authorization: str) -> bool:
    """Whether an C{Authorization} value is of the SigV2 scheme (C{AWS key:signature})."""
    return authorization.strip().split(" ", 1)[0] == SCHEME


def authenticate(
    req: SigV2Request,
    lookup: CredentialLookup,
    now: float,
    operation_parameters: Collection[str] = (),
) -> AuthContext:
    """
    Verify the SigV2 signature of C{req}, from its C{Authorization} header
    if it has one, else from its query.

    @param lookup: maps an access key to its credential, or C{None}.
    @param now: the current POSIX time.
    @param operation_parameters: query parameter names that select the S3
        operation; header authentication refuses one that is not signed.
    @raise S3Error: the authentication is not valid.
    """
    query = _Query.parse(req.raw_query)
    authorization = header_value(req.headers, "authorization")
    if authorization is not None:
        return _authenticate_header(req, query, authorization, lookup, now, operation_parameters)
    return _authenticate_query(req, query, lookup, now)


# -- the query ---------------------------------------------------------------


def _decode(raw: bytes) -> bytes:
    """A query name or value as the server reads it (C{+} is a space, as for routing)."""
    return unquote_to_bytes(raw.replace(b"+", b" "))


@attrs.frozen
class _Parameter:
    name: str
    value: bytes
    has_value: bool  # "name=" rather than "name"


@attrs.frozen
class _Query:
    parameters: tuple[_Parameter, ...]

    @classmethod
    def parse(cls, raw_query: bytes) -> _Query:
        parameters = []
        for piece in raw_query.split(b"&"):
            if piece:
                raw_name, equals, raw_value = piece.partition(b"=")
                name = _decode(raw_name).decode("utf-8", "replace")
                parameters.append(_Parameter(name, _decode(raw_value), bool(equals)))
        return cls(tuple(parameters))

    def first(self, name: str) -> str | None:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter.value.decode("utf-8", "replace")
        return None

    def names(self) -> set[str]:
        return {parameter.name for parameter in self.parameters}


def _subresource_candidates(query: _Query) -> list[bytes]:
    """
    The signed sub-resources as C{?a&b=v}, sorted by name (stable), values
    decoded (S3: "when signing, you do not encode these values").  A
    sub-resource sent as C{name=} is signed as sent by botocore and as the
    bare name by others (minio-go, SeaweedFS): both are tried.
    """
    signed = sorted(
        (p for p in query.parameters if p.name in SIGNED_SUBRESOURCES),
        key=lambda p: p.name,
    )
    if not signed:
        return [b""]
    for parameter in signed:
        _refuse_smuggled_subresource(parameter)
    as_sent = b"?" + b"&".join(_render(p, bare_when_empty=False) for p in signed)
    bare = b"?" + b"&".join(_render(p, bare_when_empty=True) for p in signed)
    return [as_sent] if bare == as_sent else [as_sent, bare]


def _refuse_smuggled_subresource(parameter: _Parameter) -> None:
    """
    Values are signed decoded and joined with C{&}, so C{partNumber=1&uploadId=U}
    and C{partNumber=1%26uploadId%3DU} (one parameter) have the same string
    to sign but not the same meaning: a value that holds another signed
    sub-resource is refused rather than read as the signer did not mean it.
    """
    for piece in parameter.value.split(b"&")[1:]:
        name = piece.partition(b"=")[0].decode("utf-8", "replace")
        if name in SIGNED_SUBRESOURCES:
            raise S3Error(
                "InvalidArgument",
                f"The value of {parameter.name} holds the sub-resource {name}: send it as a parameter of its own.",
                ArgumentName=parameter.name,
                ArgumentValue=parameter.value.decode("utf-8", "replace"),
            )


def _render(parameter: _Parameter, bare_when_empty: bool) -> bytes:
    name = parameter.name.encode("utf-8")
    if not parameter.has_value or (bare_when_empty and not parameter.value):
        return name
    return name + b"=" + parameter.value


def _path_candidates(req: SigV2Request) -> list[bytes]:
    """
    The path part of the CanonicalizedResource: C{/bucket} (from the Host
    of a virtual-host request) and the path as received, encoding and all.
    A bucket addressed path style without a trailing slash (C{/bucket}) is
    signed as C{/bucket/} by botocore and as received by others.
    """
    raw = req.raw_path or b"/"
    if req.virtual_bucket is not None:
        return [b"/" + req.virtual_bucket.encode("utf-8") + raw]
    if _BUCKET_ONLY.match(raw):
        return [raw + b"/", raw]
    return [raw]


# -- the string to sign ------------------------------------------------------


def _header_bytes(headers: Mapping[str, Sequence[str]], name: str) -> bytes:
    value = header_value(headers, name)
    return value.strip().encode("latin-1", "replace") if value is not None else b""


def _amz_headers(amz: Mapping[str, Sequence[bytes]]) -> bytes:
    """CanonicalizedAmzHeaders: sorted lower-case names, values trimmed and joined by commas."""
    return b"".join(
        name.encode("latin-1", "replace") + b":" + b",".join(v.strip() for v in amz[name]) + b"\n"
        for name in sorted(amz)
    )


def _received_amz_headers(headers: Mapping[str, Sequence[str]]) -> dict[str, list[bytes]]:
    return {
        name: [value.encode("latin-1", "replace") for value in values]
        for name, values in headers.items()
        if name.startswith("x-amz-")
    }


def _strings_to_sign(req: SigV2Request, query: _Query, date: bytes, amz: Mapping[str, Sequence[bytes]]) -> list[bytes]:
    head = b"%s\n%s\n%s\n%s\n%s" % (
        req.method.upper().encode("ascii", "replace"),
        _header_bytes(req.headers, "content-md5"),
        _header_bytes(req.headers, "content-type"),
        date,
        _amz_headers(amz),
    )
    return [head + path + sub for path in _path_candidates(req) for sub in _subresource_candidates(query)]


def _verify(strings: list[bytes], secret_key: str, provided: str) -> bool:
    try:
        provided_digest = base64.b64decode(provided.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    key = secret_key.encode("utf-8")
    # Every candidate is computed (no early exit): the time taken does not
    # tell which form matched.
    matched = False
    for string in strings:
        digest = hmac.new(key, string, hashlib.sha1).digest()
        matched |= hmac.compare_digest(digest, provided_digest)
    return matched


# -- header authentication ---------------------------------------------------


def _authenticate_header(
    req: SigV2Request,
    query: _Query,
    authorization: str,
    lookup: CredentialLookup,
    now: float,
    operation_parameters: Collection[str],
) -> AuthContext:
    value = authorization.strip()
    _, _, rest = value.partition(" ")
    access_key, colon, provided = rest.strip().partition(":")
    if not colon or not access_key or not provided or ":" in provided:
        raise S3Error(
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            ArgumentName="Authorization",
            ArgumentValue=authorization,
        )
    amz_date = header_value(req.headers, "x-amz-date")
    if amz_date is not None:
        # x-amz-date stands for Date (for clients that cannot set Date); it
        # is signed among the x-amz-* headers, and Date's line stays empty.
        stated, date_line = amz_date.strip(), b""
    else:
        date = header_value(req.headers, "date")
        if date is None:
            raise _invalid_date()
        stated = date.strip()
        date_line = stated.encode("latin-1", "replace")
    request_time = _parse_http_date(stated)
    if request_time is None:
        raise _invalid_date()
    if abs(now - request_time) > MAX_SKEW:
        raise S3Error(
            "RequestTimeTooSkewed",
            RequestTime=stated,
            ServerTime=format_iso(now),
            MaxAllowedSkewMilliseconds=str(MAX_SKEW * 1000),
        )
    credential = _lookup(lookup, access_key)
    mode, content_sha256 = _payload(req.headers, PayloadMode.UNSIGNED)
    strings = _strings_to_sign(req, query, date_line, _received_amz_headers(req.headers))
    if not _verify(strings, credential.secret_key, provided):
        raise _signature_mismatch(access_key, strings[0], provided)
    unsigned = sorted(
        {p.name for p in query.parameters if p.name in operation_parameters and p.name not in SIGNED_SUBRESOURCES}
    )
    if unsigned:
        raise _not_signed(unsigned)
    return _context(credential, mode, content_sha256, provided, request_time)


# -- query authentication ----------------------------------------------------


def _authenticate_query(
    req: SigV2Request,
    query: _Query,
    lookup: CredentialLookup,
    now: float,
) -> AuthContext:
    access_key = query.first("AWSAccessKeyId")
    expires_text = query.first("Expires")
    provided = query.first("Signature")
    if not access_key or not expires_text or not provided:
        raise S3Error(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        )
    # Base64 has no spaces: a '+' left unencoded in the URL was read as one.
    provided = provided.replace(" ", "+")
    if not _DIGITS.match(expires_text):
        raise S3Error("AccessDenied", f"Invalid date (should be seconds since epoch): {expires_text}")
    expires = int(expires_text)
    if now > expires:
        expired = S3Error("AccessDenied", "Request has expired")
        expired.extra.update({"Expires": format_iso(expires), "ServerTime": format_iso(now)})
        raise expired
    credential = _lookup(lookup, access_key)
    mode, content_sha256 = _payload(req.headers, PayloadMode.PRESIGNED)
    amz = _received_amz_headers(req.headers)
    _add_query_amz_headers(query, amz)
    strings = _strings_to_sign(req, query, expires_text.encode("ascii"), amz)
    if not _verify(strings, credential.secret_key, provided):
        raise _signature_mismatch(access_key, strings[0], provided)
    unsigned = sorted({name for name in query.names() if not _covered_in_query(name, query, req.headers)})
    if unsigned:
        raise _not_signed(unsigned)
    return _context(credential, mode, content_sha256, provided, now)


def _add_query_amz_headers(query: _Query, amz: dict[str, list[bytes]]) -> None:
    """
    Sign the C{x-amz-*} query parameters as the headers they stand for.  One
    given twice in the query, or also as a header with another value, is
    refused: which one the signer meant is not ours to guess.
    """
    seen: set[str] = set()
    for parameter in query.parameters:
        name = parameter.name.lower()
        if not name.startswith("x-amz-"):
            continue
        try:
            parameter.value.decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from None
        present = amz.get(name)
        if name in seen or (present is not None and present != [parameter.value]):
            raise S3Error(
                "InvalidArgument",
                f"{parameter.name} is given both as a header (or query parameter) and as a query parameter, "
                "with different values.",
                ArgumentName=parameter.name,
                ArgumentValue=parameter.value.decode("utf-8"),
            )
        seen.add(name)
        amz[name] = [parameter.value]


def _covered_in_query(name: str, query: _Query, headers: Mapping[str, Sequence[str]]) -> bool:
    """
    Whether the signature covers the query parameter C{name}: the parameters
    of query authentication, the signed sub-resources, the x-amz-* ones
    (signed as headers), and content-type / content-md5 when they repeat the
    header of that name (botocore writes them into the URL too; the header
    is what is signed and used).
    """
    if name in QUERY_AUTH_PARAMETERS or name in SIGNED_SUBRESOURCES or name.lower().startswith("x-amz-"):
        return True
    if name in ("content-type", "content-md5"):
        received = header_value(headers, name)
        values = {p.value for p in query.parameters if p.name == name}
        return received is not None and values == {received.strip().encode("latin-1", "replace")}
    return False


# -- shared ------------------------------------------------------------------


def _payload(headers: Mapping[str, Sequence[str]], default: PayloadMode) -> tuple[PayloadMode, str | None]:
    """
    How the body is protected: SigV2 signs no payload hash, but a client may
    still commit to the body with a (signed) hex C{x-amz-content-sha256},
    which is then verified, or send an unsigned aws-chunked body with
    trailing checksums.  Signed aws-chunked bodies chain on a SigV4
    signature and cannot be verified here.
    """
    announced = header_value(headers, "x-amz-content-sha256")
    if announced is None:
        return default, None
    mode = announced_payload_mode(announced.strip())
    if mode is PayloadMode.SHA256:
        return mode, announced.strip().lower()
    if mode in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER):
        raise S3Error(
            "InvalidRequest",
            f"x-amz-content-sha256 {announced.strip()} needs AWS Signature Version 4 "
            "(its chunk signatures chain on the request's SigV4 signature).",
        )
    if mode is PayloadMode.UNSIGNED:
        return default, None
    return mode, None


def _context(
    credential: CredentialLike,
    mode: PayloadMode,
    content_sha256: str | None,
    signature: str,
    when: float,
) -> AuthContext:
    return AuthContext(
        credential=credential,
        payload_mode=mode,
        content_sha256=content_sha256,
        signing_key=b"",
        seed_signature=signature,
        scope="",
        amz_date=format_amz_date(when),
        region="",
        signature_version=2,
    )


def _parse_http_date(value: str) -> float | None:
    """
    An RFC 2616 date (RFC 1123, RFC 850, asctime), or SigV4's
    C{yyyymmddTHHMMSSZ}; None for no date, and for a date before 1970, which
    S3 refuses as invalid (AccessDenied) rather than as skewed.
    """
    parsed = parse_amz_date(value)
    if parsed is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            parsed = when.timestamp()
        except (OverflowError, ValueError):
            return None
    return parsed if parsed >= 0 else None


def _lookup(lookup: CredentialLookup, access_key: str) -> CredentialLike:
    credential = lookup(access_key)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return credential


def _invalid_date() -> S3Error:
    return S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")


def _signature_mismatch(access_key: str, string_to_sign: bytes, provided: str) -> S3Error:
    """S3's SignatureDoesNotMatch for SigV2: what we signed, to debug a client (nothing secret)."""
    return S3Error(
        "SignatureDoesNotMatch",
        AWSAccessKeyId=access_key,
        StringToSign=string_to_sign.decode("utf-8", "replace"),
        SignatureProvided=provided,
        StringToSignBytes=" ".join(f"{byte:02x}" for byte in string_to_sign),
    )


def _not_signed(names: list[str]) -> S3Error:
    return S3Error(
        "AccessDenied",
        "There were query parameters present in the request which were not signed",
        QueryParametersNotSigned=", ".join(names),
    )


__all__ = [
    "QUERY_AUTH_PARAMETERS",
    "SCHEME",
    "SIGNED_SUBRESOURCES",
    "SigV2Request",
    "authenticate",
    "is_sigv2_header",
]
