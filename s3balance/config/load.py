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

Over 500 lines: one parser per section of the file, read top to bottom in
the file's own order; the shared field checks are in L{fields}.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import yaml

from s3balance.config.accounts import account_id, check_account, parse_accounts
from s3balance.config.dsn import dsn_to_url
from s3balance.config.error import ConfigError
from s3balance.config.fields import (
    _bool,
    _check_s3_bucket_name,
    _choice,
    _describe,
    _int,
    _non_negative_int,
    _port,
    _positive_duration,
    _positive_int,
    _positive_number,
    _positive_size,
    _secret,
    _Section,
    _size,
    _str,
    _str_list,
)
from s3balance.config.schema import (
    CORS_METHODS,
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
from s3balance.config.units import parse_duration, parse_rate, parse_size
from s3balance.errors import S3Error
from s3balance.s3 import acl, policy_document
from s3balance.s3.public_access_block import PublicAccessBlock

# A drain moves few objects at once: it shares the backends with the clients.
MAX_DRAIN_CONCURRENCY = 4

# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def _parse_server(section: _Section) -> ServerConfig:
    d = ServerConfig()
    server = ServerConfig(
        host=section.get("host", _str, d.host, zero_default=True),
        port=section.get("port", _port, d.port, zero_default=True),
        read_timeout=section.get("read_timeout", parse_duration, d.read_timeout, zero_default=True),
        write_timeout=section.get("write_timeout", parse_duration, d.write_timeout, zero_default=True),
        idle_timeout=section.get("idle_timeout", parse_duration, d.idle_timeout, zero_default=True),
        max_connections=section.get("max_connections", _non_negative_int, d.max_connections, zero_default=True),
        max_connections_per_ip=section.get(
            "max_connections_per_ip", _non_negative_int, d.max_connections_per_ip, zero_default=True
        ),
        data_dir=section.get("data_dir", _str, d.data_dir, zero_default=True),
        shutdown_grace=section.get("shutdown_grace", parse_duration, d.shutdown_grace),
        tls_cert=section.get("tls_cert", _str, d.tls_cert, zero_default=True),
        tls_key=section.get("tls_key", _str, d.tls_key, zero_default=True),
        workers=section.get("workers", _positive_int, d.workers, zero_default=True),
    )
    section.check_unknown()
    if bool(server.tls_cert) != bool(server.tls_key):
        missing = "tls_key" if server.tls_cert else "tls_cert"
        raise ConfigError(f"{section.key_path(missing)}: required when the other TLS file is set")
    for name in ("tls_cert", "tls_key"):
        path = getattr(server, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{section.key_path(name)}: no such file {path!r}")
    return server


def _parse_database(section: _Section) -> DatabaseConfig:
    d = DatabaseConfig()
    db_type = section.get(
        "type", _choice("sqlite", "mysql", "postgres", "postgresql"), d.type, zero_default=True
    )
    if db_type == "postgresql":
        db_type = "postgres"
    dsn = section.get("dsn", _secret, "", zero_default=True)
    if not dsn:
        if db_type != "sqlite":
            raise ConfigError(f"{section.key_path('dsn')}: required for database type {db_type!r}")
        dsn = d.dsn
    database = DatabaseConfig(
        type=db_type,
        dsn=dsn,
        max_open_conns=section.get("max_open_conns", _non_negative_int, d.max_open_conns, zero_default=True),
        max_idle_conns=section.get("max_idle_conns", _non_negative_int, d.max_idle_conns, zero_default=True),
        conn_max_lifetime=section.get(
            "conn_max_lifetime", _non_negative_int, d.conn_max_lifetime, zero_default=True
        ),
        log_level=section.get(
            "log_level", _choice("silent", "error", "warn", "info"), d.log_level, zero_default=True
        ),
        auto_migrate=section.get("auto_migrate", _bool, d.auto_migrate),
        statement_timeout=section.get("statement_timeout", parse_duration, d.statement_timeout),
        connect_timeout=section.get("connect_timeout", parse_duration, d.connect_timeout),
        request_timeout=section.get("request_timeout", parse_duration, d.request_timeout),
    )
    section.check_unknown()
    try:
        dsn_to_url(database.type, database.dsn)
    except ValueError as error:
        raise ConfigError(f"{section.key_path('dsn')}: {error}") from None
    return database


def _parse_operation_limits(section: _Section) -> OperationLimits:
    limits = OperationLimits(
        type_a=section.get("type_a", _non_negative_int, 0),
        type_b=section.get("type_b", _non_negative_int, 0),
    )
    section.check_unknown()
    return limits


def _parse_backend(section: _Section, name: str) -> BackendConfig:
    d = BackendConfig(name=name)
    endpoint = section.get("endpoint", _str, d.endpoint).strip()
    if endpoint:
        with_scheme = endpoint if "://" in endpoint else "http://" + endpoint
        parts = urlsplit(with_scheme)
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(f"{section.key_path('endpoint')}: bad port in {endpoint!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{section.key_path('endpoint')}: expected an http(s) URL, got {endpoint!r}")
    backend = BackendConfig(
        name=name,
        endpoint=endpoint,
        region=section.get("region", _str, d.region, zero_default=True),
        access_key_id=section.get("access_key_id", _str, d.access_key_id),
        secret_access_key=section.get("secret_access_key", _secret, d.secret_access_key),
        max_size=section.get("max_size", _size, None),
        weight=section.get("weight", _non_negative_int, d.weight),
        enabled=section.get("enabled", _bool, d.enabled),
        path_style=section.get("path_style", _bool, d.path_style),
        use_ssl=section.get("use_ssl", _bool, d.use_ssl),
        operation_limits=_parse_operation_limits(
            _Section(section.raw("operation_limits"), section.key_path("operation_limits"))
        ),
        custom_host=section.get("custom_host", _str, d.custom_host),
        remove_bucket=section.get("remove_bucket", _bool, d.remove_bucket),
        object_lock=section.get("object_lock", _bool, d.object_lock),
    )
    section.ignore("virtual")
    section.check_unknown()
    return backend


# Keys a Go config carries on virtual buckets too; they mean nothing there.
_VIRTUAL_IGNORED = {
    "endpoint": _str,
    "region": _str,
    "access_key_id": _str,
    "secret_access_key": _secret,
    "weight": _int,
    "enabled": _bool,
    "path_style": _bool,
    "use_ssl": _bool,
    "custom_host": _str,
    "remove_bucket": _bool,
}


_REPLICATION = _choice("sync", "async")
# Copies of an object: more than a handful is a mistake, not a policy.
MAX_REPLICAS = 8


def _replicas(value: object) -> int:
    count = _positive_int(value)
    if count > MAX_REPLICAS:
        raise ValueError(f"expected at most {MAX_REPLICAS} copies, got {count}")
    return count


def _parse_quota(value: object, path: str) -> BucketQuota | None:
    """A virtual bucket's ``quota: {max_size: 10GiB, max_objects: 100000}`` (either may be left out)."""
    if value is None:
        return None
    section = _Section(value, path)
    quota = BucketQuota(
        max_size=section.get("max_size", _positive_size, None),
        max_objects=section.get("max_objects", _positive_int, None),
        key=path,
    )
    section.check_unknown()
    if quota.max_size is None and quota.max_objects is None:
        raise ConfigError(f"{path}: give max_size, max_objects or both")
    return quota


def _iso_date(value: object) -> str:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"{_describe(value)} is not a JSON value")


def _bucket_policy(value: object, path: str, bucket: str) -> str | None:
    """A virtual bucket's ``policy:``, the bucket policy document as a mapping, checked as PutBucketPolicy checks it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping (the policy document), got {_describe(value)}")
    try:
        # YAML reads an unquoted 2030-01-01 as a date: it stands for its ISO 8601 text.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_iso_date)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: not a JSON document ({error})") from None
    try:
        policy_document.parse(text, bucket)
    except S3Error as error:
        raise ConfigError(f"{path}: {error.code}: {error.message}") from None
    return text


_PUBLIC_ACCESS_BLOCK_KEYS = ("block_public_acls", "ignore_public_acls", "block_public_policy", "restrict_public_buckets")


def _public_access_block(value: object, path: str) -> PublicAccessBlock | None:
    """A virtual bucket's ``public_access_block:`` (the four flags, each false when left out)."""
    if value is None:
        return None
    section = _Section(value, path)
    flags = [section.get(name, _bool, False) for name in _PUBLIC_ACCESS_BLOCK_KEYS]
    section.check_unknown()
    return PublicAccessBlock(*flags)


def _versioning_status(value: object) -> str:
    """A bucket's ``versioning:``: Enabled or Suspended (any case), as S3 spells them."""
    return {"enabled": "Enabled", "suspended": "Suspended"}[_choice("enabled", "suspended")(value)]


def _parse_virtual_bucket(section: _Section, name: str) -> VirtualBucketConfig:
    problem = _check_s3_bucket_name(name)
    if problem:
        raise ConfigError(f"{section.key_path('name')}: {name!r} is {problem}")
    for key, convert in _VIRTUAL_IGNORED.items():
        section.get(key, convert, None)
    _parse_operation_limits(_Section(section.raw("operation_limits"), section.key_path("operation_limits")))
    bucket = VirtualBucketConfig(
        name=name,
        max_size=section.get("max_size", _size, None),
        quota=_parse_quota(section.raw("quota"), section.key_path("quota")),
        replicas=section.get("replicas", _replicas, None),
        replication=section.get("replication", _REPLICATION, None),
        owner=section.get("owner", account_id, None),
        # The canned ACLs S3 knows and s3balance keeps (on a bucket,
        # bucket-owner-read and bucket-owner-full-control mean private).
        acl=section.get("acl", _choice(*acl.CANNED), None),
        policy=_bucket_policy(section.raw("policy"), section.key_path("policy"), name),
        public_access_block=_public_access_block(
            section.raw("public_access_block"), section.key_path("public_access_block")
        ),
        versioning=section.get("versioning", _versioning_status, None),
        key=section.path,
    )
    section.ignore("virtual")
    section.check_unknown()
    return bucket


def _parse_buckets(
    value: object,
) -> tuple[tuple[BackendConfig, ...], tuple[VirtualBucketConfig, ...]]:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ConfigError(f"buckets: expected a list, got {_describe(value)}")
    backends: list[BackendConfig] = []
    virtual: list[VirtualBucketConfig] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(value):
        path = f"buckets[{index}]"
        section = _Section(item, path)
        name = section.get("name", _str, "").strip()
        if not name:
            raise ConfigError(f"{path}.name: required")
        if name in seen:
            raise ConfigError(f"{path}.name: {name!r} is already used by {seen[name]}")
        seen[name] = path
        if section.get("virtual", _bool, False):
            virtual.append(_parse_virtual_bucket(section, name))
        else:
            backends.append(_parse_backend(section, name))
    if not backends:
        raise ConfigError("buckets: at least one bucket with virtual: false is needed")
    if not virtual:
        raise ConfigError("buckets: at least one bucket with virtual: true is needed")
    return tuple(backends), tuple(virtual)


def _drain_concurrency(value: object) -> int:
    number = _positive_int(value)
    if number > MAX_DRAIN_CONCURRENCY:
        raise ValueError(f"expected 1 to {MAX_DRAIN_CONCURRENCY} objects moved at once, got {number}")
    return number


def _parse_balancer(section: _Section) -> BalancerConfig:
    d = BalancerConfig()
    balancer = BalancerConfig(
        strategy=section.get("strategy", _str, d.strategy, zero_default=True).strip(),
        health_check_period=section.get(
            "health_check_period", parse_duration, d.health_check_period, zero_default=True
        ),
        update_stats_period=section.get(
            "update_stats_period", parse_duration, d.update_stats_period, zero_default=True
        ),
        retry_attempts=section.get("retry_attempts", _non_negative_int, d.retry_attempts, zero_default=True),
        retry_delay=section.get("retry_delay", parse_duration, d.retry_delay, zero_default=True),
        health_timeout=section.get("health_timeout", _positive_duration, d.health_timeout),
        backend_timeout=section.get("backend_timeout", _positive_duration, d.backend_timeout),
        deletion_grace=section.get("deletion_grace", parse_duration, d.deletion_grace),
        unhealthy_threshold=section.get("unhealthy_threshold", _positive_int, d.unhealthy_threshold),
        healthy_threshold=section.get("healthy_threshold", _positive_int, d.healthy_threshold),
        multipart_max_age=section.get("multipart_max_age", _positive_duration, d.multipart_max_age),
        cleanup_period=section.get("cleanup_period", _positive_duration, d.cleanup_period),
        job_lease=section.get("job_lease", _positive_duration, d.job_lease),
        drain_rate=section.get("drain_rate", parse_rate, d.drain_rate),
        drain_concurrency=section.get("drain_concurrency", _drain_concurrency, d.drain_concurrency),
        replicas=section.get("replicas", _replicas, d.replicas),
        replication=section.get("replication", _REPLICATION, d.replication),
        replica_repair_after=section.get("replica_repair_after", _positive_duration, d.replica_repair_after),
        replicate_period=section.get("replicate_period", _positive_duration, d.replicate_period),
        scrub_period=section.get("scrub_period", parse_duration, d.scrub_period),
        scrub_rate=section.get("scrub_rate", _positive_number, d.scrub_rate),
        scrub_read=section.get("scrub_read", _bool, d.scrub_read),
        lifecycle_period=section.get("lifecycle_period", parse_duration, d.lifecycle_period),
        lifecycle_rate=section.get("lifecycle_rate", _positive_number, d.lifecycle_rate),
    )
    section.check_unknown()
    return balancer


def _parse_metrics(section: _Section) -> MetricsConfig:
    d = MetricsConfig()
    path = section.get("path", _str, d.path, zero_default=True)
    if not path.startswith("/"):
        raise ConfigError(f"{section.key_path('path')}: must start with '/', got {path!r}")
    metrics = MetricsConfig(
        enabled=section.get("enabled", _bool, d.enabled),
        path=path,
        token=section.get("token", _secret, d.token),
        port=section.get("port", _port, None),
    )
    section.check_unknown()
    return metrics


def _virtual_host(value: object) -> tuple[bool, tuple[str, ...]]:
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, str):
        domains: Iterable[str] = [value] if value.strip() else []
    elif isinstance(value, list):
        domains = _str_list(value)
    else:
        raise ValueError(f"expected true, false, a domain or a list of domains, got {_describe(value)}")
    cleaned = tuple(domain.strip().strip(".").lower() for domain in domains)
    for domain in cleaned:
        if not domain or "/" in domain or " " in domain:
            raise ValueError(f"{domain!r} is not a domain name")
    return bool(cleaned), cleaned


