"""
What a write or a delete checks about the version it would replace or
remove: S3's If-Match / If-None-Match, and whether a row is still the
version a reader saw (the lifecycle expirer's delete).
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy.engine import Row

from s3balance.store.interfaces import ObjectRecord, PreconditionFailedError
from s3balance.store.records import load_tags


def _etag_matches(current: str, condition: str) -> bool:
    def bare(tag: str) -> str:
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        return tag.strip('"')

    wanted = {bare(tag) for tag in condition.split(",")}
    return "*" in wanted or bare(current) in wanted


def check_preconditions(
    current_etag: Optional[str], if_match: Optional[str], if_none_match: Optional[str]
) -> None:
    if if_match is not None:
        if current_etag is None or not _etag_matches(current_etag, if_match):
            raise PreconditionFailedError("If-Match")
    if if_none_match is not None and current_etag is not None:
        if _etag_matches(current_etag, if_none_match):
            raise PreconditionFailedError("If-None-Match")


def same_version(row: Row, expected: ObjectRecord) -> bool:
    """Whether the locked C{row} is still the version C{expected} was read from (an overwrite or retag: not)."""
    return (
        row.etag == expected.etag
        and row.size == expected.size
        and row.last_modified == expected.last_modified
        and load_tags(row.tags) == tuple(expected.tags)
    )
