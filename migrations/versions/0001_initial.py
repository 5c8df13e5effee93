"""The initial schema: buckets, objects and their locations, write intents,
the deletion queue, multipart uploads and monthly backend operation counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import VARBINARY

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types of s3balance.store.tables at this revision (a
# migration must not change when tables.py changes later).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KeyBytes = sa.LargeBinary().with_variant(VARBINARY(1024), "mysql", "mariadb")
Timestamp = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "buckets",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created", Timestamp, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_buckets"),
    )
    op.create_table(
        "objects",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KeyBytes, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("last_modified", Timestamp, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_objects"),
        sa.UniqueConstraint("bucket", "key", name="uq_objects_bucket_key"),
    )
    op.create_table(
        "object_locations",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("object_id", Id, nullable=False),
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("created", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_object_locations"),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
            name="fk_object_locations_object_id_objects",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_object_locations_object_id", "object_locations", ["object_id"])
    op.create_index("ix_object_locations_backend", "object_locations", ["backend"])
    op.create_table(
        "write_intents",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("lease_until", Timestamp, nullable=False),
        sa.Column("created", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_write_intents"),
    )
    op.create_index("ix_write_intents_lease_until", "write_intents", ["lease_until"])
    op.create_table(
        "deletion_queue",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("backend_upload_id", sa.String(1024), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due", Timestamp, nullable=False),
        sa.Column("created", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_queue"),
    )
    op.create_index("ix_deletion_queue_due", "deletion_queue", ["due"])
    op.create_table(
        "multipart_uploads",
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KeyBytes, nullable=False),
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("backend_upload_id", sa.String(1024), nullable=False),
        sa.Column("initiated", Timestamp, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name="pk_multipart_uploads"),
    )
    op.create_index("ix_multipart_uploads_bucket_key", "multipart_uploads", ["bucket", "key"])
    op.create_index("ix_multipart_uploads_initiated", "multipart_uploads", ["initiated"])
    op.create_table(
        "backend_operations",
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("type_a", sa.BigInteger(), nullable=False),
        sa.Column("type_b", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("backend", "month", name="pk_backend_operations"),
    )


def downgrade():
    op.drop_table("backend_operations")
    op.drop_index("ix_multipart_uploads_initiated", table_name="multipart_uploads")
    op.drop_index("ix_multipart_uploads_bucket_key", table_name="multipart_uploads")
    op.drop_table("multipart_uploads")
    op.drop_index("ix_deletion_queue_due", table_name="deletion_queue")
    op.drop_table("deletion_queue")
    op.drop_index("ix_write_intents_lease_until", table_name="write_intents")
    op.drop_table("write_intents")
    op.drop_index("ix_object_locations_backend", table_name="object_locations")
    op.drop_index("ix_object_locations_object_id", table_name="object_locations")
    op.drop_table("object_locations")
    op.drop_table("objects")
    op.drop_table("buckets")
