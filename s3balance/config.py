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
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import yaml
from attrs import field, frozen
from sqlalchemy.engine import URL, make_url

__all__ = [
    "APIConfig",
    "BackendConfig",
    "BalancerConfig",
    "Config",
    "ConfigError",
    "Credential",
    "DatabaseConfig",
    "MetricsConfig",
    "OperationLimits",
    "S3APIConfig",
    "ServerConfig",
    "VirtualBucketConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]


class ConfigError(Exception):
    """The configuration is invalid; ``str(error)`` is one line naming the key."""


def _hide(value: object) -> str:
    return "'***'" if value else "''"


# ---------------------------------------------------------------------------
# Value classes
# ---------------------------------------------------------------------------


@frozen
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    # A request's line and headers must arrive within read_timeout of its
    # first byte; a body that moves no byte for read_timeout (while we are
    # reading it) is answered RequestTimeout.
    read_timeout: float = 30.0
    # An answer the client takes no byte of for write_timeout is cut off.
    # Both are no-progress timeouts, never a whole-transfer limit.
    write_timeout: float = 60.0
    # Connection inactivity timeout (between requests), never a whole-transfer timeout.
    idle_timeout: float = 60.0
    # Open client connections, in all and from one address; more are refused.
    max_connections: int = 4096
    max_connections_per_ip: int = 1024
    data_dir: str = "data"
    # Seconds in-flight transfers get to finish when the service stops.
    shutdown_grace: float = 30.0
    # PEM files; when both are set the port speaks HTTPS.
    tls_cert: str = ""
    tls_key: str = ""
    # Processes serving the port (SO_REUSEPORT), all on one database.
    workers: int = 1


@frozen
class DatabaseConfig:
    type: str = "sqlite"
    dsn: str = field(default="data/s3-balance.db", repr=lambda dsn: repr(_mask_dsn(dsn)))
    max_open_conns: int = 25
    max_idle_conns: int = 5
    conn_max_lifetime: int = 300
    log_level: str = "warn"
    auto_migrate: bool = True
    # Seconds; 0 = none.  The server ends a statement that runs longer
    # (PostgreSQL statement_timeout, MariaDB max_statement_time; on SQLite
    # the wait for a lock); connecting gives up after connect_timeout; a
    # request that waits longer for one answer of the store gets 503.
    statement_timeout: float = 10.0
    connect_timeout: float = 5.0
    request_timeout: float = 10.0

    @property
    def url(self) -> str:
        """The SQLAlchemy URL for ``dsn`` (password included: never log it)."""
        return dsn_to_url(self.type, self.dsn)


@frozen
class OperationLimits:
    """Per-backend caps on S3 operations of class A (writes) and B (reads); 0 = none."""

    type_a: int = 0
    type_b: int = 0


@frozen
class BackendConfig:
    """One real bucket on a backend (``virtual: false`` in the ``buckets`` list)."""

    name: str
    endpoint: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=_hide)
    max_size: int | None = None
    weight: int = 1
    enabled: bool = True
    path_style: bool = False
    use_ssl: bool = True
    operation_limits: OperationLimits = OperationLimits()
    custom_host: str = ""
    remove_bucket: bool = False

    @property
    def endpoint_url(self) -> str:
        """Full endpoint URL: AWS's regional endpoint when ``endpoint`` is empty."""
        scheme = "https" if self.use_ssl else "http"
        if not self.endpoint:
            return f"https://s3.{self.region}.amazonaws.com"
        if "://" in self.endpoint:
            return self.endpoint.rstrip("/")
        return f"{scheme}://{self.endpoint.rstrip('/')}"


@frozen
class VirtualBucketConfig:
    """A bucket clients see (``virtual: true``); ``max_size`` is what it reports."""

    name: str
    max_size: int | None = None


@frozen
class BalancerConfig:
    strategy: str = "least-space"
    health_check_period: float = 30.0
    update_stats_period: float = 60.0
    retry_attempts: int = 3
    retry_delay: float = 1.0
    health_timeout: float = 5.0
    # A backend that moves no byte for this long while we wait on it is cut
    # off (stalled uploads, downloads and answers); never a whole-transfer limit.
    backend_timeout: float = 60.0
    # Replaced and deleted objects stay on their backend this long, so reads
    # that started before the change are not cut off.
    deletion_grace: float = 30.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    multipart_max_age: float = 86400.0
    cleanup_period: float = 60.0


@frozen
class MetricsConfig:
    enabled: bool = True
    path: str = "/metrics"
    token: str = field(default="", repr=_hide)
    # Accepted for Go compatibility; metrics are served on the main port.
    port: int | None = None


