"""
ListObjects from the objects table, with delimiter folding by skip-scan.

Keys are compared as UTF-8 bytes.  Rows are read in key order in batches;
when a key folds into a common prefix CP, the scan jumps to the first key
that is greater than every key starting with CP (C{successor(CP)}), so the
rows inside a common prefix are never read beyond the first one or two.
Every query is a range scan of the (bucket, key) unique index.
"""

from __future__ import annotations

import functools
from typing import Optional

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.engine import Connection

from s3balance.store import tables
from s3balance.store.interfaces import ListPage
from s3balance.store.records import decode_key, encode_key, object_record

_o = tables.objects

# Columns a listing needs (everything but nothing heavy is left out: headers
# and checksums are small and ListObjectsV2 may report checksum algorithms).
_COLUMNS = (
    _o.c.id,
    _o.c.bucket,
    _o.c.key,
    _o.c.size,
    _o.c.etag,
    _o.c.last_modified,
    _o.c.content_type,
    _o.c.headers,
    _o.c.checksums,
)


_FIRST_BATCH = 64


def successor(prefix: bytes) -> Optional[bytes]:
    """
    The smallest byte string greater than every string starting with prefix,
    or None when there is none (prefix empty or all 0xff).
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def common_prefix(key: bytes, prefix: bytes, delimiter: bytes) -> Optional[bytes]:
    """The common prefix key folds into, or None when it is listed itself."""
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    if at < 0:
        return None
    return key[: at + len(delimiter)]


@functools.cache
def _range_query(inclusive: bool, bounded: bool):
    """
    The batch query, built once: a skip-scan runs it about once per common
    prefix, and constructing a statement costs far more than SQLite's index
    seek.  Parameters: bucket, start, upper (when bounded), limit.
    """
    start = bindparam("start", type_=_o.c.key.type)
    query = select(*_COLUMNS).where(
        _o.c.bucket == bindparam("bucket"),
        _o.c.key >= start if inclusive else _o.c.key > start,
    )
    if bounded:
        query = query.where(_o.c.key < bindparam("upper", type_=_o.c.key.type))
    return query.order_by(_o.c.key).limit(bindparam("limit", type_=Integer()))


class ListingStats:
    """Counts of queries and rows a listing read (for tests and tuning)."""

    def __init__(self) -> None:
        self.queries = 0
        self.rows = 0


def list_objects(
    conn: Connection,
    bucket: str,
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = 1000,
    stats: Optional[ListingStats] = None,
) -> ListPage:
    prefix_b = encode_key(prefix)
    delimiter_b = encode_key(delimiter)
    after_b = encode_key(after)
    upper = successor(prefix_b)  # exclusive upper bound of the prefix range

    if max_keys <= 0:
        return ListPage(entries=(), is_truncated=False, next_marker=None)

    # The scan position: keys >= start (inclusive) or > start (exclusive).
    start, inclusive = after_b, False
    if after_b.startswith(prefix_b):
        # A marker inside a common prefix (or equal to it) means that prefix
        # was already returned: continue after all of it.
        folded = common_prefix(after_b, prefix_b, delimiter_b)
        if folded is not None:
            beyond = successor(folded)
            if beyond is None:
                return ListPage(entries=(), is_truncated=False, next_marker=None)
            start, inclusive = beyond, True
    if start < prefix_b:
        start, inclusive = prefix_b, True

    entries: list = []
    wanted = max_keys + 1  # one more than a page tells whether it is truncated
    # With a delimiter the first rows may all sit in one huge common prefix:
    # start small.  Without one every row read is an entry.
    batch = _FIRST_BATCH if delimiter_b else wanted
    while len(entries) < wanted and (upper is None or start < upper):
        limit = min(batch, wanted - len(entries))
        params = {"bucket": bucket, "start": start, "limit": limit}
        if upper is not None:
            params["upper"] = upper
        rows = conn.execute(_range_query(inclusive, upper is not None), params).all()
        if stats is not None:
            stats.queries += 1
            stats.rows += len(rows)

        skipping: Optional[bytes] = None  # the common prefix being skipped
        emitted = 0
        for row in rows:
            key = bytes(row.key)
            if skipping is not None and key.startswith(skipping):
                continue
            folded = common_prefix(key, prefix_b, delimiter_b)
            if folded is not None:
                entries.append(decode_key(folded))
                skipping = folded
            else:
                entries.append(object_record(row))
                skipping = None
            emitted += 1
            if len(entries) >= wanted:
                break

        if len(rows) < limit:
            break  # the range holds nothing more
        if skipping is not None:
            beyond = successor(skipping)
            if beyond is None:
                break  # nothing sorts after this common prefix
            start, inclusive = beyond, True
        else:
            start, inclusive = bytes(rows[-1].key), False
        # Batches grow by doubling while they pay off; a batch that ended
        # inside a common prefix shrinks to about what it emitted, so a run
        # of big common prefixes costs about one two-row query each.
        batch = max(2, 2 * emitted) if skipping is not None else 2 * limit

    truncated = len(entries) > max_keys
    entries = entries[:max_keys]
    next_marker = None
    if truncated:
        last = entries[-1]
        next_marker = last if isinstance(last, str) else last.key
    return ListPage(entries=tuple(entries), is_truncated=truncated, next_marker=next_marker)
