"""
C{s3balance-admin rebalance}: drive the cluster's rebalance through a running
daemon's admin API (L{s3balance.admin.api}; the rebalance itself:
L{s3balance.ops.rebalance}).

    s3balance-admin rebalance [start] [--margin 0.05] [--rate 50MB/s] [--wait] [--no-progress]
    s3balance-admin rebalance pause
    s3balance-admin rebalance resume [--rate R] [--wait]
    s3balance-admin rebalance status [--wait] [--json]
    s3balance-admin rebalance cancel

Every form takes C{--admin-url URL} (the daemon; or $S3BALANCE_ADMIN_URL)
and C{--token T} (C{api.token}; or $S3BALANCE_ADMIN_TOKEN).  C{--wait}
follows the rebalance until it is done, with a progress bar on stderr (a
line every 10 seconds when stderr is no terminal; none with
C{--no-progress}).  Exit status: 0 done (or, without C{--wait}, the request
was carried out), 1 the daemon refused or could not be reached, 2 bad usage,
3 the rebalance was paused or cancelled while waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Optional, TextIO

from s3balance.config.units import parse_rate
from s3balance.ops.drain_cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    AdminCallFailed,
    Progress,
    admin_call,
    bar,
    follow,
    human_duration,
    human_size,
)
from s3balance.ops.rebalance import parse_margin

ACTIONS = ("start", "pause", "resume", "status", "cancel")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s [start|pause|resume|status|cancel] --admin-url URL --token T "
        "[--margin 0.05] [--rate R] [--wait] [--no-progress] [--json]"
    )
    parser.add_argument("action", nargs="?", default="start", choices=ACTIONS,
                        help="start (the default), pause, resume, status or cancel")
    parser.add_argument("--admin-url", default=os.environ.get("S3BALANCE_ADMIN_URL", ""),
                        help="the daemon's URL, e.g. http://127.0.0.1:8080 (default: $S3BALANCE_ADMIN_URL)")
    parser.add_argument("--token", default=os.environ.get("S3BALANCE_ADMIN_TOKEN", ""),
                        help="the admin API token, api.token (default: $S3BALANCE_ADMIN_TOKEN)")
    parser.add_argument("--margin", help="how far apart the backends' used fractions may end, e.g. 0.05 or 5%% "
                        "(default 0.05, or the running rebalance's)")
    parser.add_argument("--rate", help="bytes per second to move, e.g. 50MB/s (0: unlimited; default: "
                        "balancer.drain_rate)")
    parser.add_argument("--wait", action="store_true", help="follow the rebalance until it is done")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr while waiting (scripts)")
    parser.add_argument("--json", action="store_true", help="print the rebalance as JSON")
    parser.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)


# -- what it shows --------------------------------------------------------------------


def _moved(report: dict) -> str:
    return f"{report['objects']['moved']} objects {human_size(report['bytes']['moved'])} moved"


def progress_line(report: dict) -> str:
    rate = f"{human_size(report['rate'])}/s" if report.get("rate") is not None else "-/s"
    return (
        f"rebalance {bar(report.get('progress', 0.0))} {_moved(report)}, "
        f"~{human_size(report['bytes']['remaining'])} left, spread {report['spread']:.4f} "
        f"(margin {report['margin']:g}) {rate} ETA {human_duration(report.get('eta_seconds'))} {report['state']}"
    )


def summary(report: dict) -> str:
    """The state in one line, then one line per backend that takes part."""
    if report.get("state") is None:
        head = f"rebalance: never started, spread {report['spread']:.4f} ({report['mode']})"
    else:
        limit = report["rate_limit"]
        parts = [
            f"rebalance: {report['state']}",
            f"margin {report['margin']:g}",
            f"spread {report['spread']:.4f} ({report['mode']})",
            _moved(report),
            f"rate {human_size(report['rate'])}/s" if report["rate"] is not None else "rate -",
            f"limit {human_size(limit)}/s" if limit else "no rate limit",
        ]
        if report["state"] in ("running", "paused"):
            parts.append(f"~{human_size(report['bytes']['remaining'])} left")
            if report["eta_seconds"] is not None:
                parts.append(f"ETA {human_duration(report['eta_seconds'])}")
        if report["objects"]["failed"]:
            parts.append(f"{report['objects']['failed']} failed attempt(s)")
        if report.get("last_error"):
            parts.append(f"last error: {report['last_error']}")
        head = ", ".join(parts)
    lines = [head]
    for backend in report.get("backends", []):
        lines.append(
            f"  {backend['backend']}: {human_size(backend['used_bytes'])} used, fraction {backend['fraction']:.4f}, "
            f"target {backend['target']:.4f} ({backend['level']:+.4f})"
        )
    return "\n".join(lines)


def wait_for(call: Callable[[], dict], progress: Progress, interval: float,
             sleep: Callable[[float], None] = time.sleep) -> tuple[int, dict]:
    """Poll the rebalance until it is done (0), paused or cancelled (3)."""
    return follow(call, progress, interval, "running", sleep=sleep)


def command(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str, status: int) -> int:
        err.write(f"s3balance-admin rebalance: {message}\n")
        return status

    try:
        rate = parse_rate(args.rate) if args.rate is not None else None
        margin = parse_margin(args.margin) if args.margin is not None else None
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if not args.admin_url:
        return fail("--admin-url (or $S3BALANCE_ADMIN_URL) is required", EXIT_USAGE)
    if not args.token:
        return fail("--token (or $S3BALANCE_ADMIN_TOKEN) is required", EXIT_USAGE)

    def call(method: str, path: str, body: Optional[dict] = None) -> Any:
        return admin_call(args.admin_url, args.token, method, path, body)

    action = args.action
    try:
        body: dict[str, Any] = {}
        if rate is not None:
            body["rate"] = rate
        if action == "start":
            if margin is not None:
                body["margin"] = margin
            report = call("POST", "rebalance", body)
        elif action == "pause":
            report = call("POST", "rebalance/pause")
        elif action == "resume":
            report = call("POST", "rebalance/resume", body)
        elif action == "cancel":
            report = call("DELETE", "rebalance")
        else:
            report = call("GET", "rebalance")
        status = EXIT_OK
        if args.wait and action in ("start", "resume", "status"):
            progress = Progress(err, not args.no_progress, render=progress_line)
            status, last = wait_for(lambda: call("GET", "rebalance"), progress, args.interval)
            report = last or report
            if status == EXIT_STOPPED:
                err.write(f"s3balance-admin rebalance: the rebalance was {report.get('state') or 'never started'} "
                          "while waiting\n")
        out.write((json.dumps(report, indent=1, sort_keys=True) if args.json else summary(report)) + "\n")
        return status
    except AdminCallFailed as error:
        return fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return fail("interrupted; the rebalance goes on (pause it with: s3balance-admin rebalance pause ...)", 130)
