"""
SQL for bucket lifecycle configurations (the C{bucket_lifecycles} table) and
the pages of objects the lifecycle expirer reads.

The store keeps a configuration as text (L{s3balance.s3.lifecycle_rules.dump}):
it neither reads nor checks it.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import select
from sqlalchemy.engine import Connection

from s3balance.store import tables
from s3balance.store.buckets import set_bucket_document
from s3balance.store.interfaces import ObjectRecord
from s3balance.store.listing import successor
from s3balance.store.records import encode_key, object_record

_b = tables.buckets
_lc = tables.bucket_lifecycles
_o = tables.objects


def set_bucket_lifecycle(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's configuration (None: remove it). -> whether the bucket exists."""
    return set_bucket_document(conn, _lc, "configuration", name, text)


def get_bucket_lifecycle(conn: Connection, name: str) -> Optional[str]:
    return conn.execute(select(_lc.c.configuration).where(_lc.c.bucket == name)).scalar()


def lifecycle_buckets(conn: Connection) -> list[tuple[str, str]]:
    """(name, configuration) of every bucket with one, by name."""
    rows = conn.execute(select(_lc.c.bucket, _lc.c.configuration).order_by(_lc.c.bucket))
    return [(row.bucket, row.configuration) for row in rows]


def lifecycle_page(conn: Connection, bucket: str, prefix: str, after: str, limit: int) -> list[ObjectRecord]:
    """
    Up to C{limit} objects of C{bucket} whose key starts with C{prefix} and
    sorts after C{after}, in key order, with their tags (no locations): one
    range scan of the (bucket, key) index.
    """
    prefix_b, after_b = encode_key(prefix), encode_key(after)
    # The latest versions (noncurrent ones are not Expiration's).
    query = select(_o).where(_o.c.bucket == bucket, _o.c.latest == 1)
    if after_b >= prefix_b:
        query = query.where(_o.c.key > after_b)
    else:
        query = query.where(_o.c.key >= prefix_b)
    upper = successor(prefix_b)
    if upper is not None:
        query = query.where(_o.c.key < upper)
    rows = conn.execute(query.order_by(_o.c.key).limit(limit))
    return [object_record(row) for row in rows]
