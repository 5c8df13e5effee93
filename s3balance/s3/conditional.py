"""
Range requests and conditional headers, evaluated against the metadata
record (the backend is not asked: the record knows ETag, size and date).
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping, Sequence
from typing import Optional

from s3balance.errors import S3Error

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)


def parse_range(header: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """
    The inclusive byte range a C{Range} header asks for, or L{None} for the
    whole object (no header, or one we ignore as RFC 9110 allows: bad syntax
    or several ranges).  Raises C{InvalidRange} when it cannot be satisfied.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=header)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return start, end


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/").strip('"') for tag in header.split(",") if tag.strip()]


def etag_matches(header: str, etag: str) -> bool:
    bare = etag.strip('"')
    return any(tag == "*" or tag == bare for tag in _etags(header))


def _http_date(value: str) -> Optional[datetime.datetime]:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def check_conditional_headers(
    headers: Mapping[str, Sequence[str]],
    etag: str,
    last_modified: datetime.datetime,
    prefix: str = "",
) -> Optional[int]:
    """
    Evaluate If-Match, If-Unmodified-Since, If-None-Match and
    If-Modified-Since (RFC 9110 §13.2.2 order, as S3 does).

    @param prefix: C{"x-amz-copy-source-"} to evaluate the copy-source variants.
    @return: L{None} to proceed, or 304 (not modified).  Raises
        C{PreconditionFailed} for 412.
    """

    def get(name: str) -> Optional[str]:
        values = headers.get(prefix + name)
        return values[0] if values else None

    if_match = get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise S3Error("PreconditionFailed", Condition="If-Match")
    else:
        since = get("if-unmodified-since")
        date = _http_date(since) if since else None
        if date is not None and last_modified > date:
            raise S3Error("PreconditionFailed", Condition="If-Unmodified-Since")

    if_none_match = get("if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            if prefix:
                raise S3Error("PreconditionFailed", Condition="x-amz-copy-source-If-None-Match")
            return 304
    else:
        since = get("if-modified-since")
        date = _http_date(since) if since else None
        if date is not None and last_modified <= date:
            if prefix:
                raise S3Error("PreconditionFailed", Condition="x-amz-copy-source-If-Modified-Since")
            return 304
    return None
