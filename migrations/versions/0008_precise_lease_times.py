"""Microseconds for leases and due times on MySQL/MariaDB: the time columns
of the small tables (write_intents, deletion_queue, job_leases) become
DATETIME(6).  A plain DATETIME keeps whole seconds, so a lease of 0.8 s
could be stored as already over.

PostgreSQL (timestamptz) and SQLite (text) keep microseconds already: no-op
there.  The big tables (objects, object_locations, multipart_uploads,
completed_uploads) keep DATETIME: changing a column's type rebuilds the
table, and their times (Last-Modified, initiation) are whole seconds anyway.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# table -> its time columns (all NOT NULL), as s3balance.store.tables has them at this revision.
COLUMNS = {
    "write_intents": ("lease_until", "created"),
    "deletion_queue": ("due", "created"),
    "job_leases": ("expires_at",),
}


def _modify(type_: str) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, columns in COLUMNS.items():
        # One ALTER per table: MariaDB copies the table once for all its columns.
        changes = ", ".join(f"MODIFY {column} {type_} NOT NULL" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade():
    _modify("DATETIME(6)")


def downgrade():
    # The fractions are lost (rounded or cut off: MySQL and MariaDB differ).
    _modify("DATETIME")