def _non_negative_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"expected a number, zero or above, got {_describe(value)}")
    return float(value)


def _byte_count(value: object) -> int:
    return parse_size(value) or 0


def _parse_rate_limit(value: object, path: str) -> RateLimit | None:
    """``{requests_per_second: 100, burst: 200, bytes_per_second: 100MiB, bytes_burst: 200MiB}``, all optional."""
    if value is None:
        return None
    section = _Section(value, path)
    limit = RateLimit(
        requests_per_second=section.get("requests_per_second", _non_negative_number, 0.0),
        burst=section.get("burst", _non_negative_int, 0),
        bytes_per_second=section.get("bytes_per_second", parse_rate, 0),
        bytes_burst=section.get("bytes_burst", _byte_count, 0),
    )
    section.check_unknown()
    if limit.burst and not limit.requests_per_second:
        raise ConfigError(f"{section.key_path('burst')}: needs requests_per_second")
    if limit.bytes_burst and not limit.bytes_per_second:
        raise ConfigError(f"{section.key_path('bytes_burst')}: needs bytes_per_second")
    return limit


def _parse_rate_limits(section: _Section) -> RateLimitsConfig:
    d = RateLimitsConfig()
    limits = RateLimitsConfig(
        per_credential=_parse_rate_limit(section.raw("per_credential"), section.key_path("per_credential"))
        or d.per_credential,
        per_client=_parse_rate_limit(section.raw("per_client"), section.key_path("per_client")) or d.per_client,
        max_clients=section.get("max_clients", _positive_int, d.max_clients),
    )
    section.check_unknown()
    return limits


