"""
Health and capacity through a running daemon: a backend that dies is marked
down by the health checks, gets no new objects and answers its objects' reads
with 503 until it is back; a backend whose writes fail becomes read-only;
full backends get no new objects.
"""

from __future__ import annotations

import http.client
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import SeaweedFS, harness_dir, shared_seaweedfs, unique_bucket_name


def _daemon(backends: list[dict], name: str, **sections) -> Daemon:
    workdir = harness_dir() / unique_bucket_name(name)
    workdir.mkdir(parents=True)
    daemon = Daemon(base_config(backends, ["vb-main"], workdir, **sections), name=name).start()
    return daemon


class BackendOutageTests(SynchronousTestCase):
    def test_dead_backend_is_marked_down_skipped_and_comes_back(self) -> None:
        mortal = SeaweedFS(name="mortal")
        mortal.start()
        self.addCleanup(mortal.close)
        mortal.create_bucket("real-mortal")
        steady = shared_seaweedfs()
        steady_bucket = unique_bucket_name("real")
        steady.create_bucket(steady_bucket)
        daemon = _daemon(
            [backend_entry(mortal, "real-mortal"), backend_entry(steady, steady_bucket)],
            "outage",
            balancer={"unhealthy_threshold": 2, "healthy_threshold": 1, "health_check_period": "0.5s",
                      "health_timeout": "1s"},
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"before/{index}", Body=b"x")
        on_mortal = mortal.client().list_objects_v2(Bucket="real-mortal").get("KeyCount", 0)
        self.assertEqual(on_mortal, 2)

        mortal.kill()
        poll(lambda: not daemon.health()["backends"]["real-mortal"]["up"], timeout=15,
             message="the dead backend was not marked down")
        self.assertEqual(daemon.health()["status"], "degraded")
        # New objects all go to the live backend.
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"during/{index}", Body=b"y")
        self.assertEqual(steady.client().list_objects_v2(Bucket=steady_bucket)["KeyCount"], 6)
        # Objects on the dead backend fail fast with 503; the others read fine.
        failures = 0
        for index in range(4):
            try:
                s3.get_object(Bucket="vb-main", Key=f"before/{index}")["Body"].read()
            except ClientError as error:
                self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 503)
                failures += 1
        self.assertEqual(failures, 2)

        mortal.restart()
        poll(lambda: daemon.health()["backends"]["real-mortal"]["up"], timeout=20,
             message="the backend did not come back up")
        for index in range(4):
            self.assertEqual(s3.get_object(Bucket="vb-main", Key=f"before/{index}")["Body"].read(), b"x")
        self.assertNotIn("Traceback", daemon.log())


class WriteFaultShim:
    """
    An HTTP proxy in front of a backend that, while C{fail_writes} is set,
    answers every PUT and POST with 500 "No writable volumes" (a SeaweedFS
    whose disk is full) and passes everything else through.  The Host header
    goes through unchanged, so the daemon's signatures stay valid.
    """

    ERROR = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<Error><Code>InternalError</Code><Message>No writable volumes</Message></Error>"
    )

    def __init__(self, target: str) -> None:
        self.fail_writes = False
        self.refused: list[str] = []
        parts = urlsplit(target)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if shim.fail_writes and self.command in ("PUT", "POST"):
                    shim.refused.append(f"{self.command} {self.path}")
                    self.answer(500, [("Content-Type", "application/xml")], shim.ERROR)
                    return
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        upstream.putheader(name, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    headers = response.getheaders()
                finally:
                    upstream.close()
                self.answer(response.status, headers, data)

            def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response_only(status)
                for name, value in headers:
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                if self.command == "HEAD":
                    length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ReadOnlyBackendTests(SynchronousTestCase):
    def test_backend_failing_writes_keeps_serving_reads_and_takes_writes_after_probe(self) -> None:
        server = shared_seaweedfs()
        full, steady = unique_bucket_name("full"), unique_bucket_name("steady")
        server.create_bucket(full)
        server.create_bucket(steady)
        shim = WriteFaultShim(server.endpoint)
        self.addCleanup(shim.close)
        behind_shim = types.SimpleNamespace(
            endpoint=shim.endpoint, access_key=server.access_key, secret_key=server.secret_key
        )
        daemon = _daemon(
            [backend_entry(behind_shim, full), backend_entry(server, steady)],
            "readonly",
            balancer={"unhealthy_threshold": 2, "healthy_threshold": 2, "health_check_period": "0.5s",
                      "health_timeout": "2s"},
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        direct = server.client()

        def count(bucket: str) -> int:
            return direct.list_objects_v2(Bucket=bucket).get("KeyCount", 0)

        def backend_health() -> dict:
            return daemon.health()["backends"][full]

        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"before/{index}", Body=b"x%d" % index)
        self.assertEqual(count(full), 2)

        shim.fail_writes = True
        for index in range(10):
            try:
                s3.put_object(Bucket="vb-main", Key=f"during/{index}", Body=b"y")
            except ClientError as error:
                # (The client's retry usually lands on the other backend.)
                self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 503)
            if not backend_health()["writable"]:
                break
        uploads_refused = [line for line in shim.refused if "/vb-main/" in line]
        self.assertEqual(len(uploads_refused), 2, shim.refused)
        health = backend_health()
        self.assertEqual((health["up"], health["writable"]), (True, False))
        self.assertIn("500", health["last_write_error"])
        self.assertEqual(daemon.health()["status"], "degraded")

        # Reads of its objects go on; new objects all go to the other backend,
        # and the write probe (refused as well) keeps it read-only.
        for index in range(4):
            self.assertEqual(s3.get_object(Bucket="vb-main", Key=f"before/{index}")["Body"].read(), b"x%d" % index)
        before_steady = count(steady)
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"after/{index}", Body=b"z")
        self.assertEqual(count(steady), before_steady + 4)
        self.assertEqual(count(full), 2)
        poll(lambda: any(".s3balance-health/probe" in line for line in shim.refused), timeout=10,
             message="no write probe reached the read-only backend")
        time.sleep(1.5)
        self.assertFalse(backend_health()["writable"])

        shim.fail_writes = False
        poll(lambda: backend_health()["writable"], timeout=15, message="the backend did not take writes again")
        for index in range(4):
            s3.put_object(Bucket="vb-main", Key=f"again/{index}", Body=b"w")
        # The probe cleaned up after itself (poll: a probe may be in flight).
        poll(lambda: count(full) == 4, timeout=10, message=f"{count(full)} objects on {full}, not 4")
        self.assertEqual(direct.list_objects_v2(Bucket=full, Prefix=".s3balance-health/").get("KeyCount", 0), 0)
        log = daemon.log()
        self.assertIn("is read-only after write errors", log)
        self.assertIn("takes writes again", log)
        self.assertNotIn("marked down", log)
        self.assertNotIn("Traceback", log)