@frozen
class Credential:
    """A client key pair; ``buckets`` None means every virtual bucket."""

    access_key: str
    secret_key: str = field(repr=_hide)
    buckets: tuple[str, ...] | None = None
    read_only: bool = False
    # Redirect mode: the client behind this key follows a GET's 302 to the backend.
    follows_redirects: bool = False


CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
# Response headers a browser script may read besides the CORS-safelisted ones:
# what S3 clients in browsers (multipart uploaders need ETag) look at.
CORS_EXPOSE_HEADERS = (
    "ETag",
    "x-amz-request-id",
    "x-amz-version-id",
    "x-amz-delete-marker",
    "Content-Range",
    "Accept-Ranges",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
)


@frozen
class CORSConfig:
    """
    Cross-origin access for browsers (``s3api.cors``), one policy for every
    bucket.  No ``allowed_origins``: CORS is off (preflights are refused and
    no Access-Control-* header is sent), as on S3 until a bucket has a rule.
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = CORS_METHODS
    allowed_headers: tuple[str, ...] = ("*",)
    expose_headers: tuple[str, ...] = CORS_EXPOSE_HEADERS
    max_age: int = 3600

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)


@frozen
class S3APIConfig:
    access_key: str = ""
    secret_key: str = field(default="", repr=_hide)
    credentials: tuple[Credential, ...] = ()
    virtual_host: bool = False
    virtual_host_domains: tuple[str, ...] = ()
    proxy_mode: bool = True
    auth_required: bool = True
    host: str = ""
    region: str = "us-east-1"
    allow_create_bucket: bool = True
    redirect_expiry: int = 900
    # Redirect mode: header-signed GETs whose User-Agent has a product token
    # starting with one of these (case-insensitive) are redirected, not proxied.
    redirect_user_agents: tuple[str, ...] = ()
    # CopyObject of a larger source goes part by part (S3 allows 5 GiB per PUT).
    multipart_copy_threshold: int = 5 * 1024**3
    cors: CORSConfig = CORSConfig()


@frozen
class APIConfig:
    enabled: bool = False
    token: str = field(default="", repr=_hide)


@frozen
class Config:
    server: ServerConfig
    database: DatabaseConfig
    backends: tuple[BackendConfig, ...]
    virtual_buckets: tuple[VirtualBucketConfig, ...]
    balancer: BalancerConfig
    metrics: MetricsConfig
    s3api: S3APIConfig
    api: APIConfig

    def backend(self, name: str) -> BackendConfig | None:
        for backend in self.backends:
            if backend.name == name:
                return backend
        return None

    def virtual_bucket(self, name: str) -> VirtualBucketConfig | None:
        for bucket in self.virtual_buckets:
            if bucket.name == name:
                return bucket
        return None


# ---------------------------------------------------------------------------
# Scalars: durations and sizes
# ---------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")


def parse_duration(value: object) -> float:
    """Seconds from a Go duration (``"1m30s"``, ``"500ms"``) or a number of seconds.

    Raises ValueError with the problem (no key path) on bad input.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            pos, total = 0, 0.0
            while pos < len(body):
                match = _DURATION_PART.match(body, pos)
                if match is None:
                    break
                total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if not body or pos != len(body):
                raise ValueError(f"cannot parse {value!r} as a duration")
            seconds = sign * total
    else:
        raise ValueError(f"expected a duration, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a non-negative duration")
    return seconds


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)")


