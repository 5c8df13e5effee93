"""
What a client without credentials can make the daemon hold: the connection
caps (C{server.max_connections}, C{server.max_connections_per_ip}), our own
paths (C{/health}, C{/metrics}, C{/status}, C{/admin/}) refused or capped at
their headers, and S3 requests authenticated before any body is kept.

The logic runs on L{ServerFixture} (a GatewayService built in-process, its
site on a L{MemoryReactorClock}, connections on L{StringTransport}s); the
memory and cap checks run against a real daemon.
"""

from __future__ import annotations

import json
import os
import socket
import time

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ServerConfig
from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import harness_dir, shared_seaweedfs, unique_bucket_name
from tests.test_reload import API_TOKEN, METRICS_TOKEN, ServiceFixture

MIB = 1024 * 1024


class ServerFixture:
    """
    A GatewayService (tests.test_reload.ServiceFixture: admin API and metrics
    with tokens) whose site has the given server settings, on the fixture's
    MemoryReactorClock.
    """

    def __init__(self, testcase: SynchronousTestCase, **server) -> None:
        from s3balance.daemon.service import make_site

        self.base = ServiceFixture(testcase)
        self.reactor = self.base.reactor
        self.service = self.base.service
        settings = {"read_timeout": 10.0, "write_timeout": 20.0, "idle_timeout": 60.0}
        settings.update(server)
        self.server = ServerConfig(**settings)
        self.site = make_site(self.service.root, self.service.gateway, self.server, self.reactor)

    def connect(self, host: str = "192.0.2.10", port: int = 40000, transport_class=None):
        """(protocol, transport) of a new client connection from host."""
        address = IPv4Address("TCP", host, port)
        protocol = self.site.buildProtocol(address)
        transport = (transport_class or ClientTransport)(peerAddress=address, lenient=True)
        protocol.makeConnection(transport)
        return protocol, transport

    def sample(self, name: str, **labels: str) -> float:
        value = self.service.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


class ClientTransport(StringTransport):
    """A StringTransport that, as TCP's, lets a producer be unregistered twice."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class HalfClosingTransport(ClientTransport):
    """With TCP's half-close."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def close(protocol) -> None:
    protocol.connectionLost(Failure(ConnectionDone()))


def status_of(transport) -> int:
    head = transport.value().split(b"\r\n", 1)[0]
    return int(head.split()[1])


def body_of(transport) -> bytes:
    return transport.value().split(b"\r\n\r\n", 1)[1]


class ConnectionCapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ServerFixture(self, max_connections=4, max_connections_per_ip=2)

    def assertRefused(self, transport) -> None:
        self.assertEqual(status_of(transport), 503)
        self.assertIn(b"<Code>SlowDown</Code>", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_connections_over_the_per_ip_cap_get_slowdown_and_are_closed(self) -> None:
        for _ in range(2):
            _, transport = self.fixture.connect("192.0.2.1")
            self.assertFalse(transport.disconnecting)
        _, refused = self.fixture.connect("192.0.2.1")
        self.assertRefused(refused)
        _, other = self.fixture.connect("192.0.2.2")
        self.assertFalse(other.disconnecting, "another address has its own allowance")
        self.assertEqual(self.fixture.sample("s3balance_connections_refused_total", limit="per_ip"), 1.0)

    def test_connections_over_the_total_cap_are_refused(self) -> None:
        for index in range(4):
            _, transport = self.fixture.connect(f"192.0.2.{index + 1}")
            self.assertFalse(transport.disconnecting)
        _, refused = self.fixture.connect("192.0.2.99")
        self.assertRefused(refused)
        self.assertEqual(self.fixture.sample("s3balance_connections_refused_total", limit="total"), 1.0)

    def test_a_closed_connection_frees_its_place(self) -> None:
        first, _ = self.fixture.connect("192.0.2.1")
        self.fixture.connect("192.0.2.1")
        close(first)
        _, transport = self.fixture.connect("192.0.2.1")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.fixture.site.connections_by_ip, {"192.0.2.1": 2})
        self.assertEqual(self.fixture.site.open_connections, 2)

    def test_counts_return_to_zero(self) -> None:
        protocols = [self.fixture.connect(f"192.0.2.{n % 3}")[0] for n in range(4)]
        for protocol in protocols:
            close(protocol)
            close(protocol)  # twice: counted once
        self.assertEqual((self.fixture.site.open_connections, self.fixture.site.connections_by_ip), (0, {}))

    def test_defaults_cap_connections(self) -> None:
        server = ServerConfig()
        self.assertEqual((server.max_connections, server.max_connections_per_ip), (4096, 1024))


