"""
The server's timeouts (S3Channel): C{server.read_timeout} for a request's
headers (from their first byte) and for a body that stalls (400
RequestTimeout), C{server.write_timeout} for an answer the client does not
take.  The logic on a controlled clock (L{tests.test_connection_limits.ServerFixture});
each behaviour once more against a real daemon with short timeouts.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, backend_entry, base_config, database_counts, poll, sign
from tests.faultproxy import FaultProxy
from tests.gateways import Lazy, lazy_gateway
from tests.harness import harness_dir, shared_seaweedfs, unique_bucket_name
from tests.test_connection_limits import ServerFixture, close, status_of
from tests.test_reload import API_TOKEN

READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 20.0
MIB = 1024 * 1024


class ReadTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ServerFixture(self, read_timeout=READ_TIMEOUT, write_timeout=WRITE_TIMEOUT)
        self.clock = self.fixture.reactor
        self.protocol, self.transport = self.fixture.connect()

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def timeouts(self, phase: str) -> float:
        return self.fixture.sample("s3balance_client_timeouts_total", phase=phase)

    def test_slowloris_headers_are_cut_at_read_timeout_from_their_first_byte(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\n")
        for _ in range(9):
            self.clock.advance(1)
            self.send(b"X")  # one header byte a second: never idle, never done
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected, "the connection was not aborted")
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.timeouts("headers"), 1.0)

    def test_headers_that_arrive_in_time_are_served(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\n")
        self.clock.advance(READ_TIMEOUT - 1)
        self.send(b"Host: x\r\n\r\n")
        self.assertIn(status_of(self.transport), (200, 503))
        self.clock.advance(READ_TIMEOUT)
        self.assertFalse(self.transport.disconnecting)

    def test_headers_in_one_read_need_no_timer(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(self.protocol._read_call)

    def test_a_keepalive_connection_between_requests_has_idle_timeout_not_read_timeout(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(READ_TIMEOUT * 3)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(60)
        self.assertTrue(self.transport.disconnecting, "idle_timeout closes an idle connection")

    def test_the_next_request_on_a_connection_gets_its_own_read_timeout(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(30)
        self.send(b"GET /health HTTP/1.1\r\n")
        self.clock.advance(READ_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected)

    def start_body(self, length: int = 100, expect: bool = False) -> None:
        self.send(
            f"PUT /admin/strategy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n"
            f"Content-Length: {length}\r\n{'Expect: 100-continue' + chr(13) + chr(10) if expect else ''}\r\n".encode()
        )

    def assertRequestTimeout(self) -> None:
        answer = self.transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
        self.assertIn(b"<Code>RequestTimeout</Code>", answer)
        self.assertIn(b"not read from or written to within the timeout period", answer)
        self.assertIn(b"Connection: close", answer)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.timeouts("body"), 1.0)

    def test_a_body_that_stalls_is_answered_request_timeout(self) -> None:
        self.start_body()
        self.send(b'{"strategy": ')
        self.clock.advance(READ_TIMEOUT - 1)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assertRequestTimeout()

    def test_a_body_that_keeps_moving_is_never_cut(self) -> None:
        self.start_body(length=200)
        for _ in range(150):  # 150 bytes over 15 read_timeouts
            self.clock.advance(READ_TIMEOUT - 1)
            self.send(b" ")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_time_we_hold_the_body_back_does_not_count(self) -> None:
        self.start_body()
        self.transport.pauseProducing()  # as an upload waiting on its backend does
        self.clock.advance(READ_TIMEOUT * 5)
        self.assertFalse(self.transport.disconnecting)
        self.transport.resumeProducing()
        self.clock.advance(READ_TIMEOUT * 2)
        self.assertRequestTimeout()

    def test_a_client_waiting_for_our_100_continue_is_not_stalled(self) -> None:
        self.start_body()
        request = self.protocol.requests[-1]
        # What gotLength does for an upload: our own 100 Continue, later.
        request.expects_continue = True
        request.requestHeaders.removeHeader(b"expect")
        self.clock.advance(READ_TIMEOUT * 5)
        self.assertFalse(self.transport.disconnecting)
        request.send_continue()
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.transport.clear()
        self.clock.advance(READ_TIMEOUT * 2)
        self.assertRequestTimeout()

    def test_a_client_that_got_the_channels_100_continue_must_send(self) -> None:
        self.start_body(expect=True)
        self.assertIn(b"100 Continue", self.transport.value())
        self.transport.clear()
        self.clock.advance(READ_TIMEOUT)
        self.assertRequestTimeout()

    def test_timers_stop_with_the_connection(self) -> None:
        self.send(b"GET /health HTTP/1.1\r\n")
        close(self.protocol)
        self.assertIsNone(self.protocol._read_call)
        self.clock.advance(READ_TIMEOUT * 2)
        self.assertFalse(self.transport.disconnected)


class WriteTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ServerFixture(self, read_timeout=READ_TIMEOUT, write_timeout=WRITE_TIMEOUT)
        self.clock = self.fixture.reactor
        self.protocol, self.transport = self.fixture.connect()
        self.protocol.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        # As while an answer is being sent: the channel's idle timeout is off.
        self.protocol.setTimeout(None)

    def test_an_answer_the_client_does_not_take_is_cut_at_write_timeout(self) -> None:
        self.protocol.pauseProducing()  # what the transport does when its buffer is full
        self.clock.advance(WRITE_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected, "the connection was not aborted")
        self.assertEqual(self.fixture.sample("s3balance_client_timeouts_total", phase="write"), 1.0)

    def test_an_answer_that_keeps_draining_is_never_cut(self) -> None:
        for _ in range(10):
            self.protocol.pauseProducing()
            self.clock.advance(WRITE_TIMEOUT - 1)
            self.protocol.resumeProducing()
        self.clock.advance(WRITE_TIMEOUT * 3)
        self.assertFalse(self.transport.disconnected)

    def test_each_pause_gets_the_whole_write_timeout(self) -> None:
        self.protocol.pauseProducing()
        self.clock.advance(WRITE_TIMEOUT - 1)
        self.protocol.resumeProducing()
        self.protocol.pauseProducing()
        self.clock.advance(WRITE_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected)


# -- real daemon ------------------------------------------------------------------


def start_daemon(testcase: SynchronousTestCase, endpoint: str | None = None, **sections) -> Daemon:
    daemon = Daemon(daemon_config(endpoint, **sections), name="timeouts").start()
    testcase.addCleanup(daemon.stop)
    return daemon


def daemon_config(endpoint: str | None = None, **sections) -> dict:
    """A daemon over one real bucket of the shared SeaweedFS (or C{endpoint}), with short client timeouts."""
    seaweed = shared_seaweedfs()
    real = unique_bucket_name("real")
    seaweed.create_bucket(real)
    entry = backend_entry(seaweed, real)
    if endpoint is not None:
        entry["endpoint"] = endpoint
    workdir = harness_dir() / unique_bucket_name("timeouts")
    workdir.mkdir(parents=True)
    server = {"read_timeout": "2s", "write_timeout": "2s"}
    server.update(sections.pop("server", {}))
    return base_config([entry], ["vb-timeouts"], workdir, server=server, **sections)


def closed_by_peer(
    sock: socket.socket, timeout: float, enough: Callable[[bytes], bool] = lambda received: False
) -> tuple[bool, bytes]:
    """
    Read until the peer closes (True), C{enough} of what came, or timeout
    passes (False); -> (closed, what came).
    """
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not enough(received):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


# The daemon of the tests that need no other setting than the short timeouts
# (each test its own connections; one daemon per module's run).
plain_daemon = Lazy(lambda: Daemon(daemon_config(), name="timeouts").start(), stop=Daemon.stop)


def whole_answer(received: bytes) -> bool:
    """Whether C{received} holds one whole answer: its headers and C{Content-Length} bytes."""
    head, blank, body = received.partition(b"\r\n\r\n")
    if not blank:
        return False
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")[1:]
               if line.split(b":", 1)[0].strip().lower() == b"content-length"]
    return bool(lengths) and len(body) >= int(lengths[0])


class RealDaemonTests(SynchronousTestCase):
    def test_slowloris_client_is_closed_after_read_timeout(self) -> None:
        daemon = plain_daemon()
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.addCleanup(sock.close)
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        # One header byte every half second (idle_timeout would never fire).
        while time.monotonic() - started < 15 and not closed:
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            closed, _ = closed_by_peer(sock, 0.5)
        elapsed = time.monotonic() - started
        self.assertTrue(closed, "the daemon kept a slowloris connection open for 15s")
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 8)

    def test_a_stalled_upload_body_is_answered_request_timeout_and_leaves_nothing(self) -> None:
        daemon = plain_daemon()
        # The same request with its whole body is stored (so the stalled one
        # below is an upload under way, not a request refused at its headers).
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(signed_put_head(daemon, "/vb-timeouts/whole", 1000) + b"x" * 1000)
        self.assertTrue(sock.recv(100).startswith(b"HTTP/1.1 200 OK\r\n"))
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(signed_put_head(daemon, "/vb-timeouts/stalled", MIB) + os.urandom(64 * 1024))
        started = time.monotonic()
        closed, answer = closed_by_peer(sock, 15)
        elapsed = time.monotonic() - started
        self.assertTrue(closed, f"no answer within 15s; got {answer[:200]!r}")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:300])
        self.assertIn(b"<Code>RequestTimeout</Code>", answer)
        self.assertLess(elapsed, 8)
        client = daemon.client()
        self.assertEqual([item["Key"] for item in client.list_objects_v2(Bucket="vb-timeouts")["Contents"]], ["whole"])
        poll(
            lambda: database_counts(daemon, "vb-timeouts") == {"objects": 1, "write_intents": 0, "deletion_queue": 0},
            timeout=15,
            message="the stalled upload left rows behind",
        )

    def test_an_upload_held_back_by_a_slow_backend_is_not_a_client_timeout(self) -> None:
        """The backend stalls longer than read_timeout: the answer is the backend's failure, not RequestTimeout."""
        proxy = FaultProxy("127.0.0.1", shared_seaweedfs().port).start()
        self.addCleanup(proxy.close)
        daemon = start_daemon(
            self, endpoint=f"http://{proxy.address}", balancer={"backend_timeout": "6s", "retry_attempts": 1}
        )
        size = 32 * MIB
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(signed_put_head(daemon, "/vb-timeouts/held", size))
        block = os.urandom(MIB)
        sock.sendall(block)
        proxy.stall()
        self.addCleanup(proxy.resume)
        sender = threading.Thread(target=_send_quietly, args=(sock, block, size // MIB - 1), daemon=True)
        sender.start()
        stalled = time.monotonic()
        # The answer, not the end of the connection: the daemon may read the
        # rest of the body and keep the connection for the next request.
        _, answer = closed_by_peer(sock, 30, whole_answer)
        self.assertNotIn(b"RequestTimeout", answer)
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 "), answer[:300])
        self.assertGreater(time.monotonic() - stalled, 4, "answered before backend_timeout")

    def test_a_download_the_client_never_reads_is_cut_and_its_backend_connection_closed(self) -> None:
        proxy = FaultProxy("127.0.0.1", shared_seaweedfs().port).start()
        self.addCleanup(proxy.close)
        # No health probes: every backend connection is the test's.
        daemon = start_daemon(self, endpoint=f"http://{proxy.address}", balancer={"health_check_period": "1h"})
        size = 64 * MIB
        data = os.urandom(MIB) * (size // MIB)
        client = daemon.client()
        client.put_object(Bucket="vb-timeouts", Key="big", Body=data)
        url = f"{daemon.endpoint}/vb-timeouts/big"
        headers = sign("GET", url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect(("127.0.0.1", daemon.port))
        self.addCleanup(sock.close)
        path = urllib.parse.urlsplit(url).path
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        moved = proxy.downstream_bytes
        started = time.monotonic()
        sock.sendall(head.encode())
        # The download flows (and then stops: nobody reads it) over a backend connection.
        poll(lambda: proxy.downstream_bytes - moved > 2 * MIB, timeout=10, message="the download did not start")
        during = proxy.open_connections
        poll(
            lambda: proxy.open_connections < during,
            timeout=20,
            message="the daemon kept the backend connection of a download nobody reads",
        )
        self.assertLess(time.monotonic() - started, 15)
        closed, received = closed_by_peer(sock, 10)
        self.assertTrue(closed, "the client connection stayed open")
        self.assertLess(len(received), size)
        # The daemon still serves the object whole.
        body = client.get_object(Bucket="vb-timeouts", Key="big")["Body"].read()
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(data).digest())


tls_gateway = lazy_gateway("timeouts-tls", ["vb-tls"], tls=True, server={"read_timeout": "2s", "write_timeout": "2s"})


class TLSRealDaemonTests(SynchronousTestCase):
    """The same timeouts when the daemon serves https (the channel sits on a TLS layer)."""

    def setUp(self) -> None:
        self.gateway = tls_gateway()
        self.daemon = self.gateway.daemon

    def connect(self, receive_buffer: int = 0):
        from tests.gateways import insecure_context

        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", self.daemon.port))
        tls = insecure_context().wrap_socket(sock, server_hostname="127.0.0.1")
        self.addCleanup(tls.close)
        return tls

    def test_a_stalled_upload_body_is_answered_request_timeout(self) -> None:
        sock = self.connect()
        sock.sendall(signed_put_head(self.daemon, "/vb-tls/stalled", MIB) + os.urandom(64 * 1024))
        started = time.monotonic()
        closed, answer = closed_by_peer(sock, 15)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:300])
        self.assertIn(b"<Code>RequestTimeout</Code>", answer)
        self.assertLess(time.monotonic() - started, 8)

    def test_a_download_the_client_never_reads_is_cut(self) -> None:
        from tests.gateways import s3_client

        size = 64 * MIB
        client = s3_client(self.gateway.endpoint, verify=False)
        client.put_object(Bucket="vb-tls", Key="big", Body=os.urandom(MIB) * (size // MIB))
        sock = self.connect(receive_buffer=16 * 1024)
        url = f"{self.daemon.endpoint}/vb-tls/big"
        head = ["GET /vb-tls/big HTTP/1.1", f"Host: 127.0.0.1:{self.daemon.port}"]
        head += [f"{name}: {value}" for name, value in sign("GET", url).items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        started = time.monotonic()
        # Not reading: the daemon must give up on its own.  Then whatever
        # was in flight comes, and the end of the connection.
        poll(lambda: _daemon_dropped(self.daemon.port, sock), timeout=20, message="the download was never cut")
        self.assertLess(time.monotonic() - started, 15)
        closed, received = closed_by_peer(sock, 10)
        self.assertTrue(closed)
        self.assertLess(len(received), size)


def _daemon_dropped(port: int, sock) -> bool:
    """Whether the daemon's side of sock's connection is gone (seen in /proc/net/tcp)."""
    local = sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            here, there, state = fields[1], fields[2], fields[3]
            if int(here.split(":")[1], 16) == port and int(there.split(":")[1], 16) == local:
                return state not in ("01",)  # 01 = ESTABLISHED
    return True


def signed_put_head(daemon: Daemon, path: str, length: int) -> bytes:
    """The request line and headers of a signed PUT of length bytes (body not signed)."""
    headers = sign("PUT", daemon.endpoint + path, {"Content-Length": str(length)})
    lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{daemon.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_quietly(sock: socket.socket, block: bytes, count: int) -> None:
    try:
        for _ in range(count):
            sock.sendall(block)
    except OSError:
        pass
