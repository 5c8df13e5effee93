"""
ListObjectVersions from the objects table: every version and delete marker
of the keys in a prefix, key by key in byte order and each key's newest
first (by row id, as L{s3balance.store.versions} orders them), after the
markers, with delimiter folding by skip-scan as in L{s3balance.store.listing}
(whose docstring says why the keys starting with a common prefix CP are
exactly those in [CP, CP || 0xff]).  A module of its own for size: with
it, L{s3balance.store.versions} had 550 lines.

Every row of a key is an entry here, noncurrent versions and delete markers
too, so the statements read rows without C{latest = 1}; the unique (bucket,
key, latest) index still seeks on its (bucket, key) prefix.

A page takes a constant number of statements:

 1. the version id marker's row, when there is one;
 2. the keys of the first max_keys + 1 rows from the markers on, an
    index-only scan (the rows' range query sorts each key's versions by id
    and reads the whole rows: about 0.3 s a page on SQLite in the benchmark
    of 10^6 keys of 3 versions, whose versions of a key lie far apart);
 3. when none of them folds (a "directory" of files), the rows by that
    range; otherwise, after the rest of the marker's versions when the page
    starts among them, the page by a walk in one statement
    (L{listing_sql.version_cte_query}, C{WITH RECURSIVE}, on SQLite and
    PostgreSQL; L{listing_sql.version_block_query}, a compound statement,
    on MariaDB): every step one index seek to the next key that is an
    entry or starts a common prefix, and the count of the entries it makes
    (index only), until the page is full; then the rows of the keys listed.

Anything else (MySQL) runs the Python loop every database ran before
(L{_loop}): range queries, a common prefix ending one and the next one
starting after it, about one query per common prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from s3balance.store import tables
from s3balance.store.interfaces import ObjectRecord, VersionPage
from s3balance.store.listing import (
    BLOCK,
    CTE,
    LOOP,
    RunawayListing,
    common_prefix,
    default_method,
    step_limit,
    successor,
)
from s3balance.store.listing_sql import (
    VERSION_COLUMN_NAMES,
    allow_recursion,
    version_block_query,
    version_cte_query,
)
from s3balance.store.records import decode_key, encode_key, object_record
from s3balance.store.versions import NULL_VERSION, _of_key, _version_is

_o = tables.objects
_LISTED = tuple(_o.c[name] for name in VERSION_COLUMN_NAMES)

# Where a range query starts: keys after key (or from it, when inclusive),
# or, with an id, first the versions of key older than that row.
_Cursor = tuple[bytes, bool, Optional[int]]


def list_versions(
    conn: Connection,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_id_marker: Optional[str],
    max_keys: int,
    method: Optional[str] = None,
) -> VersionPage:
    """
    The versions and delete markers of the keys that start with C{prefix},
    key by key in byte order and each key's newest first, after the markers
    (the versions of C{key_marker} older than C{version_id_marker}, then the
    keys after C{key_marker}); keys with C{delimiter} after the prefix fold
    into common prefixes, whose rows are skipped by seeking past them.  At
    most C{max_keys} entries (versions and prefixes).  C{method}
    (L{listing.CTE}, L{listing.BLOCK}, L{listing.LOOP}) says how a delimiter
    listing is walked; by default L{listing.default_method}.
    """
    prefix_b, delimiter_b = encode_key(prefix), encode_key(delimiter)
    cursor, seen_key = _start(conn, bucket, prefix_b, delimiter_b, key_marker, version_id_marker)
    page = _Page(prefix_b, delimiter_b, max_keys, seen_key)
    upper = successor(prefix_b)  # exclusive upper bound of the prefix range
    if not delimiter_b:
        method = LOOP  # nothing folds: the loop's range queries
    elif method is None:
        method = default_method(conn)
    if method == LOOP:
        _loop(conn, bucket, page, cursor, upper)
    elif method in (CTE, BLOCK):
        _walk(conn, method, bucket, page, cursor, upper)
    else:
        raise ValueError(f"unknown listing method {method!r}")
    return page.result()


def _start(
    conn: Connection,
    bucket: str,
    prefix: bytes,
    delimiter: bytes,
    key_marker: str,
    version_id_marker: Optional[str],
) -> tuple[_Cursor, Optional[bytes]]:
    """Where a page starts, from its markers. -> (cursor, the key whose newest version was passed)."""
    cursor: _Cursor = (prefix, True, None)
    seen_key: Optional[bytes] = None
    if key_marker:
        marker = encode_key(key_marker)
        cursor = (marker, False, None)
        if version_id_marker:
            found = conn.execute(
                select(_o.c.id).where(_of_key(bucket, marker), _version_is(version_id_marker))
            ).first()
            if found is not None:
                cursor, seen_key = (marker, False, int(found.id)), marker
        common = _common_prefix(marker, prefix, delimiter)
        if common is not None:
            # The marker is inside a common prefix already answered.
            cursor = (common + b"\xff", True, None)
    if cursor[0] < prefix:
        cursor = (prefix, True, None)
    return cursor, seen_key


def _common_prefix(key: bytes, prefix: bytes, delimiter: bytes) -> Optional[bytes]:
    """The common prefix C{key} folds into (None: it is listed itself, or is not in the prefix)."""
    if not key.startswith(prefix):
        return None
    return common_prefix(key, prefix, delimiter)


class _Page:
    """A page being filled: its entries, whether it is truncated, where the next one starts."""

    def __init__(self, prefix: bytes, delimiter: bytes, max_keys: int, seen_key: Optional[bytes]) -> None:
        self.prefix = prefix
        self.delimiter = delimiter
        self.max_keys = max_keys
        self.seen_key = seen_key  # the key whose newest version was listed (or passed)
        self.versions: list[tuple[ObjectRecord, bool]] = []
        self.prefixes: list[str] = []
        self.truncated = False
        self.next_marker: tuple[str, Optional[str]] = ("", None)

    @property
    def count(self) -> int:
        return len(self.versions) + len(self.prefixes)

    def fold(self, key: bytes) -> Optional[bytes]:
        return _common_prefix(key, self.prefix, self.delimiter)

    def _room(self) -> bool:
        """Whether another entry fits; one more than fits makes the page truncated."""
        if self.count >= self.max_keys:
            self.truncated = True
            return False
        return True

    def add_version(self, row: Row) -> bool:
        """Add a row of a key listed itself. -> False when the page is full."""
        if not self._room():
            return False
        key = bytes(row.key)
        record = object_record(row)
        self.versions.append((record, key != self.seen_key))
        self.seen_key = key
        self.next_marker = (record.key, record.version_id or NULL_VERSION)
        return True

    def add_prefix(self, common: bytes) -> bool:
        """Add a common prefix. -> False when the page is full."""
        if not self._room():
            return False
        text = decode_key(common)
        self.prefixes.append(text)
        self.next_marker = (text, None)
        self.seen_key = None
        return True

    def result(self) -> VersionPage:
        if not self.truncated:
            return VersionPage(tuple(self.versions), tuple(self.prefixes), False, "", None)
        return VersionPage(tuple(self.versions), tuple(self.prefixes), True, *self.next_marker)


def _range(conn: Connection, bucket: str, cursor: _Cursor, upper: Optional[bytes], limit: int) -> Sequence[Row]:
    """Up to limit rows from the cursor, by key and each key's newest first."""
    cursor_key, inclusive, cursor_id = cursor
    after = _o.c.key >= cursor_key if inclusive else _o.c.key > cursor_key
    if cursor_id is not None:
        # key >= cursor_key bounds the index range (an OR of the two cases
        # would not: SQLite then reads the bucket from its first key).
        after = (_o.c.key >= cursor_key) & ((_o.c.key > cursor_key) | (_o.c.id < cursor_id))
    query = select(*_LISTED).where(_o.c.bucket == bucket, after)
    if upper is not None:
        query = query.where(_o.c.key < upper)
    return conn.execute(query.order_by(_o.c.key, _o.c.id.desc()).limit(limit)).all()


