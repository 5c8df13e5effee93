"""
The rows C{s3balance-admin rebuild} records (L{s3balance.ops.rebuild}
describes the rules): the schema brought to head and the refusal of a
database that holds objects (L{RebuildRecorder.prepare_database}), the
virtual buckets' rows, and each copy of s3balance's layout read from a
backend recorded as the object it names (L{RebuildRecorder.found}): an
object of a bucket that keeps no versions with its first copy, relocated
as further copies come; the keys of buckets that keep versions gathered and
recorded with all their versions once every backend was read
(L{RebuildRecorder.record_gathered}).  How copies resolve is
L{s3balance.ops.rebuild_resolution}'s; the transactions are
L{s3balance.ops.adopt}'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional, TextIO, Union
from urllib.parse import unquote

import attr
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from s3balance.ops.adopt import (
    ORIGIN_API,
    ORIGIN_CONFIG,
    OUR_BUCKET_METADATA,
    OUR_KEY_METADATA,
    BackendCopy,
    Gone,
    Unreadable,
    ensure_bucket,
    existing_keys,
    insert_copy,
    insert_versions,
    object_count,
    open_engine,
    referenced_keys,
    relocate,
    schema_revision,
    set_lock,
    transaction,
    unstorable,
    utc_now,
)
from s3balance.ops.rebuild_report import RebuildFindings, RebuildOptions
from s3balance.ops.rebuild_resolution import (
    NEW,
    PRESENT,
    Gathered,
    Kept,
    Lock,
    Seen,
    resolve,
    resolve_versions,
    strongest_lock,
)
from s3balance.s3 import object_lock
from s3balance.store import tables
from s3balance.store.versions import ENABLED, set_object_lock, set_versioning

if TYPE_CHECKING:
    from s3balance.config import Config


class Refused(Exception):
    """The database holds objects and --force was not given (exit status 2)."""



Outcome = Union[BackendCopy, Gone, Unreadable]



class RebuildRecorder(RebuildFindings):
    """
    The rows of one rebuild of C{config}'s store: its database side.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC (rows' creation times).
    """

    def __init__(
        self,
        config: Config,
        options: RebuildOptions,
        engine: Optional[Engine] = None,
        out: Optional[TextIO] = None,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        super().__init__(config, options, out)
        self.now = now
        self.engine = engine if engine is not None else open_engine(config.database.url)
        # Dry run on a database without a schema: nothing to ask it.
        self.no_database = False
        # Buckets that keep versions: (bucket, key) -> its copies met so far (recorded after the scan).
        self.gathered: dict[tuple[str, str], Gathered] = {}
        self._keeps_versions: dict[str, bool] = {}
        self.buckets: set[str] = set()  # those known to have a row (or, dry run, to get one)

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

    def _known(self, backend: str, keys: list[str]) -> set[str]:
        if self.no_database or not keys:
            return set()
        return transaction(self.engine, referenced_keys, backend, keys, write=False)

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

    # -- Object Lock --------------------------------------------------------------------

    def restore_locks(self) -> None:
        """
        Every version recorded whose copies carry an Object Lock on their
        backends (L{strongest_lock}) gets it back, with a line each; a
        bucket not configured that holds one gets Object Lock enabled (and
        versioning Enabled, as S3 has it), without a default retention: that
        is in the database only.
        """
        dry = self.options.dry_run
        locked_buckets: set[str] = set()
        for (bucket, key), latest in sorted(self.kept.items()):
            for kept in (*self.noncurrent.get((bucket, key), []), latest):
                lock = strongest_lock(kept.copies) if kept.state == NEW else None
                if lock is None:
                    continue
                if not dry:
                    try:
                        found = transaction(
                            self.engine, set_lock, bucket, key, kept.version_id, lock.mode, lock.until,
                            lock.legal_hold,
                        )
                        why = "" if found else "its version is not in the database any more"
                    except Exception as error:
                        why = f"{type(error).__name__}: {error}"
                    if why:
                        self.report.errors += 1
                        self.output.say(
                            f"error: {_lock_line(bucket, key, kept, lock)}: the lock could not be restored: {why}"
                        )
                        continue
                self.report.locked += 1
                locked_buckets.add(bucket)
                self.output.say(f"{'would-lock' if dry else 'locked'}: {_lock_line(bucket, key, kept, lock)}")
        for bucket in sorted(locked_buckets):
            if self.config.virtual_bucket(bucket) is not None:
                continue  # configured: its versioning is the configuration's
            if not dry:
                try:
                    transaction(self.engine, _enable_object_lock, bucket)
                except Exception as error:
                    self.report.errors += 1
                    self.output.say(
                        f"error: bucket={bucket}: Object Lock could not be enabled: {type(error).__name__}: {error}"
                    )
                    continue
            self.report.lock_buckets += 1
            self.output.say(
                f"bucket: {bucket}: Object Lock {'would be ' if dry else ''}enabled, versioning Enabled "
                "(it holds locked versions; its default retention, if it had one, is not on the backends)"
            )

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


def _lock_line(bucket: str, key: str, kept: Kept, lock: Lock) -> str:
    version = f"version_id={kept.version_id} " if kept.version_id is not None else ""
    retention = (
        f"mode={lock.mode} retain_until={lock.until.isoformat()} " if lock.mode is not None and lock.until else ""
    )
    return f"object={bucket}/{key} {version}{retention}legal_hold={'on' if lock.legal_hold else 'off'}"


def _enable_object_lock(conn: Connection, bucket: str) -> None:
    """Versioning Enabled and Object Lock enabled without a default retention (unless it has Object Lock already)."""
    set_versioning(conn, bucket, ENABLED)
    row = conn.execute(select(tables.buckets.c.object_lock).where(tables.buckets.c.name == bucket)).first()
    if row is not None and row.object_lock is None:
        set_object_lock(conn, bucket, object_lock.Configuration().dump())
