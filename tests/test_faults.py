"""
Faults with real processes: a backend killed (SeaweedFS.kill()) or stalled
(tests.faultproxy between the daemon and SeaweedFS) in the middle of a PUT, a
GET, an UploadPart and a CompleteMultipartUpload; the database cut during a
PUT (PostgreSQL through the proxy); a client leaving mid-download.

After each fault:

  - no object reads with wrong bytes (a GET fails or returns exactly the
    bytes of a version that was written);
  - no object row without its backend object; no write intent, queued
    deletion or open multipart upload left once the cleaner ran
    (balancer.cleanup_period: 1s);
  - the daemon answered with an S3 error or a cut connection within a bounded
    time, and still serves a fresh PUT and GET.

A stalled backend is cut off after balancer.backend_timeout of silence (the
daemon has no whole-transfer limit by design): these tests set it to 2s and
expect the client's answer within STALL_BOUND seconds.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
import urllib.parse
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, PatternStream, backend_entry, base_config, database_counts, poll, sign
from tests.faultproxy import FaultProxy
from tests.gateways import Lazy
from tests.harness import SeaweedFS, harness_dir, shared_seaweedfs, unique_bucket_name

MIB = 1024**2
VB = "vb-fault"
BACKEND_TIMEOUT = 2.0
STALL_BOUND = 15.0  # seconds a client may wait for an answer once the backend stalled
KILL_BOUND = 15.0
# CompleteMultipartUpload may legitimately take long (S3 answers it with keepalive
# whitespace); the daemon gives it 10 x backend_timeout.
COMPLETE_BOUND = 10 * BACKEND_TIMEOUT + 8.0


def pattern(size: int, seed: int) -> bytes:
    return b"".join(PatternStream(size, seed=seed, block=256 * 1024))


class SlowUpload:
    """A signed PUT sent in a thread, `chunk` bytes every `pause` seconds."""

    def __init__(self, daemon: Daemon, path: str, data: bytes, chunk: int = 256 * 1024, pause: float = 0.05) -> None:
        self.daemon = daemon
        self.path = path
        self.data = data
        self.chunk = chunk
        self.pause = pause
        self.sent = 0
        self.started = threading.Event()
        self.result: dict = {}
        self.finished_at: Optional[float] = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlowUpload:
        self.thread.start()
        return self

    def _body(self):
        for offset in range(0, len(self.data), self.chunk):
            piece = self.data[offset : offset + self.chunk]
            self.sent += len(piece)
            self.started.set()
            yield piece
            time.sleep(self.pause)

    def _run(self) -> None:
        url = self.daemon.endpoint + self.path
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            target = parts.path + ("?" + parts.query if parts.query else "")
            conn.request("PUT", target, body=self._body(), headers=sign("PUT", url, {"Content-Length": str(len(self.data))}))
            response = conn.getresponse()
            self.result["status"] = response.status
            self.result["body"] = response.read()
            self.result["etag"] = response.getheader("ETag")
        except Exception as error:
            self.result["error"] = error
        finally:
            self.finished_at = time.monotonic()
            conn.close()

    def wait(self, timeout: float) -> dict:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the upload of {self.path} got no answer within {timeout}s (sent {self.sent} bytes)")
        return self.result


def signed_request(daemon: Daemon, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None,
                   timeout: float = 30) -> tuple[int, dict, bytes]:
    url = daemon.endpoint + path
    parts = urllib.parse.urlsplit(url)
    all_headers = dict(headers or {}, **{"Content-Length": str(len(body))})
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=body,
                     headers=sign(method, url, all_headers))
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


class SlowDownload:
    """A signed GET read in a thread, `chunk` bytes every `pause` seconds."""

    def __init__(self, daemon: Daemon, path: str, chunk: int = 256 * 1024, pause: float = 0.05) -> None:
        self.daemon, self.path, self.chunk, self.pause = daemon, path, chunk, pause
        self.received = bytearray()
        self.started = threading.Event()
        self.result: dict = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlowDownload:
        self.thread.start()
        return self

    def _run(self) -> None:
        url = self.daemon.endpoint + self.path
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.request("GET", parts.path, headers=sign("GET", url))
            response = conn.getresponse()
            self.result["status"] = response.status
            self.result["length"] = int(response.getheader("Content-Length") or -1)
            while True:
                piece = response.read(self.chunk)
                if not piece:
                    break
                self.received += piece
                self.started.set()
                time.sleep(self.pause)
            self.result["complete"] = len(self.received) == self.result["length"]
        except Exception as error:
            self.result["error"] = error
        finally:
            conn.close()

    def wait(self, timeout: float) -> dict:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the download of {self.path} did not end within {timeout}s "
                                 f"(received {len(self.received)} bytes)")
        return self.result


class FaultTestMixin:
    """A daemon over one backend (a real bucket on `server`, maybe through a proxy)."""

    server: SeaweedFS
    daemon: Daemon
    real: str

    def start_daemon(self, server: SeaweedFS, proxy: Optional[FaultProxy] = None, **sections) -> Daemon:
        self.server = server
        self.real = unique_bucket_name("real")
        server.create_bucket(self.real)
        entry = backend_entry(server, self.real)
        if proxy is not None:
            entry["endpoint"] = f"http://{proxy.address}"
        workdir = harness_dir() / unique_bucket_name("faults")
        workdir.mkdir(parents=True)
        balancer = {"backend_timeout": f"{BACKEND_TIMEOUT}s", "cleanup_period": "1s", "health_check_period": "1s",
                    "retry_attempts": 1}
        balancer.update(sections.pop("balancer", {}))
        config = base_config([entry], [VB], workdir, balancer=balancer, **sections)
        self.daemon = Daemon(config, name="faults").start()
        self.addCleanup(self.daemon.stop)  # type: ignore[attr-defined]
        self.addCleanup(self.keep_log)  # type: ignore[attr-defined]
        return self.daemon

    def keep_log(self) -> None:
        """The daemon's log next to the test's temp dir (trial's cwd), for post-mortems."""
        import os

        os.makedirs("faults-logs", exist_ok=True)
        with open(os.path.join("faults-logs", self.id().rsplit(".", 2)[-2] + "." + self.id().rsplit(".", 1)[-1] + ".log"), "w") as out:  # type: ignore[attr-defined]
            out.write(self.daemon.log())

    def restart_backend(self, daemon: bool = True) -> None:
        """Start the killed SeaweedFS again and wait until it takes writes, not only answers."""
        self.server.start()
        bucket = self.real if daemon else self.server.create_bucket(unique_bucket_name("probe"))

        def writable() -> bool:
            # A restarted weed answers HEAD before it can place a new volume;
            # the daemon's short backend_timeout would turn that wait into a 503.
            try:
                self.server.client().put_object(Bucket=bucket, Key="restart-probe", Body=b"x")
                self.server.client().delete_object(Bucket=bucket, Key="restart-probe")
            except Exception:
                return False
            return True

        poll(writable, timeout=30, message="the restarted SeaweedFS does not take writes")
        if daemon:
            poll(lambda: self.daemon.health()["status"] == "ok", timeout=20)

    def backend_keys(self) -> list[str]:
        listing = self.server.direct().list_objects_v2(Bucket=self.real)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def backend_uploads(self) -> list[str]:
        listing = self.server.direct().list_multipart_uploads(Bucket=self.real)
        return [item["UploadId"] for item in listing.get("Uploads", [])]

    def assertReadsOneOf(self, key: str, versions: list[bytes]) -> Optional[bytes]:
        """A GET fails, or returns exactly one of `versions`."""
        try:
            status, _, body = signed_request(self.daemon, "GET", f"/{VB}/{key}")
        except (OSError, http.client.HTTPException):
            return None
        if status != 200:
            return None
        self.assertIn(hashlib.sha256(body).hexdigest(), [hashlib.sha256(v).hexdigest() for v in versions],  # type: ignore[attr-defined]
                      f"{key} reads {len(body)} bytes that were never written")
        return body

    def assertConsistent(self, sqlite: bool = True) -> None:
        """Every row has its backend object; nothing pending once the cleaner ran; no open upload."""

        def settled():
            counts = database_counts(self.daemon, VB) if sqlite else None
            keys = self.backend_keys()
            uploads = self.backend_uploads()
            if counts is not None and (counts["write_intents"] or counts["deletion_queue"]):
                return False
            if uploads:
                return False
            if counts is not None and len(keys) != counts["objects"]:
                return False
            return True

        # Deletions on a backend that was down wait up to 5 cleanup periods
        # (at least 25s) after it is back (cleanup.DeletionWorker).
        poll(settled, timeout=45, message=(
            f"not settled: rows {database_counts(self.daemon, VB) if sqlite else '-'}, "
            f"backend keys {self.backend_keys()}, open uploads {self.backend_uploads()}"
        ))

    def assertStillServes(self) -> None:
        # A backend that failed is marked down until the health check sees it again.
        poll(lambda: self.daemon.health()["status"] == "ok", timeout=20, message=f"{self.daemon.health()}")
        data = pattern(100_000, 99)
        status, _, body = signed_request(self.daemon, "PUT", f"/{VB}/after-{time.monotonic_ns()}", data)
        self.assertEqual(status, 200, body)  # type: ignore[attr-defined]
        key = f"after-{time.monotonic_ns()}"
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/{key}", data)
        self.assertEqual(status, 200)  # type: ignore[attr-defined]
        status, _, body = signed_request(self.daemon, "GET", f"/{VB}/{key}")
        self.assertEqual((status, body == data), (200, True))  # type: ignore[attr-defined]

    def assertS3ErrorOrCut(self, result: dict, allowed=(503,)) -> None:
        if "error" in result:
            return  # the connection was cut: the honest signal once a body is under way
        self.assertIn(result.get("status"), allowed, result)  # type: ignore[attr-defined]
        self.assertIn(b"<Code>", result.get("body", b""), result)  # type: ignore[attr-defined]


# The SeaweedFS that KilledBackendTests kill: one for the module's tests (each
# test starts it again before it ends, and writes to a real bucket of its own).
killable_seaweedfs = Lazy(lambda: SeaweedFS(name=unique_bucket_name("weed-kill")).start(), stop=SeaweedFS.close)


class KilledBackendTests(FaultTestMixin, SynchronousTestCase):
    """SeaweedFS SIGKILLed mid-transfer, then started again on the same ports and data."""

    def setUp(self) -> None:
        server = killable_seaweedfs()
        self.server = server
        if not server.running:  # an earlier test failed before it started it again
            self.restart_backend(daemon=False)
        self.start_daemon(server)

    def test_kill_mid_put(self) -> None:
        old = pattern(300_000, 1)
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/obj", old)
        self.assertEqual(status, 200)
        new = pattern(16 * MIB, 2)
        upload = SlowUpload(self.daemon, f"/{VB}/obj", new).start()
        self.assertTrue(upload.started.wait(10))
        time.sleep(0.5)
        self.server.kill()
        killed = time.monotonic()
        result = upload.wait(KILL_BOUND + 30)
        self.assertLess(upload.finished_at - killed, KILL_BOUND, "no bounded answer after the backend died")
        self.assertS3ErrorOrCut(result)
        self.restart_backend()
        self.assertEqual(self.assertReadsOneOf("obj", [old, new]), old)
        self.assertConsistent()
        self.assertStillServes()

    def test_kill_mid_get(self) -> None:
        data = pattern(24 * MIB, 3)
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/big", data)
        self.assertEqual(status, 200)
        download = SlowDownload(self.daemon, f"/{VB}/big", chunk=64 * 1024, pause=0.02).start()
        self.assertTrue(download.started.wait(10))
        time.sleep(0.3)
        self.server.kill()
        result = download.wait(KILL_BOUND + 60)
        got = bytes(download.received)
        self.assertEqual(got, data[: len(got)], "the bytes received differ from the object's")
        if result.get("complete"):
            self.assertEqual(got, data)  # the daemon had it all buffered before the kill
        else:
            self.assertLess(len(got), len(data))
        self.restart_backend()
        self.assertEqual(self.assertReadsOneOf("big", [data]), data)
        self.assertConsistent()
        self.assertStillServes()

    def test_kill_mid_upload_part_then_abort(self) -> None:
        s3 = self.daemon.client()
        upload_id = s3.create_multipart_upload(Bucket=VB, Key="mpu")["UploadId"]
        part = SlowUpload(self.daemon, f"/{VB}/mpu?partNumber=1&uploadId={upload_id}", pattern(12 * MIB, 4)).start()
        self.assertTrue(part.started.wait(10))
        time.sleep(0.5)
        self.server.kill()
        killed = time.monotonic()
        result = part.wait(KILL_BOUND + 30)
        self.assertLess(part.finished_at - killed, KILL_BOUND)
        self.assertS3ErrorOrCut(result)
        self.restart_backend()
        s3.abort_multipart_upload(Bucket=VB, Key="mpu", UploadId=upload_id)
        self.assertIsNone(self.assertReadsOneOf("mpu", []))
        self.assertConsistent()
        self.assertStillServes()


class StalledBackendTests(FaultTestMixin, SynchronousTestCase):
    """The link to SeaweedFS stops moving bytes (a black hole, no RST)."""

    def setUp(self) -> None:
        self.proxy = FaultProxy("127.0.0.1", shared_seaweedfs().port).start()
        self.addCleanup(self.proxy.close)
        self.start_daemon(shared_seaweedfs(), self.proxy)

    def tearDown(self) -> None:
        self.proxy.resume()

    def test_stall_mid_put(self) -> None:
        upload = SlowUpload(self.daemon, f"/{VB}/stalled", pattern(16 * MIB, 5)).start()
        self.assertTrue(upload.started.wait(10))
        time.sleep(0.5)
        self.proxy.stall()
        stalled = time.monotonic()
        result = upload.wait(STALL_BOUND + 30)
        self.assertLess(upload.finished_at - stalled, STALL_BOUND, "a stalled backend held the upload")
        self.assertS3ErrorOrCut(result)
        self.proxy.resume()
        self.assertIsNone(self.assertReadsOneOf("stalled", []))
        self.assertConsistent()
        self.assertStillServes()

    def test_stall_mid_put_is_handled_cleanly(self) -> None:
        """The stall is an expected failure: no critical log entry, no unhandled error in the reactor."""
        upload = SlowUpload(self.daemon, f"/{VB}/stalled", pattern(16 * MIB, 5)).start()
        self.assertTrue(upload.started.wait(10))
        time.sleep(0.5)
        self.proxy.stall()
        upload.wait(STALL_BOUND + 30)
        self.proxy.resume()
        self.assertStillServes()
        log = self.daemon.log()
        self.assertNotIn("Unhandled Error", log)
        self.assertNotIn("#critical]", log)


    def test_stall_mid_get(self) -> None:
        data = pattern(24 * MIB, 6)
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/big", data)
        self.assertEqual(status, 200)
        download = SlowDownload(self.daemon, f"/{VB}/big", chunk=64 * 1024, pause=0.02).start()
        self.assertTrue(download.started.wait(10))
        self.proxy.stall()
        stalled = time.monotonic()
        result = download.wait(STALL_BOUND + 60)
        got = bytes(download.received)
        self.assertEqual(got, data[: len(got)])
        self.assertFalse(result.get("complete") and len(got) != len(data))
        self.proxy.resume()
        self.assertEqual(self.assertReadsOneOf("big", [data]), data)
        self.assertLess(time.monotonic() - stalled, STALL_BOUND + 30)
        self.assertConsistent()
        self.assertStillServes()

    def test_stall_mid_upload_part(self) -> None:
        s3 = self.daemon.client()
        upload_id = s3.create_multipart_upload(Bucket=VB, Key="mpu")["UploadId"]
        part = SlowUpload(self.daemon, f"/{VB}/mpu?partNumber=1&uploadId={upload_id}", pattern(12 * MIB, 7)).start()
        self.assertTrue(part.started.wait(10))
        time.sleep(0.3)
        self.proxy.stall()
        stalled = time.monotonic()
        result = part.wait(STALL_BOUND + 30)
        self.assertLess(part.finished_at - stalled, STALL_BOUND)
        self.assertS3ErrorOrCut(result)
        self.proxy.resume()
        s3.abort_multipart_upload(Bucket=VB, Key="mpu", UploadId=upload_id)
        self.assertConsistent()
        self.assertStillServes()

    def test_stall_during_complete_multipart_upload(self) -> None:
        s3 = self.daemon.client()
        first, second = pattern(5 * MIB, 8), pattern(1000, 9)
        upload_id = s3.create_multipart_upload(Bucket=VB, Key="mpu")["UploadId"]
        etags = [s3.upload_part(Bucket=VB, Key="mpu", UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
                 for n, body in ((1, first), (2, second))]
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in zip((1, 2), etags, strict=True))
        xml = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        self.proxy.stall()
        stalled = time.monotonic()
        try:
            status, _, body = signed_request(self.daemon, "POST", f"/{VB}/mpu?uploadId={upload_id}", xml,
                                             timeout=COMPLETE_BOUND + 30)
        except (OSError, http.client.HTTPException) as error:
            status, body = None, repr(error).encode()
        self.assertLess(time.monotonic() - stalled, COMPLETE_BOUND, "a stalled backend held the complete")
        # Past KEEPALIVE_AFTER the answer is a 200 whose body is an <Error>.
        self.assertTrue(status == 503 or (status == 200 and b"<Error>" in body) or status is None, (status, body))
        self.proxy.resume()
        # The upload is still there: complete again, or abort.
        status, _, body = signed_request(self.daemon, "POST", f"/{VB}/mpu?uploadId={upload_id}", xml)
        if status == 200 and b"<Error>" not in body:
            self.assertEqual(self.assertReadsOneOf("mpu", [first + second]), first + second)
        else:
            s3.abort_multipart_upload(Bucket=VB, Key="mpu", UploadId=upload_id)
        self.assertConsistent()
        self.assertStillServes()


class KilledBackendDuringCompleteTests(FaultTestMixin, SynchronousTestCase):
    """The backend is gone (connections reset, new ones refused) when CompleteMultipartUpload runs."""

    def setUp(self) -> None:
        self.proxy = FaultProxy("127.0.0.1", shared_seaweedfs().port).start()
        self.addCleanup(self.proxy.close)
        self.start_daemon(shared_seaweedfs(), self.proxy)

    def test_backend_gone_during_complete(self) -> None:
        s3 = self.daemon.client()
        first, second = pattern(5 * MIB, 10), pattern(1000, 11)
        upload_id = s3.create_multipart_upload(Bucket=VB, Key="mpu")["UploadId"]
        etags = [s3.upload_part(Bucket=VB, Key="mpu", UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
                 for n, body in ((1, first), (2, second))]
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in zip((1, 2), etags, strict=True))
        xml = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        self.proxy.refuse = True
        self.proxy.cut()
        started = time.monotonic()
        status, _, body = signed_request(self.daemon, "POST", f"/{VB}/mpu?uploadId={upload_id}", xml)
        self.assertLess(time.monotonic() - started, KILL_BOUND)
        self.assertEqual(status, 503, body)
        self.assertIn(b"<Code>ServiceUnavailable</Code>", body)
        self.assertIsNone(self.assertReadsOneOf("mpu", []))
        self.proxy.refuse = False
        poll(lambda: self.daemon.health()["status"] == "ok", timeout=20)
        # The upload survived: completing it again works (a client retries a 503).
        for _ in range(3):
            status, _, body = signed_request(self.daemon, "POST", f"/{VB}/mpu?uploadId={upload_id}", xml)
            if status != 503:
                break
            time.sleep(1)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertReadsOneOf("mpu", [first + second]), first + second)
        self.assertConsistent()
        self.assertStillServes()


    def test_put_while_the_backend_is_down_is_answered(self) -> None:
        """A PUT without Expect: 100-continue, rejected before its body was read, still gets its 503."""
        self.proxy.refuse = True
        self.proxy.cut()
        poll(lambda: self.daemon.health()["status"] == "down", timeout=20)
        try:
            status, _, body = signed_request(self.daemon, "PUT", f"/{VB}/while-down", pattern(1 * MIB, 16))
        except (OSError, http.client.HTTPException) as error:
            status, body = None, repr(error).encode()
        self.proxy.refuse = False
        self.assertEqual(status, 503, body)
        self.assertNotIn("Unhandled Error", self.daemon.log())



