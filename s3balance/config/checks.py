"""
Checks of a whole configuration that no single section can make: names the
daemon's own endpoints take from the virtual buckets' namespace.  Run at
start, on reload and by C{s3balance-admin check-config}; errors name the key.
"""

from __future__ import annotations

from s3balance.config import Config, ConfigError

# Paths of the daemon's own endpoints (s3balance.s3.resource), never buckets.
RESERVED_BUCKET_NAMES = frozenset({"health", "status"})


def check_config(config: Config) -> None:
    for bucket in config.virtual_buckets:
        if bucket.name in RESERVED_BUCKET_NAMES:
            raise ConfigError(f"buckets: virtual bucket name '{bucket.name}' is reserved for the daemon's own endpoint")
    if config.api.enabled and config.virtual_bucket("admin") is not None:
        raise ConfigError("buckets: virtual bucket name 'admin' is reserved for the admin API (api.enabled)")
    metrics_path = config.metrics.path.strip("/")
    if config.metrics.enabled and config.virtual_bucket(metrics_path) is not None:
        raise ConfigError(f"metrics.path: '{config.metrics.path}' shadows the virtual bucket '{metrics_path}'")
