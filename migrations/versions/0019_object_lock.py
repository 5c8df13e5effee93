"""Object Lock (store/versions.py, s3/object_lock.py):

  - on objects (a version's) and multipart_uploads (CreateMultipartUpload's,
    the object's at Complete): lock_mode (GOVERNANCE or COMPLIANCE; NULL:
    no retention), lock_until (the retain-until date) and legal_hold (1: on);
  - buckets.object_lock: the bucket's Object Lock configuration as
    s3.object_lock.dump writes it (JSON; NULL: Object Lock not enabled).

Nullable columns and one with a constant default: no table is rewritten,
so daemons of the previous release keep running during the upgrade (they
never write a locked version: they refuse Object Lock requests).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# tables.UTCDateTime() is DateTime(timezone=True) at the SQL level.
Timestamp = sa.DateTime(timezone=True)
TABLES = ("objects", "multipart_uploads")


def _lock_columns():
    return [
        sa.Column("lock_mode", sa.String(16), nullable=True),
        sa.Column("lock_until", Timestamp, nullable=True),
        sa.Column("legal_hold", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
    ]


def upgrade():
    for table in TABLES:
        for column in _lock_columns():
            op.add_column(table, column)
    op.add_column("buckets", sa.Column("object_lock", sa.String(255), nullable=True))


def downgrade():
    bind = op.get_bind()
    locked = bind.execute(
        sa.text("SELECT COUNT(*) FROM objects WHERE lock_mode IS NOT NULL OR legal_hold <> 0")
    ).scalar()
    if locked:
        raise RuntimeError(
            f"the database holds {locked} locked object versions, which the schema before 0019 cannot "
            "keep locked; keep this release"
        )
    # In place on SQLite too (3.35+), as 0013.
    sqlite = bind.dialect.name == "sqlite"
    columns = [("buckets", "object_lock")] + [
        (table, name) for table in reversed(TABLES) for name in ("legal_hold", "lock_until", "lock_mode")
    ]
    for table, name in columns:
        if sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
        else:
            op.drop_column(table, name)