def _add_rows(page: _Page, rows: Sequence[Row]) -> tuple[bool, Optional[bytes]]:
    """
    Add rows of a range query until one folds. -> (whether the page has
    room left, the common prefix that ended the rows or None).
    """
    for row in rows:
        common = page.fold(bytes(row.key))
        if common is not None:
            return page.add_prefix(common), common
        if not page.add_version(row):
            return False, None
    return True, None


def _loop(conn: Connection, bucket: str, page: _Page, cursor: _Cursor, upper: Optional[bytes]) -> None:
    """Fill the page with a Python loop of range queries, about one per common prefix."""
    full = min(page.max_keys + 1, 1000)
    batch = full
    while True:
        rows = _range(conn, bucket, cursor, upper, batch)
        room, common = _add_rows(page, rows)
        if not room:
            return
        if common is not None:
            # The next rows may fold again (a run of common prefixes): read
            # few, and more and more while they are listed.
            cursor, batch = (common + b"\xff", True, None), 2
            continue
        if len(rows) < batch:
            return
        batch = min(2 * batch, full)
        last = rows[-1]
        cursor = (bytes(last.key), False, int(last.id))


def _keys(conn: Connection, bucket: str, cursor: _Cursor, upper: Optional[bytes], limit: int) -> list[bytes]:
    """The keys of the first limit rows from the cursor's key on (an index-only scan, no sort)."""
    cursor_key, inclusive, cursor_id = cursor
    query = select(_o.c.key).where(
        _o.c.bucket == bucket, _o.c.key >= cursor_key if inclusive or cursor_id is not None else _o.c.key > cursor_key
    )
    if upper is not None:
        query = query.where(_o.c.key < upper)
    return [bytes(key) for key in conn.execute(query.order_by(_o.c.key).limit(limit)).scalars().all()]


