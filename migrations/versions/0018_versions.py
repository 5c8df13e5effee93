"""Object versions (S3 versioning, store/versions.py):

  - objects holds every version of a key, not only the current one:
    version_id (NULL: the "null" version), latest (1 on the key's newest
    version when it is not a delete marker, NULL on every other version:
    the unique constraint (bucket, key, latest) keeps one such row per key
    and lets the others be many, as NULLs never collide) and delete_marker;
  - buckets.versioning: NULL (never enabled), 'Enabled' or 'Suspended'.

Every existing object becomes its key's null version, the latest one.

PostgreSQL and MariaDB add the columns in place (a constant default:
no table rewrite), add the new unique index and drop the old one (MariaDB
builds it online; PostgreSQL holds writes to objects while it builds);
daemons of the previous release keep reading and writing meanwhile.
SQLite can drop no constraint: objects is rebuilt, and object_locations
with it, because dropping the old objects table would cascade to its
locations (foreign keys are on).  The new tables are created under other
names, referring to each other, filled, and renamed over the old ones,
all in the migration's one transaction.

The downgrade refuses while the database holds a version other than a
latest null one (it would have to destroy versions).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT, VARBINARY

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# Frozen copies of the types of s3balance.store.tables at this revision.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KeyBytes = sa.LargeBinary().with_variant(VARBINARY(1024), "mysql", "mariadb")
Timestamp = sa.DateTime(timezone=True)
Document = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")

OLD_UNIQUE = "uq_objects_bucket_key"
NEW_UNIQUE = "uq_objects_bucket_key_latest"

_OBJECT_COLUMNS = (
    "id", "bucket", "key", "size", "etag", "last_modified", "content_type", "headers", "checksums", "tags", "acl",
)
_LOCATION_COLUMNS = ("id", "object_id", "backend", "real_key", "created")


def _version_columns():
    return [
        sa.Column("version_id", sa.String(64), nullable=True),
        sa.Column("latest", sa.SmallInteger(), nullable=True, server_default=sa.text("1")),
        sa.Column("delete_marker", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
    ]


def _sqlite_tables(metadata, objects_name, locations_name, versions):
    """The two tables as at this revision (with or without the version columns) under the given names."""
    objects = sa.Table(
        objects_name,
        metadata,
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KeyBytes, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("last_modified", Timestamp, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.Column("tags", Document, nullable=True),
        sa.Column("acl", Document, nullable=True),
        *(_version_columns() if versions else ()),
        sa.PrimaryKeyConstraint("id", name="pk_objects"),
        sa.UniqueConstraint(
            "bucket", "key", *(("latest",) if versions else ()), name=NEW_UNIQUE if versions else OLD_UNIQUE
        ),
    )
    locations = sa.Table(
        locations_name,
        metadata,
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("object_id", Id, nullable=False),
        sa.Column("backend", sa.String(63), nullable=False),
        sa.Column("real_key", sa.String(1100), nullable=False),
        sa.Column("created", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_object_locations"),
        sa.ForeignKeyConstraint(
            ["object_id"], [f"{objects_name}.id"], name="fk_object_locations_object_id_objects", ondelete="CASCADE"
        ),
    )
    return objects, locations


def _rebuild_sqlite(versions):
    """Rebuild objects and object_locations on SQLite, with (upgrade) or without (downgrade) the version columns."""
    bind = op.get_bind()
    metadata = sa.MetaData()
    objects, locations = _sqlite_tables(metadata, "objects_rebuilt", "object_locations_rebuilt", versions)
    objects.create(bind)
    locations.create(bind)
    columns = ", ".join(f'"{name}"' for name in _OBJECT_COLUMNS)
    if versions:
        op.execute(
            f"INSERT INTO objects_rebuilt ({columns}, version_id, latest, delete_marker) "
            f"SELECT {columns}, NULL, 1, 0 FROM objects"
        )
    else:
        op.execute(f"INSERT INTO objects_rebuilt ({columns}) SELECT {columns} FROM objects")
    located = ", ".join(f'"{name}"' for name in _LOCATION_COLUMNS)
    op.execute(f"INSERT INTO object_locations_rebuilt ({located}) SELECT {located} FROM object_locations")
    # Locations first: dropping objects then cascades to nothing.  Renaming
    # objects_rebuilt makes object_locations_rebuilt's foreign key name it.
    op.execute("DROP TABLE object_locations")
    op.execute("DROP TABLE objects")
    op.execute("ALTER TABLE objects_rebuilt RENAME TO objects")
    op.execute("ALTER TABLE object_locations_rebuilt RENAME TO object_locations")
    op.create_index("ix_object_locations_object_id", "object_locations", ["object_id"])
    op.create_index("ix_object_locations_backend", "object_locations", ["backend"])
    op.create_index("ix_object_locations_real_key", "object_locations", ["real_key"])


def upgrade():
    op.add_column("buckets", sa.Column("versioning", sa.String(16), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(versions=True)
        return
    for column in _version_columns():
        op.add_column("objects", column)
    op.create_unique_constraint(NEW_UNIQUE, "objects", ["bucket", "key", "latest"])
    op.drop_constraint(OLD_UNIQUE, "objects", type_="unique")


def downgrade():
    bind = op.get_bind()
    kept = bind.execute(
        sa.text("SELECT COUNT(*) FROM objects WHERE latest IS NULL OR version_id IS NOT NULL")
    ).scalar()
    if kept:
        raise RuntimeError(
            f"the database holds {kept} object versions or delete markers that the schema before 0018 "
            "cannot keep; delete them (or keep this release) before downgrading"
        )
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(versions=False)
        op.execute("ALTER TABLE buckets DROP COLUMN versioning")
        return
    op.create_unique_constraint(OLD_UNIQUE, "objects", ["bucket", "key"])
    op.drop_constraint(NEW_UNIQUE, "objects", type_="unique")
    for name in ("delete_marker", "latest", "version_id"):
        op.drop_column("objects", name)
    op.drop_column("buckets", "versioning")