class OwnPathBodyTests(SynchronousTestCase):
    """Our own paths answer before reading a body they would refuse or that is too large."""

    def setUp(self) -> None:
        self.fixture = ServerFixture(self)
        self.protocol, self.transport = self.fixture.connect()

    def send(self, head: str, body: bytes = b"") -> None:
        self.protocol.dataReceived(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)

    def request(self):
        return self.protocol.requests[-1]

    def assertAnsweredEarly(self, status: int, error: str) -> None:
        self.assertEqual(status_of(self.transport), status)
        self.assertEqual(json.loads(body_of(self.transport))["error"], error)
        self.assertIn(b"Connection: close", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.request().content, "the body would have been kept")

    def test_admin_request_without_token_is_refused_at_the_headers(self) -> None:
        self.send(f"POST /admin/reload HTTP/1.1\nHost: x\nContent-Length: {100 * MIB}\n")
        self.assertAnsweredEarly(401, "unauthorized")
        self.assertIn(b"WWW-Authenticate: Bearer", self.transport.value())

    def test_admin_request_with_a_wrong_token_is_refused_at_the_headers(self) -> None:
        self.send("PUT /admin/strategy HTTP/1.1\nHost: x\nAuthorization: Bearer nope\nContent-Length: 30\n")
        self.assertAnsweredEarly(401, "unauthorized")

    def test_admin_refusal_does_not_send_100_continue(self) -> None:
        self.send("PUT /admin/strategy HTTP/1.1\nHost: x\nExpect: 100-continue\nContent-Length: 30\n")
        self.assertEqual(status_of(self.transport), 401)
        self.assertNotIn(b"100 Continue", self.transport.value())

    def test_admin_body_over_64_kib_is_refused_at_the_headers(self) -> None:
        self.send(
            f"PUT /admin/strategy HTTP/1.1\nHost: x\nAuthorization: Bearer {API_TOKEN}\nContent-Length: {64 * 1024 + 1}\n"
        )
        self.assertAnsweredEarly(413, "too_large")

    def test_admin_chunked_body_over_64_kib_is_refused_when_it_gets_there(self) -> None:
        self.send(
            f"PUT /admin/strategy HTTP/1.1\nHost: x\nAuthorization: Bearer {API_TOKEN}\nTransfer-Encoding: chunked\n"
        )
        self.assertEqual(self.transport.value(), b"")
        chunk = b"x" * 40000
        for _ in range(2):
            self.protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertAnsweredEarly(413, "too_large")

    def test_admin_json_body_is_served(self) -> None:
        body = json.dumps({"strategy": "weighted"}).encode()
        self.send(
            f"PUT /admin/strategy HTTP/1.1\nHost: x\nAuthorization: Bearer {API_TOKEN}\nContent-Length: {len(body)}\n",
            body,
        )
        self.assertEqual(status_of(self.transport), 200)
        self.assertEqual(json.loads(body_of(self.transport))["strategy"], "weighted")
        self.assertFalse(self.transport.disconnecting)

    def test_health_body_over_4_kib_is_refused_at_the_headers(self) -> None:
        self.send(f"GET /health HTTP/1.1\nHost: x\nContent-Length: {4 * 1024 + 1}\n")
        self.assertAnsweredEarly(413, "too_large")

    def test_health_with_a_small_body_is_served(self) -> None:
        self.send("GET /health HTTP/1.1\nHost: x\nContent-Length: 5\n", b"hello")
        self.assertIn(status_of(self.transport), (200, 503))
        self.assertIn(b'"status"', self.transport.value())

    def test_status_body_over_4_kib_is_refused(self) -> None:
        self.send(f"POST /status HTTP/1.1\nHost: x\nContent-Length: {MIB}\n")
        self.assertAnsweredEarly(413, "too_large")

    def test_metrics_without_token_is_refused_at_the_headers(self) -> None:
        self.send("GET /metrics HTTP/1.1\nHost: x\nContent-Length: 1000\n")
        self.assertAnsweredEarly(401, "unauthorized")

    def test_metrics_with_token_and_small_body_is_served(self) -> None:
        self.send(f"GET /metrics HTTP/1.1\nHost: x\nAuthorization: Bearer {METRICS_TOKEN}\nContent-Length: 2\n", b"{}")
        self.assertEqual(status_of(self.transport), 200)
        self.assertIn(b"s3balance_connections_refused_total", self.transport.value())

    def test_metrics_without_body_and_token_is_refused_as_before(self) -> None:
        self.send("GET /metrics HTTP/1.1\nHost: x\n")
        self.assertEqual(status_of(self.transport), 401)
        self.assertFalse(self.transport.disconnecting)

    def test_head_answer_has_no_body(self) -> None:
        self.send("HEAD /admin/backends HTTP/1.1\nHost: x\nContent-Length: 10\n")
        self.assertEqual(status_of(self.transport), 401)
        self.assertEqual(body_of(self.transport), b"")

    def test_an_early_answer_half_closes_reads_and_drops_the_rest_then_aborts(self) -> None:
        from s3balance.http.channel import LINGER

        protocol, transport = self.fixture.connect(transport_class=HalfClosingTransport)
        protocol.dataReceived(f"POST /admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {MIB}\r\n\r\n".encode())
        self.assertEqual(status_of(transport), 401)
        # The answer goes out and the write side is shut; the connection stays
        # readable so the client's body in flight does not reset it.
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"x" * (256 * 1024))
        self.assertIsNone(protocol.requests[-1].content)
        self.fixture.reactor.advance(LINGER)
        self.assertTrue(transport.disconnected, "a lingering connection was not aborted")

    def test_anonymous_s3_request_keeps_no_body(self) -> None:
        self.send("POST /vbucket?delete HTTP/1.1\nHost: x\nContent-Length: 3000000\n")
        request = self.request()
        self.assertEqual(request.early_error.code, "AccessDenied")
        self.assertIsNone(request.content)
        self.protocol.dataReceived(b"x" * 1000000)
        self.assertIsNone(request.content)


