"""
What C{s3balance-admin rebuild} is asked (L{RebuildOptions}), what it counts
(L{RebuildReport}) and what it says: L{RebuildFindings} holds what the
rebuild resolved (the objects it recorded, their noncurrent versions, the
copies it left) and prints a line per object, per conflict, the progress
line and the summary with what the backends do not keep.  The rebuild
itself (L{s3balance.ops.rebuild.Rebuilder}) adds to those findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, TextIO

import attr

from s3balance.config.units import format_size
from s3balance.ops.adopt import (
    Progress,
)
from s3balance.ops.rebuild_resolution import NEW, Kept, Seen

if TYPE_CHECKING:
    from s3balance.config import Config


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
    locked: int = 0  # versions given back the Object Lock their copies carry on their backends
    lock_buckets: int = 0  # buckets not configured given Object Lock (they hold locked versions)
    uploads: int = 0  # in-progress multipart uploads of our layout
    foreign_uploads: int = 0
    errors: int = 0



class RebuildFindings:
    """
    The findings of one rebuild of C{config}'s store, and their output.

    @param out: where findings and the summary go.
    """

    def __init__(self, config: Config, options: RebuildOptions, out: Optional[TextIO] = None) -> None:
        self.config = config
        self.options = options
        self.report = RebuildReport()
        self.output = Progress("rebuild", out)
        # (virtual bucket, key) -> what it resolves to; -> the copies left unreferenced.
        self.kept: dict[tuple[str, str], Kept] = {}
        self.older: dict[tuple[str, str], list[Seen]] = {}
        # Buckets that keep versions: (bucket, key) -> its noncurrent versions recorded, oldest first
        # (the latest is in C{kept}).
        self.noncurrent: dict[tuple[str, str], list[Kept]] = {}
        self._wanted: dict[str, int] = {}

    def wanted(self, bucket: str) -> int:
        """The copies each object of C{bucket} keeps (its replicas)."""
        if bucket not in self._wanted:
            self._wanted[bucket] = max(1, self.config.replication_of(bucket)[0])
        return self._wanted[bucket]

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
            "  not rebuilt: Object Lock configurations of buckets (a default retention; kept in the database "
            "only). The retention and legal hold of versions are restored from their copies on backends whose "
            f"real bucket has Object Lock (object_lock: true): {r.locked} version(s) locked; on other backends "
            "no rebuilt version is protected"
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
            ("versions locked (from their copies)", r.locked),
            ("  buckets given Object Lock", r.lock_buckets),
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