def parse_size(value: object) -> int | None:
    """Bytes from ``"100GB"``, ``"5 GiB"``, ``"1.5GB"``, ``"512"`` or an integer.

    Units are binary multiples, as in Go s3-balance (``1KB == 1024``).  An empty
    value or 0 means "no limit" and gives None.  Raises ValueError on bad input.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float):
        size = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        match = _SIZE.fullmatch(text)
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"cannot parse {value!r} as a size")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    else:
        raise ValueError(f"expected a size, got {value!r}")
    if size < 0:
        raise ValueError(f"{value!r} is not a non-negative size")
    return size or None


# ---------------------------------------------------------------------------
# Database DSNs
# ---------------------------------------------------------------------------

_GO_MYSQL_ADDRESS = re.compile(
    r"(?:(?P<net>[a-z0-9]+)(?:\((?P<addr>[^)]*)\))?)?/(?P<db>[^?]*)(?:\?(?P<params>.*))?",
    re.DOTALL,
)
# libpq connection parameters; any other key=value is a server run-time
# setting (pgx accepts e.g. TimeZone=... directly) and goes into "options".
_LIBPQ_PARAMS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "connect_timeout",
        "application_name",
        "fallback_application_name",
        "options",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "client_encoding",
        "gssencmode",
        "krbsrvname",
        "passfile",
        "service",
        "channel_binding",
    }
)
_PG_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def _mysql_url(dsn: str) -> URL:
    # go-sql-driver/mysql: [user[:password]@][net[(addr)]]/dbname[?params].
    # As in the Go driver, the last '@' before the last '/' ends the
    # credentials, so a password may contain '@' and '/'.
    slash = dsn.rfind("/")
    at = dsn.rfind("@", 0, max(slash, 0))
    creds, rest = (dsn[:at], dsn[at + 1 :]) if at >= 0 else ("", dsn)
    match = _GO_MYSQL_ADDRESS.fullmatch(rest)
    if match is None:
        raise ValueError("cannot parse as a Go MySQL DSN (user:pass@tcp(host:port)/db)")
    user, _, password = creds.partition(":")
    query: dict[str, str] = {"charset": "utf8mb4"}
    for key, value in parse_qsl(match.group("params") or ""):
        if key in ("charset", "collation"):
            query[key] = value.split(",")[0]
    host: str | None = None
    port: int | None = None
    net, addr = match.group("net") or "tcp", match.group("addr") or ""
    if net == "unix":
        query["unix_socket"] = addr
    elif net in ("tcp", "tcp4", "tcp6"):
        if addr:
            if addr.startswith("["):
                host, _, port_text = addr[1:].partition("]")
                port_text = port_text.lstrip(":")
            else:
                host, _, port_text = addr.rpartition(":") if ":" in addr else (addr, "", "")
            if port_text:
                if not port_text.isdigit():
                    raise ValueError("bad port in the Go MySQL DSN")
                port = int(port_text)
    else:
        raise ValueError(f"unsupported network {net!r} in the Go MySQL DSN")
    return URL.create(
        "mysql+pymysql",
        username=user or None,
        password=password or None,
        host=host or None,
        port=port,
        database=match.group("db") or None,
        query=query,
    )


def _postgres_url(dsn: str) -> URL:
    pos, pairs = 0, {}
    while pos < len(dsn.rstrip()):
        match = _PG_PAIR.match(dsn, pos)
        if match is None:
            raise ValueError("cannot parse as a PostgreSQL key=value DSN")
        value = match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs[match.group(1)] = value
        pos = match.end()
    port = pairs.pop("port", "")
    if port and not port.isdigit():
        raise ValueError("bad port in the PostgreSQL DSN")
    user = pairs.pop("user", "")
    password = pairs.pop("password", "")
    host = pairs.pop("host", "")
    dbname = pairs.pop("dbname", "")
    query = {key: value for key, value in pairs.items() if key in _LIBPQ_PARAMS}
    runtime = [f"-c {key}={value}" for key, value in pairs.items() if key not in _LIBPQ_PARAMS]
    if runtime:
        query["options"] = " ".join(filter(None, [query.get("options", ""), *runtime]))
    return URL.create(
        "postgresql+psycopg2",
        username=user or None,
        password=password or None,
        host=host or None,
        port=int(port) if port else None,
        database=dbname or None,
        query=query,
    )


def dsn_to_url(db_type: str, dsn: str) -> str:
    """A SQLAlchemy URL for a Go s3-balance ``database.dsn`` of type ``db_type``.

    Raises ValueError (without echoing the DSN, which holds a password).
    """
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if scheme:
        # A URL without a driver gets the one s3balance installs: SQLAlchemy's
        # own default for postgresql:// is psycopg 3 since 2.1, and for
        # mysql:// and mariadb:// mysqlclient, neither of which is installed.
        if scheme in ("mysql", "mariadb"):
            return f"{scheme}+pymysql://" + dsn.split("://", 1)[1]
        if scheme in ("postgres", "postgresql"):
            return "postgresql+psycopg2://" + dsn.split("://", 1)[1]
        if scheme.startswith(("mysql", "postgresql", "sqlite", "mariadb")):
            try:
                make_url(dsn)
            except Exception:
                raise ValueError("cannot parse the URL") from None
            return dsn
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    if db_type == "sqlite":
        path = dsn
        if path.startswith("file:"):
            path = path[len("file:") :]
        path = path.split("?", 1)[0]
        if path in ("", ":memory:"):
            return "sqlite://"
        # Relative to the process's working directory, as in Go.
        return "sqlite:///" + os.path.abspath(path)
    if db_type == "mysql":
        return _mysql_url(dsn).render_as_string(hide_password=False)
    return _postgres_url(dsn).render_as_string(hide_password=False)


def _mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, for repr and logs."""
    if "://" in dsn:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    masked = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", r"\1***", dsn)
    if masked != dsn:
        return masked
    slash = dsn.rfind("/")
    at = dsn.rfind("@", 0, slash if slash >= 0 else len(dsn))
    if at >= 0 and ":" in dsn[:at]:
        return dsn[: dsn.index(":") + 1] + "***" + dsn[at:]
    return dsn


