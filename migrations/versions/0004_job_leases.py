"""Cluster-wide background jobs: job_leases (which daemon runs each job,
until when by the database's clock) and backend_usage (bytes and objects per
backend, kept current by the daemons' deltas and reconciled by one of them),
filled here from the locations once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of the type of s3balance.store.tables at this revision.
Timestamp = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "job_leases",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_job_leases"),
    )
    op.create_table(
        "backend_usage",
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("object_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("backend", name="pk_backend_usage"),
    )
    op.execute(
        "INSERT INTO backend_usage (backend, used_bytes, object_count)"
        " SELECT l.backend, COALESCE(SUM(o.size), 0), COUNT(*)"
        " FROM object_locations l JOIN objects o ON l.object_id = o.id"
        " GROUP BY l.backend"
    )


def downgrade():
    op.drop_table("backend_usage")
    op.drop_table("job_leases")
