"""
C{s3balance-admin fsck} against a real daemon (SQLite store) over two real
SeaweedFS backends: a clean gateway is consistent; hand-made inconsistencies
(an orphan object and an orphan multipart upload put directly on a backend, an
object row whose backend copy was deleted directly) are reported, C{--repair}
fixes the orphans, C{--drop-missing} the missing object.
"""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import ROOT, poll, start_gateway
from tests.harness.process import run_in_process, venv_bin


def run_fsck(gateway, *args: str, admin: bool = False, config_path: Optional[Path] = None) -> tuple[int, str]:
    """
    Run the checker; (exit status, stdout + stderr).  C{admin}: as operators
    do, C{s3balance-admin fsck} in a process of its own; else
    C{python -m s3balance.ops.fsck}'s C{main} in this one (L{run_in_process}).
    """
    arguments = ["--config", str(config_path or gateway.daemon.config_path), *args]
    if not admin:
        from s3balance.ops.fsck.command import main

        code, out, err = run_in_process(main, arguments, str(gateway.daemon.workdir))
        return code, out + err
    command = [venv_bin("s3balance-admin"), "fsck", *arguments]
    result = subprocess.run(
        command,
        cwd=str(gateway.daemon.workdir),
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def location_of(gateway, bucket: str, key: str) -> tuple[str, str]:
    path = gateway.daemon.config["database"]["dsn"]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
        row = connection.execute(
            "SELECT l.backend, l.real_key FROM object_locations l JOIN objects o ON o.id = l.object_id "
            "WHERE o.bucket = ? AND o.key = ?",
            (bucket, key.encode()),
        ).fetchone()
    assert row is not None, f"no location for {bucket}/{key}"
    return row[0], row[1]


def lines_with(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def our_key(bucket: str) -> str:
    """A real key of the gateway's layout (s3balance.s3.gateway.Gateway.new_real_key)."""
    return f"{bucket}/{uuid.uuid4().hex}"


def our_metadata(bucket: str, key: str) -> dict[str, str]:
    """The metadata the gateway puts on what it writes (s3balance.s3.writes.backend_headers)."""
    return {"s3balance-bucket": bucket, "s3balance-key": key}


def stored_keys(gateway, bucket: str) -> set[str]:
    """The virtual keys that have an object row."""
    path = gateway.daemon.config["database"]["dsn"]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute("SELECT key FROM objects WHERE bucket = ?", (bucket,)).fetchall()
    return {bytes(row[0]).decode() for row in rows}


class FsckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = start_gateway("fsck")
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.bucket = "vb-default"
        for number in range(5):
            self.client.put_object(Bucket=self.bucket, Key=f"good/{number}", Body=b"x" * (100 + number))
        # A multipart object and an open upload, both made through the gateway.
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key="mp/done")
        part = self.client.upload_part(
            Bucket=self.bucket, Key="mp/done", UploadId=upload["UploadId"], PartNumber=1, Body=b"m" * 1000
        )
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key="mp/done",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        self.client.create_multipart_upload(Bucket=self.bucket, Key="mp/open")
        # A replaced and a deleted object: their old copies go through the deletion queue.
        self.client.put_object(Bucket=self.bucket, Key="good/0", Body=b"replaced")
        self.client.delete_object(Bucket=self.bucket, Key="good/1")
        self.real0, self.real1 = self.gateway.real_buckets
        self.direct0 = self.gateway.backends[0].client()
        self.direct1 = self.gateway.backends[1].client()

        # The deletion worker runs every second; let it empty its queue.
        def queue_empty() -> bool:
            keys = self.gateway.backend_keys()
            return sum(len(v) for v in keys.values()) == 5  # good/0,2,3,4 and mp/done

        poll(queue_empty, timeout=15, message="the deletion worker did not settle")
        time.sleep(1.1)  # every backend object is now older than "now - 0s" by a second

    def test_clean_gateway_is_consistent(self) -> None:
        code, output = run_fsck(self.gateway, "--older-than", "0s")
        self.assertEqual(code, 0, output)
        self.assertIn("result: consistent", output)
        self.assertIn("object locations checked", output)
        # The same through s3balance-admin (default threshold, check only).
        code, output = run_fsck(self.gateway, admin=True)
        self.assertEqual(code, 0, output)
        self.assertIn("result: consistent", output)

    def test_inconsistencies_reported_and_repaired(self) -> None:
        # 1. An orphan object directly on backend 0, written as the gateway writes.
        orphan_key = our_key(self.bucket)
        self.direct0.put_object(
            Bucket=self.real0, Key=orphan_key, Body=b"orphan", Metadata=our_metadata(self.bucket, "lost")
        )
        # 2. An orphan multipart upload (with a part) directly on backend 1.
        upload_key = our_key(self.bucket)
        orphan_upload = self.direct1.create_multipart_upload(
            Bucket=self.real1, Key=upload_key, Metadata=our_metadata(self.bucket, "lost-upload")
        )
        self.direct1.upload_part(
            Bucket=self.real1,
            Key=upload_key,
            UploadId=orphan_upload["UploadId"],
            PartNumber=1,
            Body=b"p" * 100,
        )
        # 3. An object whose backend copy is deleted behind the daemon's back.
        self.client.put_object(Bucket=self.bucket, Key="victim", Body=b"v" * 321)
        victim_backend, victim_key = location_of(self.gateway, self.bucket, "victim")
        victim_client = self.direct0 if victim_backend == self.real0 else self.direct1
        victim_client.delete_object(Bucket=victim_backend, Key=victim_key)
        time.sleep(1.1)

        # A young orphan is never reported with the default threshold (1h).
        code, output = run_fsck(self.gateway)
        self.assertEqual(code, 1, output)
        self.assertEqual(lines_with(output, "orphan"), [], output)
        self.assertEqual(len(lines_with(output, "missing:")), 1, output)

        code, output = run_fsck(self.gateway, "--older-than", "0s")
        self.assertEqual(code, 1, output)
        orphans = lines_with(output, "orphan:")
        self.assertEqual(len(orphans), 1, output)
        self.assertIn(f"backend={self.real0} real_key={orphan_key}", orphans[0])
        uploads = lines_with(output, "orphan-upload:")
        self.assertEqual(len(uploads), 1, output)
        self.assertIn(f"upload_id={orphan_upload['UploadId']}", uploads[0])
        missing = lines_with(output, "missing:")
        self.assertEqual(len(missing), 1, output)
        self.assertIn(f"real_key={victim_key} object={self.bucket}/victim", missing[0])
        self.assertIn("result: 3 difference(s) left", output)
        # Reporting changed nothing.
        self.assertIn(orphan_key, self.gateway.backend_keys()[self.real0])

        # --backend limits every check to one backend.
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--backend", self.real1)
        self.assertEqual(lines_with(output, "orphan:"), [], output)
        self.assertEqual(len(lines_with(output, "orphan-upload:")), 1, output)

        # --repair: orphans go, the missing object is only reported.
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair")
        self.assertEqual(code, 1, output)
        self.assertIn("deleted", output)
        self.assertIn("aborted", output)
        self.assertNotIn(orphan_key, self.gateway.backend_keys()[self.real0])
        open_uploads = self.direct1.list_multipart_uploads(Bucket=self.real1).get("Uploads", [])
        self.assertNotIn(orphan_upload["UploadId"], [u["UploadId"] for u in open_uploads])
        # The gateway's own open upload is untouched.
        self.assertEqual(
            [u["Key"] for u in self.client.list_multipart_uploads(Bucket=self.bucket)["Uploads"]], ["mp/open"]
        )

        code, output = run_fsck(self.gateway, "--older-than", "0s")
        self.assertEqual(code, 1, output)
        self.assertEqual(lines_with(output, "orphan"), [], output)
        self.assertEqual(len(lines_with(output, "missing:")), 1, output)
        self.assertIn("result: 1 difference(s) left", output)

        # --drop-missing removes the row, loudly (one of six checked objects is
        # more than the default --max-drop-fraction).
        code, output = run_fsck(
            self.gateway, "--older-than", "0s", "--repair", "--drop-missing", "--max-drop-fraction", "0.2"
        )
        self.assertEqual(code, 0, output)
        self.assertIn(f"DROPPED the row of {self.bucket}/victim", output)
        self.assertIn("all repaired", output)
        keys = [item["Key"] for item in self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]
        self.assertNotIn("victim", keys)
        self.assertIn("good/2", keys)

        code, output = run_fsck(self.gateway, "--older-than", "0s")
        self.assertEqual(code, 0, output)
        self.assertIn("result: consistent", output)

    def test_size_mismatch_is_reported_not_repaired(self) -> None:
        backend, real_key = location_of(self.gateway, self.bucket, "good/3")
        direct = self.direct0 if backend == self.real0 else self.direct1
        direct.put_object(Bucket=backend, Key=real_key, Body=b"different length")
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair")
        self.assertEqual(code, 1, output)
        mismatches = lines_with(output, "size-mismatch:")
        self.assertEqual(len(mismatches), 1, output)
        self.assertIn("store=103 backend=16", mismatches[0])


class UsageTests(SynchronousTestCase):
    """Step 5: the virtual buckets' usage counters against their objects; and s3balance-admin quota recount."""

    def setUp(self) -> None:
        self.gateway = start_gateway("fsck-usage")
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.bucket = "vb-default"
        for number in range(4):
            self.client.put_object(Bucket=self.bucket, Key=f"k/{number}", Body=b"x" * (100 + number))

    def corrupt_usage(self) -> None:
        """The counters of the bucket drift (as a restored or hand-edited database has them)."""
        path = self.gateway.daemon.config["database"]["dsn"]
        with sqlite3.connect(path, timeout=10) as connection:
            connection.execute("DELETE FROM bucket_usage WHERE bucket = ?", (self.bucket,))
            connection.execute(
                "INSERT INTO bucket_usage (bucket, shard, used_bytes, object_count) VALUES (?, 5, 7, 1)", (self.bucket,)
            )

    def test_drifted_counters_are_reported_and_recounted_by_repair(self) -> None:
        self.corrupt_usage()
        code, output = run_fsck(self.gateway, "--older-than", "1h")
        self.assertEqual(code, 1, output)
        self.assertIn(
            "USAGE of vb-default: the counters say 1 objects, 7 bytes; its objects add up to 4, 406", output
        )
        self.assertRegex(output, r"bucket usage counters off\s+1\s+-")
        code, output = run_fsck(self.gateway, "--older-than", "1h", "--repair")
        self.assertEqual(code, 0, output)
        self.assertIn("RECOUNTED vb-default: 4 objects, 406", output)
        self.assertIn("(the counters said 1 objects, 7", output)
        code, output = run_fsck(self.gateway, "--older-than", "1h")
        self.assertEqual(code, 0, output)
        self.assertIn("result: consistent", output)
        # The daemon goes on from the recounted total.
        self.client.put_object(Bucket=self.bucket, Key="k/new", Body=b"y" * 10)
        code, output = run_fsck(self.gateway, "--older-than", "1h")
        self.assertEqual(code, 0, output)

    def test_quota_recount_command(self) -> None:
        self.corrupt_usage()

        def recount(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [venv_bin("s3balance-admin"), "quota", "recount", "--config", str(self.gateway.daemon.config_path),
                 *args],
                cwd=str(self.gateway.daemon.workdir), env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, timeout=120,
            )

        result = recount("--bucket", self.bucket)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("[1/1] vb-default: 4 objects, 406 B (the counters said 1 objects, 7 B): recounted", result.stdout)
        self.assertIn("1 bucket(s) recounted, 1 changed", result.stdout)
        result = recount()  # every bucket, one line each
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"\[\d+/\d+\] vb-default: 4 objects, 406 B: unchanged")
        self.assertIn("changed\n", result.stdout)
        result = recount("--bucket", "no-such-bucket")
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("no bucket named 'no-such-bucket'", result.stderr)