def _parse_credentials(
    value: object, path: str, bucket_names: set[str], accounts: set[str], default_account: str, accounts_path: str
) -> list[Credential]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
    credentials = []
    for index, item in enumerate(value):
        section = _Section(item, f"{path}[{index}]")
        access_key = section.get("access_key", _str, "")
        secret_key = section.get("secret_key", _secret, "")
        if not access_key:
            raise ConfigError(f"{section.key_path('access_key')}: required")
        if not secret_key:
            raise ConfigError(f"{section.key_path('secret_key')}: required")
        buckets = section.get("buckets", _str_list, None)
        for bucket_index, bucket in enumerate(buckets or ()):
            if bucket not in bucket_names:
                raise ConfigError(
                    f"{section.key_path('buckets')}[{bucket_index}]: {bucket!r} is not a virtual bucket"
                )
        credentials.append(
            Credential(
                access_key=access_key,
                secret_key=secret_key,
                buckets=buckets,
                read_only=section.get("read_only", _bool, False),
                follows_redirects=section.get("follows_redirects", _bool, False),
                rate_limit=_parse_rate_limit(section.raw("rate_limit"), section.key_path("rate_limit")),
                account=section.get("account", account_id, default_account),
                admin=section.get("admin", _bool, False),
                bypass_governance_retention=section.get("bypass_governance_retention", _bool, False),
            )
        )
        check_account(credentials[-1].account, section.key_path("account"), accounts, accounts_path)
        section.check_unknown()
    return credentials