def _send_for_a_while(sock: socket.socket, data: bytes, seconds: float) -> None:
    """Send what the peer takes of data within seconds (it may stop reading, or close)."""
    view = memoryview(data)
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    try:
        while view and time.monotonic() < deadline:
            try:
                sent = sock.send(view[: 256 * 1024])
            except TimeoutError:
                continue
            view = view[sent:]
    except OSError:
        pass  # closed by the daemon
    finally:
        sock.settimeout(10)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RealDaemonTests(SynchronousTestCase):
    """Anonymous connections against a real daemon (over a real SeaweedFS)."""

    def start_daemon(self, **server) -> Daemon:
        seaweed = shared_seaweedfs()
        real = unique_bucket_name("real")
        seaweed.create_bucket(real)
        workdir = harness_dir() / unique_bucket_name("limits")
        workdir.mkdir(parents=True)
        config = base_config(
            [backend_entry(seaweed, real)],
            ["vb-limits"],
            workdir,
            server=server,
            api={"enabled": True, "token": "limits-admin-token"},
            metrics={"enabled": True, "path": "/metrics", "token": "limits-metrics-token"},
        )
        daemon = Daemon(config, name="limits").start()
        self.addCleanup(daemon.stop)
        return daemon

    def test_anonymous_connections_leave_rss_flat(self) -> None:
        """
        200 anonymous connections held open together, each announcing a
        4 MiB body (the most the daemon used to keep in memory per request)
        to one of our paths or an S3 path, every other one sending all of it
        but the last byte: the daemon's RSS stays within 40 MiB of where it
        started while they are open (it grew by 4 MiB per connection when
        those bodies were kept) and within 20 MiB once they closed.
        """
        daemon = self.start_daemon()
        pid = daemon.process.pid
        # Warm up: the first requests of each kind allocate caches.
        self._anonymous_round(daemon.port, 14)
        before = _rss_kib(pid)
        peak = self._anonymous_round(daemon.port, 200, pid)
        after = poll(
            lambda: (lambda rss: rss if rss - before < 20 * 1024 else None)(_rss_kib(pid)),
            timeout=10,
            message=f"RSS stayed up: {before} KiB before, {_rss_kib(pid)} KiB after",
        )
        print(f"\nRSS before {before} KiB, peak with 200 connections open {peak} KiB, after {after} KiB")
        self.assertLess(peak - before, 40 * 1024, f"RSS rose from {before} to {peak} KiB while connected")

    def _anonymous_round(self, port: int, count: int, pid: int | None = None) -> int:
        """Open count connections, send their requests, hold them; -> the peak RSS seen (KiB)."""
        paths = ["/health", "/metrics", "/admin/reload", "/status", "/vb-limits/key", "/vb-limits?delete", "/nosuch"]
        methods = ["POST", "GET", "PUT"]
        declared = 4 * MIB
        body = os.urandom(declared - 1)
        sockets = []
        peak = 0
        try:
            for index in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sockets.append(sock)
                path = paths[index % len(paths)]
                method = methods[index % len(methods)]
                head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n"
                sock.sendall(head.encode())
                if index % 2 == 0:
                    _send_for_a_while(sock, body, 2.0)
                if pid is not None:
                    peak = max(peak, _rss_kib(pid))
            if pid is not None:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    peak = max(peak, _rss_kib(pid))
                    time.sleep(0.1)
        finally:
            for sock in sockets:
                sock.close()
        return peak
    def test_connections_over_the_per_ip_cap_are_answered_slowdown(self) -> None:
        daemon = self.start_daemon(max_connections_per_ip=5)
        held: list[socket.socket] = []
        self.addCleanup(lambda: [sock.close() for sock in held])

        def served() -> socket.socket:
            # The harness's own /health polls may still count against the cap
            # until the daemon has seen them close: retry a refused one.
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                status = sock.recv(100).split(b"\r\n")[0]
                if status != b"HTTP/1.1 503 Slow Down":
                    # The accepted ones are served.
                    self.assertIn(status, (b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable"))
                    return sock
                sock.close()
                time.sleep(0.1)
            self.fail("five connections were never accepted")

        held.extend(served() for _ in range(5))
        extra = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.addCleanup(extra.close)
        answer = b""
        while chunk := extra.recv(4096):
            answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 Slow Down\r\n"), answer)
        self.assertIn(b"<Code>SlowDown</Code>", answer)
        held.pop().close()

        def accepted() -> bool:
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                return b"Slow Down" not in sock.recv(100)
            finally:
                sock.close()

        poll(accepted, timeout=10, message="a closed connection did not free its place")
        held[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer limits-metrics-token\r\n\r\n")
        text = b""
        while b'limit="per_ip"' not in text:
            text += held[0].recv(65536)
        line = [row for row in text.split(b"\n") if row.startswith(b's3balance_connections_refused_total{limit="per_ip"}')]
        self.assertEqual(float(line[0].split()[-1]), 1.0)
