"""
ListObjects from the objects table, with delimiter folding by skip-scan.

Keys are compared as UTF-8 bytes.  Every query is a range scan or an index
seek on the (bucket, key) unique index.

Without a delimiter a page is one range query.  With one, the rows inside a
common prefix must not be read: when a key folds into a common prefix CP the
scan jumps past every key starting with CP.  Keys are valid UTF-8, which
never contains the byte 0xff, so the keys starting with CP are exactly the
keys in [CP, CP || 0xff]: the next entry after CP is the first key greater
than CP || 0xff, the same key as the first one >= C{successor(CP)}.

A delimiter page takes two statements (three on SQLite and PostgreSQL when
some of its entries are keys):

 1. the first max_keys + 1 keys from the marker on, an index-only scan;
 2. when none of them folds (a "directory" of files), the page's rows by the
    same range; otherwise the page by skip-scan in one statement, a "walk"
    in which every step is one index seek to the next entry's first key:

    - SQLite and PostgreSQL: a C{WITH RECURSIVE} loose index scan (built by
      L{listing_sql.cte_query}; CP is computed in SQL with the byte string
      functions) that reads the index only, then the rows of the entries
      that are keys (L{listing_sql.rows_query}): a page of common prefixes
      reads no row at all;
    - MariaDB: a correlated subquery in its recursive CTE does not seek (it
      reads the bucket's index from its first key at every step), so the
      walk is a compound statement (C{BEGIN NOT ATOMIC},
      L{listing_sql.block_query}) whose loop seeks with a local variable,
      then selects the rows by key;
    - anything else (MySQL): a Python loop of small range queries, about one
      per common prefix (L{_skip_scan}), as on every database before.

The statements themselves are built in L{listing_sql}.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

from sqlalchemy.engine import Connection, Row

from s3balance.store.interfaces import ListPage
from s3balance.store.listing_sql import allow_recursion, block_query, cte_query, range_query, rows_query
from s3balance.store.records import decode_key, encode_key, listed_record

# The ways to walk a delimiter listing (see the module docstring).
CTE = "cte"
BLOCK = "block"
LOOP = "loop"
METHODS = (CTE, BLOCK, LOOP)

# The Python loop's first batch: the first rows may all sit in one huge
# common prefix.
_FIRST_BATCH = 64

class RunawayListing(RuntimeError):
    """
    A listing loop ran more steps than a page can take: a bug, answered as
    InternalError instead of spinning on the database thread forever.
    """


def step_limit(wanted: int) -> int:
    """
    The most steps a loop building a page of C{wanted} entries may take:
    every step but the last adds at least one entry.
    """
    return wanted + 2


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


def default_method(conn: Connection) -> str:
    """How this connection's database walks a delimiter listing fastest."""
    dialect = conn.dialect
    version = dialect.server_version_info or ()
    if dialect.name == "postgresql":
        return CTE
    if dialect.name == "sqlite" and tuple(version[:3]) >= (3, 8, 3):
        return CTE  # WITH RECURSIVE since 3.8.3
    if dialect.name in ("mysql", "mariadb") and getattr(dialect, "is_mariadb", False):
        if tuple(version[:3]) >= (10, 2, 3):
            return BLOCK  # EXECUTE IMMEDIATE since 10.2.3
    return LOOP


class ListingStats:
    """Counts of statements a listing ran and rows it read (for tests and tuning)."""

    def __init__(self) -> None:
        self.queries = 0
        self.rows = 0

    def add(self, rows: int) -> None:
        self.queries += 1
        self.rows += rows


def _fold(rows: Iterable[Row], prefix: bytes, delimiter: bytes) -> list:
    """Rows that are one entry each (a walk's) as entries."""
    entries: list = []
    for row in rows:
        folded = common_prefix(bytes(row.key), prefix, delimiter)
        entries.append(listed_record(row) if folded is None else decode_key(folded))
    return entries


