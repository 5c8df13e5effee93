"""
L{Fsck}: one whole consistency check of the store against the backends,
step by step (see L{s3balance.ops.fsck}), then step 4 and the summary.
"""

from __future__ import annotations

from sqlalchemy import func, select

from s3balance.ops.fsck.locations import LocationChecks
from s3balance.ops.fsck.orphans import OrphanChecks
from s3balance.ops.fsck.report import Counter, Report
from s3balance.store import quotas, tables

_wi = tables.write_intents
_dq = tables.deletion_queue


class Fsck(LocationChecks, OrphanChecks):
    """
    One consistency check of C{config}'s store against its backends.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param clients: backend name -> botocore client (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC.
    """

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
        self.check_usage()
        self.print_summary()
        return self.report

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

    # 5. the virtual buckets' usage counters ----------------------------------------------

    def check_usage(self) -> None:
        """Each bucket's usage counters against its object rows; --repair recounts those that differ."""
        from s3balance.ops.adopt import transaction
        from s3balance.ops.quota_cli import describe

        for drift in transaction(self.engine, quotas.usage_drift, write=False):
            self.report.usage_drift.found += 1
            self.say(
                f"USAGE of {drift.bucket}: the counters say {drift.objects_before} objects, "
                f"{drift.bytes_before} bytes; its objects add up to {drift.objects_after}, {drift.bytes_after}"
            )
            if self.options.repair:
                result = transaction(self.engine, quotas.recount_usage, drift.bucket)
                self.report.usage_drift.repaired += 1
                self.loud(f"RECOUNTED {describe(result)}")

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
            ("bucket usage counters off", r.usage_drift.found, fixed(r.usage_drift, True)),
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
