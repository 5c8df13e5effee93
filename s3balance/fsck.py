"""
C{s3balance-admin fsck}: compare the metadata store with the backends.

    s3balance-admin fsck --config FILE [--repair] [--drop-missing]
                         [--backend NAME ...] [--older-than 1h] [--concurrency 8]

(also C{python -m s3balance.fsck ...} with the same arguments).

Checks, each streamed page by page (nothing is loaded whole):

  1. objects: every C{object_locations} row -> HEAD its real key on its
     backend (C{--concurrency} requests at a time); a 404 is a I{missing}
     object (re-checked against the store first: a row replaced or deleted
     meanwhile is not reported), a different Content-Length a I{size mismatch},
     a different ETag an I{etag mismatch} (C{--ignore-etag} turns that off).
  2. orphans: every backend's real bucket is listed (ListObjectsV2); an object
     older than C{--older-than} that no location row, write intent, queued
     deletion or multipart upload row names is an I{orphan}.  All four tables
     are asked in ONE statement per page, so a commit moving a key from
     C{write_intents} to C{object_locations} can't slip between two queries.
  3. orphan uploads: ListMultipartUploads on every backend; an upload older
     than C{--older-than} whose backend upload id is neither in
     C{multipart_uploads} nor queued for abort, and whose real key is not
     under a running write intent (large streaming PUTs use backend multipart
     uploads), is an I{orphan upload}.
  4. counts of write intents whose lease ran out and of queued deletions
     (the daemon's cleaner handles both; reported, not differences).

C{--repair} deletes orphans and aborts orphan uploads.  Missing objects are
only reported, unless C{--drop-missing} also removes their location row (and
the object row when no other copy is left): the data is gone, and the object
disappears from listings.

Exit status: 0 when store and backends agree (or every difference was
repaired), 1 when differences remain, 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
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
    size_mismatch: Counter = attr.Factory(Counter)
    etag_mismatch: Counter = attr.Factory(Counter)
    unknown_backend: Counter = attr.Factory(Counter)
    errors: Counter = attr.Factory(Counter)
    orphans: Counter = attr.Factory(Counter)
    orphan_uploads: Counter = attr.Factory(Counter)
    expired_intents: int = 0
    write_intents: int = 0
    queued_deletions: int = 0
    stuck_deletions: int = 0  # queued deletions that already failed at least once

    def differences(self) -> int:
        return sum(
            c.found
            for c in (
                self.missing,
                self.size_mismatch,
                self.etag_mismatch,
                self.unknown_backend,
                self.errors,
                self.orphans,
                self.orphan_uploads,
            )
        )

    def differences_left(self) -> int:
        return sum(
            c.found - c.repaired
            for c in (
                self.missing,
                self.size_mismatch,
                self.etag_mismatch,
                self.unknown_backend,
                self.errors,
                self.orphans,
                self.orphan_uploads,
            )
        )


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

    # -- output ---------------------------------------------------------------

    def say(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def loud(self, line: str) -> None:
        self.say(line)
        if self.out is not sys.stderr:
            sys.stderr.write("s3balance-admin fsck: " + line + "\n")

    # -- the run --------------------------------------------------------------

    def run(self) -> Report:
        self.check_locations()
        for name in self.names:
            self.check_orphans(name)
            self.check_uploads(name)
        self.count_pending()
        self.print_summary()
        return self.report

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

    def _location_exists(self, row) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(_loc.c.id).where(_loc.c.id == row.id, _loc.c.object_id == row.object_id)
                ).first()
                is not None
            )

    def _check_location(self, row) -> None:
        virtual = f"{row.bucket}/{bytes(row.key).decode('utf-8', 'replace')}"
        where = f"backend={row.backend} real_key={row.real_key} object={virtual}"
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
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                if not self._location_exists(row):
                    return  # replaced or deleted while we looked
                with self._lock:
                    self.report.missing.found += 1
                self.say(f"missing: {where} size={row.size}")
                if self.options.repair and self.options.drop_missing:
                    if self._drop_location(row):
                        with self._lock:
                            self.report.missing.repaired += 1
                        self.loud(
                            f"DROPPED the row of {virtual} (backend {row.backend}, real key {row.real_key}): "
                            "its data is gone from the backend"
                        )
                return
            with self._lock:
                self.report.errors.found += 1
            self.say(f"error: HEAD {where}: {status} {code} {error}")
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

    def _list_objects(self, backend: str) -> Iterator[list[dict]]:
        paginator = self.clients[backend].get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=backend, PaginationConfig={"PageSize": PAGE}):
            yield page.get("Contents", [])

    def check_orphans(self, backend: str) -> None:
        threshold = self._threshold()
        try:
            for contents in self._list_objects(backend):
                self.report.backend_objects_listed += len(contents)
                old = [item for item in contents if item["LastModified"] < threshold]
                referenced = self._referenced(backend, [item["Key"] for item in old])
                orphans = [item for item in old if item["Key"] not in referenced]
                if not orphans:
                    continue
                if self.options.repair:
                    # Asked again right before deleting (cheap, one statement).
                    again = self._referenced(backend, [item["Key"] for item in orphans])
                    orphans = [item for item in orphans if item["Key"] not in again]
                for item in orphans:
                    self.report.orphans.found += 1
                    self.say(
                        f"orphan: backend={backend} real_key={item['Key']} size={item.get('Size')} "
                        f"last_modified={item['LastModified'].isoformat()}"
                    )
                    if self.options.repair:
                        try:
                            self.clients[backend].delete_object(Bucket=backend, Key=item["Key"])
                        except Exception as error:
                            status, code = _error_status(error)
                            self.say(f"  could not delete it: {status} {code}")
                        else:
                            self.report.orphans.repaired += 1
                            self.say("  deleted")
        except Exception as error:
            status, code = _error_status(error)
            self.report.errors.found += 1
            self.say(f"error: listing backend {backend}: {status} {code} {error}")

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
        try:
            for uploads in self._list_uploads(backend):
                self.report.uploads_listed += len(uploads)
                old = [u for u in uploads if u["Initiated"] < threshold]
                known = self._uploads_referenced(backend, old)
                orphans = [u for u in old if u["UploadId"] not in known]
                if orphans and self.options.repair:
                    again = self._uploads_referenced(backend, orphans)
                    orphans = [u for u in orphans if u["UploadId"] not in again]
                for upload in orphans:
                    self.report.orphan_uploads.found += 1
                    self.say(
                        f"orphan-upload: backend={backend} real_key={upload['Key']} "
                        f"upload_id={upload['UploadId']} initiated={upload['Initiated'].isoformat()}"
                    )
                    if self.options.repair:
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
                        else:
                            self.report.orphan_uploads.repaired += 1
                            self.say("  aborted")
        except Exception as error:
            status, code = _error_status(error)
            self.report.errors.found += 1
            self.say(f"error: listing multipart uploads of {backend}: {status} {code} {error}")

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
            ("  size mismatch", r.size_mismatch.found, "-"),
            ("  etag mismatch", r.etag_mismatch.found, "-"),
            ("  backend not configured", r.unknown_backend.found, "-"),
            ("backend objects listed", r.backend_objects_listed, ""),
            ("  orphan objects", r.orphans.found, fixed(r.orphans, True)),
            ("backend multipart uploads", r.uploads_listed, ""),
            ("  orphan uploads", r.orphan_uploads.found, fixed(r.orphan_uploads, True)),
            ("errors (unchecked)", r.errors.found, "-"),
            ("write intents (expired)", f"{r.write_intents} ({r.expired_intents})", ""),
            ("queued deletions (retried)", f"{r.queued_deletions} ({r.stuck_deletions})", ""),
        ]
        self.say("")
        self.say(f"{'check':<30} {'found':>10} {'repaired':>9}")
        for label, found, repaired in rows:
            self.say(f"{label:<30} {found!s:>10} {repaired:>9}")
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


def add_arguments(parser: argparse.ArgumentParser, with_config: bool = True) -> None:
    """The fsck options (C{--config} too unless the caller adds it)."""
    if with_config:
        parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument(
        "--repair", action="store_true", help="delete orphans, abort orphan multipart uploads"
    )
    parser.add_argument(
        "--drop-missing",
        action="store_true",
        help="with --repair: remove the rows of objects whose data is gone from their backend",
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
    )


def run(config, options: Options, out: TextIO = sys.stdout) -> int:
    """Run one check; the exit status (0 consistent or all repaired, 1 differences left)."""
    if options.drop_missing and not options.repair:
        sys.stderr.write("s3balance-admin fsck: --drop-missing does nothing without --repair\n")
    checker = Fsck(config, options, out=out)
    try:
        report = checker.run()
    finally:
        checker.engine.dispose()
    return 1 if report.differences_left() else 0


def command(args: argparse.Namespace) -> int:
    """Entry point of C{s3balance-admin fsck} (args from L{add_arguments})."""
    from s3balance.cli import _config

    config = _config(args.config)
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
