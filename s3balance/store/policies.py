"""
SQL for bucket policies (the C{bucket_policies} table) and Block Public
Access configurations (C{buckets.public_access_block}).

The store keeps both as text, as L{s3balance.s3.bucket_policy} hands them
over (the policy document as received, already checked; the flags as
L{s3balance.s3.policy.PublicAccessBlock.dump} writes them): it neither
reads nor checks them.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from s3balance.store import tables
from s3balance.store.interfaces import ConcurrentInsert

_b = tables.buckets
_p = tables.bucket_policies


def set_bucket_policy(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's policy (None: remove it). -> whether the bucket exists."""
    # The bucket's row, share-locked: a DeleteBucket waits, and the policy
    # never outlives its bucket nor lands on a bucket being deleted.
    if conn.execute(select(_b.c.name).where(_b.c.name == name).with_for_update(read=True)).first() is None:
        return False
    conn.execute(delete(_p).where(_p.c.bucket == name))
    if text is not None:
        try:
            conn.execute(insert(_p).values(bucket=name, policy=text))
        except IntegrityError as e:
            # Two puts at once: the runner runs this one again, after the other.
            raise ConcurrentInsert(name) from e
    return True


def get_bucket_policy(conn: Connection, name: str) -> Optional[str]:
    return conn.execute(select(_p.c.policy).where(_p.c.bucket == name)).scalar()


def set_public_access_block(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's Block Public Access configuration (None: remove it). -> whether the bucket exists."""
    # (Matched rows on MariaDB and MySQL too: SQLAlchemy connects with CLIENT_FOUND_ROWS.)
    return conn.execute(update(_b).where(_b.c.name == name).values(public_access_block=text)).rowcount == 1


def get_public_access_block(conn: Connection, name: str) -> Optional[str]:
    return conn.execute(select(_b.c.public_access_block).where(_b.c.name == name)).scalar()
