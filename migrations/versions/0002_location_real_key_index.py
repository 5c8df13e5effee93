"""An index on object_locations.real_key, for the deletion worker's check
that no live record refers to a backend object it is about to delete.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_object_locations_real_key", "object_locations", ["real_key"], mysql_length=255
    )


def downgrade():
    op.drop_index("ix_object_locations_real_key", table_name="object_locations")