class CapacityTests(SynchronousTestCase):
    def test_full_backends_get_no_new_objects(self) -> None:
        server = shared_seaweedfs()
        small, large = unique_bucket_name("small"), unique_bucket_name("large")
        server.create_bucket(small)
        server.create_bucket(large)
        daemon = _daemon(
            [backend_entry(server, small, max_size="1MB"), backend_entry(server, large, max_size="3MB")],
            "capacity",
            balancer={"strategy": "least-space"},
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        s3.put_object(Bucket="vb-main", Key="a", Body=b"a" * (1024 * 1024))  # only 'large' has room
        self.assertEqual(server.client().list_objects_v2(Bucket=large)["KeyCount"], 1)
        s3.put_object(Bucket="vb-main", Key="b", Body=b"b" * (1024 * 1024))
        s3.put_object(Bucket="vb-main", Key="c", Body=b"c" * (900 * 1024))
        with self.assertRaises(ClientError) as raised:
            s3.put_object(Bucket="vb-main", Key="d", Body=b"d" * (1024 * 1024 + 1))
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 507)
        with self.assertRaises(ClientError):
            s3.head_object(Bucket="vb-main", Key="d")
        # Deleting frees room again.
        s3.delete_object(Bucket="vb-main", Key="a")
        s3.put_object(Bucket="vb-main", Key="d", Body=b"d" * (1024 * 1024 + 1))
        self.assertEqual(s3.get_object(Bucket="vb-main", Key="d")["Body"].read(), b"d" * (1024 * 1024 + 1))


class OperationLimitTests(SynchronousTestCase):
    def test_backend_over_its_monthly_limits_stops_taking_those_operations(self) -> None:
        server = shared_seaweedfs()
        limited, free = unique_bucket_name("limited"), unique_bucket_name("free")
        server.create_bucket(limited)
        server.create_bucket(free)
        daemon = _daemon(
            [
                backend_entry(server, limited, operation_limits={"type_a": 2, "type_b": 2}),
                backend_entry(server, free),
            ],
            "limits",
        )
        self.addCleanup(daemon.stop)
        s3 = daemon.client()
        for index in range(6):
            s3.put_object(Bucket="vb-main", Key=f"k{index}", Body=b"z")
        on_limited = [o["Key"] for o in server.client().list_objects_v2(Bucket=limited).get("Contents", [])]
        self.assertEqual(len(on_limited), 2, "class A limit not honoured")
        # HEAD is answered from the store: it costs the backend nothing.
        for index in range(6):
            s3.head_object(Bucket="vb-main", Key=f"k{index}")
        statuses = []
        for _ in range(2):
            for index in range(6):
                try:
                    s3.get_object(Bucket="vb-main", Key=f"k{index}")["Body"].read()
                    statuses.append(200)
                except ClientError as error:
                    statuses.append(error.response["ResponseMetadata"]["HTTPStatusCode"])
        # Two GETs reach the limited backend, the next two are refused.
        self.assertEqual(statuses.count(503), 2, statuses)
