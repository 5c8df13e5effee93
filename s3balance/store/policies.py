"""
SQL for bucket policies (the C{bucket_policies} table) and Block Public
Access configurations (C{buckets.public_access_block}).

The store keeps both as text, as L{s3balance.s3.bucket_policy} hands them
over (the policy document as received, already checked; the flags as
L{s3balance.s3.public_access_block.PublicAccessBlock.dump} writes them): it
never checks them, and reads them with the bucket (C{buckets.get_bucket}).
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import update
from sqlalchemy.engine import Connection

from s3balance.store import tables
from s3balance.store.buckets import set_bucket_document

_b = tables.buckets
_p = tables.bucket_policies


def set_bucket_policy(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's policy (None: remove it). -> whether the bucket exists."""
    return set_bucket_document(conn, _p, "policy", name, text)


def set_public_access_block(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's Block Public Access configuration (None: remove it). -> whether the bucket exists."""
    # (Matched rows on MariaDB and MySQL too: SQLAlchemy connects with CLIENT_FOUND_ROWS.)
    return conn.execute(update(_b).where(_b.c.name == name).values(public_access_block=text)).rowcount == 1

