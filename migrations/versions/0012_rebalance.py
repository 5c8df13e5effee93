"""The cluster's rebalance (store/rebalance.py, ops/rebalance.py): the
rebalances table, at most one row: its state, margin, rate limit, what moved
and the mover's last measure of the spread.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As UTCDateTime (s3balance.store.tables) stores it: timestamptz, DATETIME on MySQL/MariaDB.
Timestamp = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "rebalances",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("margin_ppm", sa.BigInteger(), nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=True),
        sa.Column("started", Timestamp, nullable=False),
        sa.Column("updated", Timestamp, nullable=False),
        sa.Column("finished", Timestamp, nullable=True),
        sa.Column("moved_objects", sa.BigInteger(), nullable=False),
        sa.Column("moved_bytes", sa.BigInteger(), nullable=False),
        sa.Column("failed_objects", sa.BigInteger(), nullable=False),
        sa.Column("active_ms", sa.BigInteger(), nullable=False),
        sa.Column("spread_ppm", sa.BigInteger(), nullable=True),
        sa.Column("remaining_bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rebalances"),
    )


def downgrade():
    op.drop_table("rebalances")
