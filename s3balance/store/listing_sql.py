"""
The SQL statements behind L{s3balance.store.listing}: the range query, and
the two ways to walk a delimiter listing by skip-scan in one statement (see
that module's docstring): a C{WITH RECURSIVE} loose index scan
(L{cte_query}: SQLite, PostgreSQL) and MariaDB's compound statement
(L{block_query}).  The same two walks over every version of every key, for
ListObjectVersions (L{s3balance.store.version_listing}), are
L{version_cte_query} and L{version_block_query}.  Each is built once per
shape and cached.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Union

from sqlalchemy import (
    Integer,
    LargeBinary,
    Select,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import NamedFromClause, TextualSelect

from s3balance.store import tables

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
# A literal, not a bound parameter: the raw paths bind only the caller's.
_LATEST: ColumnElement[int] = literal_column("1")

# MariaDB reads "bucket = ? AND key > ? ORDER BY key LIMIT ?" with all the
# columns by the index from the bucket's first key (ref access on bucket, the
# key compared row by row: 0.2-0.3 s for a page 90 % into 10^6 keys, and one
# such query per common prefix in the loop) unless told to use the index,
# which makes it seek (range access).  Migration 0018 names the index.
#
# Every query reads the latest live version of each key only (latest = 1:
# from the index, so noncurrent versions and delete markers are skipped
# without reading their rows).
_INDEX = "uq_objects_bucket_key_latest"
_FORCE_INDEX = f"FORCE INDEX ({_INDEX})"

# conn.info key: the recursion depth this MariaDB/MySQL session allows.
_DEPTH_INFO = "s3balance.listing.recursion_depth"
# What a session is given at least (once per connection, not once per page).
_MIN_DEPTH = 10_000


@functools.cache
def range_query(inclusive: bool, bounded: bool, keys_only: bool = False) -> Select:
    """
    The range query, built once: a skip-scan loop runs it about once per
    common prefix, and constructing a statement costs far more than SQLite's
    index seek.  Parameters: bucket, start, upper (when bounded), limit.
    """
    start = bindparam("start", type_=_o.c.key.type)
    query = select(*((_o.c.key,) if keys_only else _COLUMNS)).where(
        _o.c.bucket == bindparam("bucket"),
        _o.c.key >= start if inclusive else _o.c.key > start,
        _o.c.latest == _LATEST,
    )
    if bounded:
        query = query.where(_o.c.key < bindparam("upper", type_=_o.c.key.type))
    for dialect in ("mysql", "mariadb"):
        query = query.with_hint(_o, _FORCE_INDEX, dialect)
    return query.order_by(_o.c.key).limit(bindparam("limit", type_=Integer()))


# Byte string functions.  Keys are BLOB / bytea / VARBINARY, so these count
# and compare bytes on every dialect.


class _find(FunctionElement):
    """find(haystack, needle): 1-based byte offset of needle in haystack, 0 when absent."""

    type = Integer()
    name = "find"
    inherit_cache = True


@compiles(_find)
def _find_sqlite(element: _find, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = element.clauses
    return f"instr({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


@compiles(_find, "postgresql")
def _find_postgresql(element: _find, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = element.clauses
    return f"position({compiler.process(needle, **kw)} in {compiler.process(haystack, **kw)})"


@compiles(_find, "mysql")
@compiles(_find, "mariadb")
def _find_mysql(element: _find, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = element.clauses
    return f"locate({compiler.process(needle, **kw)}, {compiler.process(haystack, **kw)})"


def _substr(
    dialect: str,
    value: ColumnElement[Any],
    start: Union[int, ColumnElement[Any]],
    length: Optional[Union[int, ColumnElement[Any]]] = None,
) -> ColumnElement[Any]:
    """The bytes of value from 1-based offset start (length of them, or all)."""
    args = (value, start) if length is None else (value, start, length)
    # SQLite has substring() only from 3.34; substr() everywhere.
    return func.substr(*args) if dialect == "sqlite" else func.substring(*args)


def _concat(dialect: str, left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[Any]:
    if dialect in ("mysql", "mariadb"):
        return func.concat(left, right, type_=LargeBinary())
    if dialect == "sqlite":
        # || makes TEXT of blobs (bytes kept, NULs too), and every TEXT sorts
        # below every BLOB: cast back to compare as bytes.
        return cast(left.op("||")(right), LargeBinary())
    return left.op("||", return_type=LargeBinary())(right)


@functools.cache
def cte_query(dialect: str, inclusive: bool, bounded: bool) -> Select:
    """
    The first keys of up to wanted entries as one statement: a recursive
    CTE whose every step is one index seek to the next entry's first key
    (an index-only read), in key order.

    Parameters: bucket, start, upper (when bounded), wanted, delimiter,
    after_prefix (len(prefix) + 1: where a key's delimiter is looked for),
    cut (len(prefix) + len(delimiter) - 1), ff (the byte 0xff).
    """
    key_type = _o.c.key.type
    bucket = bindparam("bucket", type_=_o.c.bucket.type)
    start = bindparam("start", type_=key_type)
    upper = bindparam("upper", type_=key_type)

    def in_range(table: NamedFromClause, lower: ColumnElement[bool]) -> ColumnElement[bool]:
        conditions = [table.c.bucket == bucket, lower, table.c.latest == _LATEST]
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

    # The keys only: most entries of a walk are common prefixes, which need
    # no row (L{rows_query} reads the rows of those that are keys).
    return select(walk.c.k.label("key")).where(walk.c.k.is_not(None)).order_by(walk.c.n)


@functools.cache
def rows_query() -> Select:
    """The listing columns of the latest versions of some keys.  Parameters: bucket, keys (expanding)."""
    return select(*_COLUMNS).where(
        _o.c.bucket == bindparam("bucket"),
        _o.c.key.in_(bindparam("keys", expanding=True, type_=_o.c.key.type)),
        _o.c.latest == _LATEST,
    )


def allow_recursion(conn: Connection, depth: int) -> None:
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
    WHERE bucket = :bucket AND `key` {start} {upper} AND latest = 1 ORDER BY `key` LIMIT 1);
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
      WHERE bucket = :bucket AND `key` > v_key {upper} AND latest = 1 ORDER BY `key` LIMIT 1);
  END WHILE;
  EXECUTE IMMEDIATE CONCAT(
    'SELECT {columns} FROM objects FORCE INDEX ({index}) WHERE bucket = ? AND latest = 1 AND `key` IN (',
    v_found, v_chunk, ') ORDER BY `key`'
  ) USING :bucket;
END"""


def _block_params(bounded: bool) -> list[BindParameter[Any]]:
    """The parameters of a MariaDB compound statement's walk (L{block_query}, L{version_block_query})."""
    key_type = _o.c.key.type
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
    return params


@functools.cache
def block_query(inclusive: bool, bounded: bool) -> TextualSelect:
    """
    Up to wanted entries as one MariaDB compound statement.  Parameters:
    bucket, start, upper (when bounded), wanted, delimiter, after_prefix
    (len(prefix) + 1), cut (len(delimiter) - 1).
    """
    sql = _BLOCK.format(
        index=_INDEX,
        start=">= :start" if inclusive else "> :start",
        upper="AND `key` < :upper" if bounded else "",
        columns=", ".join(f"`{name}`" for name in _COLUMN_NAMES),
    )
    params = _block_params(bounded)
    return text(sql).bindparams(*params).columns(*_COLUMNS)


# -- ListObjectVersions --------------------------------------------------------
#
# The same walks over every row of a key (its versions and delete markers,
# latest or not: no latest = 1 condition; the index's (bucket, key) prefix
# still seeks).  A step counts the entries its key makes (1 for a common
# prefix, the key's rows otherwise: an index-only count), and the walk stops
# once the keys found make the entries wanted, so a page of keys with many
# versions seeks no further than it lists.  The rows come back one per
# common prefix (walk_key its first key, the object columns NULL) and every
# row of each listed key, newest first; a last row whose walk_key is NULL
# says the range holds nothing more.

VERSION_COLUMN_NAMES = _COLUMN_NAMES + ("version_id", "delete_marker")


@functools.cache
def version_cte_query(dialect: str, inclusive: bool, bounded: bool) -> Select:
    """
    The rows of up to wanted entries of ListObjectVersions as one statement
    (SQLite, PostgreSQL): a recursive CTE whose every step is one index seek
    to the next key (walk_key) that is an entry or starts a common prefix,
    joined to the rows of the keys listed, in key order and each key's
    newest first, at most wanted rows.

    Parameters: bucket, start (the walk begins at the first key from it,
    when inclusive, or after it), upper (when bounded), wanted, delimiter, after_prefix (len(prefix) + 1),
    cut (len(prefix) + len(delimiter) - 1), ff (the byte 0xff).
    """
    key_type = _o.c.key.type
    bucket = bindparam("bucket", type_=_o.c.bucket.type)
    upper = bindparam("upper", type_=key_type)
    wanted = bindparam("wanted", type_=Integer())
    after_prefix = bindparam("after_prefix", type_=Integer())
    delimiter = bindparam("delimiter", type_=key_type)

    def in_range(table: NamedFromClause, lower: ColumnElement[bool]) -> ColumnElement[bool]:
        conditions = [table.c.bucket == bucket, lower]
        if bounded:
            conditions.append(table.c.key < upper)
        return and_(*conditions)

    def found(key: ColumnElement[Any]) -> ColumnElement[int]:
        """Where the delimiter is after the prefix in key (0: nowhere, the key is listed)."""
        return _find(_substr(dialect, key, after_prefix), delimiter)

    start = bindparam("start", type_=key_type)
    head = _o.alias("head")
    first = (
        select(head.c.key)
        .where(in_range(head, head.c.key >= start if inclusive else head.c.key > start))
        .order_by(head.c.key)
        .limit(1)
        .scalar_subquery()
    )
    # n: the step; k: its key (NULL: nothing more); done: the entries before k.
    walk = select(
        literal(1, Integer()).label("n"), first.label("k"), literal(0, Integer()).label("done")
    ).cte("walk", recursive=True)

    at = found(walk.c.k)
    folded = _substr(dialect, walk.c.k, 1, at + bindparam("cut", type_=Integer()))
    seek = case((at > 0, _concat(dialect, folded, bindparam("ff", type_=key_type))), else_=walk.c.k)
    step = _o.alias("step")
    following = (
        select(step.c.key)
        .where(in_range(step, step.c.key > seek))
        .order_by(step.c.key)
        .limit(1)
        .correlate(walk)
        .scalar_subquery()
    )
    counted = _o.alias("counted")
    rows_of_key = (
        select(func.count())
        .select_from(counted)
        .where(counted.c.bucket == bucket, counted.c.key == walk.c.k)
        .correlate(walk)
        .scalar_subquery()
    )
    made = case((at > 0, literal_column("1")), else_=rows_of_key)
    walk = walk.union_all(
        select(walk.c.n + 1, following, cast(walk.c.done + made, Integer())).where(
            walk.c.k.is_not(None), walk.c.done < wanted
        )
    )

    entry = _o.alias("entry")
    listed = and_(entry.c.bucket == bucket, entry.c.key == walk.c.k, found(walk.c.k) == 0)
    return (
        select(walk.c.k.label("walk_key"), *(entry.c[name] for name in VERSION_COLUMN_NAMES))
        .select_from(walk.outerjoin(entry, listed))
        .order_by(walk.c.n, entry.c.id.desc())
        .limit(wanted)
    )


# The MariaDB version walk: as _BLOCK, the keys found collected as a derived
# table of literals (a UNION ALL of one-row selects), the rows of the listed
# ones joined to it.  The loop counts the entries before v_key in v_count.
_VERSION_BLOCK = """\
BEGIN NOT ATOMIC
  DECLARE v_key VARBINARY(1025) DEFAULT NULL;
  DECLARE v_found LONGBLOB DEFAULT 'SELECT NULL AS k FROM DUAL WHERE 0';
  DECLARE v_chunk LONGBLOB DEFAULT '';
  DECLARE v_steps INT DEFAULT 0;
  DECLARE v_count INT DEFAULT 0;
  DECLARE v_at INT DEFAULT 0;
  SET v_key = (SELECT `key` FROM objects FORCE INDEX ({index})
    WHERE bucket = :bucket AND `key` {start} {upper} ORDER BY `key` LIMIT 1);
  WHILE v_key IS NOT NULL AND v_count < :wanted DO
    SET v_steps = v_steps + 1;
    SET v_chunk = CONCAT(v_chunk, ' UNION ALL SELECT _binary', QUOTE(v_key));
    IF MOD(v_steps, 32) = 0 THEN
      SET v_found = CONCAT(v_found, v_chunk);
      SET v_chunk = '';
    END IF;
    SET v_at = LOCATE(:delimiter, v_key, :after_prefix);
    IF v_at > 0 THEN
      SET v_count = v_count + 1;
      SET v_key = CONCAT(SUBSTRING(v_key, 1, v_at + :cut), x'ff');
    ELSE
      SET v_count = v_count + (SELECT COUNT(*) FROM objects FORCE INDEX ({index})
        WHERE bucket = :bucket AND `key` = v_key);
    END IF;
    SET v_key = (SELECT `key` FROM objects FORCE INDEX ({index})
      WHERE bucket = :bucket AND `key` > v_key {upper} ORDER BY `key` LIMIT 1);
  END WHILE;
  IF v_key IS NULL THEN
    SET v_chunk = CONCAT(v_chunk, ' UNION ALL SELECT NULL');
  END IF;
  EXECUTE IMMEDIATE CONCAT(
    'SELECT w.k AS walk_key, {columns} FROM (', v_found, v_chunk, ') w',
    ' LEFT JOIN objects o FORCE INDEX ({index}) ON o.bucket = ? AND o.`key` = w.k AND LOCATE(?, w.k, ?) = 0',
    ' ORDER BY w.k IS NULL, w.k, o.id DESC LIMIT ?'
  ) USING :bucket, :delimiter, :after_prefix, :wanted;
END"""


@functools.cache
def version_block_query(inclusive: bool, bounded: bool) -> TextualSelect:
    """
    The rows of up to wanted entries of ListObjectVersions as one MariaDB
    compound statement, as L{version_cte_query}'s.  Parameters: bucket,
    start, upper (when bounded), wanted, delimiter, after_prefix
    (len(prefix) + 1), cut (len(delimiter) - 1).
    """
    key_type = _o.c.key.type
    sql = _VERSION_BLOCK.format(
        index=_INDEX,
        start=">= :start" if inclusive else "> :start",
        upper="AND `key` < :upper" if bounded else "",
        columns=", ".join(f"o.`{name}`" for name in VERSION_COLUMN_NAMES),
    )
    params = _block_params(bounded)
    columns = (column("walk_key", key_type), *(_o.c[name] for name in VERSION_COLUMN_NAMES))
    return text(sql).bindparams(*params).columns(*columns)
