"""
C{s3balance-admin rebuild}: the metadata database rebuilt from the backends
after it was lost.

    s3balance-admin rebuild --config FILE [--dry-run] [--force] [--keep-older-copies]
                            [--concurrency 8]

Every object the gateway writes lives under a real key of its own layout
(C{<virtual bucket>/<32 hex digits>}) and carries the virtual bucket and key
in its metadata (C{x-amz-meta-s3balance-bucket},
C{x-amz-meta-s3balance-key}, see L{s3balance.s3.writes.backend_headers}).
The rebuild lists every backend's real bucket, HEADs each key of that layout
and records it as the object it names, with the size, ETag, Content-Type,
stored headers and user metadata of the backend copy and its Last-Modified;
virtual buckets that are not configured get their row back (as made with
CreateBucket), configured ones their configured versioning.

Copies of one virtual key with the same size and ETag (quotes off) on
distinct backends are copies of one version, its replicas: one object with a
location each, oldest copy first (the primary), its size, ETag, headers and
Last-Modified from the newest copy; at most as many as the bucket keeps
(C{replicas}, C{Config.replication_of}), the newest ones.  Copies that
differ in size or ETag are versions (an overwrite whose old copy was not
deleted yet): the version of the newest copy (by Last-Modified) wins with
its copies.  The older versions, an older copy of the winning version on a
backend that keeps a newer one and the surplus copies are reported and left
on their backend, where C{s3balance-admin fsck --repair} deletes them once
nothing refers to them.  The outcome does not depend on the order the
backends are listed in (L{resolve}).

In a bucket that keeps versions the older versions are its noncurrent
versions, and are kept (L{resolve_versions}): a configured bucket whose
configuration sets C{versioning} (Enabled or Suspended), and with
C{--keep-older-copies} every bucket not configured (the backends don't
record whether a bucket made with CreateBucket was versioned; one that has
older versions gets versioning Enabled, and a configured bucket without
C{versioning} was never versioned: the daemon refuses to start on a
versioned one).  Their keys' copies are gathered (in memory) while the
backends are read and recorded after (L{record_gathered}), one transaction
per key (L{insert_versions}): every version a row with its copies and a new
version id, inserted oldest first (by the Last-Modified of its newest copy,
so the row ids order them as the store does), the version of the newest
copy the latest.  Only an older copy of a version on a backend that keeps a
newer one and the surplus copies are left for fsck.  The version ids, delete
markers and Object Lock are in the database only: not restored (a key whose
newest version was a delete marker is back).

Backend multipart uploads in progress are listed as leftovers (their
gateway upload ids are lost: no client can finish them; fsck --repair
aborts them).  What the backends don't keep is said at the end: checksums,
multipart part tables, storage classes, tags, ACLs, delete markers, Object
Lock, version ids, keys adopted with C{s3balance-admin import}.

An object of a bucket that keeps no versions is recorded with its first
copy found; each further copy of it rewrites its locations (L{relocate}),
only while they are still those this run recorded.  It refuses (exit status
2) a database that holds objects, unless C{--force}: then only the virtual
keys the database lacks are added, with all their copies and versions (a key
it has, even as a delete marker only, is never changed, and a real key any
row names is not read again); a bucket not configured whose row says it is
versioned keeps versions then too.  The schema is created or brought up to
date first.  C{--dry-run} reads everything and reports what would be
recorded, writing nothing (not even a missing schema).  Stop the daemons
first; with C{--force} the transactions are the daemon's kind, so one
running does no harm.

Findings to stdout (a rebuilt object's line names its copies), a progress
line to stderr every 10 s, a summary at the end (with the noncurrent
versions kept, the objects that have several copies, and those with fewer
than their bucket keeps: the daemon's replica repair makes the missing
ones).  Exit status: 0 when everything of s3balance's found was rebuilt (or
resolved as an older copy), 1 when some could not be (a failed HEAD or
listing, a copy without its key in the metadata, a database error), 2 when
refused or for a bad configuration.

Over 500 lines: one pass (scan, resolve conflicts, record, report) over
state every step shares; the parts shared with import are in L{adopt}.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, TextIO, Union
from urllib.parse import unquote

import attr
from sqlalchemy.engine import Engine

from s3balance.config.units import format_size
from s3balance.ops.adopt import (
    ORIGIN_API,
    ORIGIN_CONFIG,
    OUR_BUCKET_METADATA,
    OUR_KEY,
    OUR_KEY_METADATA,
    BackendCopy,
    Gone,
    Progress,
    Unreadable,
    ensure_bucket,
    existing_keys,
    head_copy,
    insert_copy,
    insert_versions,
    object_count,
    open_engine,
    referenced_keys,
    relocate,
    schema_revision,
    transaction,
    unstorable,
    utc_now,
)
from s3balance.ops.fsck.backend import backend_client, error_status, list_pages
from s3balance.ops.importer import UsageError
from s3balance.store.interfaces import Location
from s3balance.store.usage import reconcile_backend_usage
from s3balance.store.versions import ENABLED, set_versioning

if TYPE_CHECKING:
    from s3balance.config import Config

NEW = "new"  # recorded by this run (or, dry run, would be)
PRESENT = "present"  # the database had the key before (--force): left as it is


class Refused(Exception):
    """The database holds objects and --force was not given (exit status 2)."""


@attr.s(auto_attribs=True)
class RebuildOptions:
    dry_run: bool = False
    force: bool = False
    concurrency: int = 8
    keep_older_copies: bool = False  # buckets not configured keep their older copies as noncurrent versions


@attr.s(auto_attribs=True)
class RebuildReport:
    listed: int = 0
    foreign: int = 0  # not of s3balance's key layout (the probe key, adopted and other applications' keys)
    not_ours: int = 0  # our layout, without metadata naming that bucket
    known: int = 0  # real keys a row of the database names already (--force)
    present: int = 0  # copies of keys the database had before (--force)
    gone: int = 0
    unrecoverable: int = 0  # our copies without the virtual key in their metadata
    rebuilt: int = 0
    rebuilt_bytes: int = 0
    noncurrent: int = 0  # older versions kept as noncurrent versions (buckets that keep versions)
    noncurrent_bytes: int = 0
    versioned_buckets: int = 0  # buckets not configured given versioning Enabled (--keep-older-copies)
    multipart_objects: int = 0
    conflicts: int = 0  # virtual keys with copies left unreferenced
    older_copies: int = 0  # those copies (older versions, older copies on one backend, surplus)
    buckets_made: int = 0
    uploads: int = 0  # in-progress multipart uploads of our layout
    foreign_uploads: int = 0
    errors: int = 0


def bare_etag(etag: str) -> str:
    """An ETag as compared between copies: quotes off, lower case."""
    return etag.strip().removeprefix("W/").strip('"').lower()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Seen:
    """A copy as the resolution keeps it (its headers go into the row when it is met, and are not kept)."""

    backend: str
    real_key: str
    size: int
    etag: str  # quoted, as the store keeps it
    last_modified: datetime.datetime
    listed: datetime.datetime

    @classmethod
    def of(cls, copy: BackendCopy) -> Seen:
        return cls(copy.backend, copy.real_key, copy.size, copy.etag, copy.last_modified, copy.listed)

    def newness(self) -> tuple[datetime.datetime, datetime.datetime, str, str]:
        """As L{BackendCopy.newness}: newest last; on equal times by backend and real key."""
        return (self.last_modified, self.listed, self.backend, self.real_key)

    @property
    def version(self) -> tuple[int, str]:
        """What copies of one version share: the size and the ETag (bare)."""
        return (self.size, bare_etag(self.etag))

    @property
    def location(self) -> Location:
        return Location(self.backend, self.real_key)


@attr.s(auto_attribs=True)
class Kept:
    """What a virtual key (or one version of it) resolves to so far."""

    copies: tuple[Seen, ...]  # its locations, oldest copy first (the primary)
    newest: Seen  # the copy the row's size, ETag, headers and Last-Modified are from
    state: str  # NEW or PRESENT
    version_id: Optional[str] = None  # the version id it was recorded with (buckets that keep versions)

    @property
    def newness(self) -> tuple[datetime.datetime, datetime.datetime, str, str]:
        return self.newest.newness()


def resolve(copies: Sequence[Seen], wanted: int) -> tuple[tuple[Seen, ...], Seen, list[Seen]]:
    """
    (locations, newest copy, the rest) of one virtual key's copies: the
    version (size and ETag) of the newest copy wins; of its copies, the
    newest on each backend, and of those the C{wanted} newest (the bucket's
    replicas), oldest first.  The rest are older versions, older copies on
    a backend that keeps a newer one, and surplus copies.  The outcome does
    not depend on the order the copies were met in.
    """
    newest = max(copies, key=Seen.newness)
    per_backend: dict[str, Seen] = {}
    for copy in copies:
        if copy.version == newest.version:
            held = per_backend.get(copy.backend)
            if held is None or copy.newness() > held.newness():
                per_backend[copy.backend] = copy
    chosen = sorted(per_backend.values(), key=Seen.newness, reverse=True)[: max(1, wanted)]
    chosen.sort(key=Seen.newness)
    taken = set(chosen)
    return tuple(chosen), newest, [copy for copy in copies if copy not in taken]


def resolve_versions(
    copies: Sequence[Seen], wanted: int
) -> tuple[list[tuple[tuple[Seen, ...], Seen]], list[Seen]]:
    """
    (versions, the rest) of one virtual key's copies, for a bucket that
    keeps versions: each version (size and ETag) resolved as by L{resolve},
    (locations, newest copy), ordered by their newest copies' Last-Modified,
    oldest first (the last is the version of the newest copy: the latest);
    the rest are older copies of a version on a backend that keeps a newer
    one, and surplus copies.  Independent of the order the copies were met in.
    """
    by_version: dict[tuple[int, str], list[Seen]] = {}
    for copy in copies:
        by_version.setdefault(copy.version, []).append(copy)
    versions: list[tuple[tuple[Seen, ...], Seen]] = []
    rest: list[Seen] = []
    for group in by_version.values():
        chosen, newest, left = resolve(group, wanted)
        versions.append((chosen, newest))
        rest.extend(left)
    versions.sort(key=lambda version: version[1].newness())
    return versions, rest


@attr.s(auto_attribs=True)
class Gathered:
    """
    The copies of a key of a bucket that keeps versions, met so far: they
    are recorded once every backend was read.  Of each version only the
    newest copy is kept whole (its headers go into the version's row).
    """

    copies: list[Seen] = attr.Factory(list)
    newest: dict[tuple[int, str], BackendCopy] = attr.Factory(dict)

    def add(self, copy: BackendCopy) -> None:
        seen = Seen.of(copy)
        self.copies.append(seen)
        held = self.newest.get(seen.version)
        if held is None or copy.newness() > held.newness():
            self.newest[seen.version] = copy


Outcome = Union[BackendCopy, Gone, Unreadable]


class Rebuilder:
    """
    One rebuild of C{config}'s store from its backends.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param clients: backend name -> botocore client (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC (rows' creation times).
    """

    def __init__(
        self,
        config: Config,
        options: RebuildOptions,
        engine: Optional[Engine] = None,
        clients: Optional[dict[str, Any]] = None,
        out: TextIO = sys.stdout,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.config = config
        self.options = options
        self.now = now
        self.report = RebuildReport()
        self.output = Progress("rebuild", out)
        self.names = [b.name for b in config.backends]
        self.engine = engine if engine is not None else open_engine(config.database.url)
        if clients is None:
            clients = {b.name: backend_client(b, options.concurrency) for b in config.backends}
        self.clients = clients
        # Dry run on a database without a schema: nothing to ask it.
        self.no_database = False
        # (virtual bucket, key) -> what it resolves to; -> the copies left unreferenced.
        self.kept: dict[tuple[str, str], Kept] = {}
        self.older: dict[tuple[str, str], list[Seen]] = {}
        # Buckets that keep versions: (bucket, key) -> its copies met so far (recorded after the scan);
        # -> its noncurrent versions recorded, oldest first (the latest is in C{kept}).
        self.gathered: dict[tuple[str, str], Gathered] = {}
        self.noncurrent: dict[tuple[str, str], list[Kept]] = {}
        self._wanted: dict[str, int] = {}
        self._keeps_versions: dict[str, bool] = {}
        self.buckets: set[str] = set()  # those known to have a row (or, dry run, to get one)
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- the database ---------------------------------------------------------------

    def prepare_database(self) -> None:
        """A schema at head (made unless dry run); L{Refused} when it holds objects without --force."""
        from s3balance.store import migrate

        url = self.config.database.url
        revision, head = schema_revision(url), migrate.head_revision()
        if revision != head:
            if self.options.dry_run:
                if revision is None:
                    self.no_database = True
                    self.output.say("database: no schema yet (a rebuild creates it; dry run: not now)")
                    return
                self.output.say(f"database: schema at {revision}, head is {head} (a rebuild migrates it; dry run: not now)")
            else:
                migrate.upgrade(url)
                self.output.say(f"database schema: {revision or 'empty'} -> {head}")
        count = transaction(self.engine, object_count, write=False)
        if count and not self.options.force:
            raise Refused(
                f"the database already holds {count} object(s); rebuild is for a lost database. "
                "--force adds only the keys it lacks (and never changes one it has)"
            )
        if count:
            self.output.say(f"database: {count} object(s) already; --force: adding only the keys it lacks")

    def _bucket_row(self, name: str) -> tuple[bool, Optional[str]]:
        """(whether the database has the bucket's row, its versioning status)."""
        from sqlalchemy import select

        from s3balance.store import tables

        if self.no_database:
            return False, None
        b = tables.buckets
        row = transaction(
            self.engine,
            lambda conn: conn.execute(select(b.c.versioning).where(b.c.name == name)).first(),
            write=False,
        )
        return row is not None, (row.versioning if row is not None else None)

    def need_bucket(self, name: str) -> None:
        """
        The virtual bucket's row, made unless there (configured: origin
        config, with its configured versioning; else as by CreateBucket).
        """
        if name in self.buckets:
            return
        configured = self.config.virtual_bucket(name)
        origin = ORIGIN_CONFIG if configured is not None else ORIGIN_API
        versioning = configured.versioning if configured is not None else None
        if self.options.dry_run:
            made = not self._bucket_row(name)[0]
        else:
            made = transaction(self.engine, ensure_bucket, name, origin, self.now(), versioning)
        self.buckets.add(name)
        if made:
            self.report.buckets_made += 1
            why = "configured" if origin == ORIGIN_CONFIG else "found on the backends, not configured: as by CreateBucket"
            if versioning is not None:
                why += f", versioning {versioning}"
            self.output.say(f"bucket: {'would make' if self.options.dry_run else 'made'} {name} ({why})")

    # -- the run ----------------------------------------------------------------------

    def run(self) -> RebuildReport:
        self.prepare_database()
        for bucket in self.config.virtual_buckets:
            self.need_bucket(bucket.name)
        with ThreadPoolExecutor(max(1, self.options.concurrency), thread_name_prefix="s3balance-rebuild") as pool:
            self._pool = pool
            for name in self.names:
                self.scan(name)
        self.record_gathered()
        if not self.options.dry_run:
            # The usage counters from the locations, as the daemon's reconciler makes them.
            transaction(self.engine, reconcile_backend_usage)
        self.print_objects()
        self.print_conflicts()
        for name in self.names:
            self.list_uploads(name)
        self.summary()
        return self.report

    def _known(self, backend: str, keys: list[str]) -> set[str]:
        if self.no_database or not keys:
            return set()
        return transaction(self.engine, referenced_keys, backend, keys, write=False)

    def scan(self, backend: str) -> None:
        """Every key of C{backend}'s real bucket: ours are read and recorded."""
        r = self.report
        client = self.clients[backend]
        pages = list_pages(client, backend)
        while True:
            try:
                items = next(pages)
            except StopIteration:
                break
            except Exception as error:
                status, code = error_status(error)
                r.errors += 1
                self.output.say(f"error: listing backend {backend}: {status} {code} {error} (its objects are not rebuilt)")
                break
            r.listed += len(items)
            ours: list[tuple[dict[str, Any], str]] = []
            for item in items:
                match = OUR_KEY.fullmatch(item["Key"])
                if match is None:
                    r.foreign += 1  # the probe key, adopted keys, other applications'
                else:
                    ours.append((item, match.group("bucket")))
            known = self._known(backend, [item["Key"] for item, _ in ours])
            r.known += len(known)
            ours = [(item, bucket) for item, bucket in ours if item["Key"] not in known]

            def head(entry: tuple[dict[str, Any], str]) -> Outcome:
                try:
                    return head_copy(client, backend, entry[0])
                except (Gone, Unreadable) as error:
                    return error

            assert self._pool is not None
            for (item, bucket), outcome in zip(ours, self._pool.map(head, ours), strict=True):
                self.found(backend, item["Key"], bucket, outcome)
                self.output.tick(self._progress)
            self.output.tick(self._progress)

    def found(self, backend: str, real_key: str, bucket: str, outcome: Outcome) -> None:
        """One backend key of our layout, read: recorded, an older copy, or why not."""
        r, say = self.report, self.output.say
        if isinstance(outcome, Gone):
            r.gone += 1
            return
        if isinstance(outcome, Unreadable):
            r.errors += 1
            say(f"error: backend={backend} real_key={real_key}: {outcome} (not rebuilt)")
            return
        copy = outcome
        named = copy.metadata.get(OUR_BUCKET_METADATA)
        if named != bucket:
            r.not_ours += 1
            why = "no s3balance metadata" if named is None else f"its s3balance metadata names bucket {named!r}"
            say(f"skipped: backend={backend} real_key={real_key}: s3balance's key layout, but {why} (not rebuilt)")
            return
        quoted_key = copy.metadata.get(OUR_KEY_METADATA)
        if quoted_key is None:
            r.unrecoverable += 1
            say(
                f"unrecoverable: backend={backend} real_key={real_key} bucket={bucket} size={copy.size} "
                f"last_modified={copy.last_modified.isoformat()}: no {OUR_KEY_METADATA} metadata (keys longer than "
                "512 URL-quoted characters are not written there); its virtual key is unknown (not rebuilt)"
            )
            return
        key = unquote(quoted_key)
        why_not = unstorable(key, copy)
        if why_not is not None:
            r.errors += 1
            say(f"error: backend={backend} real_key={real_key} object={bucket}/{key}: the store can't hold it: {why_not}")
            return
        identity = (bucket, key)
        if self.keeps_versions(bucket):
            self.gathered.setdefault(identity, Gathered()).add(copy)
            return
        current = self.kept.get(identity)
        if current is None:
            self._first(identity, copy)
        elif current.state == PRESENT:
            r.present += 1
        else:
            self._another(identity, copy, current)

    def keeps_versions(self, bucket: str) -> bool:
        """
        Whether C{bucket}'s older copies are its noncurrent versions: a
        configured bucket's when its configuration sets C{versioning}; one
        not configured with C{--keep-older-copies}, or when its row (under
        C{--force}) says it is versioned.
        """
        if bucket not in self._keeps_versions:
            configured = self.config.virtual_bucket(bucket)
            if configured is not None:
                keeps = configured.versioning is not None
            else:
                keeps = self.options.keep_older_copies or self._bucket_row(bucket)[1] is not None
            self._keeps_versions[bucket] = keeps
        return self._keeps_versions[bucket]

    def wanted(self, bucket: str) -> int:
        """The copies each object of C{bucket} keeps (its replicas)."""
        if bucket not in self._wanted:
            self._wanted[bucket] = max(1, self.config.replication_of(bucket)[0])
        return self._wanted[bucket]

    def _count(self, kept: Kept, sign: int = 1) -> None:
        self.report.rebuilt += sign
        self.report.rebuilt_bytes += sign * kept.newest.size
        if "-" in kept.newest.etag:
            self.report.multipart_objects += sign

    def _leave(self, identity: tuple[str, str], copies: list[Seen]) -> None:
        """C{copies} are now those of the key left unreferenced."""
        before = self.older.pop(identity, [])
        self.report.older_copies += len(copies) - len(before)
        self.report.conflicts += bool(copies) - bool(before)
        if copies:
            self.older[identity] = copies

    def _first(self, identity: tuple[str, str], copy: BackendCopy) -> None:
        bucket, key = identity
        r = self.report
        try:
            self.need_bucket(bucket)
            if self.options.dry_run:
                inserted = self.no_database or not transaction(
                    self.engine, existing_keys, bucket, [key], write=False
                )
            else:
                inserted = transaction(self.engine, insert_copy, bucket, key, copy, self.now(), False)
        except Exception as error:
            r.errors += 1
            self.output.say(
                f"error: object={bucket}/{key} backend={copy.backend} real_key={copy.real_key}: "
                f"the database refused it: {type(error).__name__}: {error} (not rebuilt)"
            )
            return
        seen = Seen.of(copy)
        if inserted:
            self.kept[identity] = Kept((seen,), seen, NEW)
            self._count(self.kept[identity])
        else:
            self.kept[identity] = Kept((seen,), seen, PRESENT)
            r.present += 1

    def _another(self, identity: tuple[str, str], copy: BackendCopy, current: Kept) -> None:
        """
        One more copy of a key this run recorded: another location of its
        version (a replica), a newer version, or a copy left unreferenced.
        """
        bucket, key = identity
        seen = Seen.of(copy)
        copies, newest, rest = resolve([*current.copies, *self.older.get(identity, []), seen], self.wanted(bucket))
        newer = newest == seen  # the row takes this copy's size, ETag, headers, Last-Modified
        if not self.options.dry_run and (newer or copies != current.copies):
            try:
                done = transaction(
                    self.engine,
                    relocate,
                    bucket,
                    key,
                    [c.location for c in current.copies],
                    [c.location for c in copies],
                    copy if newer else None,
                    self.now(),
                )
            except Exception as error:
                self.report.errors += 1
                self.output.say(
                    f"error: object={bucket}/{key}: could not record its copy backend={copy.backend} "
                    f"real_key={copy.real_key}: {type(error).__name__}: {error} (the object keeps its locations)"
                )
                return
            if not done:
                # Someone else wrote the key since (a daemon running under --force).
                self._count(current, -1)
                self._leave(identity, [])
                self.kept[identity] = attr.evolve(current, state=PRESENT)
                self.report.present += 1
                return
        self._count(current, -1)
        self.kept[identity] = Kept(copies, newest, NEW)
        self._count(self.kept[identity])
        self._leave(identity, rest)

    # -- the keys of buckets that keep versions ----------------------------------------

    def record_gathered(self) -> None:
        """The keys of the buckets that keep versions, each with all its versions, once every backend was read."""
        by_bucket: dict[str, list[str]] = {}
        for bucket, key in self.gathered:
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in sorted(by_bucket.items()):
            keys.sort()
            older = any(len(self.gathered[(bucket, key)].newest) > 1 for key in keys)
            try:
                self.need_bucket(bucket)
                versioning = self.bucket_versioning(bucket, older)
            except Exception as error:
                self.report.errors += 1
                self.output.say(
                    f"error: bucket={bucket}: the database refused it: {type(error).__name__}: {error} "
                    f"(its {len(keys)} key(s) not rebuilt)"
                )
                continue
            for key in keys:
                self._record_versions((bucket, key), self.gathered.pop((bucket, key)), versioning)
                self.output.tick(self._progress)

    def bucket_versioning(self, bucket: str, older: bool) -> Optional[str]:
        """
        The versioning status C{bucket}'s keys are recorded under (None: one
        version each, as in a bucket never versioned): a configured bucket's
        own; else its row's (C{--force}); else Enabled when some key of it
        has older versions, given to its row (and said).
        """
        configured = self.config.virtual_bucket(bucket)
        if configured is not None and configured.versioning is not None:
            return configured.versioning
        recorded = self._bucket_row(bucket)[1]
        if recorded is not None or not older:
            return recorded
        if not self.options.dry_run:
            transaction(self.engine, set_versioning, bucket, ENABLED)
        self.report.versioned_buckets += 1
        self.output.say(
            f"bucket: {bucket}: versioning {'would be ' if self.options.dry_run else ''}Enabled (not configured; "
            "--keep-older-copies: its keys' older copies are kept as noncurrent versions)"
        )
        return ENABLED

    def _record_versions(self, identity: tuple[str, str], gathered: Gathered, versioning: Optional[str]) -> None:
        """
        One key of a bucket that keeps versions: each version (size and
        ETag) a row with its copies, oldest first, the newest the latest;
        unless the database has the key (C{--force}).  Under no versioning
        (a bucket not configured whose keys have one version each) the one
        version is recorded as any other object.
        """
        bucket, key = identity
        r = self.report
        versions, rest = resolve_versions(gathered.copies, self.wanted(bucket))
        version_ids: list[Optional[str]] = [None] * len(versions)
        try:
            if self.options.dry_run:
                inserted = self.no_database or not transaction(self.engine, existing_keys, bucket, [key], write=False)
            elif versioning is None:
                [(chosen, newest)] = versions
                inserted = transaction(
                    self.engine,
                    insert_copy,
                    bucket,
                    key,
                    gathered.newest[newest.version],
                    self.now(),
                    False,
                    [c.location for c in chosen],
                )
            else:
                records = [
                    gathered.newest[newest.version].record(bucket, key, [c.location for c in chosen])
                    for chosen, newest in versions
                ]
                made = transaction(self.engine, insert_versions, bucket, key, records, self.now())
                inserted = made is not None
                if made is not None:
                    version_ids = list(made)
        except Exception as error:
            r.errors += 1
            self.output.say(
                f"error: object={bucket}/{key}: the database refused it: {type(error).__name__}: {error} (not rebuilt)"
            )
            return
        state = NEW if inserted else PRESENT
        kept = [
            Kept(chosen, newest, state, version_id)
            for (chosen, newest), version_id in zip(versions, version_ids, strict=True)
        ]
        self.kept[identity] = kept[-1]
        if not inserted:
            r.present += len(gathered.copies)
            return
        self._count(kept[-1])
        if len(kept) > 1:
            self.noncurrent[identity] = kept[:-1]
            r.noncurrent += len(kept) - 1
            r.noncurrent_bytes += sum(version.newest.size for version in kept[:-1])
        self._leave(identity, rest)

    def list_uploads(self, backend: str) -> None:
        """The backend's multipart uploads in progress: ours are leftovers (reported only)."""
        r, say = self.report, self.output.say
        try:
            paginator = self.clients[backend].get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=backend):
                uploads = page.get("Uploads", [])
                ours = [u for u in uploads if OUR_KEY.fullmatch(u["Key"])]
                r.foreign_uploads += len(uploads) - len(ours)
                known = self._known(backend, [u["Key"] for u in ours])
                for upload in ours:
                    if upload["Key"] in known:
                        continue  # the database has it (--force)
                    r.uploads += 1
                    bucket = OUR_KEY.fullmatch(upload["Key"])
                    assert bucket is not None
                    say(
                        f"leftover-upload: backend={backend} real_key={upload['Key']} upload_id={upload['UploadId']} "
                        f"initiated={upload['Initiated'].isoformat()} bucket={bucket.group('bucket')} "
                        "(not rebuilt: its gateway upload id is lost, no client can finish it; "
                        "fsck --repair aborts it)"
                    )
        except Exception as error:
            status, code = error_status(error)
            r.errors += 1
            say(f"error: listing the multipart uploads of {backend}: {status} {code} {error}")

    # -- output -------------------------------------------------------------------------

    def _progress(self) -> str:
        r = self.report
        verb = "would rebuild" if self.options.dry_run else "rebuilt"
        return (
            f"{r.listed} keys seen, {r.rebuilt} objects {verb} ({format_size(r.rebuilt_bytes)}), "
            f"{r.conflicts} conflicts, {r.errors} errors, {self.output.rate(r.listed)}"
        )

    @staticmethod
    def _object_line(what: str, bucket: str, key: str, kept: Kept) -> str:
        primary, newest = kept.copies[0], kept.newest
        version = "" if kept.version_id is None else f"version_id={kept.version_id} "
        line = (
            f"{what}: object={bucket}/{key} {version}backend={primary.backend} real_key={primary.real_key} "
            f"size={newest.size} etag={newest.etag} last_modified={newest.last_modified.isoformat()}"
        )
        if len(kept.copies) > 1:
            others = ", ".join(f"backend={c.backend} real_key={c.real_key}" for c in kept.copies[1:])
            line += f" copies={len(kept.copies)} (also {others})"
        return line

    def print_objects(self) -> None:
        """A line per object rebuilt (its latest version), then one per noncurrent version of it, newest first."""
        verb = "would-rebuild" if self.options.dry_run else "rebuilt"
        for (bucket, key), kept in sorted(self.kept.items()):
            if kept.state != NEW:
                continue
            self.output.say(self._object_line(verb, bucket, key, kept))
            for version in reversed(self.noncurrent.get((bucket, key), [])):
                self.output.say(self._object_line(f"{verb}-noncurrent", bucket, key, version))

    def print_conflicts(self) -> None:
        say = self.output.say
        older_versions: set[str] = set()  # buckets not configured with copies of another version left
        for (bucket, key), copies in sorted(self.older.items()):
            kept = self.kept[(bucket, key)]
            versions = {v.newest.version: v for v in (*self.noncurrent.get((bucket, key), []), kept)}
            where = f"backend={kept.copies[0].backend} real_key={kept.copies[0].real_key}"
            if len(kept.copies) > 1:
                where += f" (and {len(kept.copies) - 1} more copies)"
            for copy in sorted(copies, key=Seen.newness, reverse=True):
                own = versions.get(copy.version)
                if own is None:
                    if self.config.virtual_bucket(bucket) is None:
                        older_versions.add(bucket)
                    tie = " (same Last-Modified: chosen by backend and real key)" if copy.newness()[:2] == kept.newness[:2] else ""
                    what = "older copy left on its backend"
                elif copy.backend in {c.backend for c in own.copies}:
                    tie, what = "", "older copy of the same version on a backend that keeps a newer one, left on it"
                else:
                    tie = ""
                    what = f"surplus copy of the same version (the bucket keeps {self.wanted(bucket)}), left on its backend"
                say(
                    f"conflict: object={bucket}/{key} kept {where} "
                    f"last_modified={kept.newest.last_modified.isoformat()}; {what}: "
                    f"backend={copy.backend} real_key={copy.real_key} last_modified={copy.last_modified.isoformat()}{tie}"
                )
        if self.older:
            say(
                "conflicts: the version of each key's newest copy won (its copies on distinct backends are its "
                "locations); the other copies stay on their backends, unreferenced: "
                "'s3balance-admin fsck --repair' deletes them (once older than its --older-than, 1h by default)"
            )
        if older_versions:
            say(
                f"conflicts: the older copies of another version in {', '.join(sorted(older_versions))} (not "
                "configured) are an overwritten key's old version, or the noncurrent versions of a bucket that was "
                "versioned (the backends do not say which): for such a bucket, before 'fsck --repair', rebuild "
                "into an empty database again with --keep-older-copies"
            )

    def copies(self) -> tuple[int, int, int]:
        """
        (objects with several copies, their locations, objects with fewer
        copies than their bucket keeps), noncurrent versions counted as objects.
        """
        several = locations = short = 0
        for (bucket, key), latest in self.kept.items():
            if latest.state != NEW:
                continue
            for kept in (latest, *self.noncurrent.get((bucket, key), [])):
                if len(kept.copies) > 1:
                    several += 1
                    locations += len(kept.copies)
                if len(kept.copies) < self.wanted(bucket):
                    short += 1
        return several, locations, short

    def summary(self) -> None:
        r, say = self.report, self.output.say
        dry = self.options.dry_run
        verb = "would rebuild" if dry else "rebuilt"
        say("")
        say("what the backends do not keep, so the rebuild cannot restore:")
        say(
            "  not rebuilt: checksums stored with objects (x-amz-checksum-*; never sent to the backends): "
            "rebuilt objects have none"
        )
        say(
            f"  not rebuilt: part tables and per-part checksums of multipart objects "
            f"({r.multipart_objects} found; GetObjectAttributes lists no parts for them)"
        )
        say("  not rebuilt: storage class labels (x-amz-storage-class is not sent to the backends): all STANDARD")
        say(
            "  not rebuilt: object and bucket tags (x-amz-tagging, PutObjectTagging, PutBucketTagging; "
            "kept in the database only): rebuilt objects and buckets have none"
        )
        say(
            "  not rebuilt: object and bucket ACLs (x-amz-acl, x-amz-grant-*, Put*Acl; kept in the "
            "database only): rebuilt objects and API-created buckets are private"
        )
        say(f"  not rebuilt: {r.uploads} multipart upload(s) in progress (listed above as leftover-upload)")
        say(
            f"  not rebuilt: keys adopted with 's3balance-admin import' carry no s3balance metadata: "
            f"{r.foreign} key(s) not of s3balance's layout were left alone; import those again"
        )
        say("  not rebuilt: empty virtual buckets made with CreateBucket; bucket creation dates (now)")
        say(
            "  not rebuilt: delete markers (kept in the database only): a key of a versioned bucket whose "
            "newest version was a delete marker is back, its newest copy the latest version"
        )
        say(
            "  not rebuilt: Object Lock (a bucket's default retention, versions' retention and legal holds; kept "
            "in the database only): no rebuilt version is protected"
        )
        say(
            f"  not rebuilt: version ids (kept in the database only): the {r.noncurrent} noncurrent version(s) "
            "kept and the latest versions of versioned buckets have new ones, none is the null version"
        )
        say("  note: Last-Modified is the backend copy's (the original may be a second or so later)")
        say(
            "  note: an object deleted or overwritten just before the loss whose old copy was still on its "
            "backend (deletion grace, queued deletion) is back (an overwrite: its newest copy; in a bucket "
            "that keeps versions, the old copy as a noncurrent version)"
        )
        say(
            "  note: the older copies (another size or ETag) of a key are kept as noncurrent versions in "
            "buckets configured with versioning" + (
                " and, --keep-older-copies, in those not configured (given versioning Enabled when they have any)"
                if self.options.keep_older_copies else "; elsewhere they are left (--keep-older-copies keeps "
                "those of buckets not configured)"
            ) + "; versions are ordered by their newest copy's Last-Modified"
        )
        say(
            "  note: copies of one version (same size and ETag) on distinct backends are its replicas, one "
            "location each, up to the bucket's replicas; a copy made without the source's part layout has "
            "another ETag and counts as another version"
        )
        several, locations, short = self.copies()
        if short:
            say(
                f"  note: {short} object(s) have fewer copies than their bucket keeps: "
                "the daemon's replica repair makes the missing ones"
            )
        say("")
        say("rebuild" + (" (dry run: nothing written)" if dry else ""))
        rows: list[tuple[str, object]] = [
            ("backend keys listed", r.listed),
            ("  not s3balance's (left alone)", r.foreign),
            ("  s3balance's layout, not its metadata", r.not_ours),
            ("  already in the database (--force)", r.known + r.present),
            ("  gone meanwhile", r.gone),
            ("  unrecoverable (no key metadata)", r.unrecoverable),
            (f"objects {verb}", f"{r.rebuilt} ({format_size(r.rebuilt_bytes)})"),
            ("  of them multipart", r.multipart_objects),
            ("noncurrent versions " + ("to keep" if dry else "kept"), f"{r.noncurrent} ({format_size(r.noncurrent_bytes)})"),
            ("  objects with several copies", f"{several} ({locations} locations)"),
            ("  fewer copies than their bucket keeps", short),
            ("conflicts (keys with copies left)", f"{r.conflicts} ({r.older_copies} copies)"),
            ("virtual bucket rows " + ("to make" if dry else "made"), r.buckets_made),
            ("  versioning Enabled (not configured)", r.versioned_buckets),
            ("leftover multipart uploads", r.uploads),
            ("foreign multipart uploads", r.foreign_uploads),
            ("errors", r.errors),
        ]
        for label, value in rows:
            say(f"{label:<38} {value!s:>16}")
        self.output.tick(self._progress, force=True)
        result = f"result: {r.rebuilt} object(s) " + ("would be rebuilt" if dry else "rebuilt")
        if r.noncurrent:
            result += f", {r.noncurrent} noncurrent version(s) " + ("would be kept" if dry else "kept")
        if r.unrecoverable or r.errors:
            result += f", {r.unrecoverable} unrecoverable, {r.errors} error(s)"
        say(result)