def _cors_origins(value: object) -> tuple[str, ...]:
    origins = _str_list(value)
    for index, origin in enumerate(origins):
        if origin != "*" and ("://" not in origin or origin.count("*") > 1):
            raise ValueError(
                f"item {index}: {origin!r} is not an origin (scheme://host[:port], at most one '*', or '*' alone)"
            )
    return origins


def _cors_methods(value: object) -> tuple[str, ...]:
    methods = tuple(method.upper() for method in _str_list(value))
    for index, method in enumerate(methods):
        if method not in CORS_METHODS:
            raise ValueError(f"item {index}: {method!r} is not one of {', '.join(CORS_METHODS)}")
    return methods


def _header_names(value: object) -> tuple[str, ...]:
    names = _str_list(value)
    for index, name in enumerate(names):
        if not name or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ValueError(f"item {index}: {name!r} is not a header name")
    return names


def _parse_cors(section: _Section) -> CORSConfig:
    d = CORSConfig()
    cors = CORSConfig(
        allowed_origins=section.get("allowed_origins", _cors_origins, d.allowed_origins),
        allowed_methods=section.get("allowed_methods", _cors_methods, d.allowed_methods),
        allowed_headers=section.get("allowed_headers", _header_names, d.allowed_headers),
        expose_headers=section.get("expose_headers", _header_names, d.expose_headers),
        max_age=section.get("max_age", _non_negative_int, d.max_age),
    )
    section.check_unknown()
    if "*" in "".join(cors.expose_headers):
        raise ConfigError(f"{section.key_path('expose_headers')}: names only, no '*'")
    return cors


