"""
C{s3balance-admin rebuild}: the metadata database rebuilt from the backends
after it was lost (the command line: L{s3balance.ops.rebuild_cli}).

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
backends are listed in (L{s3balance.ops.rebuild_resolution.resolve}).

In a bucket that keeps versions the older versions are its noncurrent
versions, and are kept
(L{s3balance.ops.rebuild_resolution.resolve_versions}): a configured bucket
whose configuration sets C{versioning} (Enabled or Suspended), and with
C{--keep-older-copies} every bucket not configured (the backends don't
record whether a bucket made with CreateBucket was versioned; one that has
older versions gets versioning Enabled, and a configured bucket without
C{versioning} was never versioned: the daemon refuses to start on a
versioned one).  Their keys' copies are gathered (in memory) while the
backends are read and recorded after (L{RebuildRecorder.record_gathered}),
one transaction per key (L{s3balance.ops.adopt.insert_versions}): every
version a row with its copies and a new version id, inserted oldest first
(by the Last-Modified of its newest copy, so the row ids order them as the
store does), the version of the newest copy the latest.  Only an older copy
of a version on a backend that keeps a newer one and the surplus copies are
left for fsck.  The version ids and delete markers are in the database
only: not restored (a key whose newest version was a delete marker is back).

Object Lock: a copy on a backend whose real bucket has Object Lock carries
its version's retention and legal hold (L{s3balance.backends.retention}),
and its HEAD answers them.  Each version recorded gets the strongest lock
its kept copies carry (L{s3balance.ops.rebuild_resolution.strongest_lock}),
with a C{locked:} line, and a bucket not configured that holds one gets
Object Lock enabled and versioning Enabled (L{RebuildRecorder.restore_locks});
a bucket's default retention is in the database only.

Backend multipart uploads in progress are listed as leftovers (their
gateway upload ids are lost: no client can finish them; fsck --repair
aborts them).  What the backends don't keep is said at the end: checksums,
multipart part tables, storage classes, tags, ACLs, delete markers, the
buckets' Object Lock configurations, version ids, keys adopted with
C{s3balance-admin import}.

An object of a bucket that keeps no versions is recorded with its first copy
found; each further copy of it rewrites its locations
(L{s3balance.ops.adopt.relocate}), only while they are still those this run
recorded.  It refuses (exit status 2) a database that holds objects, unless
C{--force}: then only the virtual keys the database lacks are added, with
all their copies and versions (a key it has, even as a delete marker only,
is never changed, and a real key any row names is not read again); a bucket
not configured whose row says it is versioned keeps versions then too.  The
schema is created or brought up to date first.  C{--dry-run} reads
everything and reports what would be recorded, writing nothing (not even a
missing schema).  Stop the daemons first; with C{--force} the transactions
are the daemon's kind, so one running does no harm.

Findings to stdout (a rebuilt object's line names its copies), a progress
line to stderr every 10 s, a summary at the end (with the noncurrent
versions kept, the objects that have several copies, and those with fewer
than their bucket keeps: the daemon's replica repair makes the missing
ones).  Exit status: 0 when everything of s3balance's found was rebuilt (or
resolved as an older copy), 1 when some could not be (a failed HEAD or
listing, a copy without its key in the metadata, a database error), 2 when
refused or for a bad configuration.

This module is the pass over the backends (L{Rebuilder}: list, HEAD, then
the findings); what a copy read is recorded as is in
L{s3balance.ops.rebuild_rows}, how one key's copies resolve in
L{s3balance.ops.rebuild_resolution}, the options, counters and output in
L{s3balance.ops.rebuild_report}; the parts shared with import are in
L{s3balance.ops.adopt}.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, TextIO

from sqlalchemy.engine import Engine

from s3balance.ops.adopt import (
    OUR_KEY,
    Gone,
    Unreadable,
    head_copy,
    transaction,
    utc_now,
)
from s3balance.ops.fsck.backend import backend_client, error_status, list_pages
from s3balance.ops.rebuild_report import RebuildOptions, RebuildReport
from s3balance.ops.rebuild_rows import Outcome, RebuildRecorder
from s3balance.store.usage import reconcile_backend_usage

if TYPE_CHECKING:
    from s3balance.config import Config


class Rebuilder(RebuildRecorder):
    """
    One rebuild of C{config}'s store from its backends: every backend's
    real bucket listed, its keys of s3balance's layout read and recorded
    (L{RebuildRecorder.found}), then the findings and the summary.

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
        out: Optional[TextIO] = None,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        super().__init__(config, options, engine, out, now)
        self.names = [b.name for b in config.backends]
        if clients is None:
            clients = {b.name: backend_client(b, options.concurrency) for b in config.backends}
        self.clients = clients
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- the pass over the backends ---------------------------------------------------

    def run(self) -> RebuildReport:
        self.prepare_database()
        for bucket in self.config.virtual_buckets:
            self.need_bucket(bucket.name)
        with ThreadPoolExecutor(max(1, self.options.concurrency), thread_name_prefix="s3balance-rebuild") as pool:
            self._pool = pool
            for name in self.names:
                self.scan(name)
        self.record_gathered()
        self.restore_locks()
        if not self.options.dry_run:
            # The usage counters from the locations, as the daemon's reconciler makes them.
            transaction(self.engine, reconcile_backend_usage)
        self.print_objects()
        self.print_conflicts()
        for name in self.names:
            self.list_uploads(name)
        self.summary()
        return self.report

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