def _walk(
    conn: Connection, method: str, bucket: str, page: _Page, cursor: _Cursor, upper: Optional[bytes]
) -> None:
    """
    Fill the page with the range query when the rows it would read hold no
    common prefix, otherwise with a walk (after the rest of the marker's
    versions, if the page starts among them).
    """
    wanted = page.max_keys + 1  # one more entry than a page tells whether it is truncated
    keys = _keys(conn, bucket, cursor, upper, wanted)
    if not keys:
        return
    start, inclusive, cursor_id = cursor
    if not any(page.fold(key) is not None for key in keys):
        # A "directory" of files: the range query reads them faster than
        # one seek (and one count) each.
        room, common = _add_rows(page, _range(conn, bucket, cursor, upper, wanted))
        if not room or common is None:
            return  # full, or every row from the cursor listed
        # A common prefix written since the keys were read.
        start, inclusive, cursor_id = common + b"\xff", False, None
    # One walk; more only for rows that changed between the steps and the
    # rows' read (not in one snapshot): a short page not at the end goes on
    # after its last row.
    for _ in range(step_limit(wanted)):
        if cursor_id is not None:
            # The older versions of the key the page is in (the marker's, as
            # its key is listed: the cursor of a marker in a common prefix
            # has no id).
            only_key = start + b"\x00"  # the least key above start
            if upper is not None:
                only_key = min(only_key, upper)
            rows = _range(conn, bucket, (start, False, cursor_id), only_key, wanted - page.count)
            room, _ = _add_rows(page, rows)
            if not room:
                return
            inclusive, cursor_id = False, None
        rows = _walk_rows(conn, method, bucket, page, upper, start, inclusive, wanted - page.count)
        inclusive = False
        for row in rows:
            if row.walk_key is None:
                return  # nothing more in the range
            key = bytes(row.walk_key)
            common = page.fold(key)
            if common is not None:
                if not page.add_prefix(common):
                    return
                start, cursor_id = common + b"\xff", None
                continue
            start, cursor_id = key, None
            if row.id is not None:  # (None: the key's rows went since the step found it)
                if not page.add_version(row):
                    return
                cursor_id = int(row.id)
    raise RunawayListing(f"the version walk made no page of {wanted} in {step_limit(wanted)} steps")


def _walk_rows(
    conn: Connection,
    method: str,
    bucket: str,
    page: _Page,
    upper: Optional[bytes],
    start: bytes,
    inclusive: bool,
    wanted: int,
) -> Sequence[Row]:
    """The rows of up to wanted entries from start, by one walk statement."""
    params: dict[str, Any] = {
        "bucket": bucket,
        "start": start,
        "wanted": wanted,
        "delimiter": page.delimiter,
        "after_prefix": len(page.prefix) + 1,
    }
    bounded = upper is not None
    if bounded:
        params["upper"] = upper
    if method == CTE:
        params["cut"] = len(page.prefix) + len(page.delimiter) - 1
        params["ff"] = b"\xff"
        # Steps: one per entry, and one that finds nothing or is not needed.
        allow_recursion(conn, wanted + 2)
        return conn.execute(version_cte_query(conn.dialect.name, inclusive, bounded), params).all()
    params["cut"] = len(page.delimiter) - 1
    return conn.execute(version_block_query(inclusive, bounded), params).all()