def _user_agent_products(value: object) -> tuple[str, ...]:
    products = _str_list(value)
    for index, product in enumerate(products):
        if not product or any(character.isspace() for character in product):
            raise ValueError(f"item {index}: {product!r} is not a User-Agent product (e.g. 'rclone/')")
    return products


def _parse_s3api(section: _Section, bucket_names: set[str]) -> S3APIConfig:
    d = S3APIConfig()
    access_key = section.get("access_key", _str, "")
    secret_key = section.get("secret_key", _secret, "")
    accounts, default_account, default_owner = parse_accounts(section)
    credentials: list[Credential] = []
    if access_key:
        if not secret_key:
            raise ConfigError(f"{section.key_path('secret_key')}: required when s3api.access_key is set")
        credentials.append(Credential(access_key=access_key, secret_key=secret_key, account=default_account))
    credentials += _parse_credentials(
        section.raw("credentials"),
        section.key_path("credentials"),
        bucket_names,
        {account.id for account in accounts},
        default_account,
        section.key_path("accounts"),
    )
    seen: set[str] = set()
    for index, credential in enumerate(credentials):
        if credential.access_key in seen:
            where = section.key_path(f"credentials[{index - (1 if access_key else 0)}].access_key")
            raise ConfigError(f"{where}: access key {credential.access_key!r} is given twice")
        seen.add(credential.access_key)
    no_virtual_host: tuple[bool, tuple[str, ...]] = (False, ())
    virtual_host, domains = section.get("virtual_host", _virtual_host, no_virtual_host)
    s3api = S3APIConfig(
        access_key=access_key,
        secret_key=secret_key,
        credentials=tuple(credentials),
        virtual_host=virtual_host,
        virtual_host_domains=domains,
        proxy_mode=section.get("proxy_mode", _bool, d.proxy_mode),
        auth_required=section.get("auth_required", _bool, d.auth_required),
        sigv2=section.get("sigv2", _bool, d.sigv2),
        host=section.get("host", _str, d.host),
        region=section.get("region", _str, d.region, zero_default=True),
        allow_create_bucket=section.get("allow_create_bucket", _bool, d.allow_create_bucket),
        redirect_expiry=section.get("redirect_expiry", _positive_int, d.redirect_expiry),
        redirect_user_agents=section.get("redirect_user_agents", _user_agent_products, d.redirect_user_agents),
        multipart_copy_threshold=section.get(
            "multipart_copy_threshold", _positive_size, d.multipart_copy_threshold, zero_default=True
        ),
        cors=_parse_cors(_Section(section.raw("cors"), section.key_path("cors"))),
        rate_limits=_parse_rate_limits(_Section(section.raw("rate_limits"), section.key_path("rate_limits"))),
        accounts=accounts,
        default_account=default_account,
        default_owner=default_owner,
        block_public_access=section.get("block_public_access", _bool, d.block_public_access),
    )
    section.check_unknown()
    if s3api.auth_required and not s3api.credentials:
        raise ConfigError(
            f"{section.key_path('access_key')}: auth_required is true but no credential is configured"
        )
    return s3api


