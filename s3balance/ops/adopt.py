"""
What C{s3balance-admin import} (L{s3balance.ops.importer}) and
C{s3balance-admin rebuild} (L{s3balance.ops.rebuild}) share: reading a
backend object as the store would record it, and recording it.

Both make object rows for backend objects that are already there, without
copying a byte: a HEAD gives the size, ETag, Last-Modified, Content-Type and
the headers the store keeps (L{stored_fields}); one transaction per object
then inserts the object and its one location unless the virtual key is
taken (L{insert_copy}, the commit's own L{replace_object} with
C{If-None-Match: *}, so a daemon writing the same key at the same time wins
or loses cleanly).  The rebuild then gives an object the other copies it
finds of it (replicas: one location each, L{relocate}), or a newer version,
only while its locations are still those the run recorded; the versions of
a key it keeps (a versioned bucket's) go in at once, oldest first, unless
the key has a row (L{insert_versions}).  The transactions run as the
daemon's do (L{open_engine}, L{transaction}): SQLite's BEGIN IMMEDIATE and
busy timeout, READ COMMITTED on MariaDB/MySQL, the lost races run again.

Over 500 lines: reading a backend object as a record and the transactions
that record it are the one job import and rebuild share; split, the two
commands could drift apart in what they record.
"""

from __future__ import annotations

import datetime
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, TextIO, TypeVar

import attr
from sqlalchemy import create_engine, delete, insert, select, union_all, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from s3balance.backends.answers import quoted
from s3balance.ops.fsck.backend import PAGE, error_status
from s3balance.ops.fsck.orphans import OUR_BUCKET_METADATA, OUR_KEY, OUR_KEY_METADATA
from s3balance.s3.limits import MAX_CONTENT_TYPE, MAX_KEY_BYTES, MAX_STORED_HEADERS
from s3balance.s3.writes import STORED_HEADERS
from s3balance.store import quotas, tables, versions
from s3balance.store.buckets import ORIGIN_API, ORIGIN_CONFIG, lock_bucket_shared
from s3balance.store.deletion_queue import NO_GRACE
from s3balance.store.engine import _configure_mysql, _configure_sqlite, is_retryable
from s3balance.store.interfaces import ConcurrentInsert, Location, ObjectRecord, PreconditionFailedError
from s3balance.store.objects import replace_object
from s3balance.store.records import dump_mapping, encode_key
from s3balance.store.usage import add_backend_usage

__all__ = [
    "OUR_BUCKET_METADATA",
    "OUR_KEY",
    "OUR_KEY_METADATA",
    "ORIGIN_API",
    "ORIGIN_CONFIG",
    "PAGE",
    "BackendCopy",
    "Gone",
    "Progress",
    "Unreadable",
    "ensure_bucket",
    "existing_keys",
    "head_copy",
    "insert_copy",
    "insert_versions",
    "object_count",
    "open_engine",
    "referenced_keys",
    "relocate",
    "schema_revision",
    "stored_fields",
    "transaction",
    "unstorable",
    "utc_now",
]

T = TypeVar("T")
UTC = datetime.UTC
PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr
BUSY_TIMEOUT = 30.0  # seconds SQLite waits for the daemon's write lock
MAX_ATTEMPTS = 8  # a transaction that lost a race runs again this often

# Our own metadata on the backend copies: never an object's user metadata.
_OURS = {f"x-amz-meta-{OUR_BUCKET_METADATA}", f"x-amz-meta-{OUR_KEY_METADATA}"}

_REAL_KEY_CHARS = tables.REAL_KEY.length or 1100

_o = tables.objects
_loc = tables.object_locations
_b = tables.buckets


class Unreadable(Exception):
    """A backend object's HEAD failed (the message says how)."""


class Gone(Exception):
    """A listed backend object is not there any more (HEAD answered 404)."""


# The retention modes a copy's HEAD may answer (x-amz-object-lock-mode).
LOCK_MODES = (versions.GOVERNANCE, versions.COMPLIANCE)


