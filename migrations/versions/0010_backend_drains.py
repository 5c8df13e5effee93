"""Drains of backends (store/moves.py, ops/drain.py): the backend_drains table,
one row per backend being emptied onto the others (or done): its state,
rate limit, totals at the start, what moved, what remains and what still
refers to it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As UTCDateTime (s3balance.store.tables) stores it: timestamptz, DATETIME on MySQL/MariaDB.
Timestamp = sa.DateTime(timezone=True)

COUNTERS = (
    "total_objects",
    "total_bytes",
    "moved_objects",
    "moved_bytes",
    "remaining_objects",
    "remaining_bytes",
    "pending_writes",
    "pending_uploads",
    "pending_deletions",
    "failed_objects",
    "active_ms",
)


def upgrade():
    op.create_table(
        "backend_drains",
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=True),
        sa.Column("started", Timestamp, nullable=False),
        sa.Column("updated", Timestamp, nullable=False),
        sa.Column("finished", Timestamp, nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("backend", name="pk_backend_drains"),
    )


def downgrade():
    op.drop_table("backend_drains")