class CrashedStreamingUploadTests(SynchronousTestCase):
    """
    A PUT without a length (Transfer-Encoding: chunked) streams through a
    backend multipart upload under a write intent.  When the daemon dies
    mid-upload and the intent's lease runs out, the cleaner must abort the
    backend's multipart upload too, not only delete the real key.
    """

    def test_lease_expired_streaming_upload_is_aborted(self) -> None:
        import http.client
        import threading

        from tests.daemon import sign

        gateway = start_gateway("fsck-crash")
        self.addCleanup(gateway.daemon.stop)
        daemon = gateway.daemon
        path = "/vb-default/streamed"
        sent = [0]

        def body():
            for number in range(40):
                sent[0] += 1 << 20
                yield b"z" * (1 << 20)
                if number > 12:
                    time.sleep(0.5)

        def put() -> None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
                conn.request(
                    "PUT",
                    path,
                    body=body(),
                    headers=sign("PUT", daemon.endpoint + path, {}),
                    encode_chunked=True,
                )
                conn.getresponse()
            except Exception:
                pass  # the daemon is killed under it

        def uploads() -> list:
            found = []
            for server, bucket in zip(gateway.backends, gateway.real_buckets, strict=True):
                found += server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return found

        thread = threading.Thread(target=put, daemon=True)
        thread.start()
        poll(lambda: uploads() and sent[0] > 14 << 20, timeout=20, message="no backend multipart upload")
        daemon.kill()
        thread.join(5)
        database = daemon.config["database"]["dsn"]
        with sqlite3.connect(database) as connection:
            # The lease (an hour) ran out.
            connection.execute("UPDATE write_intents SET lease_until = '2000-01-01 00:00:00.000000'")
        daemon.start()

        def drained() -> bool:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                return not any(
                    connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("write_intents", "deletion_queue")
                )

        poll(drained, timeout=20, message="the cleaner did not run")
        time.sleep(1.1)
        code, output = run_fsck(gateway, "--older-than", "0s")
        self.assertEqual(lines_with(output, "orphan-upload:"), [], output)
        self.assertEqual(uploads(), [])
        self.assertEqual(code, 0, output)