@attr.s(frozen=True, auto_attribs=True)
class BackendCopy:
    """One backend object as the store records it, and what its HEAD said of it."""

    backend: str
    real_key: str
    size: int
    etag: str  # quoted, as the store keeps it
    last_modified: datetime.datetime  # HEAD's, whole seconds, UTC
    listed: datetime.datetime  # the listing's (may be finer), UTC
    content_type: str
    headers: dict[str, str]  # what the store keeps (lower-case names)
    metadata: dict[str, str]  # every x-amz-meta-* value, prefix off, ours included
    # The copy's own Object Lock, as its HEAD answers it (a backend whose real
    # bucket has Object Lock: backends/retention.py): retention mode (None:
    # none), retain-until date, legal hold.
    lock_mode: Optional[str] = None
    lock_until: Optional[datetime.datetime] = None
    legal_hold: bool = False

    def newness(self) -> tuple[datetime.datetime, datetime.datetime, str, str]:
        """Orders copies newest last; on equal times by backend and real key (arbitrary, but stable)."""
        return (self.last_modified, self.listed, self.backend, self.real_key)

    def record(self, bucket: str, key: str, locations: Optional[Sequence[Location]] = None) -> ObjectRecord:
        """The object C{bucket}/C{key} as this copy has it; its one location, or C{locations} (its copies)."""
        return ObjectRecord(
            bucket=bucket,
            key=key,
            size=self.size,
            etag=self.etag,
            last_modified=self.last_modified,
            content_type=self.content_type,
            headers=dict(self.headers),
            checksums={},
            locations=(Location(self.backend, self.real_key),) if locations is None else tuple(locations),
        )


# -- reading the backends -----------------------------------------------------------


def stored_fields(http_headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """
    (Content-Type, stored headers) of a backend object from its HEAD's
    headers (lower-case names), as the daemon stores a client's PUT
    (L{s3balance.s3.writes.object_headers}): Content-Encoding,
    Content-Disposition, Cache-Control, Expires, Content-Language and the
    user metadata; s3balance's own metadata left out.
    """
    content_type = http_headers.get("content-type") or "binary/octet-stream"
    headers: dict[str, str] = {}
    encoding = http_headers.get("content-encoding")
    if encoding:
        tokens = [t.strip() for t in encoding.split(",") if t.strip() and t.strip().lower() != "aws-chunked"]
        if tokens:
            headers["content-encoding"] = ", ".join(tokens)
    for name in STORED_HEADERS:
        value = http_headers.get(name)
        if value is not None:
            headers[name] = value
    for name, value in http_headers.items():
        name = name.lower()
        if name.startswith("x-amz-meta-") and name not in _OURS:
            headers[name] = value
    return content_type, headers


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(UTC)


def head_copy(client: Any, backend: str, item: Mapping[str, Any]) -> BackendCopy:
    """
    HEAD one listed key (C{item}: a ListObjectsV2 entry).  Raises L{Gone}
    on a 404 (deleted since the listing), L{Unreadable} on any other failure.
    """
    key = item["Key"]
    try:
        head = client.head_object(Bucket=backend, Key=key)
    except Exception as error:
        status, code = error_status(error)
        if status == 404:
            raise Gone(key) from None
        raise Unreadable(f"HEAD answered {status} {code}") from None
    raw = {str(k).lower(): str(v) for k, v in (head.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).items()}
    content_type, headers = stored_fields(raw)
    metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
    last_modified = _utc(head.get("LastModified") or item["LastModified"]).replace(microsecond=0)
    etag = head.get("ETag") or item.get("ETag") or ""
    if not etag:
        raise Unreadable("HEAD answered no ETag")
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    if mode not in LOCK_MODES or not isinstance(until, datetime.datetime):
        mode, until = None, None
    return BackendCopy(
        backend=backend,
        real_key=key,
        size=int(head.get("ContentLength", item.get("Size", 0))),
        etag=quoted(etag),
        last_modified=last_modified,
        listed=_utc(item["LastModified"]),
        content_type=content_type,
        headers=headers,
        metadata=metadata,
        lock_mode=mode,
        lock_until=_utc(until) if until is not None else None,
        legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
    )




def unstorable(key: str, copy: BackendCopy) -> Optional[str]:
    """Why the store can't hold this object under C{key} (its limits: L{s3balance.s3.limits}), or None."""
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        return f"key of {size} bytes (the store holds {MAX_KEY_BYTES})"
    if len(copy.real_key) > _REAL_KEY_CHARS:
        return f"real key longer than {_REAL_KEY_CHARS} characters"
    if len(copy.content_type) > MAX_CONTENT_TYPE:
        return f"Content-Type longer than {MAX_CONTENT_TYPE} characters"
    if len(dump_mapping(copy.headers)) > MAX_STORED_HEADERS:
        return f"stored headers (user metadata) longer than {MAX_STORED_HEADERS} characters"
    return None


# -- the database -------------------------------------------------------------------


def open_engine(url: str) -> Engine:
    """
    An engine on the store, configured as the daemon's (WAL, busy timeout and
    foreign keys on SQLite; strict mode and READ COMMITTED on MariaDB/MySQL).
    A missing SQLite directory is made.
    """
    parsed = make_url(url)
    name = parsed.get_backend_name()
    if name == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT}, pool_size=2)
        _configure_sqlite(engine, BUSY_TIMEOUT)
        return engine
    if name in ("mysql", "mariadb"):
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=2, isolation_level="READ COMMITTED")
        _configure_mysql(engine, 0.0)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=2)


