"""
C{s3balance-admin rebuild}: a deployment (a real daemon on SQLite over two
real SeaweedFS backends) is populated through the daemon, its database is
deleted, and the rebuild gets every object back from the backends: the same
keys, sizes, ETags, metadata, content types and locations, the overwritten
key as its newest version, the virtual bucket made with CreateBucket; the
restarted daemon serves every object byte-exact.  A dry run writes nothing,
a database with objects is refused without C{--force}, which then adds only
the missing keys; what is left over (the older copy, the abandoned upload) is
reported and then removed by C{fsck --repair}.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from s3balance.ops.adopt import BackendCopy
from s3balance.ops.rebuild import Rebuilder
from tests.daemon import start_gateway
from tests.test_import import lines_with, run_admin

MIB = 1024 * 1024
EXPIRES = datetime.datetime(2032, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
Row = tuple[Any, ...]


def dump(database: str) -> dict[tuple[str, str], Row]:
    """(bucket, key) -> (size, etag, content_type, headers, backend, real_key, last_modified, checksums)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute(
            "SELECT o.bucket, o.key, o.size, o.etag, o.content_type, o.headers, l.backend, l.real_key, "
            "o.last_modified, o.checksums FROM objects o JOIN object_locations l ON l.object_id = o.id"
        ).fetchall()
    found: dict[tuple[str, str], Row] = {}
    for row in rows:
        identity = (row[0], bytes(row[1]).decode())
        assert identity not in found, f"two locations for {identity}"
        found[identity] = (row[2], row[3], row[4], json.loads(row[5]), row[6], row[7], row[8], row[9])
    return found