class _NotFoundEverywhere(BaseHTTPRequestHandler):
    """A web server that is not S3: 404 with no S3 error code, for every request."""

    def _answer(self) -> None:
        body = b"" if self.command == "HEAD" else b"<html>not here</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET = do_PUT = do_DELETE = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BucketWithoutNoSuchKey(_NotFoundEverywhere):
    """
    An endpoint whose bucket answers a listing (so it is shown to exist)
    but whose objects answer HEAD with 404 and GET with C{get_answer}
    (status, body): never the NoSuchKey an S3 server gives for a missing key.
    """

    get_answer: tuple[int, bytes] = (404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        bucket, _, key = path.lstrip("/").partition("/")
        if self.command == "GET" and not key and "list-type=2" in query:
            listing = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{bucket}</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
                "<IsTruncated>false</IsTruncated></ListBucketResult>"
            )
            self._reply(200, listing.encode())
        elif self.command == "GET" and key:
            self._reply(*self.get_answer)
        else:
            self._reply(404, b"")

    do_HEAD = do_GET = do_PUT = do_DELETE = do_POST = _answer


def s3_error_body(code: str) -> bytes:
    return f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>".encode()


class DropMissingTests(SynchronousTestCase):
    """
    C{--repair --drop-missing} drops the row of an object only on a NoSuchKey
    from a backend whose real bucket answered a listing in the same run, and
    never more than C{--max-drop-fraction} of the checked objects without
    C{--force}.  A hundred objects over two backends: one missing is within the
    default fraction (0.01), three are not.
    """

    COUNT = 100

    def setUp(self) -> None:
        self.gateway = start_gateway("fsck-drop")
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.bucket = "vb-default"
        self.keys = [f"obj/{number:03}" for number in range(self.COUNT)]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda key: self.client.put_object(Bucket=self.bucket, Key=key, Body=key.encode()),
                    self.keys,
                )
            )
        self.direct = {
            bucket: server.client()
            for server, bucket in zip(self.gateway.backends, self.gateway.real_buckets, strict=True)
        }

    def lose(self, key: str) -> tuple[str, str]:
        """Delete the backend copy of C{key} behind the gateway's back."""
        backend, real_key = location_of(self.gateway, self.bucket, key)
        self.direct[backend].delete_object(Bucket=backend, Key=real_key)
        return backend, real_key

    def config_with(self, name: str, **backend0: Any) -> Path:
        """The daemon's configuration with the first backend's entry changed."""
        config = yaml.safe_load(self.gateway.daemon.config_path.read_text())
        config["buckets"][0].update(backend0)
        path = self.gateway.daemon.workdir / name
        path.write_text(yaml.safe_dump(config))
        return path

    def test_wrong_endpoint_or_missing_bucket_drops_nothing(self) -> None:
        real0 = self.gateway.real_buckets[0]
        on_first = [key for key in self.keys if location_of(self.gateway, self.bucket, key)[0] == real0]
        self.assertTrue(on_first)
        self.lose(on_first[0])  # really gone, yet not provably so through a wrong endpoint
        other = self.gateway.backends[1]
        # 1. The other SeaweedFS server, where this real bucket does not exist
        #    (HEAD: 404; GET: NoSuchBucket).
        missing_bucket = self.config_with(
            "missing-bucket.yaml",
            endpoint=other.endpoint,
            access_key_id=other.access_key,
            secret_access_key=other.secret_key,
        )
        # 2. A web server that is not S3 at all: 404 without an S3 error code.
        not_s3 = self.config_with("not-s3.yaml", endpoint=self.serve(_NotFoundEverywhere))
        # 3. The right server with a wrong secret: 403 everywhere.
        refused = self.config_with("refused.yaml", secret_access_key="not-the-secret")
        for config_path in (missing_bucket, not_s3, refused):
            code, output = run_fsck(
                self.gateway, "--repair", "--drop-missing", "--force", config_path=config_path
            )
            self.assertEqual(code, 1, output)
            self.assertNotIn("DROPPED", output)
            self.assertEqual(lines_with(output, "missing:"), [], output)
            unverifiable = lines_with(output, "unverifiable:")
            self.assertEqual(len(unverifiable), len(on_first), output)
            self.assertTrue(all(f"backend={real0} " in line for line in unverifiable), output)
            self.assertEqual(stored_keys(self.gateway, self.bucket), set(self.keys))

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> str:
        """A web server on a free port for the rest of the test; its URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def test_only_nosuchkey_counts_as_missing(self) -> None:
        real0 = self.gateway.real_buckets[0]
        on_first = [key for key in self.keys if location_of(self.gateway, self.bucket, key)[0] == real0]
        answers = {
            "forbidden": (403, s3_error_body("AccessDenied")),
            "no-bucket": (404, s3_error_body("NoSuchBucket")),
            "no-code": (404, b"<html>not found</html>"),
        }
        for name, answer in answers.items():
            handler = type(name, (_BucketWithoutNoSuchKey,), {"get_answer": answer})
            config_path = self.config_with(f"{name}.yaml", endpoint=self.serve(handler))
            code, output = run_fsck(
                self.gateway, "--repair", "--drop-missing", "--force", config_path=config_path
            )
            self.assertEqual(code, 1, output)
            self.assertNotIn("DROPPED", output)
            self.assertEqual(lines_with(output, "missing:"), [], output)
            unverifiable = lines_with(output, "unverifiable:")
            self.assertEqual(len(unverifiable), len(on_first), output)
            self.assertIn(f"GET answered {answer[0]}", unverifiable[0])
            self.assertEqual(stored_keys(self.gateway, self.bucket), set(self.keys))

    def test_missing_object_among_many_is_dropped(self) -> None:
        backend, real_key = self.lose("obj/042")
        code, output = run_fsck(self.gateway, "--repair", "--drop-missing")
        self.assertEqual(code, 0, output)
        dropped = lines_with(output, "DROPPED")
        self.assertEqual(len(dropped), 1, output)
        self.assertIn(f"{self.bucket}/obj/042", dropped[0])
        self.assertIn(f"backend {backend}, real key {real_key}", dropped[0])
        self.assertIn("NoSuchKey", dropped[0])  # the reason
        self.assertEqual(stored_keys(self.gateway, self.bucket), set(self.keys) - {"obj/042"})
        listed = [item["Key"] for item in self.client.list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(len(listed), self.COUNT - 1)
        self.assertNotIn("obj/042", listed)

    def test_more_missing_than_the_fraction_needs_force(self) -> None:
        lost = ["obj/007", "obj/050", "obj/093"]
        for key in lost:
            self.lose(key)
        for extra in ((), ("--max-drop-fraction", "0.02")):
            code, output = run_fsck(self.gateway, "--repair", "--drop-missing", *extra)
            self.assertEqual(code, 1, output)
            self.assertEqual(len(lines_with(output, "missing:")), 3, output)
            self.assertNotIn("DROPPED", output)
            self.assertIn("dropped none", output)
            self.assertIn("--force", output)
            self.assertEqual(stored_keys(self.gateway, self.bucket), set(self.keys))
        code, output = run_fsck(self.gateway, "--repair", "--drop-missing", "--force")
        self.assertEqual(code, 0, output)
        self.assertEqual(len(lines_with(output, "DROPPED")), 3, output)
        self.assertEqual(stored_keys(self.gateway, self.bucket), set(self.keys) - set(lost))


class SharedRealBucketTests(SynchronousTestCase):
    """
    C{--repair} deletes only unreferenced keys of the gateway's own layout
    (C{<virtual bucket>/<32 lowercase hex>}) whose metadata names that virtual
    bucket; anything else in a shared real bucket is reported and left alone.
    The checker runs in this process with its clock an hour ahead, so that
    every backend object counts as old enough without waiting.
    """

    def setUp(self) -> None:
        self.gateway = start_gateway("fsck-shared")
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.bucket = "vb-default"
        for number in range(4):
            self.client.put_object(Bucket=self.bucket, Key=f"kept/{number}", Body=b"k" * number)
        self.real0 = self.gateway.real_buckets[0]
        self.direct0 = self.gateway.backends[0].client()

    def fsck(self, clients: Optional[dict[str, Any]] = None, **options: Any):
        """Run the checker in this process; (report, output)."""
        import datetime

        from s3balance.config import load_config
        from s3balance.ops import fsck

        config = load_config(str(self.gateway.daemon.config_path))
        out = io.StringIO()
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        checker = fsck.Fsck(config, fsck.Options(**options), clients=clients, out=out, now=lambda: later)
        try:
            report = checker.run()
        finally:
            checker.engine.dispose()
        return report, out.getvalue()

    def put(self, key: str, metadata: Optional[dict[str, str]] = None) -> str:
        self.direct0.put_object(Bucket=self.real0, Key=key, Body=b"data", Metadata=metadata or {})
        return key

    def keys(self) -> list[str]:
        return self.gateway.backend_keys()[self.real0]

    def test_only_our_orphans_are_deleted(self) -> None:
        from s3balance.backends.health import PROBE_KEY

        foreign = [
            self.put("photos/cat.jpg"),
            self.put(PROBE_KEY),
            # Our layout, no metadata of ours.
            self.put(our_key(self.bucket)),
            # Our layout, metadata naming another virtual bucket.
            self.put(our_key(self.bucket), our_metadata("vb-other", "x")),
            # Our metadata, but not exactly our layout.
            self.put(f"{self.bucket}/{uuid.uuid4().hex.upper()}", our_metadata(self.bucket, "x")),
            self.put(f"{self.bucket}/{uuid.uuid4().hex}.bak", our_metadata(self.bucket, "x")),
            self.put(f"{self.bucket}/x/{uuid.uuid4().hex}", our_metadata(self.bucket, "x")),
            # A bucket name this gateway does not serve.
            self.put(our_key("vb-unknown"), our_metadata("vb-unknown", "x")),
        ]
        ours = self.put(our_key(self.bucket), our_metadata(self.bucket, "lost"))
        # Another application's multipart upload, and one of ours nothing refers to.
        foreign_upload = self.direct0.create_multipart_upload(Bucket=self.real0, Key="backups/disk.img")
        our_upload = self.direct0.create_multipart_upload(
            Bucket=self.real0, Key=our_key(self.bucket), Metadata=our_metadata(self.bucket, "lost-upload")
        )
        report, output = self.fsck(repair=True, older_than=0.0)
        keys = self.keys()
        for key in foreign:
            self.assertIn(key, keys, output)
        self.assertNotIn(ours, keys, output)
        foreign_lines = lines_with(output, "foreign:")
        self.assertEqual(
            sorted(line.split("real_key=")[1].split(" ")[0] for line in foreign_lines), sorted(foreign)
        )
        deleted = lines_with(output, "deleted:")
        self.assertEqual(len(deleted), 1, output)
        self.assertIn(f"backend={self.real0} real_key={ours} reason=", deleted[0])
        self.assertIn("foreign keys (left alone)", output)
        self.assertEqual(report.orphans.found, 1)
        self.assertEqual(report.orphans.repaired, 1)
        uploads = [
            u["UploadId"] for u in self.direct0.list_multipart_uploads(Bucket=self.real0).get("Uploads", [])
        ]
        self.assertEqual(uploads, [foreign_upload["UploadId"]], output)
        self.assertEqual(len(lines_with(output, "foreign-upload:")), 1, output)
        aborted = lines_with(output, "aborted:")
        self.assertEqual(len(aborted), 1, output)
        self.assertIn(f"upload_id={our_upload['UploadId']} reason=", aborted[0])
        self.assertEqual(report.differences_left(), 0, output)
        # Every object of the gateway is still whole.
        for number in range(4):
            body = self.client.get_object(Bucket=self.bucket, Key=f"kept/{number}")["Body"].read()
            self.assertEqual(body, b"k" * number)

    def test_progress_goes_to_stderr(self) -> None:
        from s3balance.ops.fsck import state

        self.patch(state, "PROGRESS_EVERY", 0.0)
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.fsck(older_than=0.0)
        progress = lines_with(stderr.getvalue(), "s3balance-admin fsck: progress:")
        self.assertIn("s3balance-admin fsck: progress: 4 object locations checked", progress)
        self.assertTrue(any("backend objects listed" in line for line in progress), progress)

    def test_key_with_live_write_intent_survives(self) -> None:
        import datetime

        from sqlalchemy import create_engine, insert

        from s3balance.config import load_config
        from s3balance.ops import fsck
        from s3balance.store import tables

        config = load_config(str(self.gateway.daemon.config_path))
        engine = create_engine(config.database.url)
        self.addCleanup(engine.dispose)

        def take_intent(real_key: str) -> None:
            now = datetime.datetime.now(datetime.UTC)
            with engine.begin() as conn:
                conn.execute(
                    insert(tables.write_intents).values(
                        backend=self.real0,
                        real_key=real_key,
                        lease_until=now + datetime.timedelta(hours=2),
                        created=now,
                    )
                )

        # An upload in progress since before the check...
        early = self.put(our_key(self.bucket), our_metadata(self.bucket, "early"))
        take_intent(early)
        # ... and two orphans, one of which a write intent takes while the
        # checker deletes the other (a commit retried after its connection was
        # lost takes a second intent for the same real key).
        first = self.put(our_key(self.bucket), our_metadata(self.bucket, "first"))
        second = self.put(our_key(self.bucket), our_metadata(self.bucket, "second"))
        deletions: list[str] = []

        class Racing:
            def __init__(self, client: Any) -> None:
                self.client = client

            def __getattr__(self, name: str) -> Any:
                return getattr(self.client, name)

            def delete_object(self, **kwargs: Any) -> Any:
                if not deletions:
                    take_intent(second if kwargs["Key"] == first else first)
                deletions.append(kwargs["Key"])
                return self.client.delete_object(**kwargs)

        clients = {
            name: Racing(fsck.backend_client(config.backend(name)))
            for name in (backend.name for backend in config.backends)
        }
        report, output = self.fsck(clients=clients, repair=True, older_than=0.0)
        self.assertEqual(len(deletions), 1, output)
        survivor = second if deletions == [first] else first
        keys = self.keys()
        self.assertIn(early, keys, output)
        self.assertIn(survivor, keys, output)
        self.assertNotIn(deletions[0], keys, output)
        self.assertEqual(len(lines_with(output, "deleted:")), 1, output)