class _Scan:
    """One listing's fixed parameters, and the statements that read it."""

    def __init__(
        self,
        conn: Connection,
        bucket: str,
        prefix: bytes,
        delimiter: bytes,
        upper: Optional[bytes],
        stats: Optional[ListingStats],
    ) -> None:
        self.conn = conn
        self.bucket = bucket
        self.prefix = prefix
        self.delimiter = delimiter
        self.upper = upper
        self.stats = stats

    def counted(self, rows: Sequence[Row]) -> Sequence[Row]:
        if self.stats is not None:
            self.stats.add(len(rows))
        return rows

    def range_params(self, start: bytes, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"bucket": self.bucket, "start": start, "limit": limit}
        if self.upper is not None:
            params["upper"] = self.upper
        return params

    def keys(self, start: bytes, inclusive: bool, limit: int) -> list[bytes]:
        """The first limit keys from start (an index-only scan)."""
        query = range_query(inclusive, self.upper is not None, keys_only=True)
        rows = self.counted(self.conn.execute(query, self.range_params(start, limit)).all())
        return [bytes(row.key) for row in rows]

    def batch(
        self, start: bytes, inclusive: bool, limit: int
    ) -> tuple[list, Optional[tuple[bytes, bool]], bool]:
        """
        Up to limit rows from start, folded: (entries, where the scan goes on
        (start, inclusive) or None when the range holds nothing more, whether
        the batch ended inside a common prefix).
        """
        query = range_query(inclusive, self.upper is not None)
        rows = self.counted(self.conn.execute(query, self.range_params(start, limit)).all())

        entries: list = []
        skipping: Optional[bytes] = None  # the common prefix being skipped
        for row in rows:
            key = bytes(row.key)
            if skipping is not None and key.startswith(skipping):
                continue
            folded = common_prefix(key, self.prefix, self.delimiter)
            if folded is not None:
                entries.append(decode_key(folded))
                skipping = folded
            else:
                entries.append(listed_record(row))
                skipping = None

        if len(rows) < limit:
            return entries, None, False  # the range holds nothing more
        resume: Optional[tuple[bytes, bool]]
        if skipping is not None:
            beyond = successor(skipping)
            resume = None if beyond is None else (beyond, True)
        else:
            resume = (bytes(rows[-1].key), False)
        if resume is not None and self.upper is not None and resume[0] >= self.upper:
            resume = None
        return entries, resume, skipping is not None

    def walk_params(self, start: bytes, wanted: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "bucket": self.bucket,
            "start": start,
            "wanted": wanted,
            "delimiter": self.delimiter,
            "after_prefix": len(self.prefix) + 1,
        }
        if self.upper is not None:
            params["upper"] = self.upper
        return params

    def cte(self, start: bytes, inclusive: bool, wanted: int) -> list:
        """Up to wanted entries from start, with one recursive statement."""
        conn = self.conn
        params = self.walk_params(start, wanted)
        params["cut"] = len(self.prefix) + len(self.delimiter) - 1
        params["ff"] = b"\xff"
        # wanted - 1 steps that find an entry, and one that finds nothing or stops.
        allow_recursion(conn, wanted + 1)
        query = cte_query(conn.dialect.name, inclusive, self.upper is not None)
        keys = [bytes(row.key) for row in self.counted(conn.execute(query, params).all())]
        # Only the entries that are keys need their rows (a root listing of
        # "directories" needs none: a thousand heap reads saved).
        entries: list = [common_prefix(key, self.prefix, self.delimiter) for key in keys]
        listed = [key for key, folded in zip(keys, entries, strict=True) if folded is None]
        rows = {}
        if listed:
            found = self.counted(conn.execute(rows_query(), {"bucket": self.bucket, "keys": listed}).all())
            rows = {bytes(row.key): row for row in found}
        out: list = []
        for key, folded in zip(keys, entries, strict=True):
            if folded is not None:
                out.append(decode_key(folded))
            elif key in rows:
                out.append(listed_record(rows[key]))
        if len(out) < len(keys) == wanted:
            # Keys deleted between the two statements: the walk goes on
            # after the last one for as many entries (a short page would
            # pass for the last one).
            last, folded = keys[-1], entries[-1]
            if folded is None:
                out.extend(self.cte(last, False, len(keys) - len(out)))
            else:
                beyond = successor(folded)
                if beyond is not None and (self.upper is None or beyond < self.upper):
                    out.extend(self.cte(beyond, True, len(keys) - len(out)))
        return out

    def block(self, start: bytes, inclusive: bool, wanted: int) -> list:
        """Up to wanted entries from start, with one MariaDB compound statement."""
        params = self.walk_params(start, wanted)
        params["cut"] = len(self.delimiter) - 1
        rows = self.counted(self.conn.execute(block_query(inclusive, self.upper is not None), params).all())
        return _fold(rows, self.prefix, self.delimiter)


