"""
C{s3balance-admin drain}: drive a backend's drain through a running daemon's
admin API (L{s3balance.admin.api}; the drain itself: L{s3balance.ops.drain}).

    s3balance-admin drain BACKEND [--rate 50MB/s] [--wait] [--no-progress]
    s3balance-admin drain pause BACKEND
    s3balance-admin drain resume BACKEND [--rate R] [--wait]
    s3balance-admin drain status [BACKEND] [--wait] [--json]
    s3balance-admin drain cancel BACKEND

Every form takes C{--admin-url URL} (the daemon, e.g. http://127.0.0.1:8080;
or $S3BALANCE_ADMIN_URL) and C{--token T} (C{api.token}; or
$S3BALANCE_ADMIN_TOKEN, which keeps it out of the process list).  A backend
named like a subcommand is drained with C{drain start NAME}.

C{--wait} follows the drain until it is done, with a progress bar on stderr
(a line every 10 seconds when stderr is no terminal; none with
C{--no-progress}).  Exit status: 0 done (or, without C{--wait}, the request
was carried out), 1 the daemon refused or could not be reached, 2 bad usage,
3 the drain was paused or cancelled while waiting, 4 the drain is blocked:
only objects that no other backend can hold another copy of are left (add a
backend and reload; the drain goes on by itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Optional, TextIO
from urllib.parse import quote

from s3balance.config.units import format_size, parse_rate

ACTIONS = ("start", "pause", "resume", "status", "cancel")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_BLOCKED = 0, 1, 2, 3, 4
BAR_WIDTH = 24


class AdminCallFailed(Exception):
    """The daemon answered with an error, or could not be reached (the message is one line)."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s [start|pause|resume|status|cancel] BACKEND --admin-url URL --token T "
        "[--rate R] [--wait] [--no-progress] [--json]"
    )
    parser.add_argument(
        "words",
        nargs="+",
        metavar="ACTION BACKEND",
        help="BACKEND to start draining it, or one of start|pause|resume|status|cancel and BACKEND "
        "(status without BACKEND: every drain)",
    )
    parser.add_argument("--admin-url", default=os.environ.get("S3BALANCE_ADMIN_URL", ""),
                        help="the daemon's URL, e.g. http://127.0.0.1:8080 (default: $S3BALANCE_ADMIN_URL)")
    parser.add_argument("--token", default=os.environ.get("S3BALANCE_ADMIN_TOKEN", ""),
                        help="the admin API token, api.token (default: $S3BALANCE_ADMIN_TOKEN)")
    parser.add_argument("--rate", help="bytes per second to move, e.g. 50MB/s (0: unlimited; default: "
                        "balancer.drain_rate)")
    parser.add_argument("--wait", action="store_true", help="follow the drain until it is done")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr while waiting (scripts)")
    parser.add_argument("--json", action="store_true", help="print the drain(s) as JSON")
    parser.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)


# -- talking to the daemon ----------------------------------------------------------


