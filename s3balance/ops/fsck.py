"""
C{s3balance-admin fsck}: compare the metadata store with the backends.

    s3balance-admin fsck --config FILE [--repair] [--drop-missing]
                         [--max-drop-fraction 0.01] [--force]
                         [--backend NAME ...] [--older-than 1h] [--concurrency 8]

(also C{python -m s3balance.ops.fsck ...} with the same arguments).

Checks, each streamed page by page (nothing is loaded whole):

  0. every backend's real bucket must answer a listing (ListObjectsV2 naming
     that bucket, status 200); until it has, nothing of that backend is ever
     dropped: its objects can't be shown to be missing.
  1. objects: every C{object_locations} row -> HEAD its real key on its
     backend (C{--concurrency} requests at a time).  A 404 is followed by a
     GET, whose error code says what is gone: I{missing} is only a
     C{NoSuchKey} from a backend whose real bucket answered step 0 (and the
     row still there when re-read from the store).  Any other failure (403,
     5xx, a timeout, C{NoSuchBucket}, a 404 without the NoSuchKey code) makes
     the object I{unverifiable}.  A different Content-Length is a I{size
     mismatch}, a different ETag an I{etag mismatch} (C{--ignore-etag} turns
     that off).
  2. orphans: every backend's real bucket is listed (ListObjectsV2); an object
     older than C{--older-than} that no location row, write intent, queued
     deletion or multipart upload row names (all four tables asked in ONE
     statement per page) is looked at more closely.  The real bucket may be
     shared with other applications, so only a key of the gateway's own
     layout (C{<virtual bucket>/<32 lowercase hex digits>}, see
     L{s3balance.s3.gateway.Gateway.new_real_key}) whose metadata names that
     virtual bucket (C{x-amz-meta-s3balance-bucket}, see
     L{s3balance.s3.upload.backend_headers}) is an I{orphan}; anything else,
     the health probe's key included, is a I{foreign key}, reported and left
     alone.
  3. orphan uploads: ListMultipartUploads on every backend; an upload older
     than C{--older-than} of the gateway's key layout whose backend upload id
     is neither in C{multipart_uploads} nor queued for abort, and whose real
     key is not under a running write intent (large streaming PUTs use
     backend multipart uploads), is an I{orphan upload}; an upload of any
     other key is a I{foreign upload}, left alone.
  4. counts of write intents whose lease ran out and of queued deletions
     (the daemon's cleaner handles both; reported, not differences).

C{--repair} deletes orphans and aborts orphan uploads: each one is asked
about once more, right before, through the store's own deletion guard
(L{s3balance.store.objects.is_referenced}, and the deletion queue), and
every deletion is reported with its key and reason.  Missing objects are only
reported, unless C{--drop-missing} also removes their location row (and the
object row when no other copy is left): the data is gone, and the object
disappears from listings.  When more than C{--max-drop-fraction} (default
0.01) of the checked objects look missing, no row is dropped without
C{--force}: a wrong endpoint or a restored bucket looks like that too.
Before dropping, each backend's real bucket must answer a listing again and
each object's GET must still answer NoSuchKey.

Progress goes to stderr every few seconds on a long run.

Exit status: 0 when store and backends agree (or every difference was
repaired), 1 when differences remain (unverifiable objects and missing rows
left undropped included), 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import datetime
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, TextIO

import attr
from sqlalchemy import create_engine, delete, func, literal, select, union_all
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from s3balance.store import tables

UTC = datetime.UTC
PAGE = 1000  # rows / keys per page, everywhere
DEFAULT_OLDER_THAN = 3600.0
DEFAULT_MAX_DROP_FRACTION = 0.01
FOREIGN_SHOWN = 1000  # foreign keys (and uploads) listed one by one per backend; the rest are counted
PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr

# The real keys the gateway writes (s3balance.s3.gateway.Gateway.new_real_key,
# used by PUT, streaming PUT, CopyObject and CreateMultipartUpload alike).
OUR_KEY = re.compile(r"(?P<bucket>[^/]+)/[0-9a-f]{32}")
# The metadata it puts on them (s3balance.s3.upload.backend_headers), as
# botocore names it (the x-amz-meta- prefix taken off; compared lower-cased).
OUR_BUCKET_METADATA = "s3balance-bucket"
OUR_KEY_METADATA = "s3balance-key"

_o = tables.objects
_loc = tables.object_locations
_wi = tables.write_intents
_dq = tables.deletion_queue
_mp = tables.multipart_uploads


@attr.s(auto_attribs=True)
class Options:
    repair: bool = False
    drop_missing: bool = False
    backends: Optional[Sequence[str]] = None  # None: all configured backends
    older_than: float = DEFAULT_OLDER_THAN
    concurrency: int = 8
    ignore_etag: bool = False
    # --drop-missing drops nothing when more than this fraction of the checked
    # objects look missing, unless force.
    max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION
    force: bool = False


@attr.s(auto_attribs=True)
class Counter:
    found: int = 0
    repaired: int = 0


@attr.s(auto_attribs=True)
class Report:
    """What one run found; C{differences_left} decides the exit status."""

    objects_checked: int = 0
    backend_objects_listed: int = 0
    uploads_listed: int = 0
    missing: Counter = attr.Factory(Counter)
    unverifiable: Counter = attr.Factory(Counter)
    size_mismatch: Counter = attr.Factory(Counter)
    etag_mismatch: Counter = attr.Factory(Counter)
    unknown_backend: Counter = attr.Factory(Counter)
    errors: Counter = attr.Factory(Counter)
    orphans: Counter = attr.Factory(Counter)
    orphan_uploads: Counter = attr.Factory(Counter)
    # Not differences: what other applications keep in a shared real bucket.
    foreign_keys: int = 0
    foreign_uploads: int = 0
    # Why --drop-missing dropped nothing (too many look missing), or "".
    drop_refused: str = ""
    expired_intents: int = 0
    write_intents: int = 0
    queued_deletions: int = 0
    stuck_deletions: int = 0  # queued deletions that already failed at least once

    def _counters(self) -> tuple[Counter, ...]:
        return (
            self.missing,
            self.unverifiable,
            self.size_mismatch,
            self.etag_mismatch,
            self.unknown_backend,
            self.errors,
            self.orphans,
            self.orphan_uploads,
        )

    def differences(self) -> int:
        return sum(c.found for c in self._counters())

    def differences_left(self) -> int:
        return sum(c.found - c.repaired for c in self._counters())


# -- talking to backends ------------------------------------------------------


def backend_client(config, concurrency: int = 8):
    """A botocore S3 client for one configured backend (thread-safe)."""
    import botocore.config
    import botocore.session

    session = botocore.session.Session()
    # Only the configured keys count, never ~/.aws of whoever runs the command.
    session.set_config_variable("config_file", "/dev/null")
    session.set_config_variable("credentials_file", "/dev/null")
    client_config = botocore.config.Config(
        s3={"addressing_style": "path" if config.path_style else "virtual"},
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.create_client(
        "s3",
        region_name=config.region or "us-east-1",
        endpoint_url=config.endpoint_url,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        config=client_config,
    )


def _error_status(error: Exception) -> tuple[int, str]:
    response = getattr(error, "response", None) or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    code = str(response.get("Error", {}).get("Code", "")) or type(error).__name__
    return status, code


def _bare_etag(etag: Optional[str]) -> str:
    etag = (etag or "").strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _probe_key() -> str:
    from s3balance.backends.health import PROBE_KEY

    return PROBE_KEY


_GONE = "gone meanwhile"


class _Unreadable(Exception):
    """A backend object's metadata could not be read (the message says why)."""


