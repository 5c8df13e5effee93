"""Bucket ownership (accounts): a nullable owner column on buckets, the id
of the account that created the bucket (CreateBucket).  NULL means the
configured default owner (s3api.default_owner): every bucket that exists
before this migration, and configured buckets.

A nullable column without a default: no table is rewritten (PostgreSQL and
SQLite change the catalogue only, MariaDB adds it in place), so daemons of
the previous release keep running during the upgrade; a bucket they create
meanwhile has a NULL owner, the default owner's.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

# Another migration may take this number first: only these two names and
# the file name change when it is renumbered.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("buckets", sa.Column("owner", sa.String(64), nullable=True))


def downgrade():
    # In place on SQLite too (3.35+), as 0013.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE buckets DROP COLUMN owner")
    else:
        op.drop_column("buckets", "owner")