def _check_public_policy(bucket: VirtualBucketConfig, s3api: S3APIConfig) -> None:
    """A configured public policy where Block Public Access refuses public policies is a contradiction, not a choice."""
    if bucket.policy is None or not policy_document.parse(bucket.policy, bucket.name).public:
        return
    if s3api.block_public_access:
        raise ConfigError(f"{bucket.key}.policy: the policy is public and s3api.block_public_access blocks public policies")
    if bucket.public_access_block is not None and bucket.public_access_block.block_public_policy:
        raise ConfigError(
            f"{bucket.key}.policy: the policy is public and public_access_block.block_public_policy blocks it"
        )


def _parse_api(section: _Section) -> APIConfig:
    api = APIConfig(
        enabled=section.get("enabled", _bool, False),
        token=section.get("token", _secret, ""),
    )
    section.check_unknown()
    if api.enabled and not api.token:
        raise ConfigError(f"{section.key_path('token')}: required when api.enabled is true")
    return api


def _parse_audit(section: _Section) -> AuditConfig:
    d = AuditConfig()
    audit = AuditConfig(
        path=section.get("path", _str, d.path).strip(),
        queue_size=section.get("queue_size", _positive_int, d.queue_size),
    )
    section.check_unknown()
    if audit.path and audit.path != "-":
        folder = os.path.dirname(os.path.abspath(audit.path))
        if not os.path.isdir(folder):
            raise ConfigError(f"{section.key_path('path')}: no such directory {folder!r}")
        if os.path.isdir(audit.path):
            raise ConfigError(f"{section.key_path('path')}: {audit.path!r} is a directory")
    return audit


def _parse_offline(section: _Section) -> None:
    # The Go offline-download proof of concept: accepted and checked, not implemented.
    section.get("enabled", _bool, False)
    section.get("worker_base_url", _str, "")
    section.get("worker_auth", _secret, "")
    section.get("part_size", _size, None)
    section.get("concurrency", _non_negative_int, 0)
    section.check_unknown()


def parse_config(mapping: object, source: str = "<config>") -> Config:
    """Validate an already-loaded YAML mapping and build the :class:`Config`.

    ``source`` names the origin in the error for a top level that is not a mapping.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_describe(mapping)}")
    top = _Section(mapping, "")

    def sub(key: str) -> _Section:
        return _Section(top.raw(key), key)

    server = _parse_server(sub("server"))
    database = _parse_database(sub("database"))
    backends, virtual_buckets = _parse_buckets(top.raw("buckets"))
    balancer = _parse_balancer(sub("balancer"))
    metrics = _parse_metrics(sub("metrics"))
    s3api = _parse_s3api(sub("s3api"), {bucket.name for bucket in virtual_buckets})
    known_accounts = {account.id for account in s3api.accounts}
    for bucket in virtual_buckets:
        check_account(bucket.owner, f"{bucket.key}.owner", known_accounts, "s3api.accounts")
        _check_public_policy(bucket, s3api)
    api = _parse_api(sub("api"))
    audit = _parse_audit(sub("audit"))
    _parse_offline(sub("offline"))
    top.check_unknown()
    return Config(
        server=server,
        database=database,
        backends=backends,
        virtual_buckets=virtual_buckets,
        balancer=balancer,
        metrics=metrics,
        s3api=s3api,
        api=api,
        audit=audit,
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the YAML file at ``path``."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as stream:
            mapping = yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError(f"{name}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{name}: invalid YAML{where}: {problem}") from None
    return parse_config(mapping, source=name)
