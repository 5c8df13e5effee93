"""Paused background jobs (store/pauses.py, ops/pauses.py): the job_pauses
table, one row per cluster-wide job an operator paused: when, by whom and why.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# As UTCDateTime (s3balance.store.tables) stores it: timestamptz, DATETIME on MySQL/MariaDB.
Timestamp = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "job_pauses",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("paused_at", Timestamp, nullable=False),
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("job", name="pk_job_pauses"),
    )


def downgrade():
    op.drop_table("job_pauses")
