"""
C{s3balance-admin quota}: the virtual buckets' usage counters.

    s3balance-admin quota recount --config FILE [--bucket B ...]

C{recount} sets each virtual bucket's usage (bytes and objects, what its
quota is checked against) to what its object rows add up to, one
transaction per bucket, safely while the daemons serve (see
L{s3balance.store.quotas.recount_usage}), with a line per bucket as it goes.
The counters are exact as every commit and delete keeps them; a recount
repairs them after they drifted (a database restored or edited by hand, a
bug).  C{s3balance-admin fsck} reports such a drift and C{fsck --repair}
recounts the buckets it found; C{POST /admin/quota/recount} does the same
through a running daemon.

Exit status: 0 done (counters changed or not), 1 a database error, 2 bad
usage (an unknown bucket).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, TextIO

from s3balance.config.units import format_size
from s3balance.store.interfaces import NoSuchBucketError, UsageRecount

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["recount"], help="recount: usage counters := the object rows")
    parser.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
    parser.add_argument(
        "--bucket", action="append", default=None, metavar="B",
        help="recount this virtual bucket only (repeatable; default: every bucket)",
    )


def describe(result: UsageRecount) -> str:
    """One line: the bucket's objects and bytes, and what they were when they changed."""
    now = f"{result.objects_after} objects, {format_size(float(result.bytes_after))}"
    if not result.changed:
        return f"{result.bucket}: {now}: unchanged"
    was = f"{result.objects_before} objects, {format_size(float(result.bytes_before))}"
    return f"{result.bucket}: {now} (the counters said {was}): recounted"


def recount(engine: Engine, buckets: Optional[Sequence[str]], out: TextIO) -> list[UsageRecount]:
    """Blocking: recount C{buckets} (default every bucket), a line on C{out} for each; NoSuchBucketError."""
    from s3balance.ops.adopt import transaction
    from s3balance.store import quotas

    names = list(buckets) if buckets else transaction(engine, quotas.bucket_names, write=False)
    results = []
    for number, name in enumerate(names, 1):
        result = transaction(engine, quotas.recount_usage, name)
        out.write(f"[{number}/{len(names)}] {describe(result)}\n")
        out.flush()
        results.append(result)
    return results


def command(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    from s3balance.config.operator import load_checked_config
    from s3balance.ops.adopt import open_engine

    out = out or sys.stdout
    err = err or sys.stderr
    config = load_checked_config(args.config)
    engine = open_engine(config.database.url)
    try:
        results = recount(engine, args.bucket, out)
    except NoSuchBucketError as error:
        err.write(f"s3balance-admin quota recount: no bucket named {error.args[0]!r}\n")
        return EXIT_USAGE
    finally:
        engine.dispose()
    changed = sum(1 for result in results if result.changed)
    out.write(f"{len(results)} bucket(s) recounted, {changed} changed\n")
    return EXIT_OK
