"""Database DSNs in the Go drivers' formats (go-sql-driver/mysql, pgx/libpq) as SQLAlchemy URLs."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl

from sqlalchemy.engine import URL, make_url

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
