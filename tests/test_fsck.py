"""
C{s3balance-admin fsck} against a real daemon (SQLite store) over two real
SeaweedFS backends: a clean gateway is consistent; hand-made inconsistencies
(an orphan object and an orphan multipart upload put directly on a backend, an
object row whose backend copy was deleted directly) are reported, C{--repair}
fixes the orphans, C{--drop-missing} the missing object.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import ROOT, poll, start_gateway
from tests.harness.process import venv_bin


def run_fsck(gateway, *args: str, admin: bool = False) -> tuple[int, str]:
    """Run the checker as operators do; (exit status, stdout + stderr)."""
    if admin:
        command = [venv_bin("s3balance-admin"), "fsck"]
    else:
        command = [sys.executable, "-m", "s3balance.fsck"]
    command += ["--config", str(gateway.daemon.config_path), *args]
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
        # 1. An orphan object directly on backend 0.
        self.direct0.put_object(Bucket=self.real0, Key=f"{self.bucket}/orphan-object", Body=b"orphan")
        # 2. An orphan multipart upload (with a part) directly on backend 1.
        orphan_upload = self.direct1.create_multipart_upload(
            Bucket=self.real1, Key=f"{self.bucket}/orphan-upload"
        )
        self.direct1.upload_part(
            Bucket=self.real1,
            Key=f"{self.bucket}/orphan-upload",
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
        self.assertIn(f"backend={self.real0} real_key={self.bucket}/orphan-object", orphans[0])
        uploads = lines_with(output, "orphan-upload:")
        self.assertEqual(len(uploads), 1, output)
        self.assertIn(f"upload_id={orphan_upload['UploadId']}", uploads[0])
        missing = lines_with(output, "missing:")
        self.assertEqual(len(missing), 1, output)
        self.assertIn(f"real_key={victim_key} object={self.bucket}/victim", missing[0])
        self.assertIn("result: 3 difference(s) left", output)
        # Reporting changed nothing.
        self.assertIn(f"{self.bucket}/orphan-object", self.gateway.backend_keys()[self.real0])

        # --backend limits every check to one backend.
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--backend", self.real1)
        self.assertEqual(lines_with(output, "orphan:"), [], output)
        self.assertEqual(len(lines_with(output, "orphan-upload:")), 1, output)

        # --repair: orphans go, the missing object is only reported.
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair")
        self.assertEqual(code, 1, output)
        self.assertIn("deleted", output)
        self.assertIn("aborted", output)
        self.assertNotIn(f"{self.bucket}/orphan-object", self.gateway.backend_keys()[self.real0])
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

        # --drop-missing removes the row, loudly.
        code, output = run_fsck(self.gateway, "--older-than", "0s", "--repair", "--drop-missing")
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
