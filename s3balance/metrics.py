"""
Prometheus metrics of the daemon and the resource that serves them.

Everything is registered on a private L{CollectorRegistry} (never the
process-global one), so two services in one process (tests) do not collide
and a scrape shows only s3balance's own series.

Two kinds of series:

  - events the request path reports (L{Metrics.request_started} /
    L{Metrics.request_finished}, L{Metrics.backend_request},
    L{Metrics.placement}, L{Metrics.db_query}): counters and histograms;
  - state read at scrape time from the backend pool and the gateway
    (L{PoolCollector}): up, usage, capacity, reservations, enabled, strategy.

Label values never come from the client: an operation is one of the fixed
L{OPERATIONS} (anything else is C{"Other"}), a status is a three-digit HTTP
code, a backend is a configured real bucket name, a method is an HTTP verb we
send, a bucket is a virtual bucket the operator named (configured, or given a
quota: L{reported_buckets}; buckets clients create without a quota have no
series).  So the number of series stays bounded whatever clients send.

Over 500 lines: every series of the daemon is declared here, in one
registry, so names, labels and their limits are reviewed in one place.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from s3balance.s3.routing import ROUTES

if TYPE_CHECKING:
    from s3balance.backends.backend import Backend
    from s3balance.backends.pool import BackendPool
    from s3balance.store.interfaces import BucketUsage

__all__ = [
    "OPERATIONS",
    "BucketCollector",
    "Metrics",
    "MetricsResource",
    "PoolCollector",
    "bearer_token_matches",
    "reported_buckets",
]

log = Logger()

OPERATIONS = frozenset(ROUTES.values()) | {"ListObjectsV2", "CopyObject", "UploadPartCopy", "PreflightCORS", "Other"}

BACKEND_METHODS = frozenset({"GET", "PUT", "POST", "HEAD", "DELETE"})

# S3 requests range from a HEAD in a millisecond to a multi-GB PUT.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

Token = Union[str, Callable[[], str]]
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


def operation_label(operation: Optional[str]) -> str:
    return operation if operation in OPERATIONS else "Other"


def status_label(status: object) -> str:
    try:
        code = int(status)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "0"
    return str(code) if 100 <= code <= 599 else "0"


def method_label(method: object) -> str:
    text = method.decode("ascii", "replace") if isinstance(method, bytes) else str(method)
    text = text.upper()
    return text if text in BACKEND_METHODS else "OTHER"


class RequestToken:
    """What L{Metrics.request_started} hands out; finishing it twice counts once."""

    __slots__ = ("operation", "started", "finished")

    def __init__(self, operation: str, started: float) -> None:
        self.operation = operation
        self.started = started
        self.finished = False


class PoolCollector:
    """
    Live backend state, read at scrape time from a L{BackendPool}.

    @param strategy_name: returns the active strategy's name (it changes on reload).
    """

    def __init__(self, pool: BackendPool, strategy_name: Callable[[], str]) -> None:
        self.pool = pool
        self.strategy_name = strategy_name

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        pool = self.pool
        up = GaugeMetricFamily(
            "s3balance_backend_up", "1 when the backend passes its health checks.", labels=["backend"]
        )
        writable = GaugeMetricFamily(
            "s3balance_backend_writable",
            "0 when the backend is read-only after write errors (it still serves reads).",
            labels=["backend"],
        )
        used = GaugeMetricFamily(
            "s3balance_backend_used_bytes", "Bytes of objects stored on the backend.", labels=["backend"]
        )
        capacity = GaugeMetricFamily(
            "s3balance_backend_capacity_bytes",
            "Configured max_size of the backend (absent when unlimited).",
            labels=["backend"],
        )
        objects = GaugeMetricFamily(
            "s3balance_backend_objects", "Objects stored on the backend.", labels=["backend"]
        )
        reserved = GaugeMetricFamily(
            "s3balance_backend_reserved_bytes", "Bytes reserved by uploads in flight.", labels=["backend"]
        )
        enabled = GaugeMetricFamily(
            "s3balance_backend_enabled",
            "1 when the backend may receive new objects (config and runtime override).",
            labels=["backend"],
        )
        disabled = getattr(pool, "disabled", ())
        for name in pool.names():
            backend = pool.get(name)
            if backend is None:
                continue
            config = backend.config
            used_bytes, object_count = pool.usage(name)
            state = pool.health(name)
            up.add_metric([name], 1.0 if state.up else 0.0)
            writable.add_metric([name], 1.0 if state.writable else 0.0)
            used.add_metric([name], float(used_bytes))
            if config.max_size is not None:
                capacity.add_metric([name], float(config.max_size))
            objects.add_metric([name], float(object_count))
            reserved.add_metric([name], float(pool.reserved(name)))
            enabled.add_metric([name], 1.0 if config.enabled and name not in disabled else 0.0)
        strategy = InfoMetricFamily(
            "s3balance_strategy", "The active placement strategy.", labels=["strategy"]
        )
        strategy.add_metric([self.strategy_name()], {})
        return [up, writable, used, capacity, objects, reserved, enabled, strategy]


def reported_buckets(rows: Sequence[BucketUsage]) -> list[BucketUsage]:
    """
    The virtual buckets the metrics and /status show: the configured ones and
    those with a quota, all named by the operator.  Buckets that clients made
    with CreateBucket and that have no quota are left out (their names are the
    clients'; the admin API lists them).
    """
    return [row for row in rows if row.origin == "config" or row.quota.limited]


class BucketCollector:
    """
    Virtual buckets' usage and quotas, as last read from the store by the
    periodic usage refresh (C{rows()}, never a query at scrape time).
    """

    def __init__(self, rows: Callable[[], Sequence[BucketUsage]]) -> None:
        self.rows = rows

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        used = GaugeMetricFamily(
            "s3balance_bucket_bytes", "Bytes of the objects stored in the virtual bucket.", labels=["bucket"]
        )
        objects = GaugeMetricFamily(
            "s3balance_bucket_objects", "Objects stored in the virtual bucket.", labels=["bucket"]
        )
        quota_bytes = GaugeMetricFamily(
            "s3balance_bucket_quota_bytes",
            "The virtual bucket's quota in bytes (absent without one).",
            labels=["bucket"],
        )
        quota_objects = GaugeMetricFamily(
            "s3balance_bucket_quota_objects",
            "The virtual bucket's quota in objects (absent without one).",
            labels=["bucket"],
        )
        for row in reported_buckets(self.rows()):
            used.add_metric([row.bucket], float(row.used_bytes))
            objects.add_metric([row.bucket], float(row.object_count))
            if row.quota_bytes is not None:
                quota_bytes.add_metric([row.bucket], float(row.quota_bytes))
            if row.quota_objects is not None:
                quota_objects.add_metric([row.bucket], float(row.quota_objects))
        return [used, objects, quota_bytes, quota_objects]


class Metrics:
    """
    The daemon's metrics on their own registry.

    @param clock: a monotonic clock for durations (tests pass a fake).
    """

    def __init__(
        self, registry: Optional[CollectorRegistry] = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.requests = Counter(
            "s3balance_requests_total", "S3 requests answered.", ["operation", "status"], registry=r
        )
        self.request_duration = Histogram(
            "s3balance_request_duration_seconds",
            "Time from the request headers to the end of the answer.",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.received_bytes = Counter(
            "s3balance_received_bytes", "Request body bytes received from clients.", ["operation"], registry=r
        )
        self.sent_bytes = Counter(
            "s3balance_sent_bytes", "Response body bytes sent to clients.", ["operation"], registry=r
        )
        self.in_flight = Gauge("s3balance_requests_in_flight", "S3 requests being served.", registry=r)
        self.backend_duration = Histogram(
            "s3balance_backend_request_duration_seconds",
            "Requests s3balance sent to backends, until the response headers.",
            ["backend", "method"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "s3balance_backend_errors", "Backend requests that failed or got a 5xx.", ["backend"], registry=r
        )
        self.placements = Counter(
            "s3balance_placements",
            "New objects placed, by strategy and backend.",
            ["strategy", "backend"],
            registry=r,
        )
        self.db_duration = Histogram(
            "s3balance_db_query_duration_seconds",
            "Metadata database statements.",
            buckets=DB_BUCKETS,
            registry=r,
        )
        self.connections_refused = Counter(
            "s3balance_connections_refused",
            "Client connections refused at a connection cap (server.max_connections: total, "
            "server.max_connections_per_ip: per_ip).",
            ["limit"],
            registry=r,
        )
        self.client_timeouts = Counter(
            "s3balance_client_timeouts",
            "Client connections cut off by a timeout: headers (read_timeout), body (read_timeout), "
            "write (write_timeout).",
            ["phase"],
            registry=r,
        )
        self.read_failovers = Counter(
            "s3balance_get_failovers",
            "GETs that left a copy for another: before the body (an error or 404 from the copy's backend) "
            "or mid-body (the backend broke off; the rest came from another copy).",
            ["backend", "phase"],
            registry=r,
        )
        self.quota_rejections = Counter(
            "s3balance_quota_rejections",
            "Writes (PUT, part, copy, multipart upload) refused because the bucket's quota would be exceeded.",
            ["bucket"],
            registry=r,
        )
        self.audit_dropped = Counter(
            "s3balance_audit_lines_dropped",
            "Audit log lines dropped: the writer's queue was full (audit.queue_size) or a write failed.",
            registry=r,
        )
        self.throttled_requests = Counter(
            "s3balance_throttled_requests",
            "S3 requests answered 503 SlowDown by a rate limit: a credential's or a client address's "
            "requests per second or body bytes per second.",
            ["limit"],
            registry=r,
        )
        for label in ("credential_requests", "credential_bytes", "client_requests", "client_bytes"):
            self.throttled_requests.labels(label)
        for limit in ("total", "per_ip"):
            self.connections_refused.labels(limit)
        for phase in ("headers", "body", "write"):
            self.client_timeouts.labels(phase)
        self._pool_collector: Optional[PoolCollector] = None
        self._bucket_collector: Optional[BucketCollector] = None
        # Children by label values: prometheus_client's labels() validates and
        # locks on every call, four times per request.  Labels are bounded
        # (operations, statuses, backends), so is this.
        self._children: dict[tuple, Any] = {}

    def _child(self, metric: _Metric, *values: str) -> _Metric:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- live state -------------------------------------------------------------

    def watch_pool(self, pool: BackendPool, strategy_name: Callable[[], str]) -> None:
        """Report C{pool}'s backends and the strategy named by C{strategy_name()} at each scrape."""
        if self._pool_collector is not None:
            self.registry.unregister(self._pool_collector)
        self._pool_collector = PoolCollector(pool, strategy_name)
        self.registry.register(self._pool_collector)

    def watch_buckets(self, rows: Callable[[], Sequence[BucketUsage]]) -> None:
        """Report the virtual buckets' usage and quotas C{rows()} gives at each scrape."""
        if self._bucket_collector is not None:
            self.registry.unregister(self._bucket_collector)
        self._bucket_collector = BucketCollector(rows)
        self.registry.register(self._bucket_collector)

    def read_failover(self, backend: str, phase: str) -> None:
        """A GET left C{backend}'s copy for another one (C{phase}: before_body or mid_body)."""
        self.read_failovers.labels(backend, phase).inc()

    def quota_rejection(self, bucket: str) -> None:
        """A write refused by C{bucket}'s quota (a bucket with a quota: named by the operator)."""
        self._child(self.quota_rejections, bucket).inc()

    # -- client requests ----------------------------------------------------------

    def request_started(self, operation: Optional[str]) -> RequestToken:
        self.in_flight.inc()
        return RequestToken(operation_label(operation), self.clock())

    def request_finished(
        self, token: RequestToken, operation: Optional[str], status: object, bytes_in: int, bytes_out: int
    ) -> None:
        if token.finished:
            return
        token.finished = True
        self.in_flight.dec()
        label = operation_label(operation) if operation is not None else token.operation
        child = self._child
        child(self.requests, label, status_label(status)).inc()
        child(self.request_duration, label).observe(max(0.0, self.clock() - token.started))
        if bytes_in > 0:
            child(self.received_bytes, label).inc(bytes_in)
        if bytes_out > 0:
            child(self.sent_bytes, label).inc(bytes_out)

    def track_request(self, request: Any, operation: Optional[str]) -> None:
        """
        Count a twisted.web request from now until it finishes (or its client
        leaves).  Calling it again for the same request only updates the
        operation, so it can be called as early as the operation is known and
        again, as a fallback, when the request is handled.
        """
        token = getattr(request, "_s3balance_metrics", None)
        if token is not None:
            if operation is not None and token.operation == "Other":
                token.operation = operation_label(operation)
            return
        token = self.request_started(operation)
        request._s3balance_metrics = token

        def finished(_: object) -> None:
            self.request_finished(
                token, None, _status(request), _content_length(request), getattr(request, "sentLength", 0)
            )

        request.notifyFinish().addBoth(finished)

    def throttled(self, limit: str) -> None:
        """A request refused by a rate limit (C{limit}: one of s3balance.s3.ratelimit.LIMIT_LABELS)."""
        self._child(self.throttled_requests, limit).inc()

    def audit_lines_dropped(self, count: int = 1) -> None:
        """Audit log lines that will never be written."""
        self.audit_dropped.inc(count)

    # -- client connections -------------------------------------------------------

    def connection_refused(self, limit: str) -> None:
        """A connection closed at once: C{limit} is C{"total"} or C{"per_ip"}."""
        self._child(self.connections_refused, limit).inc()

    def client_timeout(self, phase: str) -> None:
        """A connection cut off: C{phase} is C{"headers"}, C{"body"} or C{"write"}."""
        self._child(self.client_timeouts, phase).inc()

    # -- backends -------------------------------------------------------------

    def backend_request(self, backend: str, method: str, outcome: str, seconds: float) -> None:
        self._child(self.backend_duration, backend, method_label(method)).observe(max(0.0, seconds))
        if outcome != "ok":
            self._child(self.backend_errors, backend).inc()

    def observe_backend(self, backend: Backend, method: str, result: Any, elapsed: float) -> None:
        """A L{Backend.observers} callback: a Failure or a 5xx answer is an error."""
        failed = hasattr(result, "check") or getattr(result, "code", 200) >= 500
        self.backend_request(backend.name, method, "error" if failed else "ok", elapsed)

    def watch_backend(self, backend: Backend) -> None:
        """Observe C{backend}'s requests (once, however often it is called)."""
        if self.observe_backend not in backend.observers:
            backend.observers.append(self.observe_backend)

    def forget_backend(self, name: str) -> None:
        """Drop the series of a backend removed by a reload."""
        self._children.clear()
        for metric, position in ((self.backend_duration, 0), (self.backend_errors, 0), (self.placements, 1)):
            for labels in _label_sets(metric):
                if labels[position] == name:
                    metric.remove(*labels)

    def placement(self, strategy: str, backend: str) -> None:
        self._child(self.placements, strategy, backend).inc()

    # -- database -------------------------------------------------------------

    def db_query(self, seconds: float) -> None:
        self.db_duration.observe(max(0.0, seconds))

    def watch_store(self, store: Any) -> None:
        """Time every statement the metadata store runs (on its threads)."""
        store.watch_statements(self.db_query)

    # -- exposition -------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for an C{Accept} header: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _label_sets(metric: MetricWrapperBase) -> list[Sequence[str]]:
    # prometheus-client keeps its children by label tuple; there is no public accessor.
    with metric._lock:
        return list(metric._metrics)


def _status(request: Request) -> object:
    # twisted.web.server.Request has .code; its test double has .responseCode.
    return getattr(request, "code", None) or getattr(request, "responseCode", None) or 200


def _content_length(request: Request) -> int:
    values = request.requestHeaders.getRawHeaders(b"content-length")
    try:
        return max(0, int(values[0])) if values else 0
    except ValueError:
        return 0


def bearer_token_matches(request: Request, token: Token) -> bool:
    """True when C{request} carries C{Authorization: Bearer <token>}; an empty token never matches."""
    expected = token() if callable(token) else token
    if not expected:
        return False
    header = request.getHeader(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), expected.encode("utf-8"))


class MetricsResource(Resource):
    """
    C{GET <metrics.path>}: the Prometheus text format.

    @param token: a string or a callable returning one (so a reload can change
        it); when empty, the metrics are open to anyone who reaches the port.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics, token: Token = "") -> None:
        super().__init__()
        self.metrics = metrics
        self.token = token

    def refuse_before_body(self, request: Request) -> Optional[bytes]:
        """
        The 401 answer (code and headers set on C{request}) for a request
        without the token, or None: checked on the headers alone, so a
        refused request's body is never read.
        """
        token = self.token() if callable(self.token) else self.token
        if not token or bearer_token_matches(request, token):
            return None
        request.setResponseCode(401)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"www-authenticate", b'Bearer realm="s3balance metrics"')
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": "unauthorized", "message": "a valid bearer token is required"}).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        refusal = self.refuse_before_body(request)
        if refusal is not None:
            return refusal
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        body, content_type = self.metrics.render(accept)
        request.setHeader(b"content-type", content_type.encode("latin-1"))
        return body

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)
