"""
fsck step 1, every location row -> HEAD its real key, and C{--drop-missing},
which removes the rows of objects whose data is gone for sure.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from sqlalchemy import delete, func, select

from s3balance.ops.fsck.backend import PAGE, bare_etag, error_status
from s3balance.ops.fsck.state import FsckState
from s3balance.store import quotas, tables, versions
from s3balance.store.interfaces import ObjectLocked

_o = tables.objects
_loc = tables.object_locations


class LocationChecks(FsckState):
    """Step 1 and C{--drop-missing} of a run."""

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

    def _location_exists(self, row: Any) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(_loc.c.id).where(_loc.c.id == row.id, _loc.c.object_id == row.object_id)
                ).first()
                is not None
            )

    @staticmethod
    def _virtual_name(row: Any) -> str:
        return f"{row.bucket}/{bytes(row.key).decode('utf-8', 'replace')}"

    def _where(self, row: Any) -> str:
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
            status, code = error_status(error)
            if status == 404 and code == "NoSuchKey":
                return None
            return f"GET answered {status} {code}"
        body = answer.get("Body")
        if body is not None:
            body.close()
        return "HEAD answered 404 but GET found it"

    def _unverifiable(self, row: Any, why: str) -> None:
        with self._lock:
            self.report.unverifiable.found += 1
        self.say(f"unverifiable: {self._where(row)}: {why}")

    def _check_location(self, row: Any) -> None:
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
            status, code = error_status(error)
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
            theirs, ours = bare_etag(head.get("ETag")), bare_etag(row.etag)
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

    def _drop_one(self, row: Any) -> None:
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

    def _drop_location(self, row: Any) -> bool:
        """
        Remove a location whose data is gone, and its object version when no
        copy is left (the key's next version then is its latest).  A version
        under Object Lock keeps its rows: the record of what was locked stays.
        """
        with self.engine.begin() as conn:
            # Lock the object first, as replace_object and delete_object do.
            locked = conn.execute(
                select(
                    _o.c.id, _o.c.bucket, _o.c.key, _o.c.size, _o.c.lock_mode, _o.c.lock_until, _o.c.legal_hold
                ).where(_o.c.id == row.object_id).with_for_update()
            ).first()
            if locked is None:
                return False
            try:
                versions.check_unlocked(locked, datetime.datetime.now(datetime.UTC))
            except ObjectLocked:
                self.say(f"kept the row of object {row.object_id} (real key {row.real_key}): under Object Lock")
                return False
            result = conn.execute(delete(_loc).where(_loc.c.id == row.id, _loc.c.object_id == row.object_id))
            if result.rowcount != 1:
                return False  # replaced meanwhile: the new version is not ours to drop
            left = conn.execute(
                select(func.count()).select_from(_loc).where(_loc.c.object_id == row.object_id)
            )
            if left.scalar_one() == 0:
                conn.execute(delete(_o).where(_o.c.id == row.object_id))
                versions.make_newest_latest(conn, locked.bucket, bytes(locked.key))
                # The bucket's usage, as delete_object keeps it.
                quotas.add_usage(conn, locked.bucket, quotas.shard_of(bytes(locked.key)), -int(locked.size), -1)
            return True
