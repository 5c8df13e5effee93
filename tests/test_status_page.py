"""
The status page (s3balance.daemon.status): who may see it, what it shows, and the
page itself rendered by a real headless Chromium against a real daemon.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any, Optional

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from s3balance.backends.pool import BackendPool
from s3balance.config import BackendConfig
from s3balance.daemon.status import COOKIE_NAME, StatusResource, cookie_value, status_document
from s3balance.metrics import Metrics

TOKEN = "admin-token-for-status"


class FakeBackend:
    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.observers: list = []


class FakeStrategy:
    name = "weighted"


class FakeGateway:
    def __init__(self, names: tuple[str, ...] = ("alpha-real", "beta-real")) -> None:
        self.pool = BackendPool(
            [FakeBackend(BackendConfig(name=name, max_size=1000 * (i + 1))) for i, name in enumerate(names)]
        )
        for i, name in enumerate(names):
            self.pool.set_usage(name, 250 * (i + 1), 3 + i)
        self.strategy = FakeStrategy()
        self.metrics = Metrics()


def fetch(resource, url: str, headers: Optional[dict] = None) -> tuple[Any, bytes]:
    """One request through an in-memory HTTP connection from 127.0.0.1 (treq's StubTreq)."""
    stub = StubTreq(resource)
    case = SynchronousTestCase()
    d = stub.get(url, headers=headers or {}, allow_redirects=False)
    stub.flush()
    response = case.successResultOf(d)
    d = stub.content(response)
    stub.flush()
    return response, case.successResultOf(d)


class AccessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = FakeGateway()
        self.token = TOKEN
        self.resource = StatusResource(self.gateway, lambda: self.token)

    def test_without_credentials_is_refused(self) -> None:
        response, body = fetch(self.resource, "http://s3b/status")
        self.assertEqual(response.code, 401)
        self.assertNotIn(b"alpha-real", body)
        response, body = fetch(
            self.resource, "http://s3b/status?format=json", {"Authorization": "Bearer nope"}
        )
        self.assertEqual(response.code, 401)

    def test_bearer_token_opens_page_and_json(self) -> None:
        response, body = fetch(self.resource, "http://s3b/status", {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 200)
        self.assertIn(b"alpha-real", body)
        response, body = fetch(
            self.resource, "http://s3b/status?format=json", {"Authorization": f"Bearer {TOKEN}"}
        )
        self.assertEqual(response.code, 200)
        self.assertEqual([b["name"] for b in json.loads(body)["backends"]], ["alpha-real", "beta-real"])

    def test_query_token_becomes_a_cookie_that_is_not_the_token(self) -> None:
        response, _ = fetch(self.resource, f"http://s3b/status?token={TOKEN}")
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/status"])
        [cookie] = response.headers.getRawHeaders(b"set-cookie")
        self.assertNotIn(TOKEN.encode(), cookie)
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"samesite=strict", cookie.lower())
        self.assertIn(b"Path=/status", cookie)
        value = cookie.split(b";", 1)[0]
        self.assertEqual(value, COOKIE_NAME + b"=" + cookie_value(TOKEN).encode())
        response, body = fetch(self.resource, "http://s3b/status?format=json", {"Cookie": value.decode()})
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["strategy"], "weighted")

    def test_wrong_query_token_is_refused_without_a_cookie(self) -> None:
        response, _ = fetch(self.resource, "http://s3b/status?token=guess")
        self.assertEqual(response.code, 401)
        self.assertIsNone(response.headers.getRawHeaders(b"set-cookie"))

    def test_changed_token_invalidates_the_cookie(self) -> None:
        old = f"{COOKIE_NAME.decode()}={cookie_value(TOKEN)}"
        self.token = "rotated"
        response, _ = fetch(self.resource, "http://s3b/status", {"Cookie": old})
        self.assertEqual(response.code, 401)

    def test_without_a_token_only_loopback_clients_are_served(self) -> None:
        self.token = ""
        response, body = fetch(self.resource, "http://s3b/status")  # StubTreq connects from 127.0.0.1
        self.assertEqual(response.code, 200)
        request = DummyRequest([b""])
        request.uri = b"/status"
        request.client = IPv4Address("TCP", "10.1.2.3", 40000)
        body = self.resource.render(request)
        self.assertEqual(request.responseCode, 403)
        self.assertNotIn(b"alpha-real", body)
        request.client = IPv4Address("TCP", "127.0.0.1", 40000)
        self.assertIn(b"alpha-real", self.resource.render(DummyRequestFrom(request)))


def DummyRequestFrom(template: DummyRequest) -> DummyRequest:
    request = DummyRequest([b""])
    request.uri = template.uri
    request.client = template.client
    return request


class ContentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = FakeGateway()
        self.resource = StatusResource(self.gateway, lambda: TOKEN, now=lambda: 1700000000.0)
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def test_json_has_usage_capacity_and_request_counters(self) -> None:
        metrics = self.gateway.metrics
        for status in (200, 200, 503):
            metrics.request_finished(metrics.request_started("GetObject"), "GetObject", status, 0, 10)
        metrics.backend_request("beta-real", "GET", "ok", 0.01)
        metrics.backend_request("beta-real", "PUT", "error", 0.01)
        self.gateway.pool.disabled = {"alpha-real"}
        document = status_document(self.gateway, now=lambda: 5.0)
        self.assertEqual(document["time"], 5.0)
        self.assertEqual(document["strategy"], "weighted")
        self.assertEqual(document["requests"], {"total": 3.0, "errors": 1.0, "in_flight": 0.0})
        alpha, beta = document["backends"]
        self.assertEqual((alpha["used_bytes"], alpha["max_size"], alpha["objects"]), (250, 1000, 3))
        self.assertFalse(alpha["enabled"])
        self.assertEqual((beta["requests"], beta["errors"]), (2.0, 1.0))
        self.assertTrue(beta["up"])

    def test_without_metrics_rates_are_absent(self) -> None:
        self.gateway.metrics = None
        document = status_document(self.gateway)
        self.assertIsNone(document["requests"])
        self.assertIsNone(document["backends"][0]["requests"])

    def test_page_is_self_contained_with_a_nonce_policy(self) -> None:
        response, body = fetch(self.resource, "http://s3b/status", self.auth)
        page = body.decode()
        self.assertNotRegex(page, r"(src|href)\s*=\s*[\"']?(https?:)?//")
        [policy] = response.headers.getRawHeaders(b"content-security-policy")
        nonce = re.search(rb"'nonce-([^']+)'", policy).group(1).decode()
        self.assertIn(f'<script nonce="{nonce}">', page)
        self.assertIn(b"default-src 'none'", policy)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_names_are_escaped_in_html_and_script(self) -> None:
        gateway = FakeGateway(names=("a</script><b>x",))
        resource = StatusResource(gateway, lambda: TOKEN)
        _, body = fetch(resource, "http://s3b/status", self.auth)
        self.assertEqual(body.count(b"</script>"), 1)
        self.assertIn(b"a&lt;/script&gt;&lt;b&gt;x", body)


# -- the page in a real browser, served by a real daemon ---------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

STATUS_TAC = """
from twisted.application.service import Application

from s3balance.daemon.service import makeService
from s3balance.daemon.status import StatusResource

service = makeService({config!r})
if b"/status" not in service.root.fixed:
    # Until the service mounts the page itself (then this test exercises its mount).
    service.root.fixed[b"/status"] = StatusResource(
        service.gateway, lambda: service.gateway.config.api.token if service.gateway.config.api.enabled else ""
    )
application = Application("s3balance")
service.setServiceParent(application)
"""


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (Debian package 'chromium', see scripts/install-system-deps)"
    if os.environ.get("CI") == "true":
        raise AssertionError(message + "; CI must run this test")
    raise SkipTest(message)


def png_summary(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decoded image data) of a PNG."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    position, idat = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            idat += data[position + 8 : position + 8 + length]
        position += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def start_daemon_with_status_page(**sections: Any):
    """A real s3balance daemon (over the shared SeaweedFS pair) serving /status."""
    from tests.daemon import Daemon, backend_entry, base_config
    from tests.harness import ManagedProcess, shared_seaweedfs_pair, unique_bucket_name
    from tests.harness.process import venv_bin

    first, second = shared_seaweedfs_pair()
    real = [unique_bucket_name("status"), unique_bucket_name("status")]
    first.create_bucket(real[0])
    second.create_bucket(real[1])
    workdir = Path(tempfile.mkdtemp(prefix="s3balance-status-"))
    config = base_config(
        [backend_entry(first, real[0], max_size="1GB"), backend_entry(second, real[1], max_size="2GB")],
        ["vb-status"],
        workdir,
        **sections,
    )
    daemon = Daemon(config, name="status-gw")
    tac = daemon.workdir / "status.tac"
    tac.write_text(STATUS_TAC.format(config=str(daemon.config_path)))
    daemon.process = ManagedProcess(
        "status-gw",
        [venv_bin("twistd"), "-n", "--pidfile=", "-y", str(tac)],
        env=daemon.process.env,
        cwd=str(daemon.workdir),
        log_path=daemon.workdir / "daemon.log",
    )
    return daemon.start(), real


class BrowserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.browser = chromium()
        self.daemon, self.real = start_daemon_with_status_page(api={"enabled": True, "token": TOKEN})
        self.addCleanup(self.daemon.stop)
        client = self.daemon.client()
        for i in range(4):
            client.put_object(Bucket="vb-status", Key=f"k{i}", Body=b"x" * 1000)
        self.profile = tempfile.mkdtemp(prefix="s3balance-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)

    def run_browser(self, *args: str) -> subprocess.CompletedProcess:
        command = [
            self.browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={self.profile}", "--window-size=1200,800",
            # Lets the page's first poll of ?format=json finish before the DOM is dumped.
            "--virtual-time-budget=5000",
            *args,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, timeout=120, check=False)

    def test_page_renders_backends_and_refreshes(self) -> None:
        url = f"{self.daemon.endpoint}/status?token={TOKEN}"
        shot = Path(self.profile) / "status.png"
        result = self.run_browser(f"--screenshot={shot}", url)
        self.assertTrue(shot.exists(), result.stderr.decode(errors="replace")[-2000:])
        width, height, distinct = png_summary(shot)
        self.assertEqual((width, height), (1200, 800))
        self.assertGreater(shot.stat().st_size, 5000)
        self.assertGreater(distinct, 16, "the screenshot is (nearly) blank")

        result = self.run_browser("--dump-dom", url)
        dom = result.stdout.decode(errors="replace")
        for name in self.real:
            self.assertIn(name, dom)
        self.assertIn("round-robin", dom)
        # The script ran and its poll of ?format=json (authorised by the cookie) answered.
        self.assertRegex(dom, r'id="updated">updated [^<]+<')
        self.assertIn('id="stale"></span>', dom)

    def test_page_needs_the_token(self) -> None:
        result = self.run_browser("--dump-dom", f"{self.daemon.endpoint}/status")
        dom = result.stdout.decode(errors="replace")
        self.assertIn("unauthorized", dom)
        for name in self.real:
            self.assertNotIn(name, dom)