class DatabaseCutTests(FaultTestMixin, SynchronousTestCase):
    """PostgreSQL through the proxy; the link is cut (and refused) during a PUT."""

    def setUp(self) -> None:
        from sqlalchemy.engine import make_url

        from tests import dbfixtures

        url = dbfixtures.fresh_database(self, dbfixtures.POSTGRES)  # SkipTest with the reason (error under CI)
        parsed = make_url(url)
        self.db_url = url
        self.db_proxy = FaultProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
        self.addCleanup(self.db_proxy.close)
        proxied = parsed.set(host="127.0.0.1", port=self.db_proxy.port).render_as_string(hide_password=False)
        self.start_daemon(shared_seaweedfs(), database={"type": "postgres", "dsn": proxied})

    def rows(self) -> dict[str, int]:
        from sqlalchemy import create_engine, pool, text

        engine = create_engine(self.db_url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                return {
                    table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                    for table in ("objects", "write_intents", "deletion_queue")
                }
        finally:
            engine.dispose()

    def test_database_cut_mid_put(self) -> None:
        old = pattern(200_000, 12)
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/obj", old)
        self.assertEqual(status, 200)
        new = pattern(8 * MIB, 13)
        upload = SlowUpload(self.daemon, f"/{VB}/obj", new, pause=0.05).start()
        self.assertTrue(upload.started.wait(10))
        time.sleep(0.3)
        self.db_proxy.refuse = True
        self.db_proxy.cut()
        cut = time.monotonic()
        result = upload.wait(60)
        self.assertLess(upload.finished_at - cut, KILL_BOUND, "no bounded answer with the database gone")
        self.assertS3ErrorOrCut(result, allowed=(500, 503))
        self.db_proxy.refuse = False
        # The database is back: the old version reads whole, or (if the
        # commit went through before the cut) the new one.
        poll(lambda: self.assertReadsOneOf("obj", [old, new]) is not None, timeout=20)
        # A backend object without a row is allowed only while its write intent
        # holds it (the lease runs out later); a row without its object never.
        rows = self.rows()
        self.assertEqual(rows["objects"], 1, rows)
        keys = self.backend_keys()
        self.assertLessEqual(len(keys), rows["objects"] + rows["write_intents"] + rows["deletion_queue"], (keys, rows))
        self.assertStillServes()

    def test_database_cut_answers_service_unavailable(self) -> None:
        """A database outage is the client's cue to retry: 503, as for a backend outage."""
        upload = SlowUpload(self.daemon, f"/{VB}/obj", pattern(4 * MIB, 15), pause=0.05).start()
        self.assertTrue(upload.started.wait(10))
        time.sleep(0.3)
        self.db_proxy.refuse = True
        self.db_proxy.cut()
        result = upload.wait(60)
        self.db_proxy.refuse = False
        self.assertEqual(result.get("status"), 503, result)


class ClientGoneMidDownloadTests(FaultTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.start_daemon(shared_seaweedfs())

    def open_fds(self) -> int:
        import os

        return len(os.listdir(f"/proc/{self.daemon.process.pid}/fd"))

    def test_client_gone_mid_download(self) -> None:
        data = pattern(16 * MIB, 14)
        status, _, _ = signed_request(self.daemon, "PUT", f"/{VB}/big", data)
        self.assertEqual(status, 200)
        self.assertStillServes()
        baseline = self.open_fds()
        url = f"{self.daemon.endpoint}/{VB}/big"
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
            head = f"GET /{VB}/big HTTP/1.1\r\nHost: 127.0.0.1:{self.daemon.port}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in sign("GET", url).items() if k.lower() != "host")
            sock.sendall(head.encode() + b"\r\n")
            got = b""
            while len(got) < 256 * 1024:
                piece = sock.recv(65536)
                self.assertTrue(piece)
                got += piece
            self.assertEqual(got.split(b"\r\n\r\n", 1)[1], data[: len(got.split(b"\r\n\r\n", 1)[1])])
            sock.close()
        # Backend connections of the abandoned downloads are released.
        poll(lambda: self.open_fds() <= baseline + 4, timeout=15,
             message=f"fds: {self.open_fds()} (baseline {baseline})")
        self.assertEqual(self.assertReadsOneOf("big", [data]), data)
        self.assertConsistent()
        self.assertStillServes()


class DirectionalFaultProxy(FaultProxy):
    """
    A FaultProxy that can also stall after some bytes *from* the target
    (a backend that stops sending mid-body) and hold the target's answers
    while requests still pass (a backend that took a whole request and
    does not answer).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._downstream_limit: Optional[int] = None
        self._answers = threading.Event()
        self._answers.set()

    def stall_after_downstream(self, downstream_bytes: int) -> None:
        """Let `downstream_bytes` more bytes go target->client, then stall both ways."""
        with self._lock:
            self._downstream_limit = self.downstream_bytes + downstream_bytes

    def hold_answers(self) -> None:
        self._answers.clear()

    def release_answers(self) -> None:
        self._answers.set()

    def resume(self) -> None:
        with self._lock:
            self._downstream_limit = None
        super().resume()

    def close(self) -> None:
        self._answers.set()
        super().close()

    def _count_downstream(self, n: int) -> None:
        super()._count_downstream(n)
        with self._lock:
            if self._downstream_limit is not None and self.downstream_bytes >= self._downstream_limit:
                self._flowing.clear()
        # On the link's target->client thread: what was read waits here.
        self._answers.wait()


def metric_sum(daemon: Daemon, name: str) -> float:
    """The sum of every sample of one series on the daemon's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{daemon.endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = [float(line.rpartition(" ")[2]) for line in text.splitlines() if line.split("{", 1)[0] == name]
    assert samples, f"no {name} on /metrics"
    return sum(samples)


class TwoBackendFaultMixin(FaultTestMixin):
    """A daemon over two buckets of the shared SeaweedFS: `first` through a proxy, `second` direct."""

    proxy: DirectionalFaultProxy

    def start_two(self, first_max_size: Optional[str] = None, **balancer) -> None:
        server = shared_seaweedfs()
        self.server = server
        # Round-robin places in name order: the first object goes to `first`.
        self.first, self.second = unique_bucket_name("a-first"), unique_bucket_name("b-second")
        for bucket in (self.first, self.second):
            server.create_bucket(bucket)
        self.proxy = DirectionalFaultProxy("127.0.0.1", server.port).start()
        self.addCleanup(self.proxy.close)  # type: ignore[attr-defined]
        first = backend_entry(server, self.first, endpoint=f"http://{self.proxy.address}")
        if first_max_size is not None:
            first["max_size"] = first_max_size
        workdir = harness_dir() / unique_bucket_name("faults")
        workdir.mkdir(parents=True)
        settings = {"backend_timeout": f"{BACKEND_TIMEOUT}s", "cleanup_period": "1s", "health_check_period": "1s",
                    "retry_attempts": 1}
        settings.update(balancer)
        config = base_config([first, backend_entry(server, self.second)], [VB], workdir, balancer=settings)
        self.daemon = Daemon(config, name="faults").start()
        self.addCleanup(self.daemon.stop)  # type: ignore[attr-defined]
        self.addCleanup(self.keep_log)  # type: ignore[attr-defined]

    def keys_of(self, bucket: str) -> list[str]:
        listing = self.server.direct().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def open_fds(self) -> int:
        import os

        return len(os.listdir(f"/proc/{self.daemon.process.pid}/fd"))

    def settled(self) -> bool:
        counts = database_counts(self.daemon, VB)
        return not counts["write_intents"] and not counts["deletion_queue"]


class StalledCopySourceTests(TwoBackendFaultMixin, SynchronousTestCase):
    """A streamed CopyObject whose source backend stops sending mid-body."""

    def setUp(self) -> None:
        # The source's backend has no room for a second copy: the copy goes
        # to the other backend, streamed through the daemon.
        self.start_two(first_max_size=f"{12 * MIB}")

    def tearDown(self) -> None:
        self.proxy.resume()

    def test_stalled_source_answers_service_unavailable_and_lets_go(self) -> None:
        data = pattern(8 * MIB, 21)
        status, _, body = signed_request(self.daemon, "PUT", f"/{VB}/source", data)
        self.assertEqual(status, 200, body)
        self.assertEqual(len(self.keys_of(self.first)), 1)
        baseline = self.open_fds()
        self.proxy.stall_after_downstream(1 * MIB)
        started = time.monotonic()
        status, _, body = signed_request(self.daemon, "PUT", f"/{VB}/copy", headers={"x-amz-copy-source": f"/{VB}/source"},
                                         timeout=STALL_BOUND + 30)
        self.assertLess(time.monotonic() - started, STALL_BOUND, "a stalled source held the copy")
        self.assertEqual(status, 503, body)
        self.assertIn(b"<Code>ServiceUnavailable</Code>", body)
        # The copy's reservation is released and its backend connections closed
        # while the source is still stalled.
        self.assertEqual(metric_sum(self.daemon, "s3balance_backend_reserved_bytes"), 0.0)
        poll(lambda: self.open_fds() <= baseline + 2, timeout=10,
             message=f"fds: {self.open_fds()} (baseline {baseline})")
        self.proxy.resume()
        poll(self.settled, timeout=20, message=f"not settled: {database_counts(self.daemon, VB)}")
        self.assertEqual(self.keys_of(self.second), [])
        self.assertIsNone(self.assertReadsOneOf("copy", []))
        self.assertEqual(self.assertReadsOneOf("source", [data]), data)


class AnswerlessBackendTests(TwoBackendFaultMixin, SynchronousTestCase):
    """A backend that takes a whole small PUT and does not answer."""

    def setUp(self) -> None:
        self.start_two(retry_attempts=2)

    def tearDown(self) -> None:
        self.proxy.release_answers()

    def test_small_put_is_retried_elsewhere_and_the_late_object_deleted(self) -> None:
        data = pattern(20_000, 22)
        self.proxy.hold_answers()
        started = time.monotonic()
        status, _, body = signed_request(self.daemon, "PUT", f"/{VB}/small", data, timeout=STALL_BOUND + 30)
        self.assertLess(time.monotonic() - started, STALL_BOUND)
        self.assertEqual(status, 200, body)
        # The first backend stored it all the same: a late completion, as far
        # as the daemon knows.
        self.assertEqual(len(self.keys_of(self.first)), 1)
        self.assertEqual(len(self.keys_of(self.second)), 1)
        self.proxy.release_answers()
        self.assertEqual(self.assertReadsOneOf("small", [data]), data)
        poll(lambda: not self.keys_of(self.first), timeout=60,
             message=f"the late object is still on {self.first}: {self.keys_of(self.first)}")
        poll(self.settled, timeout=20, message=f"not settled: {database_counts(self.daemon, VB)}")
        self.assertEqual(len(self.keys_of(self.second)), 1)
        self.assertEqual(database_counts(self.daemon, VB)["objects"], 1)
        self.assertEqual(self.assertReadsOneOf("small", [data]), data)
