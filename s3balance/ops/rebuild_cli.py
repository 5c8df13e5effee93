"""
C{s3balance-admin rebuild}: the metadata database rebuilt from the backends
after it was lost (the rebuild itself: L{s3balance.ops.rebuild}).

    s3balance-admin rebuild --config FILE [--dry-run] [--force] [--keep-older-copies]
                            [--concurrency 8]

Exit status: 0 when everything of s3balance's found was rebuilt (or
resolved as an older copy), 1 when some could not be (a failed HEAD or
listing, a copy without its key in the metadata, a database error), 2 when
refused or for a bad configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional, TextIO

from s3balance.ops.importer import UsageError
from s3balance.ops.rebuild import Rebuilder
from s3balance.ops.rebuild_report import RebuildOptions
from s3balance.ops.rebuild_rows import Refused

if TYPE_CHECKING:
    from s3balance.config import Config


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


def run(config: Config, options: RebuildOptions, out: Optional[TextIO] = None) -> int:
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
