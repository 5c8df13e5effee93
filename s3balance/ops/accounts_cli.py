"""
C{s3balance-admin accounts}: the accounts of a running daemon (their keys'
ids and bucket counts) and handing a bucket to another account, through its
admin API (L{s3balance.admin.api}; the report: L{s3balance.admin.accounts}).

    s3balance-admin accounts [list] [--json]
    s3balance-admin accounts give BUCKET ACCOUNT_ID [--json]

Every form takes C{--admin-url URL} (the daemon, e.g. http://127.0.0.1:8080;
or $S3BALANCE_ADMIN_URL) and C{--token T} (C{api.token}; or
$S3BALANCE_ADMIN_TOKEN).  Only a bucket made with CreateBucket can be given:
a configured bucket's owner is the configuration's.  Exit status: 0 done,
1 the daemon refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, TextIO
from urllib.parse import quote

from s3balance.ops.drain_cli import AdminCallFailed, admin_call

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [list|give BUCKET ACCOUNT_ID] --admin-url URL --token T [--json]"
    parser.add_argument(
        "words",
        nargs="*",
        metavar="ACTION",
        help="nothing or list: every account; give BUCKET ACCOUNT_ID: hand a bucket to that account",
    )
    parser.add_argument("--admin-url", default=os.environ.get("S3BALANCE_ADMIN_URL", ""),
                        help="the daemon's URL, e.g. http://127.0.0.1:8080 (default: $S3BALANCE_ADMIN_URL)")
    parser.add_argument("--token", default=os.environ.get("S3BALANCE_ADMIN_TOKEN", ""),
                        help="the admin API token, api.token (default: $S3BALANCE_ADMIN_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def parse_words(words: list[str]) -> tuple[str, Optional[str], Optional[str]]:
    """-> (action, bucket, account); ValueError on bad usage."""
    if not words or words == ["list"]:
        return "list", None, None
    if len(words) == 3 and words[0] == "give":
        return "give", words[1], words[2]
    raise ValueError("expected nothing or list, or give BUCKET ACCOUNT_ID")


def summary(account: dict) -> str:
    """One line: id, name, flags, bucket count and key ids."""
    name = account["display_name"] if account["display_name"] is not None else "(not configured)"
    flags = [flag for flag in ("default_account", "default_owner") if account.get(flag)]
    keys = [
        credential["access_key"] + (" (admin)" if credential["admin"] else "")
        + (" (read-only)" if credential["read_only"] else "")
        for credential in account["credentials"]
    ]
    parts = [f"{account['id']} {name}"]
    if flags:
        parts.append(", ".join(flag.replace("_", " ") for flag in flags))
    parts.append(f"{account['buckets']} bucket{'' if account['buckets'] == 1 else 's'}")
    parts.append("keys: " + (", ".join(keys) if keys else "none"))
    return "; ".join(parts)


def command(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str, status: int) -> int:
        err.write(f"s3balance-admin accounts: {message}\n")
        return status

    try:
        action, bucket, account = parse_words(list(args.words))
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if not args.admin_url:
        return fail("--admin-url (or $S3BALANCE_ADMIN_URL) is required", EXIT_USAGE)
    if not args.token:
        return fail("--token (or $S3BALANCE_ADMIN_TOKEN) is required", EXIT_USAGE)

    def call(method: str, path: str, body: Optional[dict] = None) -> Any:
        return admin_call(args.admin_url, args.token, method, path, body)

    try:
        if action == "list":
            accounts = call("GET", "accounts")["accounts"]
            if args.json:
                out.write(json.dumps(accounts, indent=1, sort_keys=True) + "\n")
            else:
                for entry in accounts:
                    out.write(summary(entry) + "\n")
            return EXIT_OK
        assert bucket is not None
        report = call("PUT", f"buckets/{quote(bucket, safe='')}/owner", {"account": account})
        out.write(json.dumps(report, indent=1, sort_keys=True) if args.json else f"{bucket}: owned by {report['owner']}")
        out.write("\n")
        return EXIT_OK
    except AdminCallFailed as error:
        return fail(str(error), EXIT_FAILED)
