"""
Checks of a whole configuration that no single section can make: names the
daemon's own endpoints take from the virtual buckets' namespace, copies
that need more backends than there are.  Run at
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
    _check_replicas(config)


def _check_replicas(config: Config) -> None:
    """Every bucket's copies need as many backends (drained ones count: a drain is a passing state)."""
    backends = len(config.backends)
    if config.balancer.replicas > backends:
        raise ConfigError(
            f"balancer.replicas: {config.balancer.replicas} copies of each object need as many backends;"
            f" the configuration has {backends}"
        )
    for bucket in config.virtual_buckets:
        if bucket.replicas is not None and bucket.replicas > backends:
            raise ConfigError(
                f"{bucket.key or 'buckets'}.replicas: {bucket.replicas} copies of each object of"
                f" '{bucket.name}' need as many backends; the configuration has {backends}"
            )
