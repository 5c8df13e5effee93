"""
C{s3balance-admin import}: adopt the keys of a backend's real bucket (or of
a prefix of it) into a virtual bucket, without copying a byte.

    s3balance-admin import --config FILE --backend NAME --bucket VBUCKET
                           [--prefix P] [--dry-run] [--concurrency 8]

Every key of backend C{NAME}'s real bucket under C{P} becomes the object of
the same key in C{VBUCKET}, its real key the key itself (a foreign key keeps
its name; nothing is copied or rewritten on the backend).  Left out:

  - keys of s3balance's own layout (C{<bucket>/<32 hex digits>}: objects the
    gateway wrote, referred to or not; fsck and rebuild deal with those) and
    the health probe's key;
  - keys any row of the store already names on that backend (an object's
    location, a write intent, a queued deletion, a multipart upload): so a
    second run adopts nothing, and a key replaced or deleted through the
    gateway, waiting for its deletion, is not brought back.

Each remaining key is read with a HEAD (size, ETag, Last-Modified,
Content-Type, Content-Encoding, Content-Disposition, Cache-Control, Expires,
Content-Language and the user metadata, which the daemon then serves) and
recorded in one transaction of its own, as a committed PUT is (usage counted
too), except that an object the virtual bucket already has under that key is
kept: the key is reported as a I{conflict} and not adopted.  The transactions
are the daemon's kind (If-None-Match: * on the commit), so the command is
safe while daemons run on the same database.

Once adopted, a key is the gateway's: overwriting or deleting the object
through the gateway deletes that key from the backend, as for any object.

C{--dry-run} lists and reads as above and reports what it would adopt (and
the conflicts it would meet); it writes nothing.

Findings go to stdout (one line per key), a progress line to stderr every
10 s, and a summary at the end.  Exit status: 0 when every key was adopted,
skipped or a conflict; 1 when some could not be (a failed HEAD, a key or
headers the store can't hold, a database error, a failed listing); 2 for a
bad option or configuration.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, TextIO, Union

import attr
from sqlalchemy.engine import Connection, Engine

from s3balance.config.units import format_size
from s3balance.ops.adopt import (
    ORIGIN_CONFIG,
    OUR_KEY,
    BackendCopy,
    Gone,
    Progress,
    Unreadable,
    ensure_bucket,
    existing_keys,
    head_copy,
    insert_copy,
    open_engine,
    referenced_keys,
    schema_revision,
    transaction,
    unstorable,
    utc_now,
)
from s3balance.ops.fsck.backend import backend_client, error_status, list_pages, probe_key
from s3balance.store import tables
from s3balance.store.interfaces import NoSuchBucketError

if TYPE_CHECKING:
    from s3balance.config import Config


class UsageError(ValueError):
    """A bad option or an unusable database: the command ends with exit status 2."""


@attr.s(auto_attribs=True)
class ImportOptions:
    backend: str
    bucket: str
    prefix: str = ""
    dry_run: bool = False
    concurrency: int = 8


@attr.s(auto_attribs=True)
class ImportReport:
    listed: int = 0
    ours: int = 0  # keys of s3balance's layout
    probe: int = 0  # the health probe's key
    referenced: int = 0  # named by a row of the store already
    gone: int = 0  # deleted between the listing and the HEAD
    adopted: int = 0
    adopted_bytes: int = 0
    conflicts: int = 0
    errors: int = 0



def _bucket_row(conn: Connection, name: str) -> bool:
    from sqlalchemy import select

    return conn.execute(select(tables.buckets.c.name).where(tables.buckets.c.name == name)).first() is not None


Outcome = Union[BackendCopy, Gone, Unreadable]


class Importer:
    """
    One import of C{options.backend}'s real bucket into C{options.bucket}.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param client: a botocore client of the backend (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC (rows' creation times).
    @raise UsageError: an unknown backend or virtual bucket.
    """

    def __init__(
        self,
        config: Config,
        options: ImportOptions,
        engine: Optional[Engine] = None,
        client: Any = None,
        out: Optional[TextIO] = None,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.config = config
        self.options = options
        self.now = now
        self.report = ImportReport()
        self.output = Progress("import", out)
        backend = config.backend(options.backend)
        if backend is None:
            known = ", ".join(b.name for b in config.backends)
            raise UsageError(f"--backend {options.backend}: no such backend in the configuration (backends: {known})")
        self.engine = engine if engine is not None else open_engine(config.database.url)
        self.client = client if client is not None else backend_client(backend, options.concurrency)
        self.probe_key = probe_key()
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- before anything ------------------------------------------------------------

    def check(self) -> None:
        """The schema must be current, the virtual bucket must exist (a configured one gets its row)."""
        from s3balance.store import migrate

        url = self.config.database.url
        revision, head = schema_revision(url), migrate.head_revision()
        if revision is None:
            raise UsageError(
                "the database has no schema yet: run 's3balance-admin migrate --config FILE' "
                "(or start the daemon) first"
            )
        if revision != head:
            raise UsageError(
                f"the database schema is at {revision}, this s3balance's is {head}: "
                "run 's3balance-admin migrate --config FILE' first"
            )
        name = self.options.bucket
        has_row = transaction(self.engine, _bucket_row, name, write=False)
        if has_row:
            return
        if self.config.virtual_bucket(name) is None:
            raise UsageError(
                f"--bucket {name}: no such virtual bucket (neither in the configuration nor made with "
                "CreateBucket); create it first"
            )
        if not self.options.dry_run:
            # A configured bucket the daemon has not started with yet.
            transaction(self.engine, ensure_bucket, name, ORIGIN_CONFIG, self.now())

    # -- the run --------------------------------------------------------------------

    def run(self) -> ImportReport:
        self.check()
        with ThreadPoolExecutor(max(1, self.options.concurrency), thread_name_prefix="s3balance-import") as pool:
            self._pool = pool
            pages = list_pages(self.client, self.options.backend, self.options.prefix)
            while True:
                try:
                    items = next(pages)
                except StopIteration:
                    break
                except Exception as error:
                    status, code = error_status(error)
                    self.report.errors += 1
                    self.output.say(f"error: listing backend {self.options.backend}: {status} {code} {error}")
                    break
                self._page(items)
        self.summary()
        return self.report

    def _head(self, item: dict[str, Any]) -> Outcome:
        try:
            return head_copy(self.client, self.options.backend, item)
        except (Gone, Unreadable) as error:
            return error

    def _page(self, items: list[dict[str, Any]]) -> None:
        r = self.report
        r.listed += len(items)
        candidates = []
        for item in items:
            key = item["Key"]
            if key == self.probe_key:
                r.probe += 1
            elif OUR_KEY.fullmatch(key):
                r.ours += 1
            else:
                candidates.append(item)
        keys = [item["Key"] for item in candidates]
        known = transaction(self.engine, referenced_keys, self.options.backend, keys, write=False)
        r.referenced += len(known)
        candidates = [item for item in candidates if item["Key"] not in known]
        taken: set[str] = set()
        if self.options.dry_run:
            taken = transaction(
                self.engine, existing_keys, self.options.bucket, [i["Key"] for i in candidates], write=False
            )
        assert self._pool is not None
        for item, outcome in zip(candidates, self._pool.map(self._head, candidates), strict=True):
            self._adopt(item["Key"], outcome, taken)
            self.output.tick(self._progress)
        self.output.tick(self._progress)

    def _adopt(self, key: str, outcome: Outcome, taken: set[str]) -> None:
        r, say, bucket = self.report, self.output.say, self.options.bucket
        if isinstance(outcome, Gone):
            r.gone += 1
            say(f"gone: key={key} (deleted since the listing)")
            return
        if isinstance(outcome, Unreadable):
            r.errors += 1
            say(f"error: key={key}: {outcome} (not adopted)")
            return
        copy = outcome
        why = unstorable(key, copy)
        if why is not None:
            r.errors += 1
            say(f"error: key={key}: the store can't hold it: {why} (not adopted)")
            return
        if self.options.dry_run:
            adopted = key not in taken
        else:
            try:
                adopted = transaction(self.engine, insert_copy, bucket, key, copy, self.now())
            except NoSuchBucketError:
                raise UsageError(f"--bucket {bucket}: the virtual bucket was deleted during the import") from None
            except Exception as error:
                r.errors += 1
                say(f"error: key={key}: the database refused it: {type(error).__name__}: {error} (not adopted)")
                return
        if not adopted:
            r.conflicts += 1
            say(f"conflict: key={key}: {bucket} already has an object under this key; it is kept, the key is not adopted")
            return
        r.adopted += 1
        r.adopted_bytes += copy.size
        verb = "would-adopt" if self.options.dry_run else "adopted"
        say(
            f"{verb}: key={key} size={copy.size} etag={copy.etag} content_type={copy.content_type} "
            f"last_modified={copy.last_modified.isoformat()}"
        )

    # -- output -----------------------------------------------------------------------

    def _progress(self) -> str:
        r = self.report
        verb = "would adopt" if self.options.dry_run else "adopted"
        return (
            f"{r.listed} keys seen, {r.adopted} {verb} ({format_size(r.adopted_bytes)}), "
            f"{r.conflicts} conflicts, {r.errors} errors, {self.output.rate(r.listed)}"
        )

    def summary(self) -> None:
        r, o = self.report, self.options
        say = self.output.say
        verb = "would adopt" if o.dry_run else "adopted"
        where = f"prefix {o.prefix!r} of " if o.prefix else ""
        say("")
        say(f"import of {where}backend {o.backend} into virtual bucket {o.bucket}" + (" (dry run: nothing written)" if o.dry_run else ""))
        rows: list[tuple[str, object]] = [
            ("keys listed", r.listed),
            ("  s3balance's own keys (skipped)", r.ours),
            ("  health probe key (skipped)", r.probe),
            ("  already in the store (skipped)", r.referenced),
            ("  gone meanwhile", r.gone),
            (f"  {verb}", f"{r.adopted} ({format_size(r.adopted_bytes)})"),
            ("  conflicts (existing kept)", r.conflicts),
            ("  errors (not adopted)", r.errors),
        ]
        for label, value in rows:
            say(f"{label:<34} {value!s:>16}")
        self.output.tick(self._progress, force=True)
        result = f"result: {r.adopted} key(s) " + ("would be adopted" if o.dry_run else "adopted")
        if r.conflicts:
            result += f", {r.conflicts} conflict(s) left to you (rename or delete one side, then import again)"
        if r.errors:
            result += f", {r.errors} error(s)"
        say(result)


# -- the command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, with_config: bool = True) -> None:
    """The import options (C{--config} too unless the caller adds it)."""
    if with_config:
        parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument("--backend", required=True, metavar="NAME", help="the backend (real bucket) to import from")
    parser.add_argument("--bucket", required=True, metavar="VBUCKET", help="the virtual bucket the keys join")
    parser.add_argument("--prefix", default="", metavar="P", help="only keys starting with P (kept in the key)")
    parser.add_argument("--dry-run", action="store_true", help="report what would be adopted; write nothing")
    parser.add_argument("--concurrency", type=int, default=8, help="HEAD requests at a time (default 8)")


def run(config: Config, options: ImportOptions, out: Optional[TextIO] = None) -> int:
    """One import; its exit status (0 all adopted or skipped, 1 errors, 2 unusable options)."""
    try:
        importer = Importer(config, options, out=out)
    except UsageError as error:
        sys.stderr.write(f"s3balance-admin import: {error}\n")
        return 2
    try:
        report = importer.run()
    except UsageError as error:
        sys.stderr.write(f"s3balance-admin import: {error}\n")
        return 2
    finally:
        importer.engine.dispose()
    return 1 if report.errors else 0


def command(args: argparse.Namespace) -> int:
    """Entry point of C{s3balance-admin import}."""
    from s3balance.config.operator import load_checked_config

    config = load_checked_config(args.config)
    options = ImportOptions(
        backend=args.backend,
        bucket=args.bucket,
        prefix=args.prefix or "",
        dry_run=bool(args.dry_run),
        concurrency=max(1, int(args.concurrency)),
    )
    return run(config, options)