def query(database: str, sql: str) -> list[Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return [tuple(row) for row in connection.execute(sql).fetchall()]


def moment(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


class RebuildTests(SynchronousTestCase):
    def setUp(self) -> None:
        # Replaced copies stay on their backend for an hour: the overwritten
        # key still has its older copy there when the database is lost.
        self.gateway = start_gateway("rebuild", balancer={"deletion_grace": "1h"})
        self.addCleanup(self.gateway.daemon.stop)
        self.daemon = self.gateway.daemon
        self.client = self.gateway.client()
        self.database = str(self.daemon.config["database"]["dsn"])
        self.config_path = self.daemon.config_path

    def lose_database(self) -> None:
        self.daemon.stop()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(self.database + suffix).unlink(missing_ok=True)

    def rebuild(self, *args: str) -> tuple[int, str, str]:
        return run_admin(self.config_path, "rebuild", *args)

    def populate(self) -> dict[tuple[str, str], tuple[bytes, dict[str, Any]]]:
        """Objects through the daemon; -> (bucket, key) -> (body, what HEAD answers of it)."""
        vb = "vb-default"
        self.api_bucket = self.gateway.new_bucket(self.client, prefix="rb")
        api = self.api_bucket
        puts: list[tuple[str, str, bytes, dict[str, Any]]] = [
            (vb, "docs/a.txt", b"alpha" * 100, {
                "ContentType": "text/plain",
                "Metadata": {"author": "ann"},
                "ContentDisposition": 'attachment; filename="a.txt"',
            }),
            (vb, "docs/b.json", b'{"b": 1}', {"ContentType": "application/json", "CacheControl": "no-cache"}),
            (vb, "img/c.png", os.urandom(20000), {"ContentType": "image/png", "ContentLanguage": "de", "Expires": EXPIRES}),
            (vb, "empty", b"", {}),
            (vb, "deep/nested/ü key+1.bin", os.urandom(777), {"Metadata": {"x-y": "z"}}),
            (api, "x/1", b"one", {"ContentType": "text/x-one", "Metadata": {"n": "1"}}),
            (api, "x/2", os.urandom(4096), {}),
        ]
        expected: dict[tuple[str, str], tuple[bytes, dict[str, Any]]] = {}
        for bucket, key, body, extra in puts:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            expected[(bucket, key)] = (body, extra)
        # An overwritten key: the newer version (a second later) must win.
        self.client.put_object(Bucket=vb, Key="over", Body=b"old version", ContentType="text/old")
        time.sleep(1.1)
        new = {"ContentType": "text/new", "Metadata": {"v": "2"}}
        self.client.put_object(Bucket=vb, Key="over", Body=b"new version!", **new)
        expected[(vb, "over")] = (b"new version!", new)
        # A completed multipart object and an abandoned upload.
        big = os.urandom(5 * MIB + 1000)
        extra = {"ContentType": "video/mp4", "Metadata": {"kind": "movie"}}
        upload = self.client.create_multipart_upload(Bucket=vb, Key="mp/big", **extra)
        parts = []
        for number, start in enumerate(range(0, len(big), 5 * MIB), start=1):
            answer = self.client.upload_part(
                Bucket=vb, Key="mp/big", UploadId=upload["UploadId"], PartNumber=number, Body=big[start : start + 5 * MIB]
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.client.complete_multipart_upload(
            Bucket=vb, Key="mp/big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        expected[(vb, "mp/big")] = (big, extra)
        abandoned = self.client.create_multipart_upload(Bucket=vb, Key="mp/abandoned")
        self.client.upload_part(Bucket=vb, Key="mp/abandoned", UploadId=abandoned["UploadId"], PartNumber=1, Body=b"p" * 100)
        return expected

    def test_lost_database_is_rebuilt(self) -> None:
        expected = self.populate()
        vb, api = "vb-default", self.api_bucket
        before = dump(self.database)
        self.assertEqual(sorted(before), sorted(expected))
        self.assertEqual({row[4] for row in before.values()}, set(self.gateway.real_buckets))  # both backends
        buckets_before = sorted(query(self.database, "SELECT name, origin FROM buckets"))
        self.assertEqual(buckets_before, sorted([(vb, "config"), (api, "api")]))
        over_old = [
            key
            for keys in self.gateway.backend_keys(vb + "/").values()
            for key in keys
            if key not in {row[5] for row in before.values()}
        ]
        self.assertEqual(len(over_old), 1, "the replaced copy of 'over' should still be on its backend")
        self.lose_database()

        # A dry run reads everything and writes nothing (not even the schema).
        code, out, err = self.rebuild("--dry-run")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(len(lines_with(out, "would-rebuild:")), len(before), out)
        self.assertIn("dry run: nothing written", out)
        self.assertFalse(Path(self.database).exists())

        code, out, err = self.rebuild()
        self.assertEqual(code, 0, out + err)
        self.assertIn("s3balance-admin rebuild: progress:", err)
        rebuilt_lines = lines_with(out, "rebuilt:")
        self.assertEqual(len(rebuilt_lines), len(before), out)
        self.assertIn(f"result: {len(before)} object(s) rebuilt", out)
        # The overwritten key: the newest copy won, the older one is reported and left.
        conflicts = lines_with(out, "conflict: object=vb-default/over ")
        self.assertEqual(len(conflicts), 1, out)
        self.assertIn(f"kept backend={before[(vb, 'over')][4]} real_key={before[(vb, 'over')][5]} ", conflicts[0])
        self.assertIn("older copy left on its backend: backend=", conflicts[0])
        self.assertIn(f"real_key={over_old[0]} ", conflicts[0])
        self.assertIn("fsck --repair", out)
        # The abandoned upload is a leftover, reported only.
        leftovers = lines_with(out, "leftover-upload:")
        self.assertEqual(len(leftovers), 1, out)
        self.assertIn("bucket=vb-default", leftovers[0])
        self.assertEqual(len(lines_with(out, "  not rebuilt:")), 6, out)
        self.assertIn("part tables and per-part checksums of multipart objects (1 found", out)

        after = dump(self.database)
        self.assertEqual(sorted(after), sorted(before))
        for identity, row in before.items():
            again = after[identity]
            # size, ETag, Content-Type, stored headers (metadata), location.
            self.assertEqual(again[:6], row[:6], identity)
            # Last-Modified: the backend copy's, at most a little before the commit's.
            self.assertLessEqual(abs((moment(again[6]) - moment(row[6])).total_seconds()), 2.0, identity)
            self.assertEqual(again[7], "{}")  # checksums are not on the backends
        self.assertEqual(sorted(query(self.database, "SELECT name, origin FROM buckets")), buckets_before)
        usage = dict(
            (backend, (used, count))
            for backend, used, count in query(self.database, "SELECT backend, used_bytes, object_count FROM backend_usage")
        )
        for backend in self.gateway.real_buckets:
            rows = [row for row in before.values() if row[4] == backend]
            self.assertEqual(usage[backend], (sum(row[0] for row in rows), len(rows)))

        # Objects in the database: refused without --force (dry run too).
        for args in ((), ("--dry-run",)):
            code, out, err = self.rebuild(*args)
            self.assertEqual(code, 2, out + err)
            self.assertIn("refused: the database already holds", err)
            self.assertIn("--force", err)
        # --force adds only what is missing.
        with sqlite3.connect(self.database) as connection:
            (object_id,) = connection.execute(
                "SELECT id FROM objects WHERE bucket = ? AND key = ?", (vb, b"docs/b.json")
            ).fetchone()
            connection.execute("DELETE FROM object_locations WHERE object_id = ?", (object_id,))
            connection.execute("DELETE FROM objects WHERE id = ?", (object_id,))
        code, out, err = self.rebuild("--force")
        self.assertEqual(code, 0, out + err)
        rebuilt_lines = lines_with(out, "rebuilt:")
        self.assertEqual(len(rebuilt_lines), 1, out)
        self.assertIn("object=vb-default/docs/b.json ", rebuilt_lines[0])
        self.assertEqual({k: v[:6] for k, v in dump(self.database).items()}, {k: v[:6] for k, v in before.items()})
        code, out, err = self.rebuild("--force", "--dry-run")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(lines_with(out, "would-rebuild:"), [], out)

        # The daemon serves every object again, byte-exact, with its headers.
        self.daemon.start()
        for (bucket, key), (body, extra) in expected.items():
            answer = self.client.get_object(Bucket=bucket, Key=key)
            self.assertEqual(answer["Body"].read(), body, key)
            self.assertEqual(answer["ContentType"], extra.get("ContentType", "binary/octet-stream"), key)
            self.assertEqual(answer["Metadata"], extra.get("Metadata", {}), key)
            for field in ("ContentDisposition", "CacheControl", "ContentLanguage"):
                self.assertEqual(answer.get(field), extra.get(field), (key, field))
            if "Expires" in extra:
                self.assertEqual(answer["ResponseMetadata"]["HTTPHeaders"]["expires"], "Fri, 02 Jan 2032 03:04:05 GMT")
            self.assertEqual(answer["ETag"], before[(bucket, key)][1])
        for bucket in (vb, api):
            listed = self.client.list_objects_v2(Bucket=bucket)["Contents"]
            self.assertEqual(
                [(item["Key"], item["Size"]) for item in listed],
                sorted((key, len(body)) for (b, key), (body, _) in expected.items() if b == bucket),
            )
        self.assertEqual(self.client.list_multipart_uploads(Bucket=vb).get("Uploads", []), [])

        # fsck finds exactly the leftovers the rebuild reported, and removes them.
        code, out, err = run_admin(self.config_path, "fsck", "--older-than", "0s")
        self.assertEqual(code, 1, out + err)
        orphans = lines_with(out, "orphan:")
        self.assertEqual(len(orphans), 1, out)
        self.assertIn(f"real_key={over_old[0]} ", orphans[0])
        self.assertEqual(len(lines_with(out, "orphan-upload:")), 1, out)
        code, out, err = run_admin(self.config_path, "fsck", "--older-than", "0s", "--repair")
        self.assertEqual(code, 0, out + err)
        self.assertNotIn(over_old[0], [key for keys in self.gateway.backend_keys().values() for key in keys])
        self.assertEqual(self.client.get_object(Bucket=vb, Key="over")["Body"].read(), b"new version!")

    def test_key_without_its_metadata_is_unrecoverable(self) -> None:
        """A key longer than 512 URL-quoted characters is not written into the backend's metadata."""
        long_key = "long/" + "é" * 100
        self.client.put_object(Bucket="vb-default", Key=long_key, Body=b"long")
        self.client.put_object(Bucket="vb-default", Key="short", Body=b"short")
        real_key = dump(self.database)[("vb-default", long_key)][5]
        self.lose_database()
        code, out, err = self.rebuild()
        self.assertEqual(code, 1, out + err)
        lines = lines_with(out, "unrecoverable:")
        self.assertEqual(len(lines), 1, out)
        self.assertIn(f"real_key={real_key} bucket=vb-default size=4 ", lines[0])
        self.assertEqual(sorted(dump(self.database)), [("vb-default", "short")])


class ResolutionTests(SynchronousTestCase):
    """
    Copies of one virtual key met in either order (the older first: the row
    is moved to the newer copy; the newer first: the older is only noted),
    in this process on a fresh SQLite database, without backends.
    """

    def rebuilder(self, name: str) -> Rebuilder:
        import yaml

        from s3balance.config import load_config
        from s3balance.ops.rebuild import Rebuilder, RebuildOptions

        workdir = Path(self.mktemp())
        workdir.mkdir()
        backend = {"endpoint": "http://127.0.0.1:9", "access_key_id": "a", "secret_access_key": "s", "virtual": False}
        config = {
            "server": {"host": "127.0.0.1", "port": 9},
            "database": {"type": "sqlite", "dsn": str(workdir / f"{name}.db")},
            "buckets": [{"name": "real-a", **backend}, {"name": "real-b", **backend}, {"name": "vb-r", "virtual": True}],
            "s3api": {"access_key": "k", "secret_key": "s"},
        }
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.database = str(workdir / f"{name}.db")
        self.out = io.StringIO()
        rebuilder = Rebuilder(load_config(str(path)), RebuildOptions(), clients={}, out=self.out)
        self.addCleanup(rebuilder.engine.dispose)
        rebuilder.prepare_database()
        return rebuilder

    def copy(self, backend: str, seconds: int, size: int) -> BackendCopy:
        when = datetime.datetime(2026, 1, 1, 0, 0, seconds, tzinfo=datetime.UTC)
        return BackendCopy(
            backend=backend,
            real_key=f"vb-r/{uuid.uuid4().hex}",
            size=size,
            etag=f'"{size:032x}"',
            last_modified=when,
            listed=when,
            content_type=f"text/v{seconds}",
            headers={"x-amz-meta-v": str(seconds)},
            metadata={"s3balance-bucket": "vb-r", "s3balance-key": "over"},
        )

    def test_newest_copy_wins_in_either_order(self) -> None:
        for older_first in (True, False):
            rebuilder = self.rebuilder(f"order-{older_first}")
            old, new = self.copy("real-a", 1, 10), self.copy("real-b", 2, 20)
            for copy in (old, new) if older_first else (new, old):
                rebuilder.found(copy.backend, copy.real_key, "vb-r", copy)
            rows = dump(self.database)
            self.assertEqual(list(rows), [("vb-r", "over")])
            size, etag, content_type, headers, backend, real_key = rows[("vb-r", "over")][:6]
            self.assertEqual(
                (size, etag, content_type, headers, backend, real_key),
                (20, new.etag, "text/v2", {"x-amz-meta-v": "2"}, "real-b", new.real_key),
            )
            # The older copy is left alone: nothing is queued for deletion.
            self.assertEqual(query(self.database, "SELECT COUNT(*) FROM deletion_queue"), [(0,)])
            self.assertEqual((rebuilder.report.rebuilt, rebuilder.report.rebuilt_bytes), (1, 20))
            # The store's own accounting of the bucket follows the move (where the schema has it).
            if query(self.database, "SELECT name FROM sqlite_master WHERE name = 'bucket_usage'"):
                self.assertEqual(
                    query(self.database, "SELECT SUM(used_bytes), SUM(object_count) FROM bucket_usage WHERE bucket = 'vb-r'"),
                    [(20, 1)],
                )
            self.assertEqual((rebuilder.report.conflicts, rebuilder.report.older_copies), (1, 1))
            rebuilder.print_conflicts()
            conflicts = lines_with(self.out.getvalue(), "conflict:")
            self.assertEqual(len(conflicts), 1)
            self.assertIn(f"kept backend=real-b real_key={new.real_key} ", conflicts[0])
            self.assertIn(f"backend=real-a real_key={old.real_key} ", conflicts[0])

    def test_same_last_modified_is_said(self) -> None:
        rebuilder = self.rebuilder("tie")
        first, second = self.copy("real-a", 5, 1), self.copy("real-b", 5, 2)
        for copy in (first, second):
            rebuilder.found(copy.backend, copy.real_key, "vb-r", copy)
        self.assertEqual(dump(self.database)[("vb-r", "over")][4], "real-b")  # by backend name, then real key
        rebuilder.print_conflicts()
        self.assertIn("same Last-Modified", self.out.getvalue())
