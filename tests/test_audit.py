"""
The audit log (s3balance.s3.audit, s3balance.daemon.audit_file): the line's
fields for requests served in-process (a GatewayService on a
MemoryReactorClock, connections on StringTransports), what never appears in
it (signatures, credentials, secrets, tokens), and the writer: its queue,
dropped lines, reopening after a rotation.  The daemon test at the end reads
a running daemon's file back.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ConfigError, parse_config
from s3balance.daemon.audit_file import AuditFile
from s3balance.metrics import Metrics
from s3balance.s3.audit import MAX_USER_AGENT, AuditTrail, audit_record, format_line, iso_time
from tests.fakestore import MemoryStore
from tests.signing import sign_request
from tests.test_connection_limits import ServerFixture, status_of
from tests.test_reload import API_TOKEN, CLIENT_SECRET, config_dict

WALL = 1_796_369_107.123  # 2026-12-04T07:25:07.123Z


def presigned_url(url: str, access_key: str = "client", secret: str = CLIENT_SECRET) -> str:
    request = botocore.awsrequest.AWSRequest(method="GET", url=url)
    credentials = botocore.credentials.Credentials(access_key, secret)
    botocore.auth.S3SigV4QueryAuth(credentials, "s3", "us-east-1", expires=300).add_auth(request)
    return request.url


class AuditedServer:
    """A ServerFixture whose gateway audits into a list, on a controlled clock."""

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.fixture = ServerFixture(testcase)
        # Objects are looked up in memory (a GET of a missing key is 404 NoSuchKey).
        store = MemoryStore(clock=self.fixture.reactor)
        store.start()
        store.sync_config_buckets(["vbucket"])
        self.fixture.service.gateway.store = store
        self.lines: list[bytes] = []
        self.clock = Clock()
        self.fixture.service.gateway.audit = AuditTrail(self.lines.append, self.clock.seconds, lambda: WALL)

    def send(self, head: str, body: bytes = b"", peer: str = "192.0.2.10") -> tuple[Any, Any]:
        protocol, transport = self.fixture.connect(peer)
        protocol.dataReceived(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        return protocol, transport

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


class AuditLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = AuditedServer(self)

    def test_time_is_iso_8601_utc_with_milliseconds(self) -> None:
        self.assertEqual(iso_time(WALL), "2026-12-04T07:25:07.123Z")
        self.assertEqual(iso_time(0.0), "1970-01-01T00:00:00.000Z")

    def test_a_line_is_one_json_object_ending_in_a_newline(self) -> None:
        line = format_line({"key": "a\nb\u00e9", "n": 1})
        self.assertTrue(line.endswith(b"\n"))
        self.assertEqual(line.count(b"\n"), 1, "a newline in a key is escaped")
        self.assertEqual(json.loads(line), {"key": "a\nb\u00e9", "n": 1})

    def test_presigned_get_line_has_its_fields_and_no_signature(self) -> None:
        url = presigned_url("http://x/vbucket/some/key.txt")
        path_and_query = url[len("http://x") :]
        _, transport = self.server.send(f"GET {path_and_query} HTTP/1.1\nHost: x\nUser-Agent: boto3/1.0 test\n")
        [record] = self.server.records()
        self.assertEqual(record["time"], "2026-12-04T07:25:07.123Z")
        self.assertEqual(record["key_id"], "client")
        self.assertEqual(record["account"], "000000000000")
        self.assertEqual(record["operation"], "GetObject")
        self.assertEqual(record["method"], "GET")
        self.assertEqual(record["bucket"], "vbucket")
        self.assertEqual(record["key"], "some/key.txt")
        self.assertEqual(record["status"], status_of(transport))
        self.assertEqual(record["client"], "192.0.2.10")
        self.assertEqual(record["user_agent"], "boto3/1.0 test")
        self.assertEqual(record["bytes_in"], 0)
        self.assertIsInstance(record["duration_ms"], float)
        self.assertIn(record["request_id"].encode(), transport.value())
        line = self.server.lines[0]
        signature = url.split("X-Amz-Signature=", 1)[1].split("&", 1)[0]
        for secret in (signature, CLIENT_SECRET, "X-Amz-Signature", "X-Amz-Credential", "Credential", "aws4_request"):
            self.assertNotIn(secret.encode(), line)
        self.assertEqual(
            sorted(record),
            sorted(
                [
                    "time", "request_id", "key_id", "account", "operation", "method", "bucket", "key", "status",
                    "error_code", "complete", "bytes_in", "bytes_out", "duration_ms", "client", "user_agent",
                ]
            ),
        )

    def test_header_signed_request_line_has_no_authorization(self) -> None:
        signed = sign_request("GET", "http://x/vbucket/small", access_key="client", secret_key=CLIENT_SECRET)
        headers = "".join(f"{name}: {value}\n" for name, value in signed.headers.items())
        _, transport = self.server.send(f"GET /vbucket/small HTTP/1.1\nHost: x\n{headers}")
        [record] = self.server.records()
        self.assertEqual(record["key_id"], "client")
        self.assertEqual(record["operation"], "GetObject")
        self.assertEqual((status_of(transport), record["status"], record["error_code"]), (404, 404, "NoSuchKey"))
        line = self.server.lines[0]
        for secret in (signed.signature, CLIENT_SECRET, "AWS4-HMAC-SHA256", "Signature"):
            self.assertNotIn(secret.encode(), line)

    def test_failed_authentication_is_logged_without_a_key_id(self) -> None:
        url = presigned_url("http://x/vbucket/k", secret="not-the-secret")
        _, transport = self.server.send(f"GET {url[len('http://x'):]} HTTP/1.1\nHost: x\n")
        [record] = self.server.records()
        self.assertEqual(status_of(transport), 403)
        self.assertEqual(record["status"], 403)
        self.assertEqual(record["error_code"], "SignatureDoesNotMatch")
        self.assertIsNone(record["key_id"], "an unverified key id is not the caller's")
        self.assertIsNone(record["account"])
        self.assertEqual(record["operation"], "GetObject")
        self.assertEqual((record["bucket"], record["key"]), ("vbucket", "k"))
        self.assertTrue(record["complete"])
        self.assertNotIn(url.split("X-Amz-Signature=", 1)[1].encode(), self.server.lines[0])

    def test_admin_request_is_logged_without_its_token(self) -> None:
        self.server.send(f"GET /admin/backends?x=1 HTTP/1.1\nHost: x\nAuthorization: Bearer {API_TOKEN}\n")
        [record] = self.server.records()
        self.assertEqual(record["operation"], "Admin")
        self.assertEqual(record["path"], "/admin/backends")
        self.assertIsNone(record["key_id"])
        self.assertNotIn(API_TOKEN.encode(), self.server.lines[0])

    def test_health_and_metrics_are_not_logged(self) -> None:
        self.server.send("GET /health HTTP/1.1\nHost: x\n")
        self.server.send("GET /metrics HTTP/1.1\nHost: x\n")
        self.assertEqual(self.server.lines, [])

    def test_user_agent_is_cut(self) -> None:
        self.server.send(f"GET /vbucket/k HTTP/1.1\nHost: x\nUser-Agent: {'a' * 1000}\n")
        [record] = self.server.records()
        self.assertEqual(len(record["user_agent"]), MAX_USER_AGENT)

    def test_client_gone_before_the_answer_is_499_and_incomplete(self) -> None:
        signed = sign_request("PUT", "http://x/vbucket/big", {"content-length": "100"}, access_key="client",
                              secret_key=CLIENT_SECRET)
        headers = "".join(f"{name}: {value}\n" for name, value in signed.headers.items())
        protocol, _ = self.server.send(f"PUT /vbucket/big HTTP/1.1\nHost: x\n{headers}", b"0123456789")
        self.server.clock.advance(2.5)
        protocol.connectionLost(Failure(ConnectionDone()))
        [record] = self.server.records()
        self.assertEqual(record["status"], 499)
        self.assertFalse(record["complete"])
        self.assertEqual(record["bytes_in"], 10)
        self.assertEqual(record["duration_ms"], 2500.0)


class FakeRequest:
    """What audit_record reads of a request: a response cut after its head."""

    request_id = "ABC"
    own_resource = None
    call = None
    operation = "GetObject"
    target = None
    method = b"GET"
    code = 200
    startedWriting = True
    error_code = None
    bytes_received = 0
    sentLength = 4096
    uri = b"/b/k"

    class requestHeaders:  # noqa: N801 - the attribute's name
        @staticmethod
        def getRawHeaders(name: bytes) -> None:
            return None


class AuditRecordTests(SynchronousTestCase):
    def test_answer_cut_after_its_head_keeps_its_status_and_is_incomplete(self) -> None:
        record = audit_record(FakeRequest(), WALL, 0.25, "198.51.100.7", complete=False)
        assert record is not None
        self.assertEqual(record["status"], 200)
        self.assertFalse(record["complete"])
        self.assertEqual(record["bytes_out"], 4096)
        self.assertEqual(record["client"], "198.51.100.7")
        self.assertEqual(record["duration_ms"], 250.0)


class StubReactor(Clock):
    """A Clock whose callFromThread runs the call at the next run_pending (on the test's thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[Callable, tuple]] = []

    def callFromThread(self, f: Callable, *args: Any) -> None:  # noqa: N802 - Twisted's name
        self.pending.append((f, args))

    def run_pending(self) -> None:
        pending, self.pending = self.pending, []
        for f, args in pending:
            f(*args)


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class AuditFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)
        self.path = self.directory / "audit.log"
        self.reactor = StubReactor()
        self.metrics = Metrics()

    def make(self, queue_size: int = 100) -> AuditFile:
        writer = AuditFile(str(self.path), queue_size, self.reactor, self.metrics)
        self.addCleanup(self.stop, writer)
        return writer

    def stop(self, writer: AuditFile) -> None:
        if writer.running:
            done: list = []
            writer.stopService().addBoth(done.append)
            wait_for(lambda: self.reactor.run_pending() or done)

    def test_lines_are_appended_one_by_one(self) -> None:
        self.path.write_bytes(b"earlier\n")
        writer = self.make()
        writer.startService()
        writer.write(b'{"a":1}\n')
        writer.write(b'{"a":2}\n')
        wait_for(lambda: self.path.read_bytes().count(b"\n") == 3)
        self.assertEqual(self.path.read_bytes(), b'earlier\n{"a":1}\n{"a":2}\n')

    def test_a_full_queue_drops_and_counts_never_blocks(self) -> None:
        writer = self.make(queue_size=2)
        # The writer thread is not started: the queue fills up.
        for index in range(5):
            writer.write(b"%d\n" % index)
        self.assertEqual(writer.dropped, 3)
        sample = self.metrics.registry.get_sample_value("s3balance_audit_lines_dropped_total")
        self.assertEqual(sample, 3.0)
        logged = self.flushLoggedErrors()
        self.assertEqual(logged, [])
        writer.startService()
        wait_for(lambda: self.path.read_bytes() == b"0\n1\n")

    def test_reopen_after_a_rename_starts_a_new_file(self) -> None:
        writer = self.make()
        writer.startService()
        writer.write(b"first\n")
        wait_for(lambda: self.path.exists() and self.path.read_bytes() == b"first\n")
        rotated = self.directory / "audit.log.1"
        os.rename(self.path, rotated)
        writer.write(b"second\n")  # still the renamed file: not reopened yet
        wait_for(lambda: rotated.read_bytes() == b"first\nsecond\n")
        writer.reopen()
        writer.write(b"third\n")
        wait_for(lambda: self.path.exists() and self.path.read_bytes() == b"third\n")
        self.assertEqual(rotated.read_bytes(), b"first\nsecond\n")

    def test_a_path_that_cannot_be_opened_names_the_key(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            AuditFile(str(self.directory / "missing" / "audit.log"), 10, self.reactor)
        self.assertIn("audit.path", str(raised.exception))

    def test_stop_writes_what_is_queued(self) -> None:
        writer = self.make(queue_size=1000)
        for index in range(200):
            writer.write(b"%d\n" % index)
        writer.startService()
        self.stop(writer)
        self.assertEqual(self.path.read_bytes().count(b"\n"), 200)


class AuditConfigTests(SynchronousTestCase):
    def config(self, audit: object) -> Any:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        data = config_dict(directory)
        data["audit"] = audit
        return parse_config(data)

    def test_off_by_default(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        self.assertFalse(parse_config(config_dict(directory)).audit.enabled)

    def test_stdout(self) -> None:
        audit = self.config({"path": "-"}).audit
        self.assertEqual((audit.path, audit.enabled, audit.queue_size), ("-", True, 10000))

    def test_errors_name_the_key(self) -> None:
        for value, key in (
            ({"path": "/nonexistent-dir-s3b/audit.log"}, "audit.path"),
            ({"path": "-", "queue_size": 0}, "audit.queue_size"),
            ({"path": "-", "rotate": True}, "audit.rotate"),
            ("yes", "audit"),
        ):
            with self.assertRaises(ConfigError) as raised:
                self.config(value)
            self.assertTrue(str(raised.exception).startswith(key + ":"), str(raised.exception))


class AuditDaemonTests(SynchronousTestCase):
    """A real daemon writes its audit file; SIGHUP after a rename starts a new one."""

    def test_daemon_writes_lines_and_reopens_on_sighup(self) -> None:
        from tests.daemon import ACCESS_KEY, poll, start_gateway
        from tests.harness import harness_dir

        folder = Path(harness_dir()) / f"audit-{time.monotonic_ns()}"
        folder.mkdir(parents=True)
        path = folder / "audit.log"
        gateway = start_gateway("audit", audit={"path": str(path)})
        self.addCleanup(gateway.daemon.stop)
        client = gateway.client()
        bucket = gateway.new_bucket(client, "audit")
        client.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello audit")
        self.assertEqual(client.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read(), b"hello audit")
        with self.assertRaises(ClientError):
            client.get_object(Bucket=bucket, Key="missing")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/hello.txt"})
        signature = url.split("X-Amz-Signature=", 1)[1].split("&", 1)[0]
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as response:
            self.assertEqual(response.read(), b"hello audit")

        def records(at: Path) -> list[dict]:
            if not at.exists():
                return []
            return [json.loads(line) for line in at.read_text().splitlines()]

        def by_operation() -> dict[str, list[dict]]:
            found: dict[str, list[dict]] = {}
            for record in records(path):
                if record["bucket"] == bucket:
                    found.setdefault(record["operation"], []).append(record)
            return found

        seen = poll(lambda: (lambda ops: ops if len(ops.get("GetObject", [])) == 3 else None)(by_operation()),
                    message="the audit lines did not arrive")
        [create] = seen["CreateBucket"]
        [put] = seen["PutObject"]
        self.assertEqual((create["status"], create["key_id"]), (200, ACCESS_KEY))
        self.assertEqual((put["key"], put["status"], put["bytes_in"] >= 11), ("dir/hello.txt", 200, True))
        [missing] = [r for r in seen["GetObject"] if r["key"] == "missing"]
        # In the order they were made (a line's time is when its headers arrived).
        ok, presigned = sorted((r for r in seen["GetObject"] if r["key"] != "missing"), key=lambda r: r["time"])
        self.assertEqual((ok["status"], ok["bytes_out"]), (200, 11))
        self.assertEqual((missing["status"], missing["error_code"]), (404, "NoSuchKey"))
        self.assertEqual((presigned["status"], presigned["key_id"]), (200, ACCESS_KEY))
        self.assertEqual(presigned["client"], "127.0.0.1")
        self.assertNotIn(signature, path.read_text())

        rotated = folder / "audit.log.1"
        os.rename(path, rotated)
        os.kill(gateway.daemon.process.pid, signal.SIGHUP)
        poll(lambda: "configuration reloaded" in gateway.daemon.log(), message="no reload")
        client.head_object(Bucket=bucket, Key="dir/hello.txt")
        poll(lambda: any(r["operation"] == "HeadObject" for r in records(path)), message="no new file after SIGHUP")
        self.assertFalse(any(r["operation"] == "HeadObject" for r in records(rotated)))
