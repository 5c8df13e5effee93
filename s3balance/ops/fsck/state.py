"""
What one fsck run shares between its steps: the configuration and options,
the store's engine, the backend clients, the report, the output and progress
lines, and step 0 (each real bucket must answer a listing).
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, TextIO

from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from s3balance.ops.fsck.backend import backend_client, error_status, probe_key
from s3balance.ops.fsck.report import Options, Report
from s3balance.store import tables

if TYPE_CHECKING:
    from s3balance.config import Config

UTC = datetime.UTC
PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


class FsckState:
    """
    One consistency check of C{config}'s store against its backends: what
    its steps share.

    @param engine: a SQLAlchemy engine on the store (default: from the config).
    @param clients: backend name -> botocore client (default: from the config).
    @param out: where findings and the summary go.
    @param now: the clock, timezone-aware UTC.
    """

    def __init__(
        self,
        config: Config,
        options: Options,
        engine: Optional[Engine] = None,
        clients: Optional[dict[str, Any]] = None,
        out: Optional[TextIO] = None,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.config = config
        self.options = options
        self.out = out if out is not None else sys.stdout  # this moment's, not the importer's
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
        self.probe_key = probe_key()
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

    # -- what the steps share ---------------------------------------------------

    def _virtual_bucket_names(self) -> set[str]:
        """The configured virtual buckets and those made with CreateBucket."""
        names = {bucket.name for bucket in self.config.virtual_buckets}
        with self.engine.connect() as conn:
            names.update(row[0] for row in conn.execute(select(tables.buckets.c.name)))
        return names

    def _threshold(self) -> datetime.datetime:
        return self.now() - datetime.timedelta(seconds=self.options.older_than)

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
            status, code = error_status(error)
            why = f"listing its real bucket answered {status} {code}"
        else:
            status = int(answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 200 and answer.get("Name") == backend:
                return None
            why = f"listing its real bucket gave no S3 answer for it (status {status})"
        self.say(f"warning: backend={backend}: {why}; none of its objects can be shown missing or dropped")
        return why
