"""
C{s3balance-admin}: operator commands that run outside the daemon.

    s3balance-admin check-config --config FILE   validate a config (exit 2 with one line if bad)
    s3balance-admin migrate --config FILE        bring the database schema up to date
    s3balance-admin db-revision --config FILE    print the schema revision and the latest one
    s3balance-admin fsck --config FILE           compare the store with the backends
    s3balance-admin import --config FILE --backend NAME --bucket VBUCKET [--prefix P] [--dry-run]
                                                 adopt a real bucket's keys into a virtual bucket
    s3balance-admin rebuild --config FILE [--dry-run] [--force]
                                                 rebuild a lost database from the backends
    s3balance-admin drain BACKEND --admin-url URL --token T [--rate 50MB/s] [--wait]
                                                 empty a backend onto the others (pause, resume,
                                                 status, cancel: s3balance.ops.drain_cli)
    s3balance-admin rebalance [start|pause|resume|status|cancel] --admin-url URL --token T
                                                 [--margin 0.05] [--rate 50MB/s] [--wait]: even out
                                                 the backends' used fractions (s3balance.ops.rebalance_cli)
    s3balance-admin jobs [pause NAME|resume NAME] --admin-url URL --token T
                                                 list, pause, resume the cluster-wide background
                                                 jobs (s3balance.ops.jobs_cli)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from sqlalchemy.exc import SQLAlchemyError

from s3balance.config.operator import load_checked_config


def check_config_command(args: argparse.Namespace) -> int:
    config = load_checked_config(args.config)
    print(
        f"ok: {len(config.backends)} backend(s), {len(config.virtual_buckets)} virtual bucket(s), "
        f"strategy {config.balancer.strategy}, database {config.database.type}"
    )
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    from s3balance.store import migrate

    config = load_checked_config(args.config)
    before = migrate.current_revision(config.database.url)
    migrate.upgrade(config.database.url)
    after = migrate.current_revision(config.database.url)
    print(f"database schema: {before or 'empty'} -> {after}")
    return 0


def revision_command(args: argparse.Namespace) -> int:
    from s3balance.store import migrate

    config = load_checked_config(args.config)
    print(f"current: {migrate.current_revision(config.database.url) or 'empty'}; head: {migrate.head_revision()}")
    return 0


def fsck_command(args: argparse.Namespace) -> int:
    from s3balance.ops import fsck

    return fsck.command(args)


def import_command(args: argparse.Namespace) -> int:
    from s3balance.ops import importer

    return importer.command(args)


def rebuild_command(args: argparse.Namespace) -> int:
    from s3balance.ops import rebuild_cli

    return rebuild_cli.command(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="s3balance-admin", description=__doc__.split("\n\n")[0].strip())
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function, help_text in (
        ("check-config", check_config_command, "validate a configuration file"),
        ("migrate", migrate_command, "apply the database migrations"),
        ("db-revision", revision_command, "show the database schema revision"),
        ("fsck", fsck_command, "compare the store with the backends (s3balance.ops.fsck)"),
        ("import", import_command, "adopt a real bucket's keys into a virtual bucket (s3balance.ops.importer)"),
        ("rebuild", rebuild_command, "rebuild a lost database from the backends (s3balance.ops.rebuild)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", "-c", required=True, help="path of the YAML configuration")
        if name == "fsck":
            from s3balance.ops.fsck import add_arguments

            add_arguments(command, with_config=False)
        elif name == "import":
            from s3balance.ops.importer import add_arguments as import_arguments

            import_arguments(command, with_config=False)
        elif name == "rebuild":
            from s3balance.ops.rebuild_cli import add_arguments as rebuild_arguments

            rebuild_arguments(command, with_config=False)
        command.set_defaults(function=function)
    # Through a running daemon's admin API, not the config file.
    from s3balance.ops import drain_cli

    drain = commands.add_parser(
        "drain",
        help="drain a backend, pause, resume, cancel, status (s3balance.ops.drain_cli)",
        description=(drain_cli.__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drain_cli.add_arguments(drain)
    drain.set_defaults(function=drain_cli.command)
    from s3balance.ops import rebalance_cli

    rebalance = commands.add_parser(
        "rebalance",
        help="move objects until the backends' used fractions are within a margin; pause, resume, "
        "cancel, status (s3balance.ops.rebalance_cli)",
        description=(rebalance_cli.__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rebalance_cli.add_arguments(rebalance)
    rebalance.set_defaults(function=rebalance_cli.command)
    from s3balance.ops import jobs_cli

    jobs = commands.add_parser(
        "jobs",
        help="list, pause and resume the cluster-wide background jobs (s3balance.ops.jobs_cli)",
        description=(jobs_cli.__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs_cli.add_arguments(jobs)
    jobs.set_defaults(function=jobs_cli.command)
    from s3balance.ops import quota_cli

    quota = commands.add_parser(
        "quota",
        help="recount the virtual buckets' usage counters from their objects (s3balance.ops.quota_cli)",
        description=(quota_cli.__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quota_cli.add_arguments(quota)
    quota.set_defaults(function=quota_cli.command)
    from s3balance.ops import accounts_cli

    accounts = commands.add_parser(
        "accounts",
        help="list the accounts, hand a bucket to another account (s3balance.ops.accounts_cli)",
        description=(accounts_cli.__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    accounts_cli.add_arguments(accounts)
    accounts.set_defaults(function=accounts_cli.command)
    args = parser.parse_args(argv)
    try:
        return int(args.function(args))
    except SQLAlchemyError as error:
        # A database that goes away mid-command: one line, never a traceback.
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"s3balance-admin {args.command}: database error: {type(error).__name__}: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
