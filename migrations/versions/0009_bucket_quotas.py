"""Per-virtual-bucket quotas and usage (store/quotas.py):

  - buckets.quota_bytes, quota_objects (NULL: no limit) and quota_origin
    ("config" or "api");
  - write_intents.bucket (the virtual bucket written to) and .objects (the
    objects the write reserves there), indexed by bucket for the quota check;
  - bucket_usage (bucket, shard) -> bytes and objects, filled here from the
    existing objects (one INSERT ... SELECT ... GROUP BY, all in shard 0);
  - quota_locks, one row per bucket that the quota check locks.

Intents of writes in flight during the upgrade have no bucket: they reserve
nothing against a quota (their daemons predate this).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("buckets", sa.Column("quota_bytes", sa.BigInteger(), nullable=True))
    op.add_column("buckets", sa.Column("quota_objects", sa.BigInteger(), nullable=True))
    op.add_column("buckets", sa.Column("quota_origin", sa.String(16), nullable=True))
    op.add_column("write_intents", sa.Column("bucket", sa.String(63), nullable=True))
    op.add_column(
        "write_intents", sa.Column("objects", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.create_index("ix_write_intents_bucket", "write_intents", ["bucket"])
    op.create_table(
        "bucket_usage",
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("object_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "shard", name="pk_bucket_usage"),
    )
    op.create_table(
        "quota_locks",
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_quota_locks"),
    )
    # The usage of the objects stored so far (the objects' unique (bucket, key)
    # index serves the grouping).
    op.execute(
        "INSERT INTO bucket_usage (bucket, shard, used_bytes, object_count) "
        "SELECT bucket, 0, COALESCE(SUM(size), 0), COUNT(*) FROM objects GROUP BY bucket"
    )


def downgrade():
    op.drop_table("quota_locks")
    op.drop_table("bucket_usage")
    op.drop_index("ix_write_intents_bucket", table_name="write_intents")
    with op.batch_alter_table("write_intents") as batch:
        batch.drop_column("objects")
        batch.drop_column("bucket")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("quota_origin")
        batch.drop_column("quota_objects")
        batch.drop_column("quota_bytes")