def admin_call(base: str, token: str, method: str, path: str, body: Optional[dict] = None) -> Any:
    """One admin API request; -> its JSON document.  AdminCallFailed on an error answer or none."""
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(
        base.rstrip("/") + "/admin/" + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        try:
            document = json.load(error)
            message, code = document.get("message", ""), document.get("error", "")
        except ValueError:
            message, code = error.reason, ""
        raise AdminCallFailed(f"{message} (HTTP {error.code})", error.code, code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AdminCallFailed(f"cannot reach {base}: {reason}") from None


# -- what it shows --------------------------------------------------------------------


def human_size(value: Optional[float]) -> str:
    return "-" if value is None else format_size(float(value))


def human_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-:--:--"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def summary(drain: dict) -> str:
    """One line: state, objects and bytes moved, rate, ETA, the last error."""
    objects, size = drain["objects"], drain["bytes"]
    limit = drain["rate_limit"]
    parts = [
        f"{drain['backend']}: {drain['state']}",
        f"{objects['moved']}/{objects['total']} objects",
        f"{human_size(size['moved'])}/{human_size(size['total'])} moved",
        f"{objects['remaining']} left",
        f"rate {human_size(drain['rate'])}/s" if drain["rate"] is not None else "rate -",
        f"limit {human_size(limit)}/s" if limit else "no rate limit",
    ]
    if drain["state"] != "done" and drain["eta_seconds"] is not None:
        parts.append(f"ETA {human_duration(drain['eta_seconds'])}")
    if objects["failed"]:
        parts.append(f"{objects['failed']} failed attempt(s)")
    if objects.get("blocked"):
        parts.append(f"{objects['blocked']} blocked ({drain.get('blocked_reason')})")
    pending = drain["pending"]
    if drain["state"] == "draining" and not objects["remaining"] and any(pending.values()):
        waiting = ", ".join(f"{count} {what}" for what, count in pending.items() if count)
        parts.append(f"waiting for {waiting}")
    if drain["state"] == "done":
        parts.append("it may be removed from the configuration")
    if drain.get("last_error"):
        parts.append(f"last error: {drain['last_error']}")
    return ", ".join(parts)


def bar(progress: float) -> str:
    """C{[#####-----]  41.7%}: a fraction (0..1) as a bar and a percentage."""
    done = max(0.0, min(1.0, float(progress)))
    filled = round(done * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {100 * done:5.1f}%"


def progress_bar(drain: dict) -> str:
    objects, size = drain["objects"], drain["bytes"]
    rate = f"{human_size(drain['rate'])}/s" if drain["rate"] is not None else "-/s"
    return (
        f"{drain['backend']} {bar(drain['progress'])} "
        f"{objects['moved']}/{objects['moved'] + objects['remaining']} objects "
        f"{human_size(size['moved'])}/{human_size(size['moved'] + size['remaining'])} "
        f"{rate} ETA {human_duration(drain['eta_seconds'])} {drain['state']}"
        + (f" ({objects['blocked']} blocked)" if objects.get("blocked") else "")
    )


class Progress:
    """The progress bar on C{stream}: redrawn in place on a terminal, else a line every C{every} seconds."""

    def __init__(self, stream: TextIO, enabled: bool, clock: Callable[[], float] = time.monotonic,
                 every: float = 10.0, render: Callable[[dict], str] = progress_bar) -> None:
        self.stream = stream
        self.render = render
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.clock = clock
        self.every = every
        self._last = -every
        self._width = 0

    def show(self, drain: dict) -> None:
        if not self.enabled:
            return
        line = self.render(drain)
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif self.clock() - self._last >= self.every:
            self.stream.write(line + "\n")
            self._last = self.clock()
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


# -- the command ------------------------------------------------------------------------


def parse_words(words: list[str]) -> tuple[str, Optional[str]]:
    """-> (action, backend or None); ValueError on bad usage."""
    if len(words) == 1:
        if words[0] == "status":
            return "status", None
        if words[0] in ACTIONS:
            raise ValueError(f"drain {words[0]}: name the backend")
        return "start", words[0]
    if len(words) == 2 and words[0] in ACTIONS:
        return words[0], words[1]
    raise ValueError("expected BACKEND, or start|pause|resume|status|cancel and BACKEND")


def follow(
    call: Callable[[], dict],
    progress: Progress,
    interval: float,
    running: str,
    gone_code: Optional[str] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, dict]:
    """
    Poll an operation's document (C{call}) every C{interval} seconds while
    its state is C{running}, showing each on C{progress}: -> EXIT_OK once it
    is done, EXIT_STOPPED when it stopped otherwise (paused, cancelled) or is
    gone (no state, or the admin API's error C{gone_code}); with the last
    document seen.  The drain's and the rebalance's C{--wait}.
    """
    report: dict = {}
    try:
        while True:
            try:
                report = call()
            except AdminCallFailed as error:
                if gone_code is not None and error.code == gone_code:
                    progress.end()
                    return EXIT_STOPPED, report
                raise
            if report.get("state") is None:
                progress.end()
                return EXIT_STOPPED, report
            progress.show(report)
            if report["state"] != running:
                progress.end()
                return (EXIT_OK if report["state"] == "done" else EXIT_STOPPED), report
            sleep(interval)
    except BaseException:
        progress.end()
        raise


def wait_for(call: Callable[[], dict], progress: Progress, interval: float,
             sleep: Callable[[float], None] = time.sleep) -> tuple[int, dict]:
    """Poll the drain until it is done (0), paused, blocked or gone (3)."""
    return follow(call, progress, interval, "draining", "no_drain", sleep)


def command(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str, status: int) -> int:
        err.write(f"s3balance-admin drain: {message}\n")
        return status

    try:
        action, backend = parse_words(list(args.words))
        rate = parse_rate(args.rate) if args.rate is not None else None
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if not args.admin_url:
        return fail("--admin-url (or $S3BALANCE_ADMIN_URL) is required", EXIT_USAGE)
    if not args.token:
        return fail("--token (or $S3BALANCE_ADMIN_TOKEN) is required", EXIT_USAGE)
    if args.wait and backend is None:
        return fail("--wait follows one backend's drain: name it", EXIT_USAGE)

    def call(method: str, path: str, body: Optional[dict] = None) -> Any:
        return admin_call(args.admin_url, args.token, method, path, body)

    where = f"backends/{quote(backend, safe='')}/drain" if backend is not None else ""
    try:
        if action == "status" and backend is None:
            drains = call("GET", "drains")["drains"]
            if args.json:
                out.write(json.dumps(drains, indent=1, sort_keys=True) + "\n")
            else:
                for drain in drains:
                    out.write(summary(drain) + "\n")
                if not drains:
                    out.write("no drain\n")
            return EXIT_OK
        body = {"rate": rate} if rate is not None else None
        if action == "start":
            drain = call("POST", where, body or {})
        elif action in ("pause", "cancel"):
            drain = call("POST", f"{where}/{action}")
        elif action == "resume":
            drain = call("POST", f"{where}/resume", body or {})
        else:
            drain = call("GET", where)
        if action == "cancel":
            out.write(f"{backend}: drain cancelled; it takes new objects again ({summary(drain).split(': ', 1)[1]})\n")
            return EXIT_OK
        status = EXIT_OK
        if args.wait:
            progress = Progress(err, not args.no_progress)
            status, last = wait_for(lambda: call("GET", where), progress, args.interval)
            drain = last or drain
            if status == EXIT_STOPPED and drain.get("state") == "blocked":
                status = EXIT_BLOCKED
                err.write(f"s3balance-admin drain: the drain of {backend} is blocked: "
                          f"{drain['objects'].get('blocked')} object(s) left: {drain.get('blocked_reason')}; "
                          "add a backend (and reload) to move them\n")
            elif status == EXIT_STOPPED:
                err.write(f"s3balance-admin drain: the drain of {backend} was "
                          f"{'paused' if drain.get('state') == 'paused' else 'cancelled'} while waiting\n")
        out.write((json.dumps(drain, indent=1, sort_keys=True) if args.json else summary(drain)) + "\n")
        return status
    except AdminCallFailed as error:
        return fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        # The drain goes on in the daemon.
        return fail("interrupted; the drain goes on (pause it with: s3balance-admin drain pause ...)", 130)