# -- the command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, with_config: bool = True) -> None:
    """The rebuild options (C{--config} too unless the caller adds it)."""
    if with_config:
        parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument("--dry-run", action="store_true", help="report what would be recorded; write nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild into a database that holds objects: only the keys it lacks are added",
    )
    parser.add_argument(
        "--keep-older-copies",
        action="store_true",
        help=(
            "in buckets not configured (made with CreateBucket: the backends do not record whether they were "
            "versioned), keep each key's older copies (another size or ETag) as its noncurrent versions, and give "
            "a bucket that has any versioning Enabled; without it they are left for fsck --repair. Buckets "
            "configured with versioning keep them always, configured ones without never"
        ),
    )
    parser.add_argument("--concurrency", type=int, default=8, help="HEAD requests at a time (default 8)")


def run(config: Config, options: RebuildOptions, out: TextIO = sys.stdout) -> int:
    """One rebuild; its exit status (0 complete, 1 something not rebuilt, 2 refused)."""
    rebuilder = Rebuilder(config, options, out=out)
    try:
        report = rebuilder.run()
    except (Refused, UsageError) as error:
        sys.stderr.write(f"s3balance-admin rebuild: refused: {error}\n")
        return 2
    finally:
        rebuilder.engine.dispose()
    return 1 if report.errors or report.unrecoverable else 0


def command(args: argparse.Namespace) -> int:
    """Entry point of C{s3balance-admin rebuild}."""
    from s3balance.config.operator import load_checked_config

    config = load_checked_config(args.config)
    options = RebuildOptions(
        dry_run=bool(args.dry_run),
        force=bool(args.force),
        concurrency=max(1, int(args.concurrency)),
        keep_older_copies=bool(args.keep_older_copies),
    )
    return run(config, options)