# ---------------------------------------------------------------------------
# Reading the mapping
# ---------------------------------------------------------------------------

T = TypeVar("T")


class _Section:
    """One mapping of the YAML, read key by key; remembers which keys were used."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or '<top>'}: expected a mapping, got {_describe(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"{self._join(path, str(key))}: keys must be strings")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key_path(self, key: str) -> str:
        return self._join(self.path, key)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def get(self, key: str, convert: Callable[[Any], T], default: T, *, zero_default: bool = False) -> T:
        """``convert(value)``; ``default`` when missing or null (or falsy when ``zero_default``)."""
        value = self.raw(key)
        if value is None:
            return default
        try:
            result = convert(value)
        except ValueError as error:
            raise ConfigError(f"{self.key_path(key)}: {error}") from None
        if zero_default and not result:
            return default
        return result

    def ignore(self, *keys: str) -> None:
        self.used.update(keys)

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise ConfigError(f"{self.key_path(key)}: unknown key")


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _str(value: object) -> str:
    # YAML turns an unquoted 12345 into an int; Go reads it into a string field.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {_describe(value)}")


def _secret(value: object) -> str:
    try:
        return _str(value)
    except ValueError:
        raise ValueError("expected a string") from None


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {_describe(value)}")


def _non_negative_int(value: object) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"expected a non-negative integer, got {number}")
    return number


def _positive_int(value: object) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"expected a positive integer, got {number}")
    return number


def _port(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"expected a port number (0-65535), got {number}")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {_describe(value)}")


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got {value!r}")
    return seconds


def _size(value: object) -> int | None:
    return parse_size(value)


def _positive_size(value: object) -> int:
    size = parse_size(value)
    if not size:
        raise ValueError("expected a size above zero")
    return size


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return convert


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_describe(value)}")
    items = []
    for index, item in enumerate(value):
        try:
            items.append(_str(item))
        except ValueError as error:
            raise ValueError(f"item {index}: {error}") from None
    return tuple(items)


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _check_s3_bucket_name(name: str) -> str | None:
    """The reason ``name`` is not a valid S3 bucket name, or None."""
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "not a valid S3 bucket name (3-63 characters: lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "not a valid S3 bucket name (no '..', '.-' or '-.')"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return "not a valid S3 bucket name (looks like an IP address)"


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


def _parse_virtual_bucket(section: _Section, name: str) -> VirtualBucketConfig:
    problem = _check_s3_bucket_name(name)
    if problem:
        raise ConfigError(f"{section.key_path('name')}: {name!r} is {problem}")
    for key, convert in _VIRTUAL_IGNORED.items():
        section.get(key, convert, None)
    _parse_operation_limits(_Section(section.raw("operation_limits"), section.key_path("operation_limits")))
    bucket = VirtualBucketConfig(name=name, max_size=section.get("max_size", _size, None))
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


def _parse_credentials(value: object, path: str, bucket_names: set[str]) -> list[Credential]:
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
            )
        )
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
    credentials: list[Credential] = []
    if access_key:
        if not secret_key:
            raise ConfigError(f"{section.key_path('secret_key')}: required when s3api.access_key is set")
        credentials.append(Credential(access_key=access_key, secret_key=secret_key))
    credentials += _parse_credentials(
        section.raw("credentials"), section.key_path("credentials"), bucket_names
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
        host=section.get("host", _str, d.host),
        region=section.get("region", _str, d.region, zero_default=True),
        allow_create_bucket=section.get("allow_create_bucket", _bool, d.allow_create_bucket),
        redirect_expiry=section.get("redirect_expiry", _positive_int, d.redirect_expiry),
        redirect_user_agents=section.get("redirect_user_agents", _user_agent_products, d.redirect_user_agents),
        multipart_copy_threshold=section.get(
            "multipart_copy_threshold", _positive_size, d.multipart_copy_threshold, zero_default=True
        ),
        cors=_parse_cors(_Section(section.raw("cors"), section.key_path("cors"))),
    )
    section.check_unknown()
    if s3api.auth_required and not s3api.credentials:
        raise ConfigError(
            f"{section.key_path('access_key')}: auth_required is true but no credential is configured"
        )
    return s3api


def _parse_api(section: _Section) -> APIConfig:
    api = APIConfig(
        enabled=section.get("enabled", _bool, False),
        token=section.get("token", _secret, ""),
    )
    section.check_unknown()
    if api.enabled and not api.token:
        raise ConfigError(f"{section.key_path('token')}: required when api.enabled is true")
    return api


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
    api = _parse_api(sub("api"))
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
