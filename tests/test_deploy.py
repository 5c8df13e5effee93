"""
The deployment kit (Dockerfile, deploy/, etc/s3balance.service): every file
parses, the Kubernetes config rendering produces a config the daemon loads,
and the monitoring is proven: promtool checks and unit-tests the alert rules,
and a real Prometheus scraping a real daemon has every series the dashboard
and the alerts query.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from s3balance.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
HELM = DEPLOY / "helm" / "s3balance"
K8S = DEPLOY / "kubernetes"
MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "s3balance.json"
ALERTS = MONITORING / "alerts.yml"

METRIC_NAME = re.compile(r"\bs3balance_[a-z_]+")
SECRET_KEYS = {"secret_access_key", "access_key_id", "secret_key", "access_key", "token", "dsn", "password"}


def require_tool(name: str) -> str:
    """The path of a Debian-packaged tool; skip without it, except under CI=true."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (Debian package 'prometheus', see scripts/install-system-deps)"
    if os.environ.get("CI") == "true":
        raise AssertionError(message + "; CI must run this test")
    raise SkipTest(message)


def yaml_files() -> list[Path]:
    return sorted(
        path
        for pattern in ("*.yml", "*.yaml")
        for path in DEPLOY.rglob(pattern)
        if HELM / "templates" not in path.parents
    )


def strip_template(text: str) -> str:
    """A Helm template with its directives removed: whole-line ones dropped, inline ones made a word."""
    lines = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*\{\{.*\}\}\s*", line):
            continue
        lines.append(re.sub(r"\{\{.*?\}\}", "x", line))
    return "\n".join(lines)


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query.get("query", ""))
        elif variable.get("type") == "query" and isinstance(query, str):
            found.append(query)
    return found


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}


def keys_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_in(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_in(item)}
    return set()


