"""Tags (s3/tagging.py): a nullable tags column, the tag set as
store/records.dump_tags writes it (NULL: no tags), on

  - objects: the version's tags (x-amz-tagging, PutObjectTagging);
  - multipart_uploads: CreateMultipartUpload's x-amz-tagging, the object's at Complete;
  - buckets: PutBucketTagging's tag set.

Nullable columns without a default: no table is rewritten (PostgreSQL and
SQLite change the catalogue only, MariaDB adds them in place), so daemons
of the previous release keep running during the upgrade; their writes
leave the column NULL (no tags), which is what they accept.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# As tables.TAGS: TEXT, MEDIUMTEXT on MySQL/MariaDB.
Tags = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")

TABLES = ("objects", "multipart_uploads", "buckets")


def upgrade():
    for table in TABLES:
        op.add_column(table, sa.Column("tags", Tags, nullable=True))


def downgrade():
    # In place on SQLite too (3.35+): a batch copy of objects would drop the
    # table its locations refer to (ON DELETE CASCADE).
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in reversed(TABLES):
        if sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN tags")
        else:
            op.drop_column(table, "tags")