def _skip_scan(scan: _Scan, start: bytes, inclusive: bool, wanted: int) -> list:
    """Up to wanted entries from start, with a Python loop of range queries."""
    entries: list = []
    batch = _FIRST_BATCH
    for _ in range(step_limit(wanted)):
        if len(entries) >= wanted:
            break
        limit = min(batch, wanted - len(entries))
        got, resume, in_prefix = scan.batch(start, inclusive, limit)
        entries.extend(got)
        if resume is None:
            break
        start, inclusive = resume
        # Batches grow by doubling while they pay off; a batch that ended
        # inside a common prefix shrinks to about what it emitted, so a run
        # of big common prefixes costs about one two-row query each.
        batch = max(2, 2 * len(got)) if in_prefix else 2 * limit
    else:
        raise RunawayListing(f"the skip-scan made no page of {wanted} in {step_limit(wanted)} steps")
    return entries


def list_objects(
    conn: Connection,
    bucket: str,
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = 1000,
    stats: Optional[ListingStats] = None,
    method: Optional[str] = None,
) -> ListPage:
    """
    One page of ListObjects.  method (L{CTE}, L{BLOCK}, L{LOOP}) says how a
    delimiter listing is walked; by default L{default_method}.
    """
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

    wanted = max_keys + 1  # one more than a page tells whether it is truncated
    scan = _Scan(conn, bucket, prefix_b, delimiter_b, upper, stats)
    entries: list = []
    if method is None and delimiter_b:
        method = default_method(conn)
    if upper is not None and start >= upper:
        pass  # nothing in the prefix sorts after the marker
    elif not delimiter_b:
        # Every row read is an entry: one range query.
        entries, _, _ = scan.batch(start, inclusive, wanted)
    elif method == LOOP:
        entries = _skip_scan(scan, start, inclusive, wanted)
    elif method in (CTE, BLOCK):
        walk = scan.cte if method == CTE else scan.block
        # The page's keys first (index only): when none of them folds, the
        # page is the range query's (a "directory" of files, read faster so
        # than by one seek per key); otherwise the walk reads it.
        keys = scan.keys(start, inclusive, wanted)
        if any(common_prefix(key, prefix_b, delimiter_b) is not None for key in keys):
            entries = walk(start, inclusive, wanted)
        elif keys:
            entries, resume, _ = scan.batch(start, inclusive, wanted)
            if resume is not None and len(entries) < wanted:
                # A key that folds was written since the keys were read.
                entries.extend(walk(resume[0], resume[1], wanted - len(entries)))
    else:
        raise ValueError(f"unknown listing method {method!r}")

    truncated = len(entries) > max_keys
    entries = entries[:max_keys]
    next_marker = None
    if truncated:
        last = entries[-1]
        next_marker = last if isinstance(last, str) else last.key
    return ListPage(entries=tuple(entries), is_truncated=truncated, next_marker=next_marker)