def render(base: str, secrets: str, script: Path) -> tuple[subprocess.CompletedProcess, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="s3balance-render-"))
    (workdir / "base.yaml").write_text(base)
    (workdir / "secrets.yaml").write_text(secrets)
    out = workdir / "s3balance.yaml"
    result = subprocess.run(
        [sys.executable, str(script), str(workdir / "base.yaml"), str(workdir / "secrets.yaml"), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result, out


# Series that exist only once their event has happened (a drain, a rebalance, a failover, a
# scrub verdict, a quota or its refusal, a background job's error): the dashboard has panels for them, a fresh daemon with
# plain S3 traffic has no sample of them.  They are checked against the registry instead.
EVENT_SERIES = frozenset(
    {
        "s3balance_drain_remaining_objects",
        "s3balance_drain_remaining_bytes",
        "s3balance_drain_blocked_objects",
        "s3balance_drain_state",
        "s3balance_drain_bytes_moved_total",
        "s3balance_rebalance_state",
        "s3balance_rebalance_spread",
        "s3balance_rebalance_remaining_bytes",
        "s3balance_get_failovers_total",
        "s3balance_scrub_copies_checked_total",
        "s3balance_bucket_quota_bytes",
        "s3balance_bucket_quota_objects",
        "s3balance_quota_rejections_total",
        "s3balance_background_errors_total",
    }
)


def registered_series() -> set[str]:
    """
    Every series name a daemon's registry can expose (a service built in
    process, with its drain, rebalance, replica and job metrics), with the
    suffixes Prometheus gives counters, histograms and infos.
    """
    from tests.test_drain import InProcessService

    class Scratch:
        def mktemp(self) -> str:
            return tempfile.mkdtemp(prefix="s3balance-registry-") + "/service"

    service = InProcessService(Scratch()).service  # type: ignore[arg-type]
    names: set[str] = set()
    for family in service.metrics.registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "info": ("_info",),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


class DashboardMetricsTests(SynchronousTestCase):
    def test_every_metric_of_the_dashboard_and_alerts_is_registered(self) -> None:
        registered = registered_series()
        used = metric_names(dashboard_expressions()) | metric_names(alert_expressions())
        self.assertEqual(sorted(used - registered), [])
        self.assertEqual(sorted(EVENT_SERIES - registered), [])
        self.assertLessEqual(EVENT_SERIES, used)  # (no stale exemption)

    def test_the_dashboard_has_the_operators_panels(self) -> None:
        used = metric_names(dashboard_expressions())
        for name in (
            "s3balance_requests_total", "s3balance_request_duration_seconds_bucket",
            "s3balance_received_bytes_total", "s3balance_sent_bytes_total", "s3balance_backend_up",
            "s3balance_backend_used_bytes", "s3balance_drain_remaining_objects", "s3balance_drain_blocked_objects",
            "s3balance_rebalance_remaining_bytes", "s3balance_replica_copies_made_total",
            "s3balance_replica_copies_failed_total", "s3balance_get_failovers_total",
            "s3balance_scrub_copies_checked_total", "s3balance_background_paused", "s3balance_bucket_bytes",
            "s3balance_bucket_quota_bytes",
        ):
            self.assertIn(name, used)
        dashboard = json.loads(DASHBOARD.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        cells = set()
        for panel in dashboard["panels"]:
            at = panel["gridPos"]
            for x in range(at["x"], at["x"] + at["w"]):
                for y in range(at["y"], at["y"] + at["h"]):
                    self.assertNotIn((x, y), cells, f"{panel['title']} overlaps another panel")
                    cells.add((x, y))


class FilesParseTests(SynchronousTestCase):
    def test_every_yaml_file_parses(self) -> None:
        files = yaml_files()
        self.assertGreater(len(files), 10)
        for path in files:
            documents = list(yaml.safe_load_all(path.read_text()))
            self.assertTrue(any(document is not None for document in documents), f"{path} is empty")

    def test_helm_templates_parse_without_their_directives(self) -> None:
        templates = sorted((HELM / "templates").glob("*.yaml"))
        self.assertGreaterEqual(len(templates), 5)
        kinds = set()
        for path in templates:
            for document in yaml.safe_load_all(strip_template(path.read_text())):
                if document:
                    kinds.add(document["kind"])
        self.assertLessEqual({"Deployment", "Service", "ConfigMap", "Secret", "Job"}, kinds)
        helm = shutil.which("helm")
        if helm:
            result = subprocess.run([helm, "lint", str(HELM)], capture_output=True, text=True, check=False)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_dashboard_is_json_with_queries_in_every_panel(self) -> None:
        dashboard = json.loads(DASHBOARD.read_text())
        self.assertEqual(dashboard["uid"], "s3balance")
        for panel in dashboard["panels"]:
            self.assertTrue(panel["targets"], panel["title"])
            for target in panel["targets"]:
                self.assertIn("s3balance_", target["expr"], panel["title"])

    def test_compose_mounts_files_that_exist(self) -> None:
        for name in ("docker-compose.yml", "docker-compose.monitoring.yml"):
            compose = yaml.safe_load((DEPLOY / "docker" / name).read_text())
            for service in compose["services"].values():
                for volume in service.get("volumes", []):
                    source = volume.split(":", 1)[0]
                    if source.startswith("."):
                        path = (DEPLOY / "docker" / source).resolve()
                        if source != "./s3balance.yaml":  # the operator's own config
                            self.assertTrue(path.exists(), f"{name}: {source} does not exist")
        build = yaml.safe_load((DEPLOY / "docker" / "docker-compose.yml").read_text())["services"][
            "s3balance"
        ]
        self.assertTrue((DEPLOY / "docker" / build["build"]["context"] / "Dockerfile").resolve().exists())

    def test_dockerfile_runs_twistd_as_a_user_with_a_health_check(self) -> None:
        text = (ROOT / "Dockerfile").read_text()
        self.assertRegex(text, r"(?m)^FROM python:3\.11-slim$")
        self.assertRegex(text, r"(?m)^USER s3balance")
        self.assertIn("http://127.0.0.1:8080/health", text)
        [cmd] = re.findall(r"(?m)^CMD (.*)$", text)
        self.assertEqual(
            json.loads(cmd),
            [
                "twistd",
                "--nodaemon",
                "--pidfile=",
                "--logfile=-",
                "s3balance",
                "--config",
                "/etc/s3balance/s3balance.yaml",
            ],
        )
        ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
        for needed in ("setup.py", "s3balance", "migrations", "twisted", "requirements"):
            self.assertNotIn(needed, ignored)

    def test_systemd_unit_runs_twistd_as_a_dedicated_user(self) -> None:
        unit = (ROOT / "etc" / "s3balance.service").read_text()
        exec_start = re.search(r"(?m)^ExecStart=(.*)$", unit).group(1).split()
        self.assertTrue(exec_start[0].endswith("/twistd"))
        self.assertIn("--nodaemon", exec_start)
        self.assertEqual(exec_start[exec_start.index("s3balance") + 1 :][:1], ["--config"])
        self.assertRegex(unit, r"(?m)^User=s3balance$")
        self.assertRegex(unit, r"(?m)^Restart=on-failure$")
        self.assertRegex(unit, r"(?m)^ExecReload=/bin/kill -HUP \$MAINPID$")

    def test_setup_py_installs_every_package(self) -> None:
        # The container image is a non-editable install: a package missing
        # from setup.py is missing from the image.
        tree = ast.parse((ROOT / "setup.py").read_text())
        declared: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "packages":
                declared = set(ast.literal_eval(node.value))
        present = {
            ".".join(path.parent.relative_to(ROOT).parts)
            for path in (ROOT / "s3balance").rglob("__init__.py")
        }
        self.assertEqual(present - declared, set(), "packages missing from setup.py")


class ConfigRenderingTests(SynchronousTestCase):
    """ConfigMap + Secret -> the config file the daemon reads (the initContainer's job)."""

    def k8s_documents(self) -> tuple[dict, dict, dict]:
        configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())
        secret = yaml.safe_load((K8S / "secret.yaml").read_text())
        deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
        return configmap, secret, deployment

    def test_manifest_script_is_the_chart_script(self) -> None:
        configmap, _, _ = self.k8s_documents()
        self.assertEqual(
            configmap["data"]["render-config.py"], (HELM / "files" / "render-config.py").read_text()
        )

    def test_manifests_render_a_config_the_daemon_loads(self) -> None:
        configmap, secret, deployment = self.k8s_documents()
        base = configmap["data"]["s3balance.yaml"]
        self.assertEqual(keys_in(yaml.safe_load(base)) & SECRET_KEYS, set(), "a secret in the ConfigMap")
        result, out = render(base, secret["stringData"]["secrets.yaml"], HELM / "files" / "render-config.py")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(out.stat().st_mode & 0o077, 0, "the rendered config is readable by others")
        config = load_config(str(out))
        self.assertEqual(config.database.type, "postgres")
        self.assertIn("CHANGE-ME", config.database.dsn)
        self.assertTrue(all(backend.secret_access_key == "CHANGE-ME" for backend in config.backends))
        self.assertTrue(config.api.enabled and config.api.token)
        self.assertGreater(deployment["spec"]["replicas"], 1)

    def test_chart_values_render_a_config_the_daemon_loads(self) -> None:
        values = yaml.safe_load((HELM / "values.yaml").read_text())
        self.assertEqual(keys_in(values["config"]) & SECRET_KEYS, set(), "a secret in values.config")
        result, out = render(
            yaml.safe_dump(values["config"]),
            yaml.safe_dump(values["secrets"]),
            HELM / "files" / "render-config.py",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        config = load_config(str(out))
        self.assertEqual(config.database.type, "postgres")
        self.assertGreater(values["replicaCount"], 1)

    def test_a_bucket_only_in_the_secret_is_refused(self) -> None:
        result, out = render(
            "buckets: [{name: a, virtual: false}]\n",
            "buckets: [{name: typo, secret_access_key: s}]\n",
            HELM / "files" / "render-config.py",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("'typo' is in the secret but not in the config", result.stderr)
        self.assertFalse(out.exists())

    def test_probes_use_health(self) -> None:
        _, _, deployment = self.k8s_documents()
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/health")
        self.assertIn("/health", " ".join(container["livenessProbe"]["exec"]["command"]))


class AlertRuleTests(SynchronousTestCase):
    def test_promtool_checks_the_rules(self) -> None:
        promtool = require_tool("promtool")
        result = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_promtool_unit_tests_of_the_rules_pass(self) -> None:
        promtool = require_tool("promtool")
        result = subprocess.run(
            [promtool, "test", "rules", "alerts.test.yml"],
            capture_output=True,
            text=True,
            check=False,
            cwd=str(MONITORING),
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_compose_prometheus_config_is_valid(self) -> None:
        promtool = require_tool("promtool")
        workdir = Path(tempfile.mkdtemp(prefix="s3balance-promcfg-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        text = (MONITORING / "prometheus.yml").read_text()
        text = text.replace("/etc/prometheus/alerts.yml", str(ALERTS))
        (workdir / "token").write_text("t\n")
        text = text.replace("/etc/prometheus/s3balance-token", str(workdir / "token"))
        (workdir / "prometheus.yml").write_text(text)
        result = subprocess.run(
            [promtool, "check", "config", str(workdir / "prometheus.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


METRICS_TOKEN = "prometheus-scrape-token"


class PrometheusScrapeTests(SynchronousTestCase):
    """A real Prometheus, loaded with alerts.yml, scraping a real daemon every second."""

    def setUp(self) -> None:
        prometheus = require_tool("prometheus")
        from tests.daemon import Daemon, backend_entry, base_config
        from tests.harness import (
            ManagedProcess,
            free_port,
            shared_seaweedfs_pair,
            unique_bucket_name,
            wait_for_http,
        )

        first, second = shared_seaweedfs_pair()
        real = [unique_bucket_name("prom"), unique_bucket_name("prom")]
        first.create_bucket(real[0])
        second.create_bucket(real[1])
        self.workdir = Path(tempfile.mkdtemp(prefix="s3balance-prometheus-"))
        self.addCleanup(shutil.rmtree, self.workdir, True)
        # A backend nobody listens for: its health checks fail, so the
        # backend-error and backend-down series exist as in an outage.
        self.dead = "prom-dead-backend"
        dead = backend_entry(first, self.dead, endpoint=f"http://127.0.0.1:{free_port()}", max_size="1GB")
        config = base_config(
            [
                backend_entry(first, real[0], max_size="1GB"),
                backend_entry(second, real[1], max_size="2GB"),
                dead,
            ],
            ["vb-prom"],
            self.workdir,
            metrics={"enabled": True, "path": "/metrics", "token": METRICS_TOKEN},
        )
        self.daemon = Daemon(config, name="prom-gw").start()
        self.addCleanup(self.daemon.stop)

        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        prometheus_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "s3balance",
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials": METRICS_TOKEN},
                    "static_configs": [{"targets": [f"127.0.0.1:{self.daemon.port}"]}],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
        self.prometheus = ManagedProcess(
            "prometheus",
            [
                prometheus,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log_path=self.workdir / "prometheus.log",
        )
        self.prometheus.start()
        self.addCleanup(self.prometheus.stop)
        wait_for_http(f"{self.api}/-/ready", timeout=60, process=self.prometheus)

    def api_get(self, path: str, **params: str) -> Any:
        url = f"{self.api}{path}?{urllib.parse.urlencode(params)}" if params else f"{self.api}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            document = json.load(response)
        self.assertEqual(document["status"], "success", document)
        return document["data"]

    def s3_traffic(self) -> None:
        from tests.daemon import poll

        poll(
            lambda: not self.daemon.health()["backends"][self.dead]["up"],
            timeout=30,
            message="the dead backend was never marked down",
        )
        client = self.daemon.client()
        for i in range(5):
            client.put_object(Bucket="vb-prom", Key=f"obj-{i}", Body=os.urandom(2048))
        client.list_objects_v2(Bucket="vb-prom")
        client.get_object(Bucket="vb-prom", Key="obj-0")["Body"].read()
        client.head_object(Bucket="vb-prom", Key="obj-1")
        client.delete_object(Bucket="vb-prom", Key="obj-2")

    def test_every_metric_of_the_dashboard_and_alerts_is_scraped(self) -> None:
        from tests.daemon import poll

        wanted = (metric_names(dashboard_expressions()) | metric_names(alert_expressions())) - EVENT_SERIES
        self.assertGreater(len(wanted), 12, sorted(wanted))
        self.s3_traffic()

        missing: set[str] = set(wanted)

        def all_present() -> bool:
            for name in sorted(missing):
                if self.api_get("/api/v1/query", query=name)["result"]:
                    missing.discard(name)
            return not missing

        try:
            poll(all_present, timeout=60, interval=1.0)
        except AssertionError:
            self.fail(f"no series in Prometheus for: {sorted(missing)} (log: {self.prometheus.log_path})")

        [target] = self.api_get("/api/v1/targets")["activeTargets"]
        self.assertEqual(target["health"], "up", target.get("lastError"))

        # Every rule evaluates against the real series without error, and the
        # outage of the dead backend is seen by the rules.
        def rules_evaluated() -> list:
            rules = [rule for group in self.api_get("/api/v1/rules")["groups"] for rule in group["rules"]]
            return (
                rules
                if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules)
                else []
            )

        rules = poll(rules_evaluated, timeout=30, interval=1.0)
        self.assertEqual(len(rules), len(alert_expressions()))
        for rule in rules:
            self.assertEqual(rule["health"], "ok", f"{rule['name']}: {rule.get('lastError')}")

        def dead_backend_alert() -> bool:
            return any(
                alert["labels"].get("alertname") == "S3BalanceBackendDown"
                and alert["labels"].get("backend") == self.dead
                for alert in self.api_get("/api/v1/alerts")["alerts"]
            )

        poll(
            dead_backend_alert,
            timeout=30,
            interval=1.0,
            message="S3BalanceBackendDown not pending for the dead backend",
        )