# -- the checker --------------------------------------------------------------


class Fsck:
    """
    One consistency check of C{config}'s store against its backends.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param clients: backend name -> botocore client (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC.
    """

    def __init__(
        self,
        config,
        options: Options,
        engine: Optional[Engine] = None,
        clients: Optional[dict[str, Any]] = None,
        out: TextIO = sys.stdout,
        now=lambda: datetime.datetime.now(UTC),
    ) -> None:
        self.config = config
        self.options = options
        self.out = out
        self.now = now
        self.report = Report()
        self._lock = threading.Lock()
        configured = {b.name: b for b in config.backends}
        if options.backends:
            unknown = [name for name in options.backends if name not in configured]
            if unknown:
                raise ValueError(f"--backend {unknown[0]}: no such backend in the configuration")
            self.names = list(options.backends)
        else:
            self.names = list(configured)
        self.configured = configured
        if engine is None:
            url = make_url(config.database.url)
            args = {"timeout": 30} if url.get_backend_name() == "sqlite" else {}
            engine = create_engine(url, poolclass=NullPool, connect_args=args)
        self.engine = engine
        if clients is None:
            clients = {name: backend_client(configured[name], options.concurrency) for name in self.names}
        self.clients = clients
        # backend -> None when its real bucket answered a listing in this run,
        # else why it did not (step 0).
        self.bucket_unproven: dict[str, Optional[str]] = {}
        # Location rows whose object is missing for sure, for drop_missing().
        self.missing_rows: list[Any] = []
        self.virtual_buckets: set[str] = set()
        self.probe_key = _probe_key()
        self._progress_at = time.monotonic()

    # -- output ---------------------------------------------------------------

    def say(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def loud(self, line: str) -> None:
        self.say(line)
        if self.out is not sys.stderr:
            sys.stderr.write("s3balance-admin fsck: " + line + "\n")

    def progress(self, what: Callable[[], str]) -> None:
        """A progress line on stderr, at most every L{PROGRESS_EVERY} seconds."""
        now = time.monotonic()
        with self._lock:
            if now - self._progress_at < PROGRESS_EVERY:
                return
            self._progress_at = now
        sys.stderr.write(f"s3balance-admin fsck: progress: {what()}\n")
        sys.stderr.flush()

    # -- the run --------------------------------------------------------------

    def run(self) -> Report:
        self.virtual_buckets = self._virtual_bucket_names()
        for name in self.names:
            self.bucket_unproven[name] = self.prove_bucket(name)
        self.check_locations()
        self.drop_missing()
        for name in self.names:
            self.check_orphans(name)
            self.check_uploads(name)
        self.count_pending()
        self.print_summary()
        return self.report

    def _virtual_bucket_names(self) -> set[str]:
        """The configured virtual buckets and those made with CreateBucket."""
        names = {bucket.name for bucket in self.config.virtual_buckets}
        with self.engine.connect() as conn:
            names.update(row[0] for row in conn.execute(select(tables.buckets.c.name)))
        return names

    # 0. the real buckets ------------------------------------------------------

    def prove_bucket(self, backend: str) -> Optional[str]:
        """
        None when C{backend}'s real bucket answers a listing now (HTTP 200, an
        S3 answer naming that bucket), else why not.  Until it has, no object
        of that backend can be shown to be missing.
        """
        try:
            answer = self.clients[backend].list_objects_v2(Bucket=backend, MaxKeys=1)
        except Exception as error:
            status, code = _error_status(error)
            why = f"listing its real bucket answered {status} {code}"
        else:
            status = int(answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 200 and answer.get("Name") == backend:
                return None
            why = f"listing its real bucket gave no S3 answer for it (status {status})"
        self.say(f"warning: backend={backend}: {why}; none of its objects can be shown missing or dropped")
        return why

    # 1. every location row -> HEAD ---------------------------------------------

    def _location_pages(self) -> Iterator[Sequence[Any]]:
        """Location rows joined with their object, by id, one page at a time."""
        last = 0
        query = select(
            _loc.c.id,
            _loc.c.object_id,
            _loc.c.backend,
            _loc.c.real_key,
            _o.c.bucket,
            _o.c.key,
            _o.c.size,
            _o.c.etag,
        ).join(_o, _o.c.id == _loc.c.object_id)
        if self.options.backends:
            query = query.where(_loc.c.backend.in_(self.names))
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(query.where(_loc.c.id > last).order_by(_loc.c.id).limit(PAGE)).all()
            if not rows:
                return
            yield rows
            last = rows[-1].id
            if len(rows) < PAGE:
                return

    def check_locations(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            for rows in self._location_pages():
                # One page at a time: at most PAGE HEADs queued, `concurrency` running.
                list(pool.map(self._check_location, rows))
                self.progress(lambda: f"{self.report.objects_checked} object locations checked")

    def _location_exists(self, row) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(_loc.c.id).where(_loc.c.id == row.id, _loc.c.object_id == row.object_id)
                ).first()
                is not None
            )

    @staticmethod
    def _virtual_name(row) -> str:
        return f"{row.bucket}/{bytes(row.key).decode('utf-8', 'replace')}"

    def _where(self, row) -> str:
        return f"backend={row.backend} real_key={row.real_key} object={self._virtual_name(row)}"

    def _why_not_missing(self, backend: str, real_key: str) -> Optional[str]:
        """
        None when C{real_key} is gone for sure: its backend's real bucket
        answered a listing in this run and a GET of the key answers
        C{NoSuchKey}.  Otherwise why it can't be said to be gone.
        """
        unproven = self.bucket_unproven.get(backend, "its real bucket was not listed")
        if unproven is not None:
            return unproven
        try:
            answer = self.clients[backend].get_object(Bucket=backend, Key=real_key, Range="bytes=0-0")
        except Exception as error:
            status, code = _error_status(error)
            if status == 404 and code == "NoSuchKey":
                return None
            return f"GET answered {status} {code}"
        body = answer.get("Body")
        if body is not None:
            body.close()
        return "HEAD answered 404 but GET found it"

    def _unverifiable(self, row, why: str) -> None:
        with self._lock:
            self.report.unverifiable.found += 1
        self.say(f"unverifiable: {self._where(row)}: {why}")

    def _check_location(self, row) -> None:
        where = self._where(row)
        with self._lock:
            self.report.objects_checked += 1
        client = self.clients.get(row.backend)
        if client is None:
            if row.backend in self.configured:
                return  # configured, but not selected with --backend (can't happen: filtered)
            with self._lock:
                self.report.unknown_backend.found += 1
            self.say(f"unknown-backend: {where} (not in the configuration)")
            return
        try:
            head = client.head_object(Bucket=row.backend, Key=row.real_key)
        except Exception as error:
            status, code = _error_status(error)
            if status != 404:
                if self._location_exists(row):
                    self._unverifiable(row, f"HEAD answered {status} {code}")
                return
            why = self._why_not_missing(row.backend, row.real_key)
            if not self._location_exists(row):
                return  # replaced or deleted while we looked
            if why is not None:
                self._unverifiable(row, f"HEAD answered 404, but {why}")
                return
            with self._lock:
                self.report.missing.found += 1
                if self.options.repair and self.options.drop_missing:
                    self.missing_rows.append(row)
            self.say(f"missing: {where} size={row.size} (NoSuchKey)")
            return
        size = int(head.get("ContentLength", -1))
        if size != row.size:
            if not self._location_exists(row):
                return
            with self._lock:
                self.report.size_mismatch.found += 1
            self.say(f"size-mismatch: {where} store={row.size} backend={size}")
            return
        if not self.options.ignore_etag:
            theirs, ours = _bare_etag(head.get("ETag")), _bare_etag(row.etag)
            if theirs and ours and theirs != ours:
                if not self._location_exists(row):
                    return
                with self._lock:
                    self.report.etag_mismatch.found += 1
                self.say(f"etag-mismatch: {where} store={ours} backend={theirs}")

    # 1b. --drop-missing ------------------------------------------------------------

    def drop_missing(self) -> None:
        """
        Drop the rows of the missing objects found by L{check_locations}, when
        there are no more of them than C{--max-drop-fraction} of the checked
        objects allows (or C{--force}); else drop none and say why.
        """
        rows, self.missing_rows = self.missing_rows, []
        if not rows:
            return
        found, checked = len(rows), self.report.objects_checked
        fraction = self.options.max_drop_fraction
        if found > math.floor(fraction * checked + 1e-9) and not self.options.force:
            self.report.drop_refused = (
                f"{found} of {checked} checked objects ({100.0 * found / max(1, checked):.2f}%) look missing, "
                f"more than --max-drop-fraction {fraction:g} allows"
            )
            self.loud(
                f"dropped none of the {found} missing object rows: {self.report.drop_refused}. "
                "A wrong endpoint, another backend's credentials or a replaced or restored real bucket "
                "look like this too. Check the backends, then rerun with --force (or a larger "
                "--max-drop-fraction) to drop them."
            )
            return
        # The real buckets are asked again right before anything is dropped.
        for backend in sorted({row.backend for row in rows}):
            self.bucket_unproven[backend] = self.prove_bucket(backend)
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            for start in range(0, len(rows), PAGE):
                list(pool.map(self._drop_one, rows[start : start + PAGE]))
                self.progress(
                    lambda: f"{self.report.missing.repaired} of {found} missing object rows dropped"
                )

    def _drop_one(self, row) -> None:
        virtual = self._virtual_name(row)
        why = self._why_not_missing(row.backend, row.real_key)
        if why is not None:
            self.say(f"kept the row of {virtual} (backend {row.backend}, real key {row.real_key}): {why}")
            return
        if not self._drop_location(row):
            return
        with self._lock:
            self.report.missing.repaired += 1
        self.loud(
            f"DROPPED the row of {virtual} (backend {row.backend}, real key {row.real_key}): its data is gone "
            f"from the backend (reason: NoSuchKey, twice, from a backend whose real bucket answered a listing)"
        )

    def _drop_location(self, row) -> bool:
        """Remove a location whose data is gone, and its object when no copy is left."""
        with self.engine.begin() as conn:
            # Lock the object first, as replace_object and delete_object do.
            locked = conn.execute(select(_o.c.id).where(_o.c.id == row.object_id).with_for_update()).first()
            if locked is None:
                return False
            result = conn.execute(delete(_loc).where(_loc.c.id == row.id, _loc.c.object_id == row.object_id))
            if result.rowcount != 1:
                return False  # replaced meanwhile: the new version is not ours to drop
            left = conn.execute(
                select(func.count()).select_from(_loc).where(_loc.c.object_id == row.object_id)
            )
            if left.scalar_one() == 0:
                conn.execute(delete(_o).where(_o.c.id == row.object_id))
            return True

    # 2. backend objects nothing refers to -------------------------------------------

    def _threshold(self) -> datetime.datetime:
        return self.now() - datetime.timedelta(seconds=self.options.older_than)

    def _referenced(self, backend: str, keys: Sequence[str]) -> set[str]:
        """The real keys among C{keys} that the store refers to, in ONE statement."""
        if not keys:
            return set()
        keys = list(keys)
        parts = [
            select(table.c.real_key).where(table.c.backend == backend, table.c.real_key.in_(keys))
            for table in (_loc, _wi, _dq, _mp)
        ]
        with self.engine.connect() as conn:
            found = {row[0] for row in conn.execute(union_all(*parts))}
        # Exact comparison: MySQL's collations may match case-insensitively.
        return found & set(keys)

    def _in_use(self, backend: str, key: str) -> Optional[str]:
        """
        Asked right before a deletion: why C{key} must not be deleted now, or
        None.  The store's own deletion guard (the one the deletion worker
        asks) and the deletion queue, whose worker deletes the key itself.
        """
        from s3balance.store.objects import is_referenced

        with self.engine.connect() as conn:
            if is_referenced(conn, backend, key):
                return "an object location, a write intent or a multipart upload refers to it now"
            queued = conn.execute(
                select(_dq.c.id).where(_dq.c.backend == backend, _dq.c.real_key == key).limit(1)
            ).first()
            if queued is not None:
                return "queued for deletion by the daemon"
        return None

    def _layout_bucket(self, key: str) -> Optional[str]:
        """The virtual bucket when C{key} is exactly of the gateway's layout, else None."""
        match = OUR_KEY.fullmatch(key)
        if match is None or match.group("bucket") not in self.virtual_buckets:
            return None
        return match.group("bucket")

    def _why_foreign(self, backend: str, key: str) -> tuple[Optional[str], str]:
        """
        (None, the virtual object it was written for) for a key the gateway
        wrote, else (why it is not ours, "").  Raises L{_Unreadable} when a
        key of our layout's metadata can't be read.
        """
        if key == self.probe_key:
            return "the health probe's key", ""
        bucket = self._layout_bucket(key)
        if bucket is None:
            if OUR_KEY.fullmatch(key):
                return "not a virtual bucket of this gateway", ""
            return "not of s3balance's key layout", ""
        try:
            head = self.clients[backend].head_object(Bucket=backend, Key=key)
        except Exception as error:
            status, code = _error_status(error)
            if status == 404:
                return _GONE, ""  # deleted since the listing (the daemon's deletion worker)
            raise _Unreadable(f"HEAD answered {status} {code}") from None
        metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        named = metadata.get(OUR_BUCKET_METADATA)
        if named is None:
            return "no s3balance metadata", ""
        if named != bucket:
            return f"its s3balance metadata names bucket {named!r}", ""
        return None, f"{bucket}/{metadata.get(OUR_KEY_METADATA, '?')}"

    def _foreign(self, backend: str, item: dict, why: str, shown: list[int]) -> None:
        self.report.foreign_keys += 1
        shown[0] += 1
        if shown[0] <= FOREIGN_SHOWN:
            self.say(
                f"foreign: backend={backend} real_key={item['Key']} size={item.get('Size')} "
                f"last_modified={item['LastModified'].isoformat()} ({why}; left alone)"
            )

    def _list_objects(self, backend: str) -> Iterator[list[dict]]:
        paginator = self.clients[backend].get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=backend, PaginationConfig={"PageSize": PAGE}):
            yield page.get("Contents", [])

    def check_orphans(self, backend: str) -> None:
        threshold = self._threshold()
        shown = [0]
        try:
            for contents in self._list_objects(backend):
                self.report.backend_objects_listed += len(contents)
                old = [item for item in contents if item["LastModified"] < threshold]
                referenced = self._referenced(backend, [item["Key"] for item in old])
                for item in old:
                    if item["Key"] not in referenced:
                        self._unreferenced(backend, item, shown)
                self.progress(
                    lambda: f"{self.report.backend_objects_listed} backend objects listed ({backend})"
                )
        except Exception as error:
            status, code = _error_status(error)
            self.report.errors.found += 1
            self.say(f"error: listing backend {backend}: {status} {code} {error}")
        if shown[0] > FOREIGN_SHOWN:
            self.say(f"foreign: backend={backend}: {shown[0] - FOREIGN_SHOWN} more foreign keys not listed")

    def _unreferenced(self, backend: str, item: dict, shown: list[int]) -> None:
        """A backend object no row names: an orphan of ours (deleted with --repair), or foreign."""
        key = item["Key"]
        try:
            why, virtual = self._why_foreign(backend, key)
        except _Unreadable as error:
            self.report.errors.found += 1
            self.say(
                f"error: backend={backend} real_key={key}: its metadata could not be read: {error} (left alone)"
            )
            return
        if why == _GONE:
            return
        if why is not None:
            self._foreign(backend, item, why, shown)
            return
        if self.options.repair:
            in_use = self._in_use(backend, key)
            if in_use is not None:
                self.say(f"in-use: backend={backend} real_key={key} ({in_use}; left alone)")
                return
        self.report.orphans.found += 1
        self.say(
            f"orphan: backend={backend} real_key={key} size={item.get('Size')} "
            f"last_modified={item['LastModified'].isoformat()} object={virtual}"
        )
        if not self.options.repair:
            return
        try:
            self.clients[backend].delete_object(Bucket=backend, Key=key)
        except Exception as error:
            status, code = _error_status(error)
            self.say(f"  could not delete it: {status} {code}")
            return
        self.report.orphans.repaired += 1
        self.say(
            f"deleted: backend={backend} real_key={key} reason=orphan: s3balance's key layout and metadata "
            f"(object {virtual}), older than --older-than, and no location, write intent, multipart upload "
            "or queued deletion refers to it"
        )

    # 3. backend multipart uploads nothing refers to ---------------------------------

    def _uploads_referenced(self, backend: str, uploads: Sequence[dict]) -> set[str]:
        """Upload ids among C{uploads} the store knows (or whose key a running write holds)."""
        if not uploads:
            return set()
        ids = [u["UploadId"] for u in uploads]
        keys = list({u["Key"] for u in uploads})
        with self.engine.connect() as conn:
            statement = union_all(
                select(_mp.c.backend_upload_id, literal("id")).where(
                    _mp.c.backend == backend, _mp.c.backend_upload_id.in_(ids)
                ),
                select(_dq.c.backend_upload_id, literal("id")).where(
                    _dq.c.backend == backend, _dq.c.backend_upload_id.in_(ids)
                ),
                # A large streaming PUT writes through a backend multipart upload
                # under its write intent; the store never sees that upload id.
                select(_wi.c.real_key, literal("key")).where(
                    _wi.c.backend == backend, _wi.c.real_key.in_(keys)
                ),
            )
            rows = conn.execute(statement).all()
        known_ids = {r[0] for r in rows if r[1] == "id"}
        held_keys = {r[0] for r in rows if r[1] == "key"}
        return {u["UploadId"] for u in uploads if u["UploadId"] in known_ids or u["Key"] in held_keys}

    def _list_uploads(self, backend: str) -> Iterator[list[dict]]:
        paginator = self.clients[backend].get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=backend, PaginationConfig={"PageSize": PAGE}):
            yield page.get("Uploads", [])

    def check_uploads(self, backend: str) -> None:
        threshold = self._threshold()
        shown = 0
        try:
            for uploads in self._list_uploads(backend):
                self.report.uploads_listed += len(uploads)
                old = [u for u in uploads if u["Initiated"] < threshold]
                known = self._uploads_referenced(backend, old)
                for upload in old:
                    if upload["UploadId"] in known:
                        continue
                    if self._layout_bucket(upload["Key"]) is None:
                        # Another application's upload in a shared real bucket.
                        self.report.foreign_uploads += 1
                        shown += 1
                        if shown <= FOREIGN_SHOWN:
                            self.say(
                                f"foreign-upload: backend={backend} real_key={upload['Key']} "
                                f"upload_id={upload['UploadId']} initiated={upload['Initiated'].isoformat()} "
                                "(not of s3balance's key layout; left alone)"
                            )
                        continue
                    self._orphan_upload(backend, upload)
        except Exception as error:
            status, code = _error_status(error)
            self.report.errors.found += 1
            self.say(f"error: listing multipart uploads of {backend}: {status} {code} {error}")
        if shown > FOREIGN_SHOWN:
            self.say(
                f"foreign-upload: backend={backend}: {shown - FOREIGN_SHOWN} more foreign uploads not listed"
            )

    def _orphan_upload(self, backend: str, upload: dict) -> None:
        if self.options.repair and self._uploads_referenced(backend, [upload]):
            return  # the store took it meanwhile (asked again right before aborting)
        self.report.orphan_uploads.found += 1
        self.say(
            f"orphan-upload: backend={backend} real_key={upload['Key']} "
            f"upload_id={upload['UploadId']} initiated={upload['Initiated'].isoformat()}"
        )
        if not self.options.repair:
            return
        reason = (
            "reason=orphan upload: s3balance's key layout, older than --older-than, and no multipart upload, "
            "queued abort or write intent refers to it"
        )
        try:
            self.clients[backend].abort_multipart_upload(
                Bucket=backend, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        except Exception as error:
            status, code = _error_status(error)
            if status == 404 or code == "NoSuchUpload":
                self.report.orphan_uploads.repaired += 1
                self.say("  already gone")
            else:
                self.say(f"  could not abort it: {status} {code}")
            return
        self.report.orphan_uploads.repaired += 1
        self.say(
            f"aborted: backend={backend} real_key={upload['Key']} upload_id={upload['UploadId']} {reason}"
        )

    # 4. pending cleanup work ----------------------------------------------------------

    def count_pending(self) -> None:
        now = self.now()
        with self.engine.connect() as conn:
            wi = select(func.count()).select_from(_wi)
            dq = select(func.count()).select_from(_dq)
            if self.options.backends:
                wi = wi.where(_wi.c.backend.in_(self.names))
                dq = dq.where(_dq.c.backend.in_(self.names))
            self.report.write_intents = conn.execute(wi).scalar_one()
            self.report.expired_intents = conn.execute(wi.where(_wi.c.lease_until <= now)).scalar_one()
            self.report.queued_deletions = conn.execute(dq).scalar_one()
            self.report.stuck_deletions = conn.execute(dq.where(_dq.c.attempts > 0)).scalar_one()

    # -- summary --------------------------------------------------------------------

    def print_summary(self) -> None:
        r = self.report
        repairing = self.options.repair

        def fixed(counter: Counter, can_repair: bool) -> str:
            return str(counter.repaired) if repairing and can_repair else "-"

        rows: list[tuple[str, object, str]] = [
            ("object locations checked", r.objects_checked, ""),
            ("  missing on backend", r.missing.found, fixed(r.missing, self.options.drop_missing)),
            ("  unverifiable", r.unverifiable.found, "-"),
            ("  size mismatch", r.size_mismatch.found, "-"),
            ("  etag mismatch", r.etag_mismatch.found, "-"),
            ("  backend not configured", r.unknown_backend.found, "-"),
            ("backend objects listed", r.backend_objects_listed, ""),
            ("  orphan objects", r.orphans.found, fixed(r.orphans, True)),
            ("  foreign keys (left alone)", r.foreign_keys, ""),
            ("backend multipart uploads", r.uploads_listed, ""),
            ("  orphan uploads", r.orphan_uploads.found, fixed(r.orphan_uploads, True)),
            ("  foreign uploads (left alone)", r.foreign_uploads, ""),
            ("errors (unchecked)", r.errors.found, "-"),
            ("write intents (expired)", f"{r.write_intents} ({r.expired_intents})", ""),
            ("queued deletions (retried)", f"{r.queued_deletions} ({r.stuck_deletions})", ""),
        ]
        self.say("")
        self.say(f"{'check':<30} {'found':>10} {'repaired':>9}")
        for label, found, repaired in rows:
            self.say(f"{label:<30} {found!s:>10} {repaired:>9}")
        if r.drop_refused:
            self.say(f"missing rows: dropped none: {r.drop_refused} (--force drops them)")
        left = r.differences_left()
        if r.differences() == 0:
            self.say("result: consistent")
        elif left == 0:
            self.say(f"result: {r.differences()} difference(s), all repaired")
        else:
            hint = "" if repairing else " (run with --repair to fix orphans)"
            self.say(f"result: {left} difference(s) left{hint}")


# -- command line -------------------------------------------------------------


def _duration(text: str) -> float:
    from s3balance.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def add_arguments(parser: argparse.ArgumentParser, with_config: bool = True) -> None:
    """The fsck options (C{--config} too unless the caller adds it)."""
    if with_config:
        parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="delete orphans and abort orphan multipart uploads (only keys of s3balance's layout and metadata)",
    )
    parser.add_argument(
        "--drop-missing",
        action="store_true",
        help="with --repair: remove the rows of objects whose data is gone from their backend (NoSuchKey)",
    )
    parser.add_argument(
        "--max-drop-fraction",
        type=_fraction,
        default=DEFAULT_MAX_DROP_FRACTION,
        metavar="FRACTION",
        help="with --drop-missing: drop nothing when more than this fraction of the checked objects "
        f"look missing (default {DEFAULT_MAX_DROP_FRACTION:g})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --drop-missing: drop the missing objects' rows even beyond --max-drop-fraction",
    )
    parser.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        help="check only this backend (repeatable)",
    )
    parser.add_argument(
        "--older-than",
        type=_duration,
        default=DEFAULT_OLDER_THAN,
        metavar="DURATION",
        help="only backend objects/uploads older than this are orphans (default 1h)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="HEAD requests at a time (default 8)")
    parser.add_argument("--ignore-etag", action="store_true", help="compare sizes only")


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        repair=bool(getattr(args, "repair", False)),
        drop_missing=bool(getattr(args, "drop_missing", False)),
        backends=getattr(args, "backends", None) or None,
        older_than=float(getattr(args, "older_than", DEFAULT_OLDER_THAN)),
        concurrency=max(1, int(getattr(args, "concurrency", 8))),
        ignore_etag=bool(getattr(args, "ignore_etag", False)),
        max_drop_fraction=float(getattr(args, "max_drop_fraction", DEFAULT_MAX_DROP_FRACTION)),
        force=bool(getattr(args, "force", False)),
    )


def run(config, options: Options, out: TextIO = sys.stdout) -> int:
    """Run one check; the exit status (0 consistent or all repaired, 1 differences left)."""
    if options.drop_missing and not options.repair:
        sys.stderr.write("s3balance-admin fsck: --drop-missing does nothing without --repair\n")
    if options.force and not options.drop_missing:
        sys.stderr.write("s3balance-admin fsck: --force does nothing without --drop-missing\n")
    checker = Fsck(config, options, out=out)
    try:
        report = checker.run()
    finally:
        checker.engine.dispose()
    return 1 if report.differences_left() else 0


def command(args: argparse.Namespace) -> int:
    """Entry point of C{s3balance-admin fsck} (args from L{add_arguments})."""
    from s3balance.config.operator import load_checked_config

    config = load_checked_config(args.config)
    try:
        return run(config, options_from_args(args))
    except ValueError as error:
        sys.stderr.write(f"s3balance-admin fsck: {error}\n")
        return 2


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="s3balance-admin fsck", description=__doc__.strip().split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
