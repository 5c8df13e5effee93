"""
fsck steps 2 and 3: backend objects and backend multipart uploads nothing in
the store refers to.  Only those of the gateway's own key layout and metadata
are orphans (deleted, or aborted, with C{--repair}); anything else in a
shared real bucket is foreign, reported and left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Optional

from sqlalchemy import literal, select, union_all

from s3balance.ops.fsck.backend import GONE, PAGE, Unreadable, delete_key, error_status, list_pages
from s3balance.ops.fsck.state import FsckState
from s3balance.store import tables

FOREIGN_SHOWN = 1000  # foreign keys (and uploads) listed one by one per backend; the rest are counted

# The real keys the gateway writes (s3balance.s3.gateway.Gateway.new_real_key,
# used by PUT, streaming PUT, CopyObject and CreateMultipartUpload alike).
OUR_KEY = re.compile(r"(?P<bucket>[^/]+)/[0-9a-f]{32}")
# The metadata it puts on them (s3balance.s3.writes.backend_headers), as
# botocore names it (the x-amz-meta- prefix taken off; compared lower-cased).
OUR_BUCKET_METADATA = "s3balance-bucket"
OUR_KEY_METADATA = "s3balance-key"

_loc = tables.object_locations
_wi = tables.write_intents
_dq = tables.deletion_queue
_mp = tables.multipart_uploads


class OrphanChecks(FsckState):
    """Steps 2 and 3 of a run, and their C{--repair}."""

    # 2. backend objects nothing refers to -------------------------------------------

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
        wrote, else (why it is not ours, "").  Raises L{Unreadable} when a
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
            status, code = error_status(error)
            if status == 404:
                return GONE, ""  # deleted since the listing (the daemon's deletion worker)
            raise Unreadable(f"HEAD answered {status} {code}") from None
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
        return list_pages(self.clients[backend], backend)

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
            status, code = error_status(error)
            self.report.errors.found += 1
            self.say(f"error: listing backend {backend}: {status} {code} {error}")
        if shown[0] > FOREIGN_SHOWN:
            self.say(f"foreign: backend={backend}: {shown[0] - FOREIGN_SHOWN} more foreign keys not listed")

    def _unreferenced(self, backend: str, item: dict, shown: list[int]) -> None:
        """A backend object no row names: an orphan of ours (deleted with --repair), or foreign."""
        key = item["Key"]
        try:
            why, virtual = self._why_foreign(backend, key)
        except Unreadable as error:
            self.report.errors.found += 1
            self.say(
                f"error: backend={backend} real_key={key}: its metadata could not be read: {error} (left alone)"
            )
            return
        if why == GONE:
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
            delete_key(self.clients[backend], self.configured[backend], key)
        except Exception as error:
            status, code = error_status(error)
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
            status, code = error_status(error)
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
            status, code = error_status(error)
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
