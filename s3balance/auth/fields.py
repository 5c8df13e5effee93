"""
The fields SigV4 authentication reads besides the signature, shared by
header and presigned authentication: the credential scope, the signed
header list (and the C{x-amz-*} headers it must cover), and the request time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from s3balance.auth.canonical import SERVICE, TERMINATOR
from s3balance.errors import S3Error

_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\Z")
_CREDENTIAL_FORMAT = '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'


def parse_credential(
    value: str,
    amz_date: str,
    region: str | None,
    code: str,
    prefix: str,
) -> tuple[str, str, str]:
    """Split C{AKID/yyyymmdd/region/s3/aws4_request}; returns (key, scope, region)."""
    parts = value.split("/")
    if len(parts) != 5 or not all(parts):
        raise S3Error(
            code,
            f"{prefix}; the Credential is mal-formed; expecting {_CREDENTIAL_FORMAT}.",
        )
    access_key, date, signed_region, service, terminator = parts
    if date != amz_date[:8]:
        raise S3Error(
            code,
            f'{prefix}; Invalid credential date "{date}". '
            'This date is not the same as X-Amz-Date: "' + amz_date[:8] + '".',
        )
    if region is not None and signed_region != region:
        raise S3Error(
            code,
            f"{prefix}; the region '{signed_region}' is wrong; expecting '{region}'",
            Region=region,
        )
    if service != SERVICE:
        raise S3Error(
            code,
            f"{prefix}; incorrect service '{service}'. This endpoint belongs to 's3'.",
        )
    if terminator != TERMINATOR:
        raise S3Error(
            code,
            f"{prefix}; incorrect terminal '{terminator}'. This endpoint uses 'aws4_request'.",
        )
    return access_key, "/".join(parts[1:]), signed_region


def parse_signed_headers(value: str, code: str, prefix: str) -> list[str]:
    names = value.split(";")
    if not all(names) or any(name != name.strip().lower() for name in names):
        raise S3Error(code, f"{prefix}; SignedHeaders is malformed.")
    if "host" not in names:
        raise S3Error(code, f"{prefix}; SignedHeaders must include host.")
    return names


# Not required in SignedHeaders although it is an x-amz-* header: its value is
# the payload hash line of the canonical request, so a value the signer did not
# sign fails the signature anyway.  S3 makes the same exception for header auth.
_AMZ_SIGNING_EXEMPT = frozenset({"x-amz-content-sha256"})


def require_signed_amz_headers(headers: Mapping[str, Sequence[str]], signed_headers: list[str]) -> None:
    """
    Refuse a request with an C{x-amz-*} header outside C{SignedHeaders}, as S3
    does, for header and presigned authentication alike.

    Such a header would change what the signer authorised without breaking
    the signature: C{x-amz-copy-source} added to a presigned PUT makes it a
    copy of any object the signer may read; C{x-amz-meta-*},
    C{x-amz-tagging}, C{x-amz-metadata-directive} or C{x-amz-trailer} change
    what is stored or checked.  Other headers (Content-Type, Content-MD5,
    Range, ...) need not be signed, in S3 as here.
    """
    signed = set(signed_headers)
    unsigned = [
        name
        for name in headers
        if name.startswith("x-amz-") and name not in signed and name not in _AMZ_SIGNING_EXEMPT
    ]
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )


def request_date(headers: Mapping[str, Sequence[str]]) -> tuple[str, float]:
    """The request time from C{X-Amz-Date}, else C{Date} (RFC 1123)."""
    amz_date = header_value(headers, "x-amz-date")
    if amz_date is not None:
        amz_date = amz_date.strip()
        parsed = parse_amz_date(amz_date)
        if parsed is None:
            raise _invalid_date()
        return amz_date, parsed
    date = header_value(headers, "date")
    if date is None:
        raise _invalid_date()
    try:
        when = parsedate_to_datetime(date.strip())
    except (TypeError, ValueError, IndexError):
        raise _invalid_date() from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    timestamp = when.timestamp()
    return format_amz_date(timestamp), timestamp


_last_amz_date: tuple[str, float | None] = ("", None)


def parse_amz_date(value: str) -> float | None:
    # Requests arrive many per second: remember the last second parsed.
    global _last_amz_date
    if value == _last_amz_date[0]:
        return _last_amz_date[1]
    parsed = _parse_amz_date_uncached(value)
    _last_amz_date = (value, parsed)
    return parsed


def _parse_amz_date_uncached(value: str) -> float | None:
    match = _AMZ_DATE.match(value)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, match.groups())
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return when.timestamp()


def format_amz_date(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y%m%dT%H%M%SZ")


def format_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header_value(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    return values[0]


def _invalid_date() -> S3Error:
    return S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")


__all__ = [
    "format_amz_date",
    "format_iso",
    "header_value",
    "parse_amz_date",
    "parse_credential",
    "parse_signed_headers",
    "request_date",
    "require_signed_amz_headers",
]
