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

A delimiter page takes two statements:

 1. the first max_keys + 1 keys from the marker on, an index-only scan;
 2. when none of them folds (a "directory" of files), the page's rows by the
    same range; otherwise the page by skip-scan in one statement, a "walk"
    in which every step is one index seek to the next entry's first key:

    - SQLite and PostgreSQL: a C{WITH RECURSIVE} loose index scan (built by
      L{_cte_query}; CP is computed in SQL with the byte string functions),
      then the entries' rows joined back by key;
    - MariaDB: a correlated subquery in its recursive CTE does not seek (it
      reads the bucket's index from its first key at every step), so the
      walk is a compound statement (C{BEGIN NOT ATOMIC}, L{_block_query})
      whose loop seeks with a local variable, then selects the rows by key;
    - anything else (MySQL): a Python loop of small range queries, about one
      per common prefix (L{_skip_scan}), as on every database before.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import Integer, LargeBinary, and_, bindparam, case, cast, func, literal, select, text
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from s3balance.store import tables
from s3balance.store.interfaces import ListPage
from s3balance.store.records import decode_key, encode_key, object_record

_o = tables.objects

# Columns a listing needs (everything but nothing heavy is left out: headers
# and checksums are small and ListObjectsV2 may report checksum algorithms).
_COLUMN_NAMES = (
    "id",
    "bucket",
    "key",
    "size",
    "etag",
    "last_modified",
    "content_type",
    "headers",
    "checksums",
)
_COLUMNS = tuple(_o.c[name] for name in _COLUMN_NAMES)

# MariaDB reads "bucket = ? AND key > ? ORDER BY key LIMIT ?" with all the
# columns by the index from the bucket's first key (ref access on bucket, the
# key compared row by row: 0.2-0.3 s for a page 90 % into 10^6 keys, and one
# such query per common prefix in the loop) unless told to use the index,
# which makes it seek (range access).  The initial migration names the index.
_INDEX = "uq_objects_bucket_key"
_FORCE_INDEX = f"FORCE INDEX ({_INDEX})"

# The ways to walk a delimiter listing (see the module docstring).
CTE = "cte"
BLOCK = "block"
LOOP = "loop"
METHODS = (CTE, BLOCK, LOOP)

# The Python loop's first batch: the first rows may all sit in one huge
# common prefix.
_FIRST_BATCH = 64

# conn.info key: the recursion depth this MariaDB/MySQL session allows.
_DEPTH_INFO = "s3balance.listing.recursion_depth"
# What a session is given at least (once per connection, not once per page).
_MIN_DEPTH = 10_000


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


@functools.cache
def _range_query(inclusive: bool, bounded: bool, keys_only: bool = False):
    """
    The range query, built once: a skip-scan loop runs it about once per
    common prefix, and constructing a statement costs far more than SQLite's
    index seek.  Parameters: bucket, start, upper (when bounded), limit.
    """
    start = bindparam("start", type_=_o.c.key.type)
    query = select(*((_o.c.key,) if keys_only else _COLUMNS)).where(
        _o.c.bucket == bindparam("bucket"),
        _o.c.key >= start if inclusive else _o.c.key > start,
    )
    if bounded:
        query = query.where(_o.c.key < bindparam("upper", type_=_o.c.key.type))
    for dialect in ("mysql", "mariadb"):
        query = query.with_hint(_o, _FORCE_INDEX, dialect)
    return query.order_by(_o.c.key).limit(bindparam("limit", type_=Integer()))


def _fold(rows, prefix: bytes, delimiter: bytes) -> list:
    """Rows that are one entry each (a walk's) as entries."""
    entries: list = []
    for row in rows:
        folded = common_prefix(bytes(row.key), prefix, delimiter)
        entries.append(object_record(row) if folded is None else decode_key(folded))
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
        query = _range_query(inclusive, self.upper is not None, keys_only=True)
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
        query = _range_query(inclusive, self.upper is not None)
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
                entries.append(object_record(row))
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
        _allow_recursion(conn, wanted + 1)
        query = _cte_query(conn.dialect.name, inclusive, self.upper is not None)
        rows = self.counted(conn.execute(query, params).all())
        return _fold(rows, self.prefix, self.delimiter)

    def block(self, start: bytes, inclusive: bool, wanted: int) -> list:
        """Up to wanted entries from start, with one MariaDB compound statement."""
        params = self.walk_params(start, wanted)
        params["cut"] = len(self.delimiter) - 1
        rows = self.counted(self.conn.execute(_block_query(inclusive, self.upper is not None), params).all())
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


# Byte string functions.  Keys are BLOB / bytea / VARBINARY, so these count
# and compare bytes on every dialect.


class _find(FunctionElement):
    """find(haystack, needle): 1-based byte offset of needle in haystack, 0 when absent."""

    type = Integer()
    name = "find"
    inherit_cache = True


@compiles(_find)
def _find_sqlite(element, compiler, **kw):
    haystack, needle = element.clauses
    return f"instr({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


@compiles(_find, "postgresql")
def _find_postgresql(element, compiler, **kw):
    haystack, needle = element.clauses
    return f"position({compiler.process(needle, **kw)} in {compiler.process(haystack, **kw)})"


@compiles(_find, "mysql")
@compiles(_find, "mariadb")
def _find_mysql(element, compiler, **kw):
    haystack, needle = element.clauses
    return f"locate({compiler.process(needle, **kw)}, {compiler.process(haystack, **kw)})"


def _substr(dialect: str, value, start, length=None):
    """The bytes of value from 1-based offset start (length of them, or all)."""
    args = (value, start) if length is None else (value, start, length)
    # SQLite has substring() only from 3.34; substr() everywhere.
    return func.substr(*args) if dialect == "sqlite" else func.substring(*args)


def _concat(dialect: str, left, right):
    if dialect in ("mysql", "mariadb"):
        return func.concat(left, right, type_=LargeBinary())
    if dialect == "sqlite":
        # || makes TEXT of blobs (bytes kept, NULs too), and every TEXT sorts
        # below every BLOB: cast back to compare as bytes.
        return cast(left.op("||")(right), LargeBinary())
    return left.op("||", return_type=LargeBinary())(right)


@functools.cache
def _cte_query(dialect: str, inclusive: bool, bounded: bool):
    """
    Up to wanted entries as one statement: a recursive CTE whose every step
    is one index seek to the next entry's first key, then the rows of those
    keys in key order.

    Parameters: bucket, start, upper (when bounded), wanted, delimiter,
    after_prefix (len(prefix) + 1: where a key's delimiter is looked for),
    cut (len(prefix) + len(delimiter) - 1), ff (the byte 0xff).
    """
    key_type = _o.c.key.type
    bucket = bindparam("bucket", type_=_o.c.bucket.type)
    start = bindparam("start", type_=key_type)
    upper = bindparam("upper", type_=key_type)

    def in_range(table, lower):
        conditions = [table.c.bucket == bucket, lower]
        if bounded:
            conditions.append(table.c.key < upper)
        return and_(*conditions)

    head = _o.alias("head")
    first = (
        select(head.c.key)
        .where(in_range(head, head.c.key >= start if inclusive else head.c.key > start))
        .order_by(head.c.key)
        .limit(1)
        .subquery("first")
    )
    walk = select(literal(1, Integer()).label("n"), first.c.key.label("k")).cte("walk", recursive=True)

    # Where the next entry starts: after every key of walk.k's common prefix
    # CP (CP || 0xff), or just after walk.k when it is listed itself.
    found = _find(
        _substr(dialect, walk.c.k, bindparam("after_prefix", type_=Integer())),
        bindparam("delimiter", type_=key_type),
    )
    folded = _substr(dialect, walk.c.k, 1, found + bindparam("cut", type_=Integer()))
    seek = case(
        (found > 0, _concat(dialect, folded, bindparam("ff", type_=key_type))),
        else_=walk.c.k,
    )
    step = _o.alias("step")
    following = (
        select(step.c.key)
        .where(in_range(step, step.c.key > seek))
        .order_by(step.c.key)
        .limit(1)
        .correlate(walk)
        .scalar_subquery()
    )
    walk = walk.union_all(
        select(walk.c.n + 1, following).where(
            walk.c.k.is_not(None), walk.c.n < bindparam("wanted", type_=Integer())
        )
    )

    entry = _o.alias("entry")
    return (
        select(*(entry.c[name] for name in _COLUMN_NAMES))
        .select_from(walk.join(entry, and_(entry.c.bucket == bucket, entry.c.key == walk.c.k)))
        .order_by(walk.c.n)
    )


def _allow_recursion(conn: Connection, depth: int) -> None:
    """
    Let this MariaDB/MySQL session recurse depth times (the CTE walk is not
    their default, but it works there).  MariaDB stops a recursive CTE after
    max_recursive_iterations steps (1000 by default in 10.11) with only a
    warning: a short page that would pass for the last one.  MySQL fails at
    cte_max_recursion_depth (default 1000).  Once per connection: conn.info
    lives as long as the DBAPI connection.
    """
    if conn.dialect.name not in ("mysql", "mariadb") or conn.info.get(_DEPTH_INFO, 0) >= depth:
        return
    depth = max(depth, _MIN_DEPTH)
    if getattr(conn.dialect, "is_mariadb", False):
        variable = "max_recursive_iterations"
    else:
        variable = "cte_max_recursion_depth"
    conn.exec_driver_sql(f"SET SESSION {variable} = GREATEST(@@SESSION.{variable}, {int(depth)})")
    conn.info[_DEPTH_INFO] = depth


# The MariaDB walk.  Statements in a stored program are optimized with their
# local variables' values, so "key > v_key" is an index seek (a correlated
# subquery in a recursive CTE is not).  The keys found are collected as a
# list of literals (QUOTE escapes them for the SQL parser, as the driver
# escapes parameters; _binary: compared as bytes), appended 32 at a time (one
# by one, every append copies the whole list: 0.3 s for a page of 200-byte
# keys), and their rows selected with EXECUTE IMMEDIATE.  At most about
# 1001 * (1024 + 12) bytes of SQL: far below max_allowed_packet (16 MiB).
_BLOCK = """\
BEGIN NOT ATOMIC
  DECLARE v_key VARBINARY(1025) DEFAULT NULL;
  DECLARE v_found LONGBLOB DEFAULT 'NULL';
  DECLARE v_chunk LONGBLOB DEFAULT '';
  DECLARE v_count INT DEFAULT 0;
  DECLARE v_at INT DEFAULT 0;
  SET v_key = (SELECT `key` FROM objects FORCE INDEX ({index})
    WHERE bucket = :bucket AND `key` {start} {upper} ORDER BY `key` LIMIT 1);
  WHILE v_key IS NOT NULL AND v_count < :wanted DO
    SET v_count = v_count + 1;
    SET v_chunk = CONCAT(v_chunk, ',_binary', QUOTE(v_key));
    IF MOD(v_count, 32) = 0 THEN
      SET v_found = CONCAT(v_found, v_chunk);
      SET v_chunk = '';
    END IF;
    SET v_at = LOCATE(:delimiter, v_key, :after_prefix);
    IF v_at > 0 THEN
      SET v_key = CONCAT(SUBSTRING(v_key, 1, v_at + :cut), x'ff');
    END IF;
    SET v_key = (SELECT `key` FROM objects FORCE INDEX ({index})
      WHERE bucket = :bucket AND `key` > v_key {upper} ORDER BY `key` LIMIT 1);
  END WHILE;
  EXECUTE IMMEDIATE CONCAT(
    'SELECT {columns} FROM objects FORCE INDEX ({index}) WHERE bucket = ? AND `key` IN (',
    v_found, v_chunk, ') ORDER BY `key`'
  ) USING :bucket;
END"""


@functools.cache
def _block_query(inclusive: bool, bounded: bool):
    """
    Up to wanted entries as one MariaDB compound statement.  Parameters:
    bucket, start, upper (when bounded), wanted, delimiter, after_prefix
    (len(prefix) + 1), cut (len(delimiter) - 1).
    """
    key_type = _o.c.key.type
    sql = _BLOCK.format(
        index=_INDEX,
        start=">= :start" if inclusive else "> :start",
        upper="AND `key` < :upper" if bounded else "",
        columns=", ".join(f"`{name}`" for name in _COLUMN_NAMES),
    )
    params = [
        bindparam("bucket", type_=_o.c.bucket.type),
        bindparam("start", type_=key_type),
        bindparam("wanted", type_=Integer()),
        bindparam("delimiter", type_=key_type),
        bindparam("after_prefix", type_=Integer()),
        bindparam("cut", type_=Integer()),
    ]
    if bounded:
        params.append(bindparam("upper", type_=key_type))
    return text(sql).bindparams(*params).columns(*_COLUMNS)


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
