"""
C{s3balance-admin jobs}: list, pause and resume the cluster-wide background
jobs through a running daemon's admin API (L{s3balance.admin.api}; the
pauses themselves: L{s3balance.ops.pauses}).

    s3balance-admin jobs [list] [--json]
    s3balance-admin jobs pause NAME [--reason TEXT]
    s3balance-admin jobs resume NAME

Every form takes C{--admin-url URL} (the daemon, e.g. http://127.0.0.1:8080;
or $S3BALANCE_ADMIN_URL) and C{--token T} (C{api.token}; or
$S3BALANCE_ADMIN_TOKEN).  A pause holds in every daemon of the cluster and
across restarts until resumed.  Exit status: 0 done, 1 the daemon refused
(an unknown job: the message names the jobs) or could not be reached,
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, TextIO
from urllib.parse import quote

from s3balance.ops.drain_cli import AdminCallFailed, admin_call

ACTIONS = ("list", "pause", "resume")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [list|pause NAME|resume NAME] --admin-url URL --token T [--reason TEXT] [--json]"
    parser.add_argument(
        "words",
        nargs="*",
        metavar="ACTION NAME",
        help="nothing or list: every job; pause NAME or resume NAME: that job (deleter, stale-uploads, "
        "usage-reconcile, drain, replicas, scrub, ...: the list names them all)",
    )
    parser.add_argument("--admin-url", default=os.environ.get("S3BALANCE_ADMIN_URL", ""),
                        help="the daemon's URL, e.g. http://127.0.0.1:8080 (default: $S3BALANCE_ADMIN_URL)")
    parser.add_argument("--token", default=os.environ.get("S3BALANCE_ADMIN_TOKEN", ""),
                        help="the admin API token, api.token (default: $S3BALANCE_ADMIN_TOKEN)")
    parser.add_argument("--reason", help="why it is paused (shown by the list)")
    parser.add_argument("--json", action="store_true", help="print the job(s) as JSON")


def parse_words(words: list[str]) -> tuple[str, Optional[str]]:
    """-> (action, job name or None); ValueError on bad usage."""
    if not words or words == ["list"]:
        return "list", None
    if len(words) == 2 and words[0] in ("pause", "resume"):
        return words[0], words[1]
    if len(words) == 1 and words[0] in ("pause", "resume"):
        raise ValueError(f"jobs {words[0]}: name the job")
    raise ValueError("expected nothing or list, or pause|resume and a job's name")


def summary(job: dict) -> str:
    """One line: paused or active, who holds the lease, since when and why it is paused."""
    parts = [f"{job['name']}: {'paused' if job['paused'] else 'active'}"]
    if job["paused"]:
        since = f"since {job['paused_at']}" if job.get("paused_at") else ""
        by = f"by {job['paused_by']}" if job.get("paused_by") else ""
        if since or by:
            parts.append(" ".join(part for part in (since, by) if part))
        if job.get("reason"):
            parts.append(f"reason: {job['reason']}")
    if job.get("holder"):
        parts.append(f"lease held by {job['holder']}{' (this daemon)' if job.get('leader') else ''}")
    else:
        parts.append("no daemon holds its lease")
    if job["paused"] and job.get("running"):
        parts.append("its last run is ending its current step")
    return ", ".join(parts)


def command(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str, status: int) -> int:
        err.write(f"s3balance-admin jobs: {message}\n")
        return status

    try:
        action, name = parse_words(list(args.words))
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if args.reason is not None and action != "pause":
        return fail("--reason goes with pause", EXIT_USAGE)
    if not args.admin_url:
        return fail("--admin-url (or $S3BALANCE_ADMIN_URL) is required", EXIT_USAGE)
    if not args.token:
        return fail("--token (or $S3BALANCE_ADMIN_TOKEN) is required", EXIT_USAGE)

    def call(method: str, path: str, body: Optional[dict] = None) -> Any:
        return admin_call(args.admin_url, args.token, method, path, body)

    try:
        if action == "list":
            jobs = call("GET", "jobs")["jobs"]
            if args.json:
                out.write(json.dumps(jobs, indent=1, sort_keys=True) + "\n")
            else:
                for job in jobs:
                    out.write(summary(job) + "\n")
            return EXIT_OK
        assert name is not None
        body = {"reason": args.reason} if args.reason is not None else None
        job = call("POST", f"jobs/{quote(name, safe='')}/{action}", body)
        out.write((json.dumps(job, indent=1, sort_keys=True) if args.json else summary(job)) + "\n")
        return EXIT_OK
    except AdminCallFailed as error:
        return fail(str(error), EXIT_FAILED)
