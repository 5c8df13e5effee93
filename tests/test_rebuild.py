"""
C{s3balance-admin rebuild}.

 - L{RebuildTests}: a deployment (a real daemon over two real SeaweedFS
   backends, its store on SQLite; on PostgreSQL and MariaDB in the
   subclasses) is populated through the daemon, its database is lost, and
   the rebuild gets every object back from the backends: the same keys,
   sizes, ETags, metadata, content types and locations, the overwritten key
   as its newest version, the virtual bucket made with CreateBucket; the
   restarted daemon serves every object byte-exact.  A dry run writes
   nothing, a database with objects is refused without C{--force}, which
   then adds only the missing keys; what is left over (the older copy, the
   abandoned upload) is reported and then removed by C{fsck --repair}.
 - L{ReplicaRebuildTests}: the same with C{replicas: 2}: every object, small
   and multipart, has both its locations back.
 - L{ResolutionMixin}: how copies of one key resolve, met in any order, in
   this process on SQLite, PostgreSQL and MariaDB: versions, replicas
   (same size and ETag on distinct backends), older copies on one backend,
   surplus copies, a key written meanwhile, a dry run; in a bucket that
   keeps versions (configured with C{versioning}, or not configured under
   C{--keep-older-copies}) every version a row, the newest the latest, and
   nothing left for fsck.
"""

from __future__ import annotations

import datetime
import io
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import attr
from sqlalchemy import MetaData, delete, inspect, select
from twisted.trial.unittest import SynchronousTestCase

from s3balance.ops.adopt import BackendCopy
from s3balance.ops.rebuild import Rebuilder
from s3balance.ops.rebuild_report import RebuildOptions
from s3balance.ops.rebuild_resolution import Lock, Seen, strongest_lock
from s3balance.store import tables, versions
from s3balance.store.records import encode_key
from tests import dbfixtures
from tests.daemon import start_gateway
from tests.test_import import (
    DATABASE_TYPES,
    Row,
    engine_on,
    fresh_store_database,
    lines_with,
    migrated_store_database,
    query,
    run_admin,
    stored,
)

