"""Tests for s3balance.config: the Go config loads unchanged, errors name the key."""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml
from sqlalchemy.engine import make_url
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import (
    BackendConfig,
    Config,
    ConfigError,
    Credential,
    OperationLimits,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

# The example config shipped with the Go s3-balance, comments trimmed.
GO_EXAMPLE = """\
server:
  host: "0.0.0.0"
  port: 8080
  read_timeout: 30s
  write_timeout: 30s
  idle_timeout: 60s

database:
  type: "sqlite"
  dsn: "data/s3-balance.db"
  max_open_conns: 25      # max open connections
  max_idle_conns: 5
  conn_max_lifetime: 300
  log_level: "warn"
  auto_migrate: true

buckets:
  - name: "my-bucket-1"
    endpoint: ""
    region: "us-east-1"
    access_key_id: "YOUR_AWS_ACCESS_KEY_ID"
    secret_access_key: "YOUR_AWS_SECRET_ACCESS_KEY"
    max_size: "100GB"
    weight: 10
    enabled: true
    path_style: false
    virtual: false
    operation_limits:
      type_a: 0
      type_b: 0

  - name: "my-bucket-2"
    endpoint: "http://localhost:9000"
    region: "us-east-1"
    access_key_id: "minioadmin"
    secret_access_key: "minioadmin-secret"
    max_size: "50GB"
    weight: 5
    enabled: true
    path_style: true
    virtual: false
    operation_limits:
      type_a: 1000000
      type_b: 10000000

  - name: "user-bucket-1"
    endpoint: ""
    region: "us-east-1"
    access_key_id: ""
    secret_access_key: ""
    max_size: "100GB"
    weight: 10
    enabled: true
    path_style: false
    virtual: true

  - name: "user-bucket-2"
    endpoint: ""
    region: "us-east-1"
    access_key_id: ""
    secret_access_key: ""
    max_size: "50GB"
    weight: 10
    enabled: true
    path_style: false
    virtual: true

  - name: "my-bucket-3"
    endpoint: "https://oss-cn-hangzhou.aliyuncs.com"
    region: "cn-hangzhou"
    access_key_id: "YOUR_ALIYUN_ACCESS_KEY_ID"
    secret_access_key: "YOUR_ALIYUN_SECRET_ACCESS_KEY"
    max_size: "200GB"
    weight: 15
    enabled: true
    path_style: false
    virtual: false
    custom_host: "cdn.example.com"
    remove_bucket: true
    use_ssl: true
    operation_limits:
      type_a: 0
      type_b: 0

balancer:
  strategy: "least-space"
  health_check_period: 30s
  update_stats_period: 60s
  retry_attempts: 3
  retry_delay: 1s

metrics:
  enabled: true
  path: "/metrics"
  token: ""
  port: 9090

s3api:
  access_key: "AKIAIOSFODNN7EXAMPLE"
  secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
  virtual_host: false
  proxy_mode: true
  auth_required: true
  host: ""

api:
  enabled: true
  token: "your-secure-api-token-change-this"

offline:
  enabled: false
  worker_base_url: "https://worker.example.com"
  worker_auth: "worker-secret"
  part_size: 8388608
  concurrency: 4
"""

SECRETS = (
    "YOUR_AWS_SECRET_ACCESS_KEY",
    "minioadmin-secret",
    "YOUR_ALIYUN_SECRET_ACCESS_KEY",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "your-secure-api-token-change-this",
)


def minimal() -> dict[str, Any]:
    """The smallest valid config, as a mapping to modify in a test."""
    return {
        "buckets": [
            {"name": "real-a", "endpoint": "http://127.0.0.1:8333", "path_style": True},
            {"name": "demo", "virtual": True},
        ],
        "s3api": {"access_key": "client", "secret_key": "client-secret"},
    }


class GoExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config = parse_config(yaml.safe_load(GO_EXAMPLE))

    def test_go_example_loads_from_a_file(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(GO_EXAMPLE)
        self.assertEqual(load_config(path), self.config)

    def test_server_durations(self) -> None:
        server = self.config.server
        self.assertEqual(
            (server.host, server.port, server.read_timeout, server.write_timeout, server.idle_timeout),
            ("0.0.0.0", 8080, 30.0, 30.0, 60.0),
        )

    def test_real_and_virtual_buckets_are_split(self) -> None:
        self.assertEqual(
            [b.name for b in self.config.backends], ["my-bucket-1", "my-bucket-2", "my-bucket-3"]
        )
        self.assertEqual([b.name for b in self.config.virtual_buckets], ["user-bucket-1", "user-bucket-2"])
        self.assertEqual(self.config.virtual_bucket("user-bucket-2").max_size, 50 * 1024**3)  # type: ignore[union-attr]
        self.assertIsNone(self.config.virtual_bucket("my-bucket-1"))
        self.assertIsNone(self.config.backend("user-bucket-1"))

    def test_backend_fields(self) -> None:
        minio = self.config.backend("my-bucket-2")
        assert minio is not None
        self.assertEqual(minio.endpoint_url, "http://localhost:9000")
        self.assertEqual(minio.max_size, 50 * 1024**3)
        self.assertEqual(minio.weight, 5)
        self.assertTrue(minio.path_style)
        self.assertEqual(minio.operation_limits, OperationLimits(type_a=1000000, type_b=10000000))
        oss = self.config.backend("my-bucket-3")
        assert oss is not None
        self.assertEqual(
            (oss.custom_host, oss.remove_bucket, oss.region), ("cdn.example.com", True, "cn-hangzhou")
        )

    def test_empty_endpoint_is_aws(self) -> None:
        aws = self.config.backend("my-bucket-1")
        assert aws is not None
        self.assertEqual(aws.endpoint_url, "https://s3.us-east-1.amazonaws.com")

    def test_balancer_metrics_api(self) -> None:
        self.assertEqual(self.config.balancer.strategy, "least-space")
        self.assertEqual(self.config.balancer.retry_delay, 1.0)
        self.assertEqual(self.config.metrics.port, 9090)
        self.assertTrue(self.config.api.enabled)

    def test_single_go_credential(self) -> None:
        s3api = self.config.s3api
        self.assertEqual(
            s3api.credentials,
            (Credential("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),),
        )
        self.assertEqual((s3api.virtual_host, s3api.proxy_mode, s3api.auth_required), (False, True, True))

    def test_repr_hides_secrets(self) -> None:
        text = repr(self.config)
        for secret in SECRETS:
            self.assertNotIn(secret, text)
        self.assertIn("minioadmin", text)  # the access key id is not a secret


class DefaultTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse_config(minimal())
        self.assertEqual(config.server.port, 8080)
        self.assertEqual(config.server.data_dir, "data")
        self.assertEqual(config.server.shutdown_grace, 30.0)
        self.assertEqual(config.database.type, "sqlite")
        self.assertEqual(config.database.max_open_conns, 25)
        self.assertTrue(config.database.auto_migrate)
        self.assertEqual(config.balancer.strategy, "least-space")
        self.assertEqual(config.balancer.health_timeout, 5.0)
        self.assertEqual(config.balancer.unhealthy_threshold, 3)
        self.assertEqual(config.balancer.multipart_max_age, 86400.0)
        self.assertEqual(config.balancer.job_lease, 30.0)
        self.assertEqual(config.metrics.path, "/metrics")
        self.assertTrue(config.metrics.enabled)
        self.assertFalse(config.api.enabled)
        self.assertTrue(config.s3api.auth_required)
        self.assertTrue(config.s3api.proxy_mode)
        self.assertEqual(config.s3api.region, "us-east-1")
        self.assertEqual(config.s3api.redirect_expiry, 900)

    def test_backend_defaults(self) -> None:
        backend = parse_config(minimal()).backends[0]
        self.assertEqual(
            backend,
            BackendConfig(name="real-a", endpoint="http://127.0.0.1:8333", path_style=True),
        )
        self.assertEqual(
            (backend.weight, backend.enabled, backend.use_ssl, backend.max_size), (1, True, True, None)
        )

    def test_zero_takes_the_default_as_in_go(self) -> None:
        mapping = minimal()
        mapping["server"] = {"port": 0, "read_timeout": 0, "host": ""}
        mapping["balancer"] = {"retry_attempts": 0, "strategy": ""}
        config = parse_config(mapping)
        self.assertEqual(
            (config.server.port, config.server.read_timeout, config.server.host), (8080, 30.0, "0.0.0.0")
        )
        self.assertEqual((config.balancer.retry_attempts, config.balancer.strategy), (3, "least-space"))

    def test_null_sections_and_keys_take_defaults(self) -> None:
        mapping = minimal()
        mapping["server"] = None
        mapping["metrics"] = {"path": None}
        config = parse_config(mapping)
        self.assertEqual(config.server.port, 8080)
        self.assertEqual(config.metrics.path, "/metrics")

    def test_endpoint_without_scheme_uses_use_ssl(self) -> None:
        mapping = minimal()
        mapping["buckets"][0]["endpoint"] = "minio.local:9000"
        self.assertEqual(parse_config(mapping).backends[0].endpoint_url, "https://minio.local:9000")
        mapping["buckets"][0]["use_ssl"] = False
        self.assertEqual(parse_config(mapping).backends[0].endpoint_url, "http://minio.local:9000")

    def test_config_is_frozen(self) -> None:
        config = parse_config(minimal())
        self.assertIsInstance(config, Config)
        with self.assertRaises(AttributeError):
            config.server.port = 1  # type: ignore[misc]


class ErrorTests(SynchronousTestCase):
    def assertConfigError(self, mapping: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(mapping)
        text = str(caught.exception)
        self.assertEqual(text, message)
        self.assertNotIn("\n", text)

    def with_change(self, path: list[Any], value: Any) -> dict[str, Any]:
        mapping = minimal()
        target: Any = mapping
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
        target[path[-1]] = value
        return mapping

    def test_wrong_integer(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 0, "weight"], "x"),
            "buckets[0].weight: expected an integer, got 'x'",
        )

    def test_bool_is_not_an_integer(self) -> None:
        self.assertConfigError(
            self.with_change(["server", "port"], True),
            "server.port: expected an integer, got True",
        )

    def test_wrong_bool(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 1, "virtual"], "yes please"),
            "buckets[1].virtual: expected true or false, got 'yes please'",
        )

    def test_backend_object_lock(self) -> None:
        """buckets[].object_lock: false unless set, a boolean naming its key otherwise."""
        self.assertFalse(parse_config(minimal()).backends[0].object_lock)
        self.assertTrue(parse_config(self.with_change(["buckets", 0, "object_lock"], True)).backends[0].object_lock)
        self.assertConfigError(
            self.with_change(["buckets", 0, "object_lock"], "on"),
            "buckets[0].object_lock: expected true or false, got 'on'",
        )

    def test_lifecycle_keys(self) -> None:
        self.assertConfigError(
            self.with_change(["balancer", "lifecycle_period"], "x"),
            "balancer.lifecycle_period: cannot parse 'x' as a duration",
        )
        self.assertConfigError(
            self.with_change(["balancer", "lifecycle_rate"], 0),
            "balancer.lifecycle_rate: expected a number above zero, got 0",
        )
        balancer = parse_config(self.with_change(["balancer", "lifecycle_period"], "2h")).balancer
        self.assertEqual((balancer.lifecycle_period, balancer.lifecycle_rate), (7200.0, 100.0))
        self.assertEqual(parse_config(self.with_change(["balancer", "lifecycle_period"], 0)).balancer.lifecycle_period, 0.0)

    def test_unknown_key(self) -> None:
        self.assertConfigError(
            self.with_change(["s3api", "proxy_modee"], True), "s3api.proxy_modee: unknown key"
        )

    def test_unknown_top_level_key(self) -> None:
        self.assertConfigError(self.with_change(["balancers"], {}), "balancers: unknown key")

    def test_unknown_bucket_key(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 0, "wieght"], 3), "buckets[0].wieght: unknown key"
        )

    def test_unknown_operation_limit(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 0, "operation_limits"], {"type_c": 1}),
            "buckets[0].operation_limits.type_c: unknown key",
        )

    def test_section_must_be_a_mapping(self) -> None:
        self.assertConfigError(self.with_change(["server"], [1]), "server: expected a mapping, got a list")

    def test_bad_size(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 0, "max_size"], "10XB"),
            "buckets[0].max_size: cannot parse '10XB' as a size",
        )

    def test_bad_duration(self) -> None:
        self.assertConfigError(
            self.with_change(["balancer", "health_check_period"], "30 parsecs"),
            "balancer.health_check_period: cannot parse '30 parsecs' as a duration",
        )

    def test_no_real_bucket(self) -> None:
        mapping = minimal()
        del mapping["buckets"][0]
        self.assertConfigError(mapping, "buckets: at least one bucket with virtual: false is needed")

    def test_no_virtual_bucket(self) -> None:
        mapping = minimal()
        del mapping["buckets"][1]
        self.assertConfigError(mapping, "buckets: at least one bucket with virtual: true is needed")

    def test_duplicate_bucket_name(self) -> None:
        mapping = minimal()
        mapping["buckets"].append({"name": "demo", "virtual": True})
        self.assertConfigError(mapping, "buckets[2].name: 'demo' is already used by buckets[1]")

    def test_bucket_without_name(self) -> None:
        self.assertConfigError(self.with_change(["buckets", 0, "name"], ""), "buckets[0].name: required")

    def test_invalid_virtual_bucket_name(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(self.with_change(["buckets", 1, "name"], "Demo_Bucket"))
        self.assertTrue(
            str(caught.exception).startswith("buckets[1].name: 'Demo_Bucket' is not a valid S3 bucket name")
        )

    def test_bad_endpoint(self) -> None:
        self.assertConfigError(
            self.with_change(["buckets", 0, "endpoint"], "ftp://example.com"),
            "buckets[0].endpoint: expected an http(s) URL, got 'ftp://example.com'",
        )

    def test_unknown_database_type(self) -> None:
        self.assertConfigError(
            self.with_change(["database", "type"], "oracle"),
            "database.type: expected one of sqlite, mysql, postgres, postgresql, got 'oracle'",
        )

    def test_auth_required_without_credential(self) -> None:
        mapping = minimal()
        mapping["s3api"] = {"auth_required": True}
        self.assertConfigError(
            mapping, "s3api.access_key: auth_required is true but no credential is configured"
        )

    def test_auth_not_required_without_credential(self) -> None:
        mapping = minimal()
        mapping["s3api"] = {"auth_required": False}
        self.assertEqual(parse_config(mapping).s3api.credentials, ())

    def test_access_key_without_secret(self) -> None:
        self.assertConfigError(
            self.with_change(["s3api", "secret_key"], ""),
            "s3api.secret_key: required when s3api.access_key is set",
        )

    def test_api_enabled_without_token(self) -> None:
        self.assertConfigError(
            self.with_change(["api"], {"enabled": True}),
            "api.token: required when api.enabled is true",
        )

    def test_top_level_not_a_mapping(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(["a"], source="x.yaml")
        self.assertEqual(str(caught.exception), "x.yaml: expected a mapping at the top level, got a list")

    def test_secret_not_in_type_error(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(self.with_change(["s3api", "secret_key"], ["hunter2-secret"]))
        self.assertEqual(str(caught.exception), "s3api.secret_key: expected a string")

    def test_dsn_not_in_error(self) -> None:
        mapping = minimal()
        mapping["database"] = {"type": "mysql", "dsn": "root:hunter2@bogus(x)/db"}
        with self.assertRaises(ConfigError) as caught:
            parse_config(mapping)
        self.assertTrue(str(caught.exception).startswith("database.dsn: "))
        self.assertNotIn("hunter2", str(caught.exception))

    def test_dsn_required_for_mysql(self) -> None:
        self.assertConfigError(
            self.with_change(["database"], {"type": "mysql"}),
            "database.dsn: required for database type 'mysql'",
        )


class FileErrorTests(SynchronousTestCase):
    def test_missing_file(self) -> None:
        path = self.mktemp()
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"{path}: cannot read"), message)
        self.assertNotIn("\n", message)

    def test_bad_yaml(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("server:\n  port: [1, 2\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"{path}: invalid YAML at line"), message)
        self.assertNotIn("\n", message)


class DatabaseURLTests(SynchronousTestCase):
    def url(self, db_type: str, dsn: str) -> str:
        mapping = minimal()
        mapping["database"] = {"type": db_type, "dsn": dsn}
        return parse_config(mapping).database.url

    def test_sqlite_relative_path_is_from_cwd(self) -> None:
        self.assertEqual(
            self.url("sqlite", "data/s3balance.db"), "sqlite:///" + os.path.abspath("data/s3balance.db")
        )

    def test_sqlite_absolute_path(self) -> None:
        self.assertEqual(self.url("sqlite", "/var/lib/s3balance.db"), "sqlite:////var/lib/s3balance.db")

    def test_go_mysql_dsn(self) -> None:
        url = self.url(
            "mysql", "user:password@tcp(localhost:3306)/s3balance?charset=utf8mb4&parseTime=True&loc=Local"
        )
        self.assertEqual(url, "mysql+pymysql://user:password@localhost:3306/s3balance?charset=utf8mb4")

    def test_go_mysql_dsn_without_password_or_port(self) -> None:
        self.assertEqual(
            self.url("mysql", "root@tcp(127.0.0.1)/test"),
            "mysql+pymysql://root@127.0.0.1/test?charset=utf8mb4",
        )

    def test_go_mysql_dsn_password_with_at_and_slash(self) -> None:
        parsed = make_url(self.url("mysql", "app:p@ss/w0rd@tcp(db:3306)/s3"))
        self.assertEqual(
            (parsed.username, parsed.password, parsed.host, parsed.port), ("app", "p@ss/w0rd", "db", 3306)
        )
        self.assertEqual(parsed.database, "s3")

    def test_go_mysql_unix_socket(self) -> None:
        parsed = make_url(self.url("mysql", "app:pw@unix(/run/mysqld/mysqld.sock)/s3"))
        self.assertEqual(parsed.query["unix_socket"], "/run/mysqld/mysqld.sock")
        self.assertIsNone(parsed.host)

    def test_go_postgres_dsn(self) -> None:
        url = self.url(
            "postgres",
            "host=localhost user=postgres password=password dbname=s3balance port=5432 "
            "sslmode=disable TimeZone=Asia/Shanghai",
        )
        parsed = make_url(url)
        self.assertEqual(parsed.drivername, "postgresql+psycopg2")
        self.assertEqual(
            (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database),
            ("postgres", "password", "localhost", 5432, "s3balance"),
        )
        self.assertEqual(parsed.query["sslmode"], "disable")
        # pgx takes TimeZone directly; libpq needs it as a run-time option.
        self.assertEqual(parsed.query["options"], "-c TimeZone=Asia/Shanghai")

    def test_go_postgres_dsn_quoted_password(self) -> None:
        parsed = make_url(self.url("postgres", r"host=127.0.0.1 user=app password='a b\'c' dbname=test"))
        self.assertEqual(parsed.password, "a b'c")

    def test_urls_pass_through(self) -> None:
        self.assertEqual(
            self.url("postgres", "postgresql+psycopg://u:p@h:5432/db"), "postgresql+psycopg://u:p@h:5432/db"
        )
        self.assertEqual(self.url("mysql", "mysql+pymysql://u:p@h/db"), "mysql+pymysql://u:p@h/db")
        self.assertEqual(self.url("sqlite", "sqlite:////tmp/x.db"), "sqlite:////tmp/x.db")

    def test_url_drivers_are_filled_in(self) -> None:
        self.assertEqual(self.url("mysql", "mysql://u:p@h/db"), "mysql+pymysql://u:p@h/db")
        self.assertEqual(self.url("postgres", "postgres://u:p@h/db"), "postgresql+psycopg2://u:p@h/db")
        # SQLAlchemy 2.1 would take psycopg 3 for these, which is not installed.
        self.assertEqual(self.url("postgres", "postgresql://u:p@h:5432/db"), "postgresql+psycopg2://u:p@h:5432/db")
        self.assertEqual(self.url("mysql", "mariadb://u:p@h/db"), "mariadb+pymysql://u:p@h/db")

    def test_repr_hides_dsn_password(self) -> None:
        for db_type, dsn in [
            ("mysql", "user:hunter2@tcp(localhost:3306)/db"),
            ("postgres", "host=h user=u password=hunter2 dbname=d"),
            ("postgres", "postgres://u:hunter2@h/db"),
        ]:
            mapping = minimal()
            mapping["database"] = {"type": db_type, "dsn": dsn}
            self.assertNotIn("hunter2", repr(parse_config(mapping)))


class SizeTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        cases = {
            "10GB": 10 * 1024**3,
            "5 GiB": 5 * 1024**3,
            "100MB": 100 * 1024**2,
            "1TB": 1024**4,
            "512": 512,
            "1.5GB": int(1.5 * 1024**3),
            "2k": 2048,
            "3KiB": 3072,
            "7mib": 7 * 1024**2,
            "1tib": 1024**4,
            "64b": 64,
            4096: 4096,
        }
        for text, expected in cases.items():
            self.assertEqual(parse_size(text), expected, text)

    def test_empty_or_zero_is_unlimited(self) -> None:
        for value in ("", "0", 0, None, "0GB"):
            self.assertIsNone(parse_size(value), value)

    def test_bad_sizes(self) -> None:
        for value in ("10XB", "GB", "-1GB", "1.2.3GB", True):
            self.assertRaises(ValueError, parse_size, value)


class DurationTests(SynchronousTestCase):
    def test_go_durations(self) -> None:
        cases = {
            "30s": 30.0,
            "1m30s": 90.0,
            "500ms": 0.5,
            "2h": 7200.0,
            "1.5h": 5400.0,
            "1h2m3s": 3723.0,
            "0": 0.0,
        }
        for text, expected in cases.items():
            self.assertAlmostEqual(parse_duration(text), expected, msg=text)

    def test_numbers_are_seconds(self) -> None:
        self.assertEqual(parse_duration(45), 45.0)
        self.assertEqual(parse_duration(0.25), 0.25)
        self.assertEqual(parse_duration("90"), 90.0)

    def test_bad_durations(self) -> None:
        for value in ("s", "3d", "-5s", "1m30", "", True, [1]):
            self.assertRaises(ValueError, parse_duration, value)

    def test_our_additions_take_durations(self) -> None:
        mapping = minimal()
        mapping["server"] = {"shutdown_grace": "1m"}
        mapping["balancer"] = {
            "multipart_max_age": "24h", "cleanup_period": "5m", "health_timeout": "2s", "job_lease": "1m",
        }
        config = parse_config(mapping)
        self.assertEqual(config.server.shutdown_grace, 60.0)
        self.assertEqual(
            (
                config.balancer.multipart_max_age,
                config.balancer.cleanup_period,
                config.balancer.health_timeout,
                config.balancer.job_lease,
            ),
            (86400.0, 300.0, 2.0, 60.0),
        )

    def test_job_lease_must_be_positive(self) -> None:
        for value in ("0s", "-5s", "soon"):
            mapping = minimal()
            mapping["balancer"] = {"job_lease": value}
            with self.assertRaises(ConfigError, msg=value) as raised:
                parse_config(mapping)
            self.assertIn("job_lease", str(raised.exception))


class VirtualHostTests(SynchronousTestCase):
    def s3api(self, value: Any) -> Any:
        mapping = minimal()
        mapping["s3api"]["virtual_host"] = value
        return parse_config(mapping).s3api

    def test_bool(self) -> None:
        self.assertEqual((self.s3api(True).virtual_host, self.s3api(True).virtual_host_domains), (True, ()))
        self.assertEqual(
            (self.s3api(False).virtual_host, self.s3api(False).virtual_host_domains), (False, ())
        )

    def test_domain_string(self) -> None:
        s3api = self.s3api("S3.Example.com")
        self.assertEqual((s3api.virtual_host, s3api.virtual_host_domains), (True, ("s3.example.com",)))

    def test_domain_list(self) -> None:
        s3api = self.s3api(["s3.example.com", ".s3.local"])
        self.assertEqual(
            (s3api.virtual_host, s3api.virtual_host_domains), (True, ("s3.example.com", "s3.local"))
        )

    def test_empty_forms_are_off(self) -> None:
        self.assertFalse(self.s3api("").virtual_host)
        self.assertFalse(self.s3api([]).virtual_host)

    def test_wrong_type(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.s3api(42)
        self.assertEqual(
            str(caught.exception),
            "s3api.virtual_host: expected true, false, a domain or a list of domains, got 42",
        )


class CredentialTests(SynchronousTestCase):
    def with_credentials(self, credentials: Any, go_pair: bool = True) -> dict[str, Any]:
        mapping = minimal()
        mapping["buckets"].append({"name": "photos", "virtual": True})
        if not go_pair:
            mapping["s3api"] = {}
        mapping["s3api"]["credentials"] = credentials
        return mapping

    def test_go_pair_comes_first(self) -> None:
        config = parse_config(
            self.with_credentials(
                [
                    {
                        "access_key": "reader",
                        "secret_key": "reader-secret",
                        "buckets": ["photos"],
                        "read_only": True,
                    },
                    {"access_key": "writer", "secret_key": "writer-secret"},
                ]
            )
        )
        self.assertEqual(
            config.s3api.credentials,
            (
                Credential("client", "client-secret"),
                Credential("reader", "reader-secret", buckets=("photos",), read_only=True),
                Credential("writer", "writer-secret", buckets=None, read_only=False),
            ),
        )

    def test_list_alone_satisfies_auth_required(self) -> None:
        config = parse_config(self.with_credentials([{"access_key": "a", "secret_key": "b"}], go_pair=False))
        self.assertEqual(config.s3api.access_key, "")
        self.assertEqual([c.access_key for c in config.s3api.credentials], ["a"])

    def test_unknown_bucket(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                self.with_credentials([{"access_key": "a", "secret_key": "b", "buckets": ["demo", "nope"]}])
            )
        self.assertEqual(
            str(caught.exception), "s3api.credentials[0].buckets[1]: 'nope' is not a virtual bucket"
        )

    def test_missing_secret(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(self.with_credentials([{"access_key": "a"}]))
        self.assertEqual(str(caught.exception), "s3api.credentials[0].secret_key: required")

    def test_unknown_credential_key(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(self.with_credentials([{"access_key": "a", "secret_key": "b", "readonly": True}]))
        self.assertEqual(str(caught.exception), "s3api.credentials[0].readonly: unknown key")

    def test_duplicate_access_key(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(self.with_credentials([{"access_key": "client", "secret_key": "other"}]))
        self.assertEqual(
            str(caught.exception), "s3api.credentials[0].access_key: access key 'client' is given twice"
        )

    def test_repr_hides_credential_secrets(self) -> None:
        config = parse_config(self.with_credentials([{"access_key": "a", "secret_key": "list-secret-value"}]))
        text = repr(config)
        self.assertNotIn("list-secret-value", text)
        self.assertNotIn("client-secret", text)
        self.assertIn("'a'", text)


class ExampleFileTests(SynchronousTestCase):
    def test_shipped_example_loads(self) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        config = load_config(os.path.join(here, "etc", "s3balance.example.yaml"))
        self.assertEqual([b.name for b in config.backends], ["real-a", "real-b"])
        self.assertEqual([b.name for b in config.virtual_buckets], ["demo", "photos", "downloads"])
        self.assertEqual(config.virtual_bucket("downloads").acl, "public-read")
        self.assertEqual(config.backends[0].endpoint_url, "http://127.0.0.1:8333")
        self.assertEqual(config.s3api.credentials[0].access_key, "s3balance-demo")
        self.assertFalse(config.api.enabled)
        self.assertTrue(config.metrics.enabled)

    def test_mapping_is_not_modified(self) -> None:
        mapping = yaml.safe_load(GO_EXAMPLE)
        before = copy.deepcopy(mapping)
        parse_config(mapping)
        self.assertEqual(mapping, before)


class ServerLimitTests(SynchronousTestCase):
    """server.read_timeout / write_timeout / max_connections / max_connections_per_ip."""

    def server(self, **keys: Any):
        mapping = minimal()
        mapping["server"] = keys
        return parse_config(mapping).server

    def test_defaults(self) -> None:
        server = self.server()
        self.assertEqual(
            (server.read_timeout, server.write_timeout, server.idle_timeout), (30.0, 60.0, 60.0)
        )
        self.assertEqual((server.max_connections, server.max_connections_per_ip), (4096, 1024))

    def test_set(self) -> None:
        server = self.server(read_timeout="5s", write_timeout="2m", max_connections=100, max_connections_per_ip=10)
        self.assertEqual((server.read_timeout, server.write_timeout), (5.0, 120.0))
        self.assertEqual((server.max_connections, server.max_connections_per_ip), (100, 10))

    def test_zero_takes_the_default(self) -> None:
        server = self.server(write_timeout=0, max_connections=0, max_connections_per_ip=0)
        self.assertEqual(
            (server.write_timeout, server.max_connections, server.max_connections_per_ip), (60.0, 4096, 1024)
        )

    def test_errors_name_the_key(self) -> None:
        cases = [
            ({"max_connections": -1}, "server.max_connections: expected a non-negative integer, got -1"),
            ({"max_connections_per_ip": "many"}, "server.max_connections_per_ip: expected an integer, got 'many'"),
            ({"write_timeout": "soon"}, "server.write_timeout: cannot parse 'soon' as a duration"),
            ({"read_timeout": "-1s"}, "server.read_timeout: '-1s' is not a non-negative duration"),
        ]
        for keys, message in cases:
            with self.assertRaises(ConfigError) as caught:
                self.server(**keys)
            self.assertEqual(str(caught.exception), message)

    def test_example_file_sets_them(self) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        server = load_config(os.path.join(here, "etc", "s3balance.example.yaml")).server
        self.assertEqual((server.read_timeout, server.write_timeout), (30.0, 60.0))
        self.assertEqual((server.max_connections, server.max_connections_per_ip), (4096, 1024))
