"""Reservations that hold across daemons: write_intents.size (the bytes a
write in flight reserves on its backend), multipart_uploads.reserved (the
bytes of the parts uploaded so far), indexes on their backend columns (the
capacity check sums by backend) and capacity_locks, one row per backend
that the capacity check locks so the checks of all daemons take turns.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # Rows of writes already in flight reserve nothing (their daemons predate this).
    op.add_column("write_intents", sa.Column("size", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.add_column(
        "multipart_uploads", sa.Column("reserved", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
    )
    op.create_index("ix_write_intents_backend", "write_intents", ["backend"])
    op.create_index("ix_multipart_uploads_backend", "multipart_uploads", ["backend"])
    op.create_table(
        "capacity_locks",
        sa.Column("backend", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("backend", name="pk_capacity_locks"),
    )


def downgrade():
    op.drop_table("capacity_locks")
    op.drop_index("ix_multipart_uploads_backend", table_name="multipart_uploads")
    op.drop_index("ix_write_intents_backend", table_name="write_intents")
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.drop_column("reserved")
    with op.batch_alter_table("write_intents") as batch:
        batch.drop_column("size")
