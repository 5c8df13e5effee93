"""Blocked drains (store/moves.py, ops/drain.py): backend_drains.blocked_objects,
the objects a drain's last pass could not move because no other backend can
hold another copy of them (every backend that could already holds one).

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "backend_drains",
        sa.Column("blocked_objects", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade():
    op.drop_column("backend_drains", "blocked_objects")
