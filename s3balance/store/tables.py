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
from typing import Any, Optional

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
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, MEDIUMTEXT, VARBINARY
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

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
# A tag set as records.dump_tags writes it (NULL: no tags).  50 bucket tags
# of escaped UTF-8 can pass TEXT's 64 KiB on MySQL/MariaDB: MEDIUMTEXT there.
TAGS = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator):
    """
    Timezone-aware UTC datetimes in, timezone-aware UTC datetimes out.

    PostgreSQL keeps the zone (timestamptz); MySQL/MariaDB DATETIME and SQLite
    don't, so those get naive UTC values and the zone is put back on reading.

    PostgreSQL and SQLite keep microseconds; a MySQL/MariaDB DATETIME keeps
    whole seconds unless given C{fsp} fractional digits (C{UTCDateTime(fsp=6)}
    is DATETIME(6) there and the same type as C{UTCDateTime()} elsewhere).
    Leases and due times need them (L{PreciseTime}); the big tables don't
    (changing the type of one of theirs rebuilds the table on MariaDB).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def __init__(self, fsp: Optional[int] = None) -> None:
        super().__init__()
        self.fsp = fsp

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if self.fsp is not None and dialect.name in ("mysql", "mariadb"):
            return DATETIME(fsp=self.fsp)
        return self.impl_instance

    def process_bind_param(
        self, value: Optional[datetime.datetime], dialect: Dialect
    ) -> Optional[datetime.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store wants UTC-aware values")
        value = value.astimezone(datetime.UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Optional[Any], dialect: Dialect) -> Optional[datetime.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


# A UTCDateTime with microseconds on every engine: DATETIME(6) on MySQL/MariaDB
# (migration 0008), for leases and due times, which a whole second would cut short.
PreciseTime = UTCDateTime(fsp=6)


buckets = Table(
    "buckets",
    metadata,
    Column("name", BUCKET_NAME, primary_key=True),
    Column("created", UTCDateTime(), nullable=False),
    # "config" (defined by the configuration file) or "api" (CreateBucket)
    Column("origin", String(16), nullable=False),
    # The bucket's quota (store/quotas.py): bytes and objects it may hold,
    # NULL for no limit, and who set it: "config" (written at start and
    # reload) or "api" (the admin API); NULL without a quota.  Migration 0009.
    Column("quota_bytes", BigInteger, nullable=True),
    Column("quota_objects", BigInteger, nullable=True),
    Column("quota_origin", String(16), nullable=True),
    # PutBucketTagging's tag set (records.dump_tags; NULL: none).  Migration 0013.
    Column("tags", TAGS, nullable=True),
    # The id of the account that owns it (CreateBucket's caller); NULL: the
    # configured default owner (configured buckets, buckets older than
    # accounts).  Migration 0015.
    Column("owner", String(64), nullable=True),
    # Its ACL's grants (s3.acl.dump; NULL: the owner's full control only).  Migration 0017.
    Column("acl", TAGS, nullable=True),
    # Its PutPublicAccessBlock configuration (JSON; NULL: none).  Migration 0017.
    Column("public_access_block", String(255), nullable=True),
    # PutBucketVersioning's status: NULL (never enabled), "Enabled" or
    # "Suspended" (store/versions.py).  Migration 0018.
    Column("versioning", String(16), nullable=True),
    # Its Object Lock configuration (s3.object_lock.dump; NULL: not enabled).  Migration 0019.
    Column("object_lock", String(255), nullable=True),
)

# A bucket's policy (PutBucketPolicy), the document as received (validated
# by s3.policy_document): a row only for the buckets with one, gone with its
# bucket.
# A table of its own, as bucket_lifecycles.  Migration 0017.
bucket_policies = Table(
    "bucket_policies",
    metadata,
    Column("bucket", BUCKET_NAME, ForeignKey("buckets.name", ondelete="CASCADE"), primary_key=True),
    Column("policy", TAGS, nullable=False),
)

# A bucket's lifecycle configuration (PutBucketLifecycleConfiguration), as
# s3.lifecycle_rules.dump writes it (JSON): a row only for the buckets with
# one, gone with its bucket.  A table of its own, so that reading a bucket
# never reads it.  Migration 0016.
bucket_lifecycles = Table(
    "bucket_lifecycles",
    metadata,
    Column("bucket", BUCKET_NAME, ForeignKey("buckets.name", ondelete="CASCADE"), primary_key=True),
    Column("configuration", TAGS, nullable=False),
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
    # The version's tags (records.dump_tags; NULL: none).  Migration 0013.
    Column("tags", TAGS, nullable=True),
    # The version's ACL grants (s3.acl.dump; NULL: private).  Migration 0017.
    Column("acl", TAGS, nullable=True),
    # A row per version of the key (store/versions.py; migration 0018): its
    # id (NULL: the "null" version), whether it is the key's newest version
    # and no delete marker (1; NULL on every other version, so that the
    # unique constraint below holds one such row per key and lets the others
    # be many), whether it is a delete marker (no bytes, no locations).
    # Versions of one key are ordered by id: the newest has the greatest.
    Column("version_id", String(64), nullable=True),
    Column("latest", SmallInteger, nullable=True, server_default=text("1")),
    Column("delete_marker", SmallInteger, nullable=False, server_default=text("0")),
    # The version's Object Lock: retention mode (GOVERNANCE, COMPLIANCE;
    # NULL: none) and retain-until date, and legal hold (1: on).  Migration 0019.
    Column("lock_mode", String(16), nullable=True),
    Column("lock_until", UTCDateTime(), nullable=True),
    Column("legal_hold", SmallInteger, nullable=False, server_default=text("0")),
    # Also the listing index: (bucket, key) in byte order, latest=1 read off it.
    UniqueConstraint("bucket", "key", "latest"),
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
    Column("lease_until", PreciseTime, nullable=False),
    Column("created", PreciseTime, nullable=False),
    # Bytes the write reserves on its backend until the intent is taken
    # (committed, abandoned, expired); see objects.check_capacity.  Migration 0005.
    Column("size", BigInteger, nullable=False, server_default=text("0")),
    # The virtual bucket written to (NULL: a write that is no object of a
    # bucket's, e.g. the discard of an assembled upload) and the objects the
    # write reserves there (1 for an object, 0 for a part): the quota check
    # sums them by bucket (store/quotas.py).  Migration 0009.
    Column("bucket", BUCKET_NAME, nullable=True),
    Column("objects", Integer, nullable=False, server_default=text("0")),
    Index(None, "lease_until"),
    Index(None, "backend"),  # the capacity check sums by backend (0005)
    Index(None, "bucket"),  # the quota check sums by bucket (0009)
    # is_referenced looks real keys up here too (migration 0003; a prefix on
    # MySQL/MariaDB as for object_locations).
    Index(None, "real_key", mysql_length=255),
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
    Column("due", PreciseTime, nullable=False),
    Column("created", PreciseTime, nullable=False),
    Index(None, "due"),
    Index(None, "real_key", mysql_length=255),  # migration 0003
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
    # Bytes of the parts uploaded so far, reserved on the backend until the
    # upload is completed or aborted (a part sent twice counts twice).  0005.
    Column("reserved", BigInteger, nullable=False, server_default=text("0")),
    # When the last part arrived (NULL before the first): multipart_max_age
    # counts idleness from it, not age.  0007.
    Column("last_part", UTCDateTime(), nullable=True),
    # The x-amz-tagging of CreateMultipartUpload, the object's tags at
    # Complete (records.dump_tags; NULL: none).  Migration 0013.
    Column("tags", TAGS, nullable=True),
    # CreateMultipartUpload's ACL grants, the object's at Complete (s3.acl.dump;
    # NULL: private).  Migration 0017.
    Column("acl", TAGS, nullable=True),
    # CreateMultipartUpload's Object Lock, the object's at Complete (as
    # objects' columns).  Migration 0019.
    Column("lock_mode", String(16), nullable=True),
    Column("lock_until", UTCDateTime(), nullable=True),
    Column("legal_hold", SmallInteger, nullable=False, server_default=text("0")),
    Index(None, "bucket", "key"),
    Index(None, "initiated"),
    Index(None, "backend"),  # the capacity check sums by backend (0005)
    Index(None, "real_key", mysql_length=255),  # migration 0003
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

# Cluster-wide background jobs (s3balance.ops.background.ElectedRepeater): one row
# per job names the daemon that runs it until expires_at, by the database's
# clock (store/leases.py), so exactly one daemon of a cluster runs each job.
job_leases = Table(
    "job_leases",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", PreciseTime, nullable=False),
)

# Paused cluster-wide jobs (store/pauses.py, ops/pauses.py): a row per job an
# operator paused; every daemon reads them and its elected job of that name
# does not run while the row exists.  paused_at is the daemon's clock; who
# paused it and why, as the admin API was told.  Migration 0011.
job_pauses = Table(
    "job_pauses",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("paused_at", UTCDateTime(), nullable=False),
    Column("paused_by", String(255), nullable=True),
    Column("reason", String(255), nullable=True),
)

# Bytes and objects per backend: the daemons add what their writes and
# deletes changed (store/usage.py add_usage), one elected daemon now and then
# replaces them with the aggregate of the locations (reconcile_usage).
backend_usage = Table(
    "backend_usage",
    metadata,
    Column("backend", BACKEND_NAME, primary_key=True),
    Column("used_bytes", BigInteger, nullable=False),
    Column("object_count", BigInteger, nullable=False),
)

# One row per backend with a max_size, locked (SELECT ... FOR UPDATE) by the
# capacity check of a write (objects.check_capacity), so the checks of all
# daemons on one backend take turns.  Migration 0005.
capacity_locks = Table(
    "capacity_locks",
    metadata,
    Column("backend", BACKEND_NAME, primary_key=True),
)

# The parts of open multipart uploads as this daemon received them: their
# size, ETag and verified checksums (store/parts.py), for ListParts' checksums
# and the upload's composite or full-object checksum at CompleteMultipartUpload.
# Deleted with the upload (completed or aborted).  Migration 0006.
multipart_parts = Table(
    "multipart_parts",
    metadata,
    Column("upload_id", String(64), nullable=False),
    Column("part_number", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("checksums", Text, nullable=False),  # JSON object {algorithm: base64}
    PrimaryKeyConstraint("upload_id", "part_number"),
)

# Uploads completed lately and what CompleteMultipartUpload answered, so that
# a retried Complete (its first answer lost) answers the same instead of
# NoSuchUpload (store/parts.py; kept COMPLETED_KEPT).  Migration 0006.
completed_uploads = Table(
    "completed_uploads",
    metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("bucket", BUCKET_NAME, nullable=False),
    Column("key", KeyBytes, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("checksums", Text, nullable=False),  # JSON object, as the object's
    Column("completed", UTCDateTime(), nullable=False),
    Index(None, "completed"),
)

# The parts of a completed multipart object that has checksums (size and
# checksums of each), by the real key of its copy: GetObjectAttributes'
# ObjectParts (store/parts.py).  Written by the Complete, deleted with the
# backend object (objects.finish_deletion).  Migration 0006.
object_parts = Table(
    "object_parts",
    metadata,
    Column("real_key", REAL_KEY, nullable=False),
    Column("part_number", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checksums", Text, nullable=False),  # JSON object {algorithm: base64}
    Index(None, "real_key", "part_number", mysql_length={"real_key": 255}),
)

# Bytes and objects per virtual bucket, kept exact: every commit, replace and
# delete adds its difference in its own transaction (store/quotas.py).  A
# bucket's count is the sum of its rows, one per shard (a hash of the object
# key, 0..quotas.USAGE_SHARDS-1), so concurrent commits into one bucket
# rarely wait on the same row; a missing row counts 0.  Migration 0009.
bucket_usage = Table(
    "bucket_usage",
    metadata,
    Column("bucket", BUCKET_NAME, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("object_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("bucket", "shard"),
)

# One row per bucket with a quota, locked (SELECT ... FOR UPDATE) by the
# quota check of a write (quotas.check_quota), so the checks of all daemons
# on one bucket take turns; commits never touch it.  Migration 0009.
quota_locks = Table(
    "quota_locks",
    metadata,
    Column("bucket", BUCKET_NAME, primary_key=True),
)

# Drains (store/moves.py, ops/drain.py): one row per backend being emptied
# onto the others, or done being emptied.  Every daemon reads them (a backend
# with a row gets no new objects); the elected mover updates the progress,
# in the same transaction as each location it switches.  The times are the
# daemons' clocks; rates come from active_ms (time spent moving).  Migration 0010.
backend_drains = Table(
    "backend_drains",
    metadata,
    Column("backend", BACKEND_NAME, primary_key=True),
    Column("state", String(16), nullable=False),  # draining | paused | blocked | done
    # Bytes per second; NULL: balancer.drain_rate; 0: unlimited.
    Column("rate", BigInteger, nullable=True),
    Column("started", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    Column("finished", UTCDateTime(), nullable=True),
    # What the backend held when the drain started.
    Column("total_objects", BigInteger, nullable=False),
    Column("total_bytes", BigInteger, nullable=False),
    Column("moved_objects", BigInteger, nullable=False),
    Column("moved_bytes", BigInteger, nullable=False),
    # Counted at the start of each pass, less what moved since.
    Column("remaining_objects", BigInteger, nullable=False),
    Column("remaining_bytes", BigInteger, nullable=False),
    # What still refers to the backend once its objects are gone: writes in
    # flight, open multipart uploads, queued deletions (the grace period).
    Column("pending_writes", BigInteger, nullable=False),
    Column("pending_uploads", BigInteger, nullable=False),
    Column("pending_deletions", BigInteger, nullable=False),
    Column("failed_objects", BigInteger, nullable=False),
    Column("active_ms", BigInteger, nullable=False),
    Column("last_error", String(1024), nullable=True),
    # Objects the last pass left because no other backend can hold another
    # copy of them (replicas: every other usable backend has one).  Migration 0014.
    Column("blocked_objects", BigInteger, nullable=False, server_default=text("0")),
)

# The cluster's rebalance (s3balance.ops.rebalance, store/rebalance.py): at
# most one row (id 1).  The elected mover moves objects from the fullest
# backends to the emptiest until every used fraction is within the margin;
# each move is counted here in the transaction that switches its location.
# The times are the daemons' clocks.  Migration 0012.
rebalances = Table(
    "rebalances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False),  # running | paused | done | cancelled
    # The margin in millionths (balanced: max fraction - min fraction <= margin).
    Column("margin_ppm", BigInteger, nullable=False),
    # Bytes per second; NULL: balancer.drain_rate; 0: unlimited.
    Column("rate", BigInteger, nullable=True),
    Column("started", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime(), nullable=False),
    Column("finished", UTCDateTime(), nullable=True),
    Column("moved_objects", BigInteger, nullable=False),
    Column("moved_bytes", BigInteger, nullable=False),
    Column("failed_objects", BigInteger, nullable=False),
    Column("active_ms", BigInteger, nullable=False),
    # The mover's last measure: the spread (millionths) and the bytes it
    # estimates are still to move.
    Column("spread_ppm", BigInteger, nullable=True),
    Column("remaining_bytes", BigInteger, nullable=False),
    Column("last_error", String(1024), nullable=True),
)