def transaction(engine: Engine, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
    """
    Blocking: C{fn(conn, *args)} in one transaction, run again after a lost
    race (deadlock, serialization failure, SQLite busy, a concurrent insert
    of the same row), as the daemon's store does.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.connect() as conn:
                if write and conn.dialect.name == "sqlite":
                    conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                with conn.begin():
                    return fn(conn, *args)
        except ConcurrentInsert:
            if attempt == MAX_ATTEMPTS:
                raise
        except DBAPIError as error:
            if attempt == MAX_ATTEMPTS or not is_retryable(error):
                raise
        time.sleep(random.uniform(0, 0.01 * attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def schema_revision(url: str) -> Optional[str]:
    """The database's Alembic revision (None: no schema), without creating a missing SQLite file."""
    from s3balance.store import migrate

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:") and not Path(database).exists():
            return None
    return migrate.current_revision(url)


def object_count(conn: Connection) -> int:
    from sqlalchemy import func

    return int(conn.execute(select(func.count()).select_from(_o)).scalar_one())


def referenced_keys(conn: Connection, backend: str, keys: Sequence[str]) -> set[str]:
    """
    The real keys among C{keys} the store refers to on C{backend} (an object
    location, a write intent, a queued deletion, a multipart upload), in one
    statement.  Such a key is never recorded again: it is an object's already,
    a write's in flight, or a replaced copy about to be deleted.
    """
    if not keys:
        return set()
    parts = [
        select(table.c.real_key).where(table.c.backend == backend, table.c.real_key.in_(list(keys)))
        for table in (_loc, tables.write_intents, tables.deletion_queue, tables.multipart_uploads)
    ]
    found = {row[0] for row in conn.execute(union_all(*parts))}
    # Exact comparison: MySQL's collations may match case-insensitively.
    return found & set(keys)


def existing_keys(conn: Connection, bucket: str, keys: Sequence[str]) -> set[str]:
    """The keys among C{keys} that C{bucket} has an object under."""
    if not keys:
        return set()
    rows = conn.execute(select(_o.c.key).where(_o.c.bucket == bucket, _o.c.key.in_([encode_key(k) for k in keys])))
    found = {bytes(row[0]).decode("utf-8") for row in rows}
    return found & set(keys)


def ensure_bucket(
    conn: Connection, name: str, origin: str, now: datetime.datetime, versioning: Optional[str] = None
) -> bool:
    """
    Make the virtual bucket's row unless there is one, with its C{versioning}
    status (a configured bucket's; None: never versioned); -> whether it was made.
    """
    if conn.execute(select(_b.c.name).where(_b.c.name == name)).first() is not None:
        return False
    try:
        conn.execute(insert(_b).values(name=name, created=now, origin=origin, versioning=versioning))
    except IntegrityError as error:
        raise ConcurrentInsert(name) from error  # made meanwhile: the retry finds it
    return True


def insert_copy(
    conn: Connection,
    bucket: str,
    key: str,
    copy: BackendCopy,
    now: datetime.datetime,
    count_usage: bool = True,
    locations: Optional[Sequence[Location]] = None,
) -> bool:
    """
    Record C{copy} as the object C{bucket}/C{key} unless the bucket has an
    object under that key; -> whether it did.  Its one location, or
    C{locations} (its copies, the primary first).  The backends' usage
    counters grow as for a committed write (C{count_usage}).
    L{NoSuchBucketError} when the bucket is gone.
    """
    record = copy.record(bucket, key, locations)
    try:
        replace_object(conn, record, None, "*", now)
    except PreconditionFailedError:
        return False
    if count_usage:
        add_backend_usage(conn, {location.backend: (copy.size, 1) for location in record.locations})
    return True


def insert_versions(
    conn: Connection, bucket: str, key: str, records: Sequence[ObjectRecord], now: datetime.datetime
) -> Optional[list[str]]:
    """
    Record C{records} (of C{bucket}/C{key}, oldest first, each with its
    locations) as the versions of the key, each with a new version id, as
    writes to a bucket with versioning Enabled make them: the row ids follow
    their order, the last is the latest, the others noncurrent.  Nothing
    when the bucket has any row under the key (a version or a delete
    marker): -> None; else their version ids, in order.  The key's usage
    row is locked first, as for every change of a key's versions
    (L{s3balance.store.versions}); the bucket's usage grows by them, the
    backends' counters not (the rebuild reconciles them at the end).
    L{NoSuchBucketError} when the bucket is gone.
    """
    lock_bucket_shared(conn, bucket)
    encoded = encode_key(key)
    quotas.lock_shard(conn, bucket, quotas.shard_of(encoded))
    if conn.execute(select(_o.c.id).where(_o.c.bucket == bucket, _o.c.key == encoded).limit(1)).first() is not None:
        return None
    made = []
    for record in records:
        written = versions.put_version(conn, record, versions.ENABLED, None, None, now, NO_GRACE)
        assert written.version_id is not None
        made.append(written.version_id)
    return made


def set_lock(
    conn: Connection,
    bucket: str,
    key: str,
    version_id: Optional[str],
    mode: Optional[str],
    until: Optional[datetime.datetime],
    legal_hold: bool,
) -> bool:
    """
    Give the version C{version_id} of C{bucket}/C{key} (None: its null
    version) a retention and legal hold, as its copies carry them on their
    backends; -> whether it is there.
    """
    _o = tables.objects
    done = conn.execute(
        update(_o)
        .where(_o.c.bucket == bucket, _o.c.key == encode_key(key), versions._version_is(version_id), _o.c.delete_marker == 0)
        .values(lock_mode=mode, lock_until=until, legal_hold=1 if legal_hold else 0)
    )
    return bool(done.rowcount)


def relocate(
    conn: Connection,
    bucket: str,
    key: str,
    previous: Sequence[Location],
    locations: Sequence[Location],
    newest: Optional[BackendCopy],
    now: datetime.datetime,
) -> bool:
    """
    Give the object C{bucket}/C{key} the C{locations} (in that order: the
    first is the primary) and, when given, the size, ETag, headers and
    Last-Modified of C{newest} (a newer copy, of its version or another),
    but only while its locations are still C{previous} (what this run
    recorded, in order).  The copies it no longer names are left on their
    backends (no deletion is queued).  -> whether it did.

    The location rows go first, so that L{replace_object} (which keeps the
    store's own accounting: the bucket's usage) finds no copy to queue for
    deletion.  The bucket row is locked before the object's, as a commit
    does.
    """
    lock_bucket_shared(conn, bucket)
    row = conn.execute(
        select(_o.c.id).where(_o.c.bucket == bucket, _o.c.key == encode_key(key)).with_for_update()
    ).first()
    if row is None:
        return False
    current = conn.execute(
        select(_loc.c.backend, _loc.c.real_key).where(_loc.c.object_id == row.id).order_by(_loc.c.id)
    ).all()
    if [Location(r.backend, r.real_key) for r in current] != list(previous):
        return False
    conn.execute(delete(_loc).where(_loc.c.object_id == row.id))
    if newest is not None:
        replace_object(conn, newest.record(bucket, key, locations), None, None, now)
    elif locations:
        conn.execute(
            insert(_loc),
            [
                {"object_id": row.id, "backend": location.backend, "real_key": location.real_key, "created": now}
                for location in locations
            ],
        )
    return True


# -- output ---------------------------------------------------------------------------


class Progress:
    """
    A command's output: findings on C{out} (stdout), and a progress line on
    stderr at most every L{PROGRESS_EVERY} seconds.
    """

    def __init__(self, command: str, out: Optional[TextIO] = None) -> None:
        self.command = command
        self.out = out if out is not None else sys.stdout  # this moment's, not the importer's
        self.started = time.monotonic()
        self._at = self.started
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def warn(self, line: str) -> None:
        """A line on stderr (and on C{out} too when that is not stderr)."""
        if self.out is not sys.stderr:
            self.say(line)
        sys.stderr.write(f"s3balance-admin {self.command}: {line}\n")
        sys.stderr.flush()

    def rate(self, seen: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{seen / elapsed:.0f} keys/s"

    def tick(self, what: Callable[[], str], force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._at < PROGRESS_EVERY:
                return
            self._at = now
        sys.stderr.write(f"s3balance-admin {self.command}: progress: {what()}\n")
        sys.stderr.flush()
