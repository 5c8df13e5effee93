"""
The configuration as the operator commands (C{s3balance-admin}, fsck) load
it: parsed, checked as the daemon checks it at start, and with its strategy
known; a bad one ends the command with one line naming the key (exit 2).
"""

from __future__ import annotations

import sys

from s3balance.config import Config, ConfigError, load_config


def load_checked_config(path: str) -> Config:
    try:
        config = load_config(path)
        from s3balance.config.checks import check_config
        from s3balance.placement.registry import make_strategy

        check_config(config)
        make_strategy(config.balancer.strategy)
        return config
    except ConfigError as error:
        sys.stderr.write(f"s3balance-admin: {error}\n")
        raise SystemExit(2) from None
