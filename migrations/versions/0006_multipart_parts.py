"""The parts of open multipart uploads (size, ETag, verified checksums), the
uploads completed lately with what their CompleteMultipartUpload answered (a
retried Complete answers the same), and the parts of completed multipart
objects with checksums (GetObjectAttributes' ObjectParts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import VARBINARY

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies of the types of s3balance.store.tables at this revision.
KeyBytes = sa.LargeBinary().with_variant(VARBINARY(1024), "mysql", "mariadb")
Timestamp = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "multipart_parts",
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_multipart_parts"),
    )
    op.create_table(
        "completed_uploads",
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KeyBytes, nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.Column("completed", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name="pk_completed_uploads"),
    )
    op.create_index("ix_completed_uploads_completed", "completed_uploads", ["completed"])
    op.create_table(
        "object_parts",
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_object_parts_real_key_part_number",
        "object_parts",
        ["real_key", "part_number"],
        mysql_length={"real_key": 255},
    )


def downgrade():
    op.drop_index("ix_object_parts_real_key_part_number", table_name="object_parts")
    op.drop_table("object_parts")
    op.drop_index("ix_completed_uploads_completed", table_name="completed_uploads")
    op.drop_table("completed_uploads")
    op.drop_table("multipart_parts")
