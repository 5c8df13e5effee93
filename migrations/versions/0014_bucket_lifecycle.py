"""Bucket lifecycle (s3/lifecycle_rules.py, ops/lifecycle.py): a nullable
lifecycle column on buckets, the validated configuration as
lifecycle_rules.dump writes it (JSON; NULL: no configuration).

A nullable column without a default: no table is rewritten (PostgreSQL and
SQLite change the catalogue only, MariaDB adds it in place), so daemons of
the previous release keep running during the upgrade.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

# (Another revision may take the number 0014: the id and down_revision are
# the two strings to change when this one is renumbered.)
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As tables.LIFECYCLE: TEXT, MEDIUMTEXT on MySQL/MariaDB (1000 rules do not fit 64 KiB).
Lifecycle = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


def upgrade():
    op.add_column("buckets", sa.Column("lifecycle", Lifecycle, nullable=True))


def downgrade():
    # In place on SQLite too (3.35+), as 0013.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE buckets DROP COLUMN lifecycle")
    else:
        op.drop_column("buckets", "lifecycle")
