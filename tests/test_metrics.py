"""The Prometheus metrics: names, labels and values as a scraper sees them, and the /metrics resource."""

from __future__ import annotations

import random
import string

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from s3balance.backends.pool import BackendPool
from s3balance.config import BackendConfig
from s3balance.metrics import OPERATIONS, Metrics, MetricsResource


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.observers: list = []


class FakeResponse:
    def __init__(self, code: int) -> None:
        self.code = code


def scrape(metrics: Metrics) -> dict[str, list]:
    """{sample name: [(labels, value), ...]} of one scrape."""
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    for sample_labels, sample_value in samples.get(name, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def get(resource, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = DummyRequest([b""])
    request.method = b"GET"
    for name, header_value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name.encode(), [header_value.encode()])
    body = resource.render(request)
    return request.responseCode or 200, request.responseHeaders, body


class RequestMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics(clock=self.clock)

    def test_uses_a_private_registry(self) -> None:
        self.assertIsInstance(self.metrics.registry, CollectorRegistry)
        self.assertIsNot(self.metrics.registry, REGISTRY)
        Metrics()  # a second instance does not collide with the first
        self.assertNotIn("s3balance_requests_total", REGISTRY._names_to_collectors)

    def test_finished_request_counts_status_duration_and_bytes(self) -> None:
        token = self.metrics.request_started("PutObject")
        self.assertEqual(value(scrape(self.metrics), "s3balance_requests_in_flight"), 1.0)
        self.clock.now += 0.3
        self.metrics.request_finished(token, "PutObject", 200, 1000, 0)
        token = self.metrics.request_started("GetObject")
        self.metrics.request_finished(token, "GetObject", 404, 0, 250)

        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_requests_total", operation="PutObject", status="200"), 1.0)
        self.assertEqual(value(samples, "s3balance_requests_total", operation="GetObject", status="404"), 1.0)
        self.assertEqual(value(samples, "s3balance_requests_in_flight"), 0.0)
        self.assertEqual(value(samples, "s3balance_received_bytes_total", operation="PutObject"), 1000.0)
        self.assertEqual(value(samples, "s3balance_sent_bytes_total", operation="GetObject"), 250.0)
        self.assertAlmostEqual(
            value(samples, "s3balance_request_duration_seconds_sum", operation="PutObject"), 0.3, places=6
        )
        self.assertEqual(
            value(samples, "s3balance_request_duration_seconds_bucket", operation="PutObject", le="0.25"), 0.0
        )
        self.assertEqual(
            value(samples, "s3balance_request_duration_seconds_bucket", operation="PutObject", le="0.5"), 1.0
        )

    def test_finishing_twice_counts_once(self) -> None:
        token = self.metrics.request_started("HeadObject")
        self.metrics.request_finished(token, "HeadObject", 200, 0, 0)
        self.metrics.request_finished(token, "HeadObject", 200, 0, 0)
        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_requests_total", operation="HeadObject"), 1.0)
        self.assertEqual(value(samples, "s3balance_requests_in_flight"), 0.0)

    def test_operation_from_start_is_used_when_finish_gives_none(self) -> None:
        token = self.metrics.request_started("DeleteObject")
        self.metrics.request_finished(token, None, 204, 0, 0)
        samples = scrape(self.metrics)
        self.assertEqual(
            value(samples, "s3balance_requests_total", operation="DeleteObject", status="204"), 1.0
        )

    def test_labels_stay_bounded_whatever_clients_send(self) -> None:
        rng = random.Random(4)
        for _ in range(500):
            name = "".join(rng.choice(string.ascii_letters) for _ in range(12))
            token = self.metrics.request_started(name)
            self.metrics.request_finished(token, name, rng.choice([200, 999, "x", None, -1, 404]), 1, 1)
        samples = scrape(self.metrics)
        operations = {labels["operation"] for labels, _ in samples["s3balance_requests_total"]}
        statuses = {labels["status"] for labels, _ in samples["s3balance_requests_total"]}
        self.assertEqual(operations, {"Other"})
        self.assertEqual(statuses, {"200", "404", "0"})
        self.assertEqual(
            value(samples, "s3balance_requests_total", operation="Other", status="200") > 0, True
        )

    def test_every_routed_operation_is_a_label(self) -> None:
        for operation in (
            "ListObjectsV2",
            "CopyObject",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "ListBuckets",
        ):
            self.assertIn(operation, OPERATIONS)
        token = self.metrics.request_started("UploadPartCopy")
        self.metrics.request_finished(token, "UploadPartCopy", 200, 0, 0)
        self.assertEqual(
            value(scrape(self.metrics), "s3balance_requests_total", operation="UploadPartCopy"), 1.0
        )


class BackendMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics(clock=FakeClock())

    def test_backend_request_duration_and_errors(self) -> None:
        self.metrics.backend_request("b1", "PUT", "ok", 0.2)
        self.metrics.backend_request("b1", "GET", "error", 0.01)
        self.metrics.backend_request("b2", "HEAD", "ok", 0.01)
        samples = scrape(self.metrics)
        self.assertEqual(
            value(samples, "s3balance_backend_request_duration_seconds_count", backend="b1", method="PUT"),
            1.0,
        )
        self.assertEqual(value(samples, "s3balance_backend_errors_total", backend="b1"), 1.0)
        self.assertIsNone(value(samples, "s3balance_backend_errors_total", backend="b2"))

    def test_observer_counts_failures_and_5xx_as_errors(self) -> None:
        backend = FakeBackend(BackendConfig(name="b1"))
        self.metrics.watch_backend(backend)
        self.metrics.watch_backend(backend)
        self.assertEqual(len(backend.observers), 1)
        for result in (
            FakeResponse(200),
            FakeResponse(404),
            FakeResponse(503),
            Failure(ConnectionError("x")),
        ):
            for observer in backend.observers:
                observer(backend, "GET", result, 0.05)
        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_backend_errors_total", backend="b1"), 2.0)
        self.assertEqual(
            value(samples, "s3balance_backend_request_duration_seconds_count", backend="b1", method="GET"),
            4.0,
        )

    def test_unknown_methods_are_one_label(self) -> None:
        self.metrics.backend_request("b1", "BREW", "ok", 0.1)
        samples = scrape(self.metrics)
        self.assertEqual(
            value(samples, "s3balance_backend_request_duration_seconds_count", backend="b1", method="OTHER"),
            1.0,
        )

    def test_placements_and_db_queries(self) -> None:
        self.metrics.placement("weighted", "b1")
        self.metrics.placement("weighted", "b1")
        self.metrics.db_query(0.002)
        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_placements_total", strategy="weighted", backend="b1"), 2.0)
        self.assertEqual(value(samples, "s3balance_db_query_duration_seconds_count"), 1.0)

    def test_forget_backend_drops_its_series(self) -> None:
        self.metrics.backend_request("gone", "GET", "error", 0.1)
        self.metrics.placement("round-robin", "gone")
        self.metrics.backend_request("kept", "GET", "error", 0.1)
        self.metrics.forget_backend("gone")
        samples = scrape(self.metrics)
        backends = {labels.get("backend") for name in samples for labels, _ in samples[name]}
        self.assertNotIn("gone", backends)
        self.assertIn("kept", backends)

    def test_store_statements_are_timed_on_both_paths(self) -> None:
        """SQLAlchemy's statements through its events; the raw SQLite paths, which bypass them, directly."""
        from s3balance.store import buckets, objects
        from s3balance.store.connector import MetadataStore

        directory = self.mktemp()
        store = MetadataStore(f"sqlite:///{directory}/m.db")
        store._start_blocking()  # (on this thread: the test plays the store's thread)
        self.addCleanup(store._dispose)
        self.metrics.watch_store(store)

        def counted() -> float:
            return value(scrape(self.metrics), "s3balance_db_query_duration_seconds_count") or 0.0

        store._transaction(buckets.sync_config_buckets, ["vb"], store._now())
        ordinary = counted()
        self.assertGreater(ordinary, 0)
        ((_, intent),) = store._raw_group(
            [(objects.begin_write, ("b1", "vb/1", 60, store._now()), False)]
        )
        self.assertEqual(counted(), ordinary + 1)  # the INSERT
        self.assertIsNone(store._raw_get_object("vb", "missing"))
        self.assertEqual(counted(), ordinary + 2)
        self.assertIsNotNone(intent)


class PoolCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pool = BackendPool(
            [
                FakeBackend(BackendConfig(name="big", max_size=1000, weight=3)),
                FakeBackend(BackendConfig(name="open", enabled=False)),
            ]
        )
        self.pool.set_usage("big", 400, 4)
        self.pool.set_usage("open", 10, 1)
        self.strategy = "least-space"
        self.metrics = Metrics(clock=FakeClock())
        self.metrics.watch_pool(self.pool, lambda: self.strategy)

    def test_live_state_is_read_at_scrape_time(self) -> None:
        reservation = self.pool.place(
            type("First", (), {"choose": lambda self, ctx, c: c[0]})(),
            type("Ctx", (), {"size": 100})(),
        )
        self.assertIsNotNone(reservation)
        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_backend_up", backend="big"), 1.0)
        self.assertEqual(value(samples, "s3balance_backend_used_bytes", backend="big"), 400.0)
        self.assertEqual(value(samples, "s3balance_backend_objects", backend="open"), 1.0)
        self.assertEqual(value(samples, "s3balance_backend_capacity_bytes", backend="big"), 1000.0)
        self.assertIsNone(value(samples, "s3balance_backend_capacity_bytes", backend="open"))
        self.assertEqual(value(samples, "s3balance_backend_reserved_bytes", backend="big"), 100.0)
        self.assertEqual(value(samples, "s3balance_backend_enabled", backend="big"), 1.0)
        self.assertEqual(value(samples, "s3balance_backend_enabled", backend="open"), 0.0)
        self.assertEqual(value(samples, "s3balance_strategy_info", strategy="least-space"), 1.0)

        for _ in range(3):
            self.pool.health("big").record_failure("boom")
        self.pool.set_usage("big", 700, 7)
        self.strategy = "weighted"
        samples = scrape(self.metrics)
        self.assertEqual(value(samples, "s3balance_backend_up", backend="big"), 0.0)
        self.assertEqual(value(samples, "s3balance_backend_used_bytes", backend="big"), 700.0)
        self.assertEqual(value(samples, "s3balance_strategy_info", strategy="weighted"), 1.0)
        self.assertIsNone(value(samples, "s3balance_strategy_info", strategy="least-space"))

    def test_runtime_disabled_backend_is_reported_disabled(self) -> None:
        self.pool.disabled = {"big"}
        self.assertEqual(value(scrape(self.metrics), "s3balance_backend_enabled", backend="big"), 0.0)

    def test_watching_again_replaces_the_collector(self) -> None:
        self.metrics.watch_pool(self.pool, lambda: "round-robin")
        samples = scrape(self.metrics)
        self.assertEqual(len(samples["s3balance_strategy_info"]), 1)
        self.assertEqual(len(samples["s3balance_backend_up"]), 2)


class MetricsResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics(clock=FakeClock())
        token = self.metrics.request_started("GetObject")
        self.metrics.request_finished(token, "GetObject", 200, 0, 5)

    def test_open_without_token(self) -> None:
        status, headers, body = get(MetricsResource(self.metrics, ""))
        self.assertEqual(status, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4"))
        self.assertIn(b's3balance_requests_total{operation="GetObject",status="200"} 1.0', body)

    def test_openmetrics_when_asked_for(self) -> None:
        status, headers, body = get(
            MetricsResource(self.metrics, ""), {"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        self.assertEqual(status, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_token_required(self) -> None:
        resource = MetricsResource(self.metrics, "s3cr3t-metrics")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cr3t-metrics"}):
            status, response_headers, body = get(resource, headers)
            self.assertEqual(status, 401)
            self.assertNotIn(b"s3balance_requests_total", body)
            self.assertNotIn(b"s3cr3t-metrics", body)
            self.assertEqual(response_headers.getRawHeaders(b"content-type"), [b"application/json"])
        status, _, body = get(resource, {"Authorization": "Bearer s3cr3t-metrics"})
        self.assertEqual(status, 200)
        self.assertIn(b"s3balance_requests_total", body)

    def test_token_may_change_at_runtime(self) -> None:
        current = {"token": "one"}
        resource = MetricsResource(self.metrics, lambda: current["token"])
        self.assertEqual(get(resource, {"Authorization": "Bearer one"})[0], 200)
        current["token"] = "two"
        self.assertEqual(get(resource, {"Authorization": "Bearer one"})[0], 401)
        self.assertEqual(get(resource, {"Authorization": "Bearer two"})[0], 200)


class TrackRequestTests(SynchronousTestCase):
    def test_request_is_counted_when_it_finishes(self) -> None:
        metrics = Metrics(clock=FakeClock())
        request = DummyRequest([b""])
        request.requestHeaders.setRawHeaders(b"content-length", [b"42"])
        metrics.track_request(request, "Other")
        metrics.track_request(request, "PutObject")  # later, more precise: updates, no second count
        self.assertEqual(value(scrape(metrics), "s3balance_requests_in_flight"), 1.0)
        request.setResponseCode(201)
        request.write(b"abc")
        request.finish()
        samples = scrape(metrics)
        self.assertEqual(value(samples, "s3balance_requests_total", operation="PutObject", status="201"), 1.0)
        self.assertEqual(value(samples, "s3balance_received_bytes_total", operation="PutObject"), 42.0)
        self.assertEqual(value(samples, "s3balance_requests_in_flight"), 0.0)
