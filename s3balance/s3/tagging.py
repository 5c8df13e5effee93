"""
Tag sets of objects and buckets, as S3 reads, checks and writes them.

Pure functions, no I/O: the C{x-amz-tagging} header of PutObject,
CreateMultipartUpload and CopyObject (a URL query, C{k=v&k2=v2}), the
C{<Tagging>} document of Put*Tagging and S3's limits.  The store keeps a
tag set as text (L{s3balance.store.records.dump_tags}).

A tag set is a tuple of (key, value) pairs sorted by key: S3 answers tags in
key order, whatever order they were sent in, and keys are unique.

S3's limits (AWS user guide "Categorizing your storage using tags" and
"Tagging restrictions"; the answers as S3 gives them, checked against the
messages S3 compatibles record from S3 itself):

  - at most 10 tags on an object (C{BadRequest} "Object tags cannot be
    greater than 10"), 50 on a bucket (C{BadRequest} "Bucket tag count
    cannot be greater than 50");
  - keys unique (C{InvalidTag} "Cannot provide multiple Tags with the same
    key"; in the header, C{InvalidArgument}, as any header S3 cannot read);
  - no key under the reserved prefix C{aws:};
  - a key of 1 to 128 characters, a value of 0 to 256, counted as S3 counts
    them (UTF-16 code units), made of Unicode letters, numbers and white
    space and C{_ . : / = + - @} (C{InvalidTag} "The TagKey / TagValue you
    have provided is invalid").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Optional
from urllib.parse import unquote_to_bytes

from s3balance.errors import S3Error
from s3balance.s3.xmldoc import Node, document, parse
from s3balance.store.interfaces import TagSet

OBJECT = "object"
BUCKET = "bucket"

MAX_TAGS = {OBJECT: 10, BUCKET: 50}
MAX_KEY = 128
MAX_VALUE = 256
RESERVED_PREFIX = "aws:"
# The symbols a key or value may hold besides letters, numbers and white space.
_SYMBOLS = frozenset("_.:/=+-@")

_TOO_MANY = {
    OBJECT: "Object tags cannot be greater than 10",
    BUCKET: "Bucket tag count cannot be greater than 50",
}
_RESERVED = {
    OBJECT: "Your TagKey cannot be prefixed with aws:",
    BUCKET: "System tags cannot be added/updated by requester",
}
_BAD_HEADER = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
    "without tag name duplicates."
)


def _length(text: str) -> int:
    """S3's length of a key or value: UTF-16 code units (a character beyond the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _allowed(text: str) -> bool:
    return all(ch in _SYMBOLS or unicodedata.category(ch)[0] in "LNZ" for ch in text)


def validate(pairs: Iterable[tuple[str, str]], kind: str) -> TagSet:
    """
    The tag set of C{pairs} (as sent: maybe unsorted, maybe with duplicates)
    for an object (C{kind} L{OBJECT}) or a bucket (L{BUCKET}), or the
    S3Error S3 answers for it.
    """
    pairs = list(pairs)
    if len(pairs) > MAX_TAGS[kind]:
        raise S3Error("BadRequest", _TOO_MANY[kind])
    seen: set[str] = set()
    for key, value in pairs:
        if key in seen:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", TagKey=key)
        if key.startswith(RESERVED_PREFIX):
            raise S3Error("InvalidTag", _RESERVED[kind], TagKey=key)
        if not 1 <= _length(key) <= MAX_KEY or not _allowed(key):
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid", TagKey=key)
        if _length(value) > MAX_VALUE or not _allowed(value):
            raise S3Error("InvalidTag", "The TagValue you have provided is invalid", TagKey=key, TagValue=value)
        seen.add(key)
    return tuple(sorted(pairs))


def _form_decode(raw: bytes) -> str:
    """One side of a pair of a URL query: C{+} is a space, then %-escapes; UTF-8."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def parse_header(value: str) -> TagSet:
    """
    An object's tag set from an C{x-amz-tagging} header (its value as
    received: the str of its bytes as latin-1).  A key without C{=} has the
    empty value; empty pieces (C{a=b&}) are skipped.
    """
    pairs = []
    keys: set[str] = set()
    for piece in value.encode("latin-1").split(b"&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition(b"=")
        if b"=" in raw_value:
            raise S3Error("InvalidArgument", _BAD_HEADER, ArgumentName="x-amz-tagging", ArgumentValue=value)
        try:
            key, tag_value = _form_decode(raw_key), _form_decode(raw_value)
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", _BAD_HEADER, ArgumentName="x-amz-tagging",
                          ArgumentValue=value) from None
        if key in keys:
            raise S3Error("InvalidArgument", _BAD_HEADER, ArgumentName="x-amz-tagging", ArgumentValue=value)
        keys.add(key)
        pairs.append((key, tag_value))
    return validate(pairs, OBJECT)


def parse_document(body: bytes, kind: str) -> TagSet:
    """
    The tag set of a PutObjectTagging / PutBucketTagging body,
    C{<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>}
    (namespaced or not).  Anything else is MalformedXML, as a tag without
    its Key or Value.
    """
    root = parse(body)
    if root.tag != "Tagging":
        raise S3Error("MalformedXML")
    tag_sets = root.findall("TagSet")
    if len(tag_sets) != 1 or len(root) != 1:
        raise S3Error("MalformedXML")
    pairs = []
    for tag in tag_sets[0]:
        if tag.tag != "Tag":
            raise S3Error("MalformedXML")
        keys, values = tag.findall("Key"), tag.findall("Value")
        if len(keys) != 1 or len(values) != 1 or len(tag) != 2:
            raise S3Error("MalformedXML")
        pairs.append((keys[0].text or "", values[0].text or ""))
    return validate(pairs, kind)


def render(tags: TagSet) -> bytes:
    """The C{<Tagging>} document GetObjectTagging and GetBucketTagging answer."""
    children: list[Node] = [("Tag", [("Key", key), ("Value", value)]) for key, value in tags]
    return document("Tagging", [("TagSet", children)])


def requested(headers_value: Optional[str]) -> TagSet:
    """The tag set a write's C{x-amz-tagging} header asks for (none without the header)."""
    return parse_header(headers_value) if headers_value else ()


# The writes whose x-amz-tagging header sets the new object's tags.
TAGGED_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})


def copy_directive(value: Optional[str]) -> str:
    """CopyObject's C{x-amz-tagging-directive}: COPY (the default) or REPLACE."""
    directive = (value or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown tagging directive.", ArgumentName="x-amz-tagging-directive",
                      ArgumentValue=value or "")
    return directive


def check_request(operation: str, tagging: Optional[str], directive: Optional[str]) -> None:
    """
    Refuse, before any byte is stored, a write whose C{x-amz-tagging} header
    (or CopyObject's C{x-amz-tagging-directive}) S3 would refuse.
    """
    if operation not in TAGGED_WRITES:
        return
    if operation == "CopyObject":
        copy_directive(directive)
    requested(tagging)
