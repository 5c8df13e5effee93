"""multipart_uploads.last_part: when the upload last received a part, so that
balancer.multipart_max_age counts idleness, not age (an upload still
receiving parts is never aborted).  NULL until the first part: the upload's
initiation counts then.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("multipart_uploads", sa.Column("last_part", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.drop_column("last_part")