MIB = 1024 * 1024
EXPIRES = datetime.datetime(2032, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def dump(url: str) -> dict[tuple[str, str], Row]:
    """(bucket, key) -> (size, etag, content_type, headers, backend, real_key, last_modified, checksums): one location each."""
    found: dict[tuple[str, str], Row] = {}
    for identity, (size, etag, content_type, headers, last_modified, checksums, locations) in stored(url).items():
        assert len(locations) == 1, f"{len(locations)} locations for {identity}"
        (backend, real_key), = locations
        found[identity] = (size, etag, content_type, headers, backend, real_key, last_modified, checksums)
    return found


def has_tables(url: str) -> bool:
    engine = engine_on(url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def drop_everything(url: str) -> None:
    """The database at C{url} emptied: every table, the schema's version too."""
    engine = engine_on(url)
    try:
        found = MetaData()
        found.reflect(engine)
        found.drop_all(engine)
    finally:
        engine.dispose()


class RebuildTests(SynchronousTestCase):
    """
    A deployment whose daemon keeps its store on a database of C{kind}
    (SQLite here; PostgreSQL and MariaDB below), populated, its database
    lost, rebuilt.
    """

    kind = "sqlite"

    def setUp(self) -> None:
        sections: dict[str, Any] = {}
        if self.kind != "sqlite":
            # At the head revision already (SkipTest when not there, an error under CI);
            # the rebuild migrates it again once it is lost.
            url = dbfixtures.store_database(self, self.kind)
            sections["database"] = {"type": DATABASE_TYPES[self.kind], "dsn": url}
        # Replaced copies stay on their backend for an hour: the overwritten
        # key still has its older copy there when the database is lost.
        self.gateway = start_gateway("rebuild", balancer={"deletion_grace": "1h"}, **sections)
        self.addCleanup(self.gateway.daemon.stop)
        self.daemon = self.gateway.daemon
        self.client = self.gateway.client()
        self.database = str(self.daemon.config["database"]["dsn"])
        self.url = "sqlite:///" + self.database if self.kind == "sqlite" else self.database
        self.config_path = self.daemon.config_path

    def lose_database(self) -> None:
        self.daemon.stop()
        if self.kind != "sqlite":
            drop_everything(self.url)
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(self.database + suffix).unlink(missing_ok=True)

    def no_schema(self) -> bool:
        if self.kind == "sqlite":
            return not Path(self.database).exists()
        return not has_tables(self.url)

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
        before = dump(self.url)
        self.assertEqual(sorted(before), sorted(expected))
        self.assertEqual({row[4] for row in before.values()}, set(self.gateway.real_buckets))  # both backends
        buckets_before = sorted(query(self.url, "SELECT name, origin FROM buckets"))
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
        self.assertTrue(self.no_schema())

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
        self.assertEqual(len(lines_with(out, "  not rebuilt:")), 11, out)
        self.assertIn("not rebuilt: delete markers", out)
        self.assertIn("not rebuilt: Object Lock", out)
        self.assertIn("not rebuilt: object and bucket tags", out)
        self.assertIn("not rebuilt: object and bucket ACLs", out)
        self.assertIn("part tables and per-part checksums of multipart objects (1 found", out)

        after = dump(self.url)
        self.assertEqual(sorted(after), sorted(before))
        for identity, row in before.items():
            again = after[identity]
            # size, ETag, Content-Type, stored headers (metadata), location.
            self.assertEqual(again[:6], row[:6], identity)
            # Last-Modified: the backend copy's, at most a little before the commit's.
            self.assertLessEqual(abs((again[6] - row[6]).total_seconds()), 2.0, identity)
            self.assertEqual(again[7], "{}")  # checksums are not on the backends
        self.assertEqual(sorted(query(self.url, "SELECT name, origin FROM buckets")), buckets_before)
        usage = dict(
            (backend, (used, count))
            for backend, used, count in query(self.url, "SELECT backend, used_bytes, object_count FROM backend_usage")
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
        o, loc = tables.objects, tables.object_locations
        engine = engine_on(self.url)
        try:
            with engine.begin() as conn:
                object_id = conn.execute(
                    select(o.c.id).where(o.c.bucket == vb, o.c.key == encode_key("docs/b.json"))
                ).scalar_one()
                conn.execute(delete(loc).where(loc.c.object_id == object_id))
                conn.execute(delete(o).where(o.c.id == object_id))
        finally:
            engine.dispose()
        code, out, err = self.rebuild("--force")
        self.assertEqual(code, 0, out + err)
        rebuilt_lines = lines_with(out, "rebuilt:")
        self.assertEqual(len(rebuilt_lines), 1, out)
        self.assertIn("object=vb-default/docs/b.json ", rebuilt_lines[0])
        self.assertEqual({k: v[:6] for k, v in dump(self.url).items()}, {k: v[:6] for k, v in before.items()})
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
        real_key = dump(self.url)[("vb-default", long_key)][5]
        self.lose_database()
        code, out, err = self.rebuild()
        self.assertEqual(code, 1, out + err)
        lines = lines_with(out, "unrecoverable:")
        self.assertEqual(len(lines), 1, out)
        self.assertIn(f"real_key={real_key} bucket=vb-default size=4 ", lines[0])
        self.assertEqual(sorted(dump(self.url)), [("vb-default", "short")])


class PostgreSQLRebuildTests(RebuildTests):
    kind = dbfixtures.POSTGRES


class MariaDBRebuildTests(RebuildTests):
    kind = dbfixtures.MYSQL


# -- replicas ------------------------------------------------------------------------


class ReplicaRebuildTests(SynchronousTestCase):
    """
    A deployment whose bucket keeps two copies of each object (a real daemon
    on SQLite over the two shared SeaweedFS servers, C{replicas: 2}): its
    database is lost and rebuilt, and every object has both its locations
    back, with the same size, ETag and metadata, served byte-exact by the
    restarted daemon.
    """

    def test_every_object_gets_both_its_copies_back(self) -> None:
        from tests.test_replicas import VB, Replicated, pattern

        # Replaced copies stay for an hour: the overwritten key's old version is still on both backends.
        gateway = Replicated(self, deletion_grace="1h")
        client = gateway.client
        puts: dict[str, tuple[bytes, dict[str, Any]]] = {
            "small": (pattern(1000, 1), {"ContentType": "text/plain", "Metadata": {"a": "1"}}),
            "empty": (b"", {}),
            "dir/ü big": (pattern(6 * MIB + 3, 2), {"ContentType": "application/x-big", "CacheControl": "no-store"}),
        }
        for key, (body, extra) in puts.items():
            client.put_object(Bucket=VB, Key=key, Body=body, **extra)
        expected = dict(puts)
        body, extra = pattern(5 * MIB + 1000, 3), {"ContentType": "video/mp4", "Metadata": {"kind": "movie"}}
        upload = client.create_multipart_upload(Bucket=VB, Key="mp", **extra)
        parts = []
        for number, start in enumerate(range(0, len(body), 5 * MIB), start=1):
            answer = client.upload_part(
                Bucket=VB, Key="mp", UploadId=upload["UploadId"], PartNumber=number, Body=body[start : start + 5 * MIB]
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        client.complete_multipart_upload(Bucket=VB, Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
        expected["mp"] = (body, extra)
        client.put_object(Bucket=VB, Key="over", Body=b"the old version", ContentType="text/old")
        time.sleep(1.1)
        expected["over"] = (b"the new version!", {"ContentType": "text/new", "Metadata": {"v": "2"}})
        client.put_object(Bucket=VB, Key="over", Body=expected["over"][0], **expected["over"][1])

        database = str(gateway.daemon.config["database"]["dsn"])
        url = "sqlite:///" + database
        before = stored(url)
        self.assertEqual(sorted(before), sorted((VB, key) for key in expected))
        for identity, row in before.items():
            self.assertEqual(sorted(backend for backend, _ in row[6]), sorted(gateway.real), identity)
        heads = {key: client.head_object(Bucket=VB, Key=key) for key in expected}
        self.assertTrue(heads["mp"]["ETag"].endswith('-2"'), heads["mp"]["ETag"])
        old_copies = [
            (index, key)
            for index in (0, 1)
            for key in gateway.real_keys(index)
            if key not in {real_key for row in before.values() for _, real_key in row[6]}
        ]
        self.assertEqual(len(old_copies), 2, "the replaced copies of 'over' should still be on both backends")

        gateway.daemon.stop()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(database + suffix).unlink(missing_ok=True)
        code, out, err = run_admin(gateway.daemon.config_path, "rebuild", own_process=True)
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"result: {len(expected)} object(s) rebuilt", out)
        self.assertRegex(out, rf"objects with several copies +{len(expected)} \({2 * len(expected)} locations\)")
        self.assertRegex(out, r"fewer copies than their bucket keeps +0\n")
        for line in lines_with(out, "rebuilt:"):
            self.assertIn(" copies=2 (also backend=", line)
        # The old version of the overwritten key: both its copies reported, left on their backends.
        conflicts = lines_with(out, f"conflict: object={VB}/over ")
        self.assertEqual(len(conflicts), 2, out)
        for _, real_key in old_copies:
            said = [line for line in conflicts if "older copy left on its backend: backend=" in line]
            self.assertEqual(len([line for line in said if f"real_key={real_key} " in line]), 1, out)

        after = stored(url)
        self.assertEqual(sorted(after), sorted(before))
        for identity, row in before.items():
            again = after[identity]
            # size, ETag, Content-Type, stored headers (metadata); both locations.
            self.assertEqual(again[:4], row[:4], identity)
            self.assertEqual(sorted(again[6]), sorted(row[6]), identity)
            self.assertLessEqual(abs((again[4] - row[4]).total_seconds()), 2.0, identity)
            # Each location holds the object, byte-exact.
            for backend, real_key in again[6]:
                direct = gateway.servers[gateway.real.index(backend)].client()
                self.assertEqual(
                    direct.get_object(Bucket=backend, Key=real_key)["Body"].read(), expected[identity[1]][0], identity
                )
        usage = dict(
            (backend, (used, count))
            for backend, used, count in query(url, "SELECT backend, used_bytes, object_count FROM backend_usage")
        )
        total = sum(len(body) for body, _ in expected.values())
        self.assertEqual(usage, {backend: (total, len(expected)) for backend in gateway.real})

        # The restarted daemon serves every object as before.
        gateway.daemon.start()
        for key, (body, _) in expected.items():
            answer = client.get_object(Bucket=VB, Key=key)
            self.assertEqual(answer["Body"].read(), body, key)
            head = heads[key]
            for field in ("ETag", "ContentLength", "ContentType", "Metadata", "CacheControl"):
                self.assertEqual(answer.get(field), head.get(field), (key, field))
        listed = client.list_objects_v2(Bucket=VB)["Contents"]
        self.assertEqual(
            [(item["Key"], item["Size"], item["ETag"]) for item in listed],
            sorted((key, len(body), heads[key]["ETag"]) for key, (body, _) in expected.items()),
        )


# -- the resolution, in this process ---------------------------------------------------


def moment(seconds: int) -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, 0, 0, seconds, tzinfo=datetime.UTC)


class ResolutionMixin:
    """
    Copies of one virtual key met in any order, in this process on a fresh
    database of C{kind}, without backends: the newest version wins (the older
    first: the row is moved to the newer copy; the newer first: the older is
    only noted); copies of one version on distinct backends are its
    locations, oldest first, as many as the bucket keeps.
    """

    kind: str

    def rebuilder(
        self, replicas: int = 1, dry_run: bool = False, versioning: Optional[str] = None, keep_older_copies: bool = False
    ) -> Rebuilder:
        """A rebuild of a fresh database: the configured bucket vb-r (with C{versioning}), no backend answering."""
        import yaml

        from s3balance.config import load_config

        testcase: Any = self
        workdir = Path(testcase.mktemp())
        workdir.mkdir()
        if dry_run:
            # A dry run finds no schema and makes none.
            database, self.url = fresh_store_database(testcase, self.kind, workdir)
        else:
            # At the head revision already: prepare_database's migration of an
            # empty database is RebuildTests' (rebuild after a lost database).
            database, self.url = migrated_store_database(testcase, self.kind, workdir)
        self.database = database["dsn"]
        backend = {"endpoint": "http://127.0.0.1:9", "access_key_id": "a", "secret_access_key": "s", "virtual": False}
        config = {
            "server": {"host": "127.0.0.1", "port": 9},
            "database": database,
            "buckets": [{"name": "real-a", **backend}, {"name": "real-b", **backend}, {"name": "vb-r", "virtual": True}],
            "balancer": {"replicas": replicas},
            "s3api": {"access_key": "k", "secret_key": "s"},
        }
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.out = io.StringIO()
        testcase.patch(sys, "stderr", io.StringIO())  # (the summary's progress line)
        loaded = load_config(str(path))
        if versioning is not None:
            # Set on the loaded configuration: the loader's check of buckets[].versioning
            # lower-cases the value before comparing it to "Enabled" and "Suspended".
            loaded = attr.evolve(
                loaded, virtual_buckets=tuple(attr.evolve(b, versioning=versioning) for b in loaded.virtual_buckets)
            )
        options = RebuildOptions(dry_run=dry_run, keep_older_copies=keep_older_copies)
        rebuilder = Rebuilder(loaded, options, clients={}, out=self.out)
        testcase.addCleanup(rebuilder.engine.dispose)
        rebuilder.prepare_database()
        return rebuilder

    def copy(
        self,
        backend: str,
        seconds: int,
        size: int,
        key: str = "over",
        etag: Optional[str] = None,
        bucket: str = "vb-r",
    ) -> BackendCopy:
        """A copy of C{bucket}/C{key}, its ETag from its size unless given, Content-Type and metadata from its time."""
        when = moment(seconds)
        return BackendCopy(
            backend=backend,
            real_key=f"{bucket}/{uuid.uuid4().hex}",
            size=size,
            etag=etag or f'"{size:032x}"',
            last_modified=when,
            listed=when,
            content_type=f"text/v{seconds}",
            headers={"x-amz-meta-v": str(seconds)},
            metadata={"s3balance-bucket": bucket, "s3balance-key": key},
        )

    def found(self, rebuilder: Rebuilder, *copies: BackendCopy) -> None:
        for copy in copies:
            rebuilder.found(copy.backend, copy.real_key, copy.metadata["s3balance-bucket"], copy)

    def rekeyed(self, copies: Sequence[BackendCopy], key: str) -> list[BackendCopy]:
        """The same copies (times, sizes, ETags, backends) of another key, each under a real key of its own."""
        return [
            attr.evolve(
                c,
                real_key=f"{c.metadata['s3balance-bucket']}/{uuid.uuid4().hex}",
                metadata={**c.metadata, "s3balance-key": key},
            )
            for c in copies
        ]

    def versions_of(self, bucket: str, key: str) -> list[tuple[Optional[str], Optional[int], int, list[str]]]:
        """(version id, latest, size, real keys of its locations) of each row of the key, by row id."""
        o, loc = tables.objects, tables.object_locations
        engine = engine_on(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(o.c.id, o.c.version_id, o.c.latest, o.c.size)
                    .where(o.c.bucket == bucket, o.c.key == encode_key(key))
                    .order_by(o.c.id)
                ).all()
                return [
                    (
                        row.version_id,
                        row.latest,
                        row.size,
                        list(
                            conn.execute(
                                select(loc.c.real_key).where(loc.c.object_id == row.id).order_by(loc.c.id)
                            ).scalars()
                        ),
                    )
                    for row in rows
                ]
        finally:
            engine.dispose()

    def bucket_versioning(self, bucket: str) -> list[Row]:
        return query(self.url, f"SELECT origin, versioning FROM buckets WHERE name = '{bucket}'")

    def bucket_usage(self) -> list[Row]:
        """(bytes, objects) of the bucket, as the store accounts them."""
        return query(self.url, "SELECT SUM(used_bytes), SUM(object_count) FROM bucket_usage WHERE bucket = 'vb-r'")

    def test_newest_copy_wins_in_either_order(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder()
        old, new = self.copy("real-a", 1, 10), self.copy("real-b", 2, 20)
        for older_first in (True, False):
            key = f"over-{older_first}"
            first, second = self.rekeyed((old, new) if older_first else (new, old), key)
            self.found(rebuilder, first, second)
            newer = second if older_first else first
            older = first if older_first else second
            size, etag, content_type, headers, backend, real_key = dump(self.url)[("vb-r", key)][:6]
            testcase.assertEqual(
                (size, etag, content_type, headers, backend, real_key),
                (20, new.etag, "text/v2", {"x-amz-meta-v": "2"}, "real-b", newer.real_key),
            )
            rebuilder.print_conflicts()
            conflicts = lines_with(self.out.getvalue(), f"conflict: object=vb-r/{key} ")
            testcase.assertEqual(len(conflicts), 1)
            testcase.assertIn(f"kept backend=real-b real_key={newer.real_key} ", conflicts[0])
            testcase.assertIn(f"older copy left on its backend: backend=real-a real_key={older.real_key} ", conflicts[0])
        testcase.assertEqual(sorted(dump(self.url)), [("vb-r", "over-False"), ("vb-r", "over-True")])
        # The older copies are left alone: nothing is queued for deletion.
        testcase.assertEqual(query(self.url, "SELECT COUNT(*) FROM deletion_queue"), [(0,)])
        testcase.assertEqual((rebuilder.report.rebuilt, rebuilder.report.rebuilt_bytes), (2, 40))
        testcase.assertEqual((rebuilder.report.conflicts, rebuilder.report.older_copies), (2, 2))
        # The store's own accounting of the bucket follows the move.
        testcase.assertEqual(self.bucket_usage(), [(40, 2)])

    def test_same_last_modified_is_said(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder()
        self.found(rebuilder, self.copy("real-a", 5, 1), self.copy("real-b", 5, 2))
        testcase.assertEqual(dump(self.url)[("vb-r", "over")][4], "real-b")  # by backend name, then real key
        rebuilder.print_conflicts()
        testcase.assertIn("same Last-Modified", self.out.getvalue())

    def test_copies_of_one_version_are_its_locations(self) -> None:
        """Same size and ETag (quotes and case aside) on distinct backends: one object, both locations, oldest first."""
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2)
        first = self.copy("real-b", 1, 10, etag='"0123456789abcdef0123456789abcdef"')
        second = self.copy("real-a", 2, 10, etag='"0123456789ABCDEF0123456789ABCDEF"')
        for n, order in enumerate(((first, second), (second, first))):
            self.found(rebuilder, *self.rekeyed(order, f"k{n}"))
        rows = stored(self.url)
        testcase.assertEqual(sorted(rows), [("vb-r", "k0"), ("vb-r", "k1")])
        for identity, (size, etag, content_type, headers, last_modified, _, locations) in rows.items():
            # The oldest copy first (the primary); the newest's headers and Last-Modified.
            testcase.assertEqual([backend for backend, _ in locations], ["real-b", "real-a"], identity)
            testcase.assertEqual((size, content_type, headers, last_modified), (10, "text/v2", {"x-amz-meta-v": "2"}, moment(2)))
            testcase.assertEqual(etag.strip('"').lower(), "0123456789abcdef0123456789abcdef")
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.rebuilt_bytes, r.conflicts, r.older_copies, r.errors), (2, 20, 0, 0, 0))
        testcase.assertEqual(query(self.url, "SELECT COUNT(*) FROM deletion_queue"), [(0,)])
        testcase.assertEqual(self.bucket_usage(), [(20, 2)])  # one object each, not one per copy
        # One copy only: short of the bucket's two.
        self.found(rebuilder, self.copy("real-a", 3, 5, key="single"))
        rebuilder.print_objects()
        rebuilder.summary()
        out = self.out.getvalue()
        line = lines_with(out, "rebuilt: object=vb-r/k0 ")[0]
        testcase.assertIn(f"backend=real-b real_key={rows[('vb-r', 'k0')][6][0][1]} size=10 ", line)
        testcase.assertIn(f" copies=2 (also backend=real-a real_key={rows[('vb-r', 'k0')][6][1][1]})", line)
        testcase.assertNotIn("copies=", lines_with(out, "rebuilt: object=vb-r/single ")[0])
        testcase.assertRegex(out, r"objects with several copies +2 \(4 locations\)")
        testcase.assertRegex(out, r"fewer copies than their bucket keeps +1\n")
        testcase.assertIn("1 object(s) have fewer copies than their bucket keeps", out)

    def test_the_newest_version_keeps_its_copies_in_any_order(self) -> None:
        """
        Two versions with a copy on each backend, and an older copy of the
        newer version on one backend: whatever the order, the newer version
        with its newest copy on each backend, the rest reported.
        """
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2)
        copies = (
            self.copy("real-a", 1, 10),  # the old version
            self.copy("real-b", 2, 10),
            self.copy("real-a", 3, 20),  # an older copy of the new version (same backend)
            self.copy("real-b", 4, 20),  # the new version
            self.copy("real-a", 5, 20),
        )
        orders = random.Random(7).sample(list(itertools.permutations(range(len(copies)))), 10)
        keys = {}
        for n, order in enumerate(orders):
            keys[f"k{n}"] = self.rekeyed(tuple(copies[i] for i in order), f"k{n}")
            self.found(rebuilder, *keys[f"k{n}"])
        rows = stored(self.url)
        rebuilder.print_conflicts()
        out = self.out.getvalue()
        for key, met in keys.items():
            by_time = {c.last_modified.second: c for c in met}
            size, _, content_type, _, last_modified, _, locations = rows[("vb-r", key)]
            testcase.assertEqual(
                locations, [("real-b", by_time[4].real_key), ("real-a", by_time[5].real_key)], key
            )
            testcase.assertEqual((size, content_type, last_modified), (20, "text/v5", moment(5)), key)
            conflicts = lines_with(out, f"conflict: object=vb-r/{key} ")
            testcase.assertEqual(len(conflicts), 3, out)
            for line in conflicts:
                testcase.assertIn(f"kept backend=real-b real_key={by_time[4].real_key} (and 1 more copies) ", line)
            testcase.assertIn(
                f"older copy of the same version on a backend that keeps a newer one, left on it: backend=real-a "
                f"real_key={by_time[3].real_key} ",
                conflicts[0],
            )
            for line, seconds in zip(conflicts[1:], (2, 1), strict=True):
                testcase.assertIn("older copy left on its backend: backend=", line)
                testcase.assertIn(f"real_key={by_time[seconds].real_key} ", line)
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.rebuilt_bytes, r.conflicts, r.older_copies), (10, 200, 10, 30))
        testcase.assertEqual(query(self.url, "SELECT COUNT(*) FROM deletion_queue"), [(0,)])
        testcase.assertEqual(self.bucket_usage(), [(200, 10)])

    def test_copies_beyond_the_bucket_s_replicas_are_surplus(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=1)
        older, newer = self.copy("real-a", 1, 10), self.copy("real-b", 2, 10)
        self.found(rebuilder, older, newer)
        testcase.assertEqual(dump(self.url)[("vb-r", "over")][4:6], ("real-b", newer.real_key))
        rebuilder.print_conflicts()
        [line] = lines_with(self.out.getvalue(), "conflict:")
        testcase.assertIn(
            f"surplus copy of the same version (the bucket keeps 1), left on its backend: backend=real-a "
            f"real_key={older.real_key} ",
            line,
        )

    def test_a_key_written_meanwhile_is_left_alone(self) -> None:
        """--force with a daemon running: the key's row changed since this run recorded it; the next copy leaves it."""
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2)
        first, second = self.copy("real-a", 1, 10), self.copy("real-b", 2, 10)
        self.found(rebuilder, first)
        engine = engine_on(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    tables.object_locations.update()
                    .where(tables.object_locations.c.real_key == first.real_key)
                    .values(real_key="vb-r/the-daemon-s")
                )
        finally:
            engine.dispose()
        self.found(rebuilder, second)
        testcase.assertEqual(stored(self.url)[("vb-r", "over")][6], [("real-a", "vb-r/the-daemon-s")])
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.present, r.errors), (0, 1, 0))

    def test_a_dry_run_resolves_alike_and_writes_nothing(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2, dry_run=True)
        self.found(rebuilder, self.copy("real-a", 1, 10), self.copy("real-b", 2, 10), self.copy("real-a", 3, 7))
        rebuilder.print_objects()
        rebuilder.print_conflicts()
        [line] = lines_with(self.out.getvalue(), "would-rebuild:")
        testcase.assertIn("size=7 ", line)
        testcase.assertNotIn("copies=", line)
        testcase.assertEqual(len(lines_with(self.out.getvalue(), "conflict:")), 2)
        if self.kind == "sqlite":
            testcase.assertFalse(Path(self.database).exists())
        else:
            testcase.assertFalse(has_tables(self.url))

    # -- buckets that keep versions -----------------------------------------------------

    def three_versions(self, bucket: str = "vb-r") -> tuple[BackendCopy, ...]:
        """Three versions of a key, the middle one with a copy on each backend."""
        return (
            self.copy("real-a", 1, 10, bucket=bucket),  # the oldest version
            self.copy("real-b", 2, 20, bucket=bucket),  # the middle one, and its replica a second later
            self.copy("real-a", 3, 20, bucket=bucket),
            self.copy("real-b", 4, 30, bucket=bucket),  # the newest
        )

    def test_a_versioned_bucket_keeps_every_version_in_any_order(self) -> None:
        """
        A bucket configured with versioning: each version a row with its
        copies, oldest first, the newest the latest, each readable by its
        version id; no copy left for fsck, whatever order they were met in.
        """
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2, versioning="Enabled")
        copies = self.three_versions()
        orders = random.Random(11).sample(list(itertools.permutations(range(len(copies)))), 6)
        keys = {f"k{n}": self.rekeyed([copies[i] for i in order], f"k{n}") for n, order in enumerate(orders)}
        for met in keys.values():
            self.found(rebuilder, *met)
        testcase.assertEqual(stored(self.url), {})  # recorded once every backend was read
        rebuilder.record_gathered()
        engine = engine_on(self.url)
        self.addCleanup(engine.dispose)
        for key, met in keys.items():
            by_time = {c.last_modified.second: c for c in met}
            rows = self.versions_of("vb-r", key)
            testcase.assertEqual(
                [(latest, size, real_keys) for _, latest, size, real_keys in rows],
                [
                    (None, 10, [by_time[1].real_key]),
                    (None, 20, [by_time[2].real_key, by_time[3].real_key]),
                    (1, 30, [by_time[4].real_key]),
                ],
                key,
            )
            ids = [version_id for version_id, _, _, _ in rows]
            testcase.assertEqual(len({*ids} - {None}), 3, ids)
            with engine.connect() as conn:
                for version_id, seconds in zip(ids, (1, 3, 4), strict=True):
                    record = versions.get_version(conn, "vb-r", key, version_id)
                    assert record is not None
                    testcase.assertEqual(
                        (record.version_id, record.size, record.content_type, record.headers, record.last_modified),
                        (version_id, by_time[seconds].size, f"text/v{seconds}", {"x-amz-meta-v": str(seconds)},
                         moment(seconds)),
                    )
                newest = versions.get_version(conn, "vb-r", key, None)
                assert newest is not None
                testcase.assertEqual((newest.version_id, newest.size), (ids[2], 30))
        # Nothing for fsck: every copy is a version's location.
        located = {real_key for key in keys for *_, real_keys in self.versions_of("vb-r", key) for real_key in real_keys}
        testcase.assertEqual(located, {c.real_key for met in keys.values() for c in met})
        testcase.assertEqual(self.bucket_versioning("vb-r"), [("config", "Enabled")])
        r = rebuilder.report
        testcase.assertEqual(
            (r.rebuilt, r.rebuilt_bytes, r.noncurrent, r.noncurrent_bytes, r.conflicts, r.older_copies, r.errors),
            (6, 180, 12, 180, 0, 0, 0),
        )
        testcase.assertEqual(self.bucket_usage(), [(360, 18)])  # every version counts
        testcase.assertEqual(query(self.url, "SELECT COUNT(*) FROM deletion_queue"), [(0,)])
        rebuilder.print_objects()
        rebuilder.print_conflicts()
        rebuilder.summary()
        out = self.out.getvalue()
        testcase.assertEqual(lines_with(out, "conflict:"), [])
        testcase.assertRegex(out, r"conflicts \(keys with copies left\) +0 \(0 copies\)")
        rows = self.versions_of("vb-r", "k0")
        [line] = lines_with(out, "rebuilt: object=vb-r/k0 ")
        testcase.assertIn(f"version_id={rows[2][0]} backend=real-b ", line)
        noncurrent = lines_with(out, "rebuilt-noncurrent: object=vb-r/k0 ")
        testcase.assertEqual(len(noncurrent), 2, out)
        testcase.assertIn(f"version_id={rows[1][0]} ", noncurrent[0])
        testcase.assertIn(" copies=2 ", noncurrent[0])
        testcase.assertIn(f"version_id={rows[0][0]} ", noncurrent[1])
        testcase.assertRegex(out, r"noncurrent versions kept +12 \(180 B\)")
        testcase.assertIn("result: 6 object(s) rebuilt, 12 noncurrent version(s) kept", out)

    def test_a_suspended_bucket_keeps_its_versions_too(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2, versioning="Suspended")
        self.found(rebuilder, *self.three_versions())
        rebuilder.record_gathered()
        rows = self.versions_of("vb-r", "over")
        testcase.assertEqual([(latest, size) for _, latest, size, _ in rows], [(None, 10), (None, 20), (1, 30)])
        testcase.assertNotIn(None, [version_id for version_id, *_ in rows])
        testcase.assertEqual(self.bucket_versioning("vb-r"), [("config", "Suspended")])

    def test_keep_older_copies_versions_a_bucket_not_configured(self) -> None:
        """
        --keep-older-copies: a bucket not configured that has older copies
        keeps them as versions and gets versioning Enabled; one without any
        stays unversioned; a configured bucket without versioning keeps its
        newest copy only, as without the option.
        """
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2, keep_older_copies=True)
        over = self.three_versions(bucket="api-v")
        self.found(rebuilder, *over, self.copy("real-a", 5, 7, key="one", bucket="api-v"))
        self.found(rebuilder, self.copy("real-a", 1, 8, key="plain", bucket="api-p"))
        self.found(rebuilder, self.copy("real-a", 1, 10), self.copy("real-b", 2, 20))  # vb-r/over
        rebuilder.record_gathered()
        rows = self.versions_of("api-v", "over")
        testcase.assertEqual(
            [(latest, size, real_keys) for _, latest, size, real_keys in rows],
            [
                (None, 10, [over[0].real_key]),
                (None, 20, [over[1].real_key, over[2].real_key]),
                (1, 30, [over[3].real_key]),
            ],
        )
        testcase.assertNotIn(None, [version_id for version_id, *_ in rows])
        [(version_id, latest, size, _)] = self.versions_of("api-v", "one")
        testcase.assertEqual((latest, size), (1, 7))
        testcase.assertIsNotNone(version_id)
        testcase.assertEqual(self.bucket_versioning("api-v"), [("api", "Enabled")])
        testcase.assertEqual(self.bucket_versioning("api-p"), [("api", None)])
        testcase.assertEqual([(v, latest, size) for v, latest, size, _ in self.versions_of("api-p", "plain")], [(None, 1, 8)])
        testcase.assertEqual([(v, latest, size) for v, latest, size, _ in self.versions_of("vb-r", "over")], [(None, 1, 20)])
        testcase.assertEqual(self.bucket_versioning("vb-r"), [("config", None)])
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.noncurrent, r.versioned_buckets, r.conflicts, r.older_copies), (4, 2, 1, 1, 1))
        rebuilder.print_conflicts()
        rebuilder.summary()
        out = self.out.getvalue()
        testcase.assertIn("bucket: api-v: versioning Enabled (not configured; --keep-older-copies", out)
        [conflict] = lines_with(out, "conflict: object=")
        testcase.assertIn("conflict: object=vb-r/over ", conflict)
        testcase.assertNotIn("older copies of another version", out)  # vb-r is configured: never versioned
        testcase.assertRegex(out, r"versioning Enabled \(not configured\) +1\n")

    def test_without_the_option_a_bucket_not_configured_keeps_its_newest_copy(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2)
        over = self.three_versions(bucket="api-v")
        self.found(rebuilder, *over)
        rebuilder.record_gathered()
        testcase.assertEqual(
            [(v, latest, size, keys) for v, latest, size, keys in self.versions_of("api-v", "over")],
            [(None, 1, 30, [over[3].real_key])],
        )
        testcase.assertEqual(self.bucket_versioning("api-v"), [("api", None)])
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.noncurrent, r.conflicts, r.older_copies), (1, 0, 1, 3))
        rebuilder.print_conflicts()
        testcase.assertEqual(len(lines_with(self.out.getvalue(), "conflict: object=api-v/over ")), 3)
        testcase.assertIn("older copies of another version in api-v (not configured) ", self.out.getvalue())
        testcase.assertIn("with --keep-older-copies", self.out.getvalue())

    def test_force_leaves_a_versioned_key_the_database_has(self) -> None:
        """--force: a key with any row (a delete marker only, here) is left as it is; the others get every version."""
        testcase: Any = self
        first = self.rebuilder(replicas=2, versioning="Enabled")
        first.need_bucket("vb-r")
        engine = engine_on(self.url)
        try:
            with engine.begin() as conn:
                versions.add_delete_marker(conn, "vb-r", "gone", versions.ENABLED, moment(9), datetime.timedelta(0))
        finally:
            engine.dispose()
        rebuilder = Rebuilder(first.config, RebuildOptions(force=True), clients={}, out=self.out)
        self.addCleanup(rebuilder.engine.dispose)
        rebuilder.prepare_database()
        self.found(rebuilder, *self.rekeyed(self.three_versions(), "gone"), *self.three_versions())
        rebuilder.record_gathered()
        [(_, latest, size, _)] = self.versions_of("vb-r", "gone")
        testcase.assertEqual((latest, size), (None, 0))  # the delete marker, alone
        testcase.assertEqual([size for _, _, size, _ in self.versions_of("vb-r", "over")], [10, 20, 30])
        r = rebuilder.report
        testcase.assertEqual((r.rebuilt, r.noncurrent, r.present), (1, 2, 4))

    def test_a_dry_run_of_a_versioned_bucket_writes_nothing(self) -> None:
        testcase: Any = self
        rebuilder = self.rebuilder(replicas=2, versioning="Enabled", dry_run=True)
        self.found(rebuilder, *self.three_versions())
        rebuilder.record_gathered()
        rebuilder.print_objects()
        out = self.out.getvalue()
        testcase.assertEqual(len(lines_with(out, "would-rebuild: object=vb-r/over ")), 1, out)
        testcase.assertEqual(len(lines_with(out, "would-rebuild-noncurrent: object=vb-r/over ")), 2, out)
        testcase.assertNotIn("version_id=", out)
        testcase.assertEqual((rebuilder.report.rebuilt, rebuilder.report.noncurrent), (1, 2))
        if self.kind == "sqlite":
            testcase.assertFalse(Path(self.database).exists())
        else:
            testcase.assertFalse(has_tables(self.url))


