"""Load the YAML configuration into frozen, validated value objects.

The format is the Go s3-balance one (``server``, ``database``, ``buckets``,
``balancer``, ``metrics``, ``s3api``, ``api``, ``offline``) and a file written
for it loads unchanged.  Keys s3balance adds are new keys, never renamed ones.

Every problem is reported as a :class:`ConfigError` whose message is one line,
``<key path>: <problem>``, e.g. ``buckets[1].weight: expected an integer, got
'x'``.  Secrets (secret keys, tokens, database passwords) never appear in a
``repr`` or in an error message.

Like the Go version, an empty or zero value for a key that has a default takes
the default (``port: 0`` is 8080, ``retry_attempts: 0`` is 3, ``strategy: ""`` is
``least-space``): a Go config means the same thing here.
Modules: L{schema} (the value objects), L{load} (YAML to objects, section by
section), L{fields} (reading one mapping, value checks), L{units} (durations,
sizes), L{dsn} (Go-format database DSNs), L{checks} (checks across sections),
L{operator} (the configuration as operator commands load it).
"""

from s3balance.config.dsn import dsn_to_url
from s3balance.config.error import ConfigError
from s3balance.config.load import load_config, parse_config
from s3balance.config.schema import (
    Account,
    APIConfig,
    AuditConfig,
    BackendConfig,
    BalancerConfig,
    BucketQuota,
    Config,
    CORSConfig,
    Credential,
    DatabaseConfig,
    MetricsConfig,
    OperationLimits,
    RateLimit,
    RateLimitsConfig,
    S3APIConfig,
    ServerConfig,
    VirtualBucketConfig,
)
from s3balance.config.units import parse_duration, parse_size

__all__ = [
    "APIConfig",
    "Account",
    "AuditConfig",
    "BackendConfig",
    "BalancerConfig",
    "BucketQuota",
    "CORSConfig",
    "Config",
    "ConfigError",
    "Credential",
    "DatabaseConfig",
    "MetricsConfig",
    "OperationLimits",
    "RateLimit",
    "RateLimitsConfig",
    "S3APIConfig",
    "ServerConfig",
    "VirtualBucketConfig",
    "dsn_to_url",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
