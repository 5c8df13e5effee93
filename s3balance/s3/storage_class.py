"""
Storage classes, kept as a label of the object.

S3 clients set C{x-amz-storage-class} on PUT, CopyObject and
CreateMultipartUpload and read it back on GET/HEAD (for any class but
STANDARD) and in listings.  s3balance keeps the class with the object and
answers it as S3 does, but does not pass it to the backends: a backend's own
archive classes (GLACIER, DEEP_ARCHIVE) would make the bytes unreadable
until restored, and the placement strategy, not the client, picks where
bytes live.  A class S3 does not know is refused (C{InvalidStorageClass}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional

from s3balance.errors import S3Error

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

HEADER = "x-amz-storage-class"
STANDARD = "STANDARD"

# Every class the S3 API names.
KNOWN = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)


def requested(call: S3Call) -> Optional[str]:
    """The class a write asks for, or None; C{InvalidStorageClass} for an unknown one."""
    value = call.header(HEADER)
    if value is None:
        return None
    if value not in KNOWN:
        raise S3Error("InvalidStorageClass", StorageClassRequested=value)
    return value


def apply(headers: dict[str, str], storage_class: Optional[str]) -> None:
    """Record C{storage_class} in an object's stored headers (STANDARD is the default, not stored)."""
    if storage_class is None:
        return
    if storage_class == STANDARD:
        headers.pop(HEADER, None)
    else:
        headers[HEADER] = storage_class


def of(headers: Mapping[str, str]) -> str:
    """An object's class, from its stored headers."""
    return headers.get(HEADER, STANDARD)
