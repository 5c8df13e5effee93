"""
Balancer features through a running daemon: redirect mode, hot reload by
SIGHUP while a transfer runs, Prometheus metrics.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.test_gateway_lifecycle import start_put

MIB = 1024**2


def two_backend_daemon(name: str, **sections) -> tuple[Daemon, list, list[str]]:
    servers = list(shared_seaweedfs_pair())
    real = [unique_bucket_name("real"), unique_bucket_name("real")]
    for server, bucket in zip(servers, real, strict=True):
        server.create_bucket(bucket)
    workdir = harness_dir() / unique_bucket_name(name)
    workdir.mkdir(parents=True)
    config = base_config([backend_entry(s, b) for s, b in zip(servers, real, strict=True)], ["vb-bal"], workdir, **sections)
    return Daemon(config, name=name).start(), servers, real


class RedirectModeTests(SynchronousTestCase):
    def test_get_redirects_to_a_presigned_backend_url(self) -> None:
        daemon, _, _ = two_backend_daemon("redirect", s3api={"proxy_mode": False})
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-bal", Key="r.txt", Body=b"redirected bytes", ContentType="text/plain")
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "vb-bal", "Key": "r.txt", "ResponseContentType": "x/y"}, ExpiresIn=60
        )

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.build_opener(NoRedirect).open(url)
        self.assertEqual(raised.exception.code, 302)
        location = raised.exception.headers["Location"]
        self.assertNotIn(daemon.endpoint, location)
        self.assertIn("X-Amz-Signature=", location)
        # Following it gives the bytes, with the override applied by the backend.
        with urllib.request.urlopen(url) as response:
            self.assertEqual(response.read(), b"redirected bytes")
            self.assertEqual(response.headers["Content-Type"], "x/y")
        # HEAD is still answered by the gateway.
        self.assertEqual(s3.head_object(Bucket="vb-bal", Key="r.txt")["ContentLength"], 16)

    def test_clients_can_ask_for_proxying(self) -> None:
        daemon, _, _ = two_backend_daemon("redirect2", s3api={"proxy_mode": False})
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-bal", Key="p", Body=b"proxied")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "vb-bal", "Key": "p"}, ExpiresIn=60)
        request = urllib.request.Request(url, headers={"x-s3balance-proxy": "true"})
        with urllib.request.urlopen(request) as response:
            self.assertEqual(response.read(), b"proxied")
            self.assertEqual(response.url, url)


class ReloadTests(SynchronousTestCase):
    def test_sighup_applies_a_new_config_while_a_transfer_runs(self) -> None:
        daemon, servers, real = two_backend_daemon("reload")
        self.addCleanup(daemon.stop)
        thread, result, started = start_put(daemon, "/vb-bal/in-flight", 6 * MIB, 256 * 1024, 0.05)
        self.assertTrue(started.wait(10))
        # Disable the first backend and switch the strategy.
        daemon.config["buckets"][0]["enabled"] = False
        daemon.config["balancer"]["strategy"] = "least-space"
        daemon.write_config()
        import os

        os.kill(daemon.process.pid, signal.SIGHUP)
        poll(lambda: daemon.health()["strategy"] == "least-space", timeout=10, message="reload not applied")
        thread.join(60)
        self.assertEqual(result.get("status"), 200, result)
        s3 = daemon.client()
        self.assertEqual(s3.head_object(Bucket="vb-bal", Key="in-flight")["ContentLength"], 6 * MIB)
        for index in range(4):
            s3.put_object(Bucket="vb-bal", Key=f"after/{index}", Body=b"x")
        keys_first = servers[0].client().list_objects_v2(Bucket=real[0]).get("KeyCount", 0)
        keys_second = servers[1].client().list_objects_v2(Bucket=real[1]).get("KeyCount", 0)
        # Every new object went to the second backend; the first holds at most the in-flight one.
        self.assertLessEqual(keys_first, 1)
        self.assertGreaterEqual(keys_second, 4)

    def test_invalid_config_is_rejected_and_the_old_one_keeps_running(self) -> None:
        daemon, _, _ = two_backend_daemon("reload-bad")
        self.addCleanup(daemon.stop)
        daemon.config_path.write_text(yaml.safe_dump({**daemon.config, "balancer": {"strategy": "nope"}}))
        import os

        os.kill(daemon.process.pid, signal.SIGHUP)
        poll(lambda: "nope" in daemon.log(), timeout=10, message="the reload error was not logged")
        time.sleep(0.2)
        self.assertTrue(daemon.process.running)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-bal", Key="still", Body=b"up")
        self.assertEqual(daemon.health()["strategy"], "round-robin")


class MetricsTests(SynchronousTestCase):
    def test_metrics_are_scraped_with_the_token(self) -> None:
        daemon, _, real = two_backend_daemon("metrics", metrics={"token": "scrape-me"})
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-bal", Key="m", Body=b"12345")
        s3.get_object(Bucket="vb-bal", Key="m")["Body"].read()
        url = f"{daemon.endpoint}/metrics"
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(url)
        self.assertEqual(raised.exception.code, 401)
        request = urllib.request.Request(url, headers={"Authorization": "Bearer scrape-me"})
        with urllib.request.urlopen(request) as response:
            text = response.read().decode()
        families = {family.name: family for family in text_string_to_metric_families(text)}
        requests = {
            (s.labels.get("operation"), s.labels.get("status")): s.value
            for s in families["s3balance_requests"].samples
            if s.name == "s3balance_requests_total"
        }
        self.assertGreaterEqual(requests.get(("PutObject", "200"), 0), 1)
        self.assertGreaterEqual(requests.get(("GetObject", "200"), 0), 1)
        up = {s.labels["backend"]: s.value for s in families["s3balance_backend_up"].samples}
        self.assertEqual(up, {real[0]: 1.0, real[1]: 1.0})
        self.assertIn("s3balance_placements", families)
