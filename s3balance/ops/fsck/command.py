"""
C{s3balance-admin fsck}: compare the metadata store with the backends.

The command line: its options (L{add_arguments}), one run (L{run}) and the
entry points (L{command} for C{s3balance-admin fsck}, L{main} for C{python -m
s3balance.ops.fsck}).  What is checked, and the exit status: see
L{s3balance.ops.fsck}.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional, TextIO

from s3balance.ops.fsck.checker import Fsck
from s3balance.ops.fsck.report import DEFAULT_MAX_DROP_FRACTION, DEFAULT_OLDER_THAN, Options

if TYPE_CHECKING:
    from s3balance.config import Config


def _duration(text: str) -> float:
    from s3balance.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def add_arguments(parser: argparse.ArgumentParser, with_config: bool = True) -> None:
    """The fsck options (C{--config} too unless the caller adds it)."""
    if with_config:
        parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="delete orphans and abort orphan multipart uploads (only keys of s3balance's layout and metadata)",
    )
    parser.add_argument(
        "--drop-missing",
        action="store_true",
        help="with --repair: remove the rows of objects whose data is gone from their backend (NoSuchKey)",
    )
    parser.add_argument(
        "--max-drop-fraction",
        type=_fraction,
        default=DEFAULT_MAX_DROP_FRACTION,
        metavar="FRACTION",
        help="with --drop-missing: drop nothing when more than this fraction of the checked objects "
        f"look missing (default {DEFAULT_MAX_DROP_FRACTION:g})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --drop-missing: drop the missing objects' rows even beyond --max-drop-fraction",
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
        max_drop_fraction=float(getattr(args, "max_drop_fraction", DEFAULT_MAX_DROP_FRACTION)),
        force=bool(getattr(args, "force", False)),
    )


def run(config: Config, options: Options, out: Optional[TextIO] = None) -> int:
    """Run one check; the exit status (0 consistent or all repaired, 1 differences left)."""
    if options.drop_missing and not options.repair:
        sys.stderr.write("s3balance-admin fsck: --drop-missing does nothing without --repair\n")
    if options.force and not options.drop_missing:
        sys.stderr.write("s3balance-admin fsck: --force does nothing without --drop-missing\n")
    checker = Fsck(config, options, out=out)
    try:
        report = checker.run()
    finally:
        checker.engine.dispose()
    return 1 if report.differences_left() else 0


def command(args: argparse.Namespace) -> int:
    """Entry point of C{s3balance-admin fsck} (args from L{add_arguments})."""
    from s3balance.config.operator import load_checked_config

    config = load_checked_config(args.config)
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
