"""Bucket lifecycle (s3/lifecycle_rules.py, ops/lifecycle.py): a table
bucket_lifecycles, one row per bucket with a configuration (the validated
configuration as lifecycle_rules.dump writes it, JSON), gone with its
bucket (ON DELETE CASCADE).

A new table: nothing existing is rewritten or read differently, so daemons
of the previous release keep running during the upgrade (they neither read
nor write it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# As tables.TAGS: TEXT, MEDIUMTEXT on MySQL/MariaDB (1000 rules do not fit 64 KiB).
Configuration = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "bucket_lifecycles",
        sa.Column("bucket", sa.String(63), sa.ForeignKey("buckets.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("configuration", Configuration, nullable=False),
    )


def downgrade():
    op.drop_table("bucket_lifecycles")
