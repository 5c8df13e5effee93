"""
Nothing half-written: a PUT that fails — bad digest, client gone, short
body, backend error — leaves no row, no backend object, and the previous
version of the key intact.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import urllib.parse

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import (
    Daemon,
    backend_entry,
    base_config,
    database_counts,
    poll,
    shared_gateway,
    sign,
)
from tests.harness import free_port, harness_dir, shared_moto, shared_seaweedfs, unique_bucket_name


def raw_put(endpoint: str, path: str, declared: int, body: bytes, headers: dict | None = None, close: bool = True) -> bytes:
    """Send a signed PUT with Content-Length `declared` but only `body`, then close or read the answer."""
    url = endpoint + path
    signed = sign("PUT", url, dict(headers or {}, **{"Content-Length": str(declared)}))
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    for name, value in signed.items():
        if name.lower() != "host":
            head += f"{name}: {value}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    answer = b""
    if close:
        time.sleep(0.2)
        sock.close()
        return answer
    sock.settimeout(10)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except TimeoutError:
        pass
    sock.close()
    return answer


class FailedPutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)

    def assertNothingLeft(self) -> None:
        daemon = self.gateway.daemon
        poll(
            lambda: database_counts(daemon, self.bucket) == {"objects": 0, "write_intents": 0, "deletion_queue": 0},
            message=f"rows left: {database_counts(daemon, self.bucket)}",
        )
        poll(
            lambda: not any(self.gateway.backend_keys(f"{self.bucket}/").values()),
            message=f"backend objects left: {self.gateway.backend_keys(self.bucket + '/')}",
        )

    def test_bad_content_md5_is_bad_digest_and_stores_nothing(self) -> None:
        wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
        with self.assertRaises(ClientError) as raised:
            self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"x" * 100000, ContentMD5=wrong)
        self.assertEqual(raised.exception.response["Error"]["Code"], "BadDigest")
        with self.assertRaises(ClientError):
            self.s3.head_object(Bucket=self.bucket, Key="k")
        self.assertNothingLeft()

    def test_failed_overwrite_keeps_previous_version(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"version one")
        wrong = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
        with self.assertRaises(ClientError):
            self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"version two", ContentMD5=wrong)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"version one")
        poll(lambda: sum(len(v) for v in self.gateway.backend_keys(f"{self.bucket}/").values()) == 1)

    def test_client_gone_mid_upload_stores_nothing(self) -> None:
        raw_put(self.gateway.daemon.endpoint, f"/{self.bucket}/gone", 10 * 1024 * 1024, b"y" * (1024 * 1024))
        self.assertNothingLeft()
        # The daemon still serves.
        self.s3.put_object(Bucket=self.bucket, Key="after", Body=b"fine")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="after")["Body"].read(), b"fine")

    def test_wrong_sha256_is_rejected_and_stores_nothing(self) -> None:
        body = b"z" * 5000
        claimed = hashlib.sha256(b"other").hexdigest()
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/sha"
        signed = sign("PUT", url, {"Content-Length": str(len(body))}, payload=claimed)
        import urllib.request

        request = urllib.request.Request(url, data=body, method="PUT", headers=signed)
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request)
        self.assertEqual(raised.exception.code, 400)
        self.assertIn(b"XAmzContentSHA256Mismatch", raised.exception.read())
        self.assertNothingLeft()


class BackendErrorTests(SynchronousTestCase):
    def start_daemon(self, backend: dict) -> Daemon:
        workdir = harness_dir() / unique_bucket_name("ghost")
        workdir.mkdir(parents=True)
        daemon = Daemon(base_config([backend], ["vb-ghost"], workdir), name="ghost").start()
        self.addCleanup(daemon.stop)
        return daemon

    def test_backend_refusing_the_object_stores_nothing(self) -> None:
        # moto answers NoSuchBucket for a real bucket that was never created.
        daemon = self.start_daemon(backend_entry(shared_moto(), unique_bucket_name("missing")))
        self.assertPutFails(daemon)

    def test_unreachable_backend_stores_nothing(self) -> None:
        entry = backend_entry(shared_seaweedfs(), "unreachable")
        entry["endpoint"] = f"http://127.0.0.1:{free_port()}"
        self.assertPutFails(self.start_daemon(entry))

    def assertPutFails(self, daemon: Daemon) -> None:
        s3 = daemon.client()
        with self.assertRaises(ClientError) as raised:
            s3.put_object(Bucket="vb-ghost", Key="k", Body=b"data" * 1000)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        poll(lambda: database_counts(daemon, "vb-ghost") == {"objects": 0, "write_intents": 0, "deletion_queue": 0})
        self.assertNotIn("Traceback", daemon.log())
