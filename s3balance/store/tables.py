"""
The metadata schema as SQLAlchemy Core tables.

The Alembic migrations in C{migrations/versions} create exactly this schema;
C{tests/test_store.py} checks the two against each other on every engine.

Object keys are stored as their UTF-8 bytes (BLOB / bytea / VARBINARY), so
C{ORDER BY key} and range comparisons are S3's byte order on all three
databases, whatever their text collations say.
"""

from __future__ import annotations

import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import VARBINARY
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# An auto-incrementing 64-bit id; SQLite only autoincrements "INTEGER PRIMARY KEY".
Id = BigInteger().with_variant(Integer, "sqlite")

# An S3 key (at most 1024 bytes of UTF-8) compared byte by byte.
KeyBytes = LargeBinary().with_variant(VARBINARY(1024), "mysql", "mariadb")

BUCKET_NAME = String(63)
BACKEND_NAME = String(63)
# A real key is the virtual key plus whatever prefix placement adds.
REAL_KEY = String(1100)


class UTCDateTime(TypeDecorator):
    """
    Timezone-aware UTC datetimes in, timezone-aware UTC datetimes out.

    PostgreSQL keeps the zone (timestamptz); MySQL/MariaDB DATETIME and SQLite
    don't, so those get naive UTC values and the zone is put back on reading.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store wants UTC-aware values")
        value = value.astimezone(datetime.UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


buckets = Table(
    "buckets",
    metadata,
    Column("name", BUCKET_NAME, primary_key=True),
    Column("created", UTCDateTime(), nullable=False),
    # "config" (defined by the configuration file) or "api" (CreateBucket)
    Column("origin", String(16), nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("bucket", BUCKET_NAME, nullable=False),
    Column("key", KeyBytes, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("last_modified", UTCDateTime(), nullable=False),
    Column("content_type", String(255), nullable=True),
    Column("headers", Text, nullable=False),  # JSON object
    Column("checksums", Text, nullable=False),  # JSON object
    # Also the listing index: (bucket, key) in byte order.
    UniqueConstraint("bucket", "key"),
)

object_locations = Table(
    "object_locations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "object_id",
        Id,
        ForeignKey("objects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("backend", BACKEND_NAME, nullable=False),
    Column("real_key", REAL_KEY, nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Index(None, "object_id"),
    # Draining a backend and the usage aggregate select by backend.
    Index(None, "backend"),
    # The deletion worker asks whether a backend object is still referred
    # to before it deletes it.  (A prefix on MySQL/MariaDB, whose index keys
    # are at most 3072 bytes; real keys are a bucket name and 32 hex digits.)
    Index(None, "real_key", mysql_length=255),
)

write_intents = Table(
    "write_intents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("backend", BACKEND_NAME, nullable=False),
    Column("real_key", REAL_KEY, nullable=False),
    Column("lease_until", UTCDateTime(), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Index(None, "lease_until"),
)

deletion_queue = Table(
    "deletion_queue",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("backend", BACKEND_NAME, nullable=False),
    Column("real_key", REAL_KEY, nullable=False),
    # Set for an incomplete multipart upload to abort instead of an object to delete.
    Column("backend_upload_id", String(1024), nullable=True),
    Column("reason", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("due", UTCDateTime(), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Index(None, "due"),
)

multipart_uploads = Table(
    "multipart_uploads",
    metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("bucket", BUCKET_NAME, nullable=False),
    Column("key", KeyBytes, nullable=False),
    Column("backend", BACKEND_NAME, nullable=False),
    Column("real_key", REAL_KEY, nullable=False),
    Column("backend_upload_id", String(1024), nullable=False),
    Column("initiated", UTCDateTime(), nullable=False),
    Column("content_type", String(255), nullable=True),
    Column("headers", Text, nullable=False),  # JSON object
    Index(None, "bucket", "key"),
    Index(None, "initiated"),
)

backend_operations = Table(
    "backend_operations",
    metadata,
    Column("backend", BACKEND_NAME, nullable=False),
    Column("month", String(7), nullable=False),  # 'YYYY-MM', UTC
    Column("type_a", BigInteger, nullable=False),
    Column("type_b", BigInteger, nullable=False),
    PrimaryKeyConstraint("backend", "month"),
)
