"""Indexes on write_intents.real_key, multipart_uploads.real_key and
deletion_queue.real_key: the deletion worker's check that no live record
refers to a backend object (objects.is_referenced) and the cleaners look
real keys up in all three.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (A prefix on MySQL/MariaDB, whose index keys are at most 3072 bytes, as in 0002.)
_INDEXES = (
    ("ix_write_intents_real_key", "write_intents"),
    ("ix_multipart_uploads_real_key", "multipart_uploads"),
    ("ix_deletion_queue_real_key", "deletion_queue"),
)


def upgrade():
    for name, table in _INDEXES:
        op.create_index(name, table, ["real_key"], mysql_length=255)


def downgrade():
    for name, table in _INDEXES:
        op.drop_index(name, table_name=table)