class SQLiteResolutionTests(ResolutionMixin, SynchronousTestCase):
    kind = "sqlite"


class PostgreSQLResolutionTests(ResolutionMixin, SynchronousTestCase):
    kind = dbfixtures.POSTGRES


class MariaDBResolutionTests(ResolutionMixin, SynchronousTestCase):
    kind = dbfixtures.MYSQL


class StrongestLockTests(SynchronousTestCase):
    """The lock a rebuilt version gets from its copies: the strongest, so that a rebuild never weakens one."""

    T = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    def copy(self, mode: Optional[str] = None, days: int = 0, hold: bool = False) -> Seen:
        until = self.T + datetime.timedelta(days=days) if mode is not None else None
        return Seen("b", f"vb/{mode}{days}{hold}", 1, '"e"', self.T, self.T, mode, until, hold)

    def test_strongest_lock(self) -> None:
        self.assertIsNone(strongest_lock([self.copy(), self.copy()]))
        self.assertEqual(strongest_lock([self.copy(), self.copy(hold=True)]), Lock(None, None, True))
        self.assertEqual(
            strongest_lock([self.copy("GOVERNANCE", 5), self.copy("GOVERNANCE", 9), self.copy()]),
            Lock("GOVERNANCE", self.T + datetime.timedelta(days=9), False),
        )
        self.assertEqual(
            strongest_lock([self.copy("GOVERNANCE", 9, hold=True), self.copy("COMPLIANCE", 2)]),
            Lock("COMPLIANCE", self.T + datetime.timedelta(days=9), True),
        )
