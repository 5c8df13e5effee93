"""
C{s3balance-admin import} against a real daemon (SQLite store) over two real
SeaweedFS backends: keys put directly on a backend's real bucket (another
application's) are adopted into a virtual bucket with their metadata, and the
daemon serves them byte-exact; a second import adopts nothing, a dry run
writes nothing, a key the virtual bucket already has is a conflict and stays,
s3balance's own keys and the health probe's are never adopted, the prefix
is honoured, and the usage counters grow as for a commit.  The store-level
part (L{ImportStoreTests}: adopted rows, conflicts, a second run, usage) runs
in this process on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, pool, select, text
from twisted.trial.unittest import SynchronousTestCase

from s3balance.store import tables
from tests import dbfixtures
from tests.daemon import ROOT, start_gateway
from tests.harness.process import run_in_process, venv_bin

MIB = 1024 * 1024
EXPIRES = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
Row = tuple[Any, ...]


# The daemon's database.type of a test database kind.
DATABASE_TYPES = {"sqlite": "sqlite", dbfixtures.POSTGRES: "postgres", dbfixtures.MYSQL: "mysql"}


def engine_on(url: str) -> Any:
    return create_engine(url, poolclass=pool.NullPool)


def stored(url: str) -> dict[tuple[str, str], Row]:
    """
    (bucket, key) -> (size, etag, content_type, headers, last_modified,
    checksums, locations): the objects of the store at C{url}, their
    locations (backend, real key) in the store's order (the primary first).
    """
    o, loc = tables.objects, tables.object_locations
    engine = engine_on(url)
    try:
        with engine.connect() as conn:
            objects = conn.execute(select(o)).all()
            located = conn.execute(
                select(loc.c.object_id, loc.c.backend, loc.c.real_key).order_by(loc.c.id)
            ).all()
    finally:
        engine.dispose()
    where: dict[int, list[tuple[str, str]]] = {}
    for row in located:
        where.setdefault(row.object_id, []).append((row.backend, row.real_key))
    return {
        (row.bucket, bytes(row.key).decode()): (
            row.size, row.etag, row.content_type, json.loads(row.headers), row.last_modified, row.checksums,
            where.get(row.id, []),
        )
        for row in objects
    }


def query(url: str, sql: str) -> list[Row]:
    engine = engine_on(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def fresh_store_database(testcase: SynchronousTestCase, kind: str, workdir: Path) -> tuple[dict[str, str], str]:
    """(the daemon's database section, its SQLAlchemy URL): a fresh database of C{kind}."""
    if kind == "sqlite":
        path = str(workdir / "s3balance.db")
        return {"type": "sqlite", "dsn": path}, "sqlite:///" + path
    url = dbfixtures.fresh_database(testcase, kind)  # SkipTest when the server does not answer (an error under CI)
    return {"type": DATABASE_TYPES[kind], "dsn": url}, url


def migrated_store_database(testcase: SynchronousTestCase, kind: str, workdir: Path) -> tuple[dict[str, str], str]:
    """L{fresh_store_database} at the head revision already (L{dbfixtures.store_database})."""
    if kind == "sqlite":
        path = str(workdir / "s3balance.db")
        shutil.copyfile(dbfixtures.migrated_sqlite_template(), path)
        return {"type": "sqlite", "dsn": path}, "sqlite:///" + path
    url = dbfixtures.store_database(testcase, kind)  # SkipTest when the server does not answer (an error under CI)
    return {"type": DATABASE_TYPES[kind], "dsn": url}, url


def run_admin(config_path: Path, command: str, *args: str, own_process: bool = False) -> tuple[int, str, str]:
    """
    C{s3balance-admin COMMAND --config PATH ARGS}; (status, stdout, stderr).
    Its C{main} in this process (L{run_in_process}), or with C{own_process}
    as operators run it, the console script in a process of its own.
    """
    if not own_process:
        from s3balance.ops.cli import main

        return run_in_process(main, [command, "--config", str(config_path), *args], str(config_path.parent))
    result = subprocess.run(
        [venv_bin("s3balance-admin"), command, "--config", str(config_path), *args],
        cwd=str(config_path.parent),
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout, result.stderr


def lines_with(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def key_of(line: str) -> str:
    """The key of an 'adopted: key=K size=...' line."""
    return line.split("key=", 1)[1].rsplit(" size=", 1)[0]


def stored_objects(database: str, bucket: str) -> dict[str, tuple[Any, ...]]:
    """key -> (size, etag, content_type, headers, backend, real_key) of a virtual bucket's rows."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute(
            "SELECT o.key, o.size, o.etag, o.content_type, o.headers, l.backend, l.real_key "
            "FROM objects o JOIN object_locations l ON l.object_id = o.id WHERE o.bucket = ?",
            (bucket,),
        ).fetchall()
    return {bytes(row[0]).decode(): tuple(row[1:]) for row in rows}


class Planted(SynchronousTestCase):
    """A daemon (SQLite) over two SeaweedFS backends, and another application's keys on the first one's real bucket."""

    def setUp(self) -> None:
        self.gateway = start_gateway("import")
        self.addCleanup(self.gateway.daemon.stop)
        self.client = self.gateway.client()
        self.bucket = "vb-default"
        self.real0 = self.gateway.real_buckets[0]
        self.direct0 = self.gateway.backends[0].client()
        self.database = str(self.gateway.daemon.config["database"]["dsn"])
        self.config_path = self.gateway.daemon.config_path
        # Another application's keys, written directly on backend 0.
        self.bodies: dict[str, bytes] = {
            "photos/cat.jpg": os.urandom(3000),
            "photos/2024/a b+c ü.txt": b"a key with spaces, a plus and an umlaut",
            "photos/empty": b"",
            "photos/big.bin": os.urandom(5 * MIB + 1000),
            "docs/readme.txt": b"outside the prefix",
        }
        self.put("photos/cat.jpg",
            ContentType="image/jpeg",
            Metadata={"owner": "alice", "camera": "x100"},
            CacheControl="max-age=3600",
            ContentDisposition='inline; filename="cat.jpg"',
            ContentLanguage="en",
            Expires=EXPIRES,
        )
        self.put("photos/2024/a b+c ü.txt", ContentType="text/plain; charset=utf-8")
        self.put("photos/empty")
        self.put_multipart("photos/big.bin", ContentType="application/x-tar", Metadata={"kind": "archive"})
        self.put("docs/readme.txt", ContentType="text/plain")
        # Keys of s3balance's own layout (an orphan of ours, and one without
        # our metadata) and the health probe's: never adopted.
        from s3balance.backends.health import PROBE_KEY

        self.ours = [f"{self.bucket}/{uuid.uuid4().hex}", f"{self.bucket}/{uuid.uuid4().hex}"]
        self.direct0.put_object(
            Bucket=self.real0,
            Key=self.ours[0],
            Body=b"ours",
            Metadata={"s3balance-bucket": self.bucket, "s3balance-key": "lost"},
        )
        self.direct0.put_object(Bucket=self.real0, Key=self.ours[1], Body=b"layout only")
        self.direct0.put_object(Bucket=self.real0, Key=PROBE_KEY, Body=b"probe")
        self.photos = sorted(key for key in self.bodies if key.startswith("photos/"))

    def put(self, key: str, **extra: Any) -> None:
        self.direct0.put_object(Bucket=self.real0, Key=key, Body=self.bodies[key], **extra)

    def put_multipart(self, key: str, **extra: Any) -> None:
        body = self.bodies[key]
        upload = self.direct0.create_multipart_upload(Bucket=self.real0, Key=key, **extra)
        parts = []
        for number, start in enumerate(range(0, len(body), 5 * MIB), start=1):
            answer = self.direct0.upload_part(
                Bucket=self.real0,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=body[start : start + 5 * MIB],
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.direct0.complete_multipart_upload(
            Bucket=self.real0, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )

    def run_import(self, *args: str) -> tuple[int, str, str]:
        return run_admin(self.config_path, "import", "--backend", self.real0, *args)


class ImportTests(Planted):

    def test_adopts_foreign_keys_and_serves_them(self) -> None:
        # Something of the gateway's own on both backends too.
        for number in range(4):
            self.client.put_object(Bucket=self.bucket, Key=f"gw/{number}", Body=b"g" * number)
        before = stored_objects(self.database, self.bucket)
        self.assertEqual(sorted(before), [f"gw/{n}" for n in range(4)])

        # A dry run reports what it would adopt and writes nothing.
        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/", "--dry-run")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(sorted(key_of(line) for line in lines_with(out, "would-adopt:")), self.photos, out)
        self.assertEqual(lines_with(out, "adopted:"), [], out)
        self.assertIn("dry run: nothing written", out)
        self.assertEqual(stored_objects(self.database, self.bucket), before)

        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(sorted(key_of(line) for line in lines_with(out, "adopted:")), self.photos, out)
        self.assertIn(f"result: {len(self.photos)} key(s) adopted", out)
        self.assertIn("s3balance-admin import: progress:", err)
        stored = stored_objects(self.database, self.bucket)
        self.assertEqual(sorted(stored), sorted([*before, *self.photos]))
        for key in self.photos:
            size, etag, _, _, backend, real_key = stored[key]
            direct = self.direct0.head_object(Bucket=self.real0, Key=key)
            self.assertEqual((size, etag, backend, real_key), (len(self.bodies[key]), direct["ETag"], self.real0, key))

        # The daemon serves them: GET byte-exact, HEAD with their metadata, listings.
        for key in self.photos:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            self.assertEqual(answer["Body"].read(), self.bodies[key], key)
            direct = self.direct0.head_object(Bucket=self.real0, Key=key)
            self.assertEqual(answer["ETag"], direct["ETag"])
            self.assertEqual(answer["LastModified"], direct["LastModified"])
            self.assertEqual(answer["ContentType"], direct["ContentType"])
        head = self.client.head_object(Bucket=self.bucket, Key="photos/cat.jpg")
        self.assertEqual(head["ContentType"], "image/jpeg")
        self.assertEqual(head["Metadata"], {"owner": "alice", "camera": "x100"})
        self.assertEqual(head["CacheControl"], "max-age=3600")
        self.assertEqual(head["ContentDisposition"], 'inline; filename="cat.jpg"')
        self.assertEqual(head["ContentLanguage"], "en")
        self.assertEqual(head["ContentLength"], 3000)
        big = self.client.head_object(Bucket=self.bucket, Key="photos/big.bin")
        self.assertEqual(big["Metadata"], {"kind": "archive"})
        self.assertEqual(big["ContentType"], "application/x-tar")
        self.assertTrue(big["ETag"].endswith('-2"'), big["ETag"])
        ranged = self.client.get_object(Bucket=self.bucket, Key="photos/big.bin", Range="bytes=5242870-5242889")
        self.assertEqual(ranged["Body"].read(), self.bodies["photos/big.bin"][5242870:5242890])
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix="photos/")["Contents"]
        self.assertEqual(
            [(item["Key"], item["Size"]) for item in listed],
            sorted((key, len(self.bodies[key])) for key in self.photos),
        )

        # Idempotent: a second run adopts nothing.
        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(lines_with(out, "adopted:"), [], out)
        self.assertIn("result: 0 key(s) adopted", out)
        self.assertEqual(len(stored_objects(self.database, self.bucket)), len(before) + len(self.photos))

        # The rest of the real bucket into a bucket made with CreateBucket: only
        # the key not adopted yet; s3balance's keys and the probe's never.
        other = self.gateway.new_bucket(self.client, prefix="imp")
        code, out, err = self.run_import("--bucket", other)
        self.assertEqual(code, 0, out + err)
        self.assertEqual([key_of(line) for line in lines_with(out, "adopted:")], ["docs/readme.txt"], out)
        self.assertEqual(sorted(stored_objects(self.database, other)), ["docs/readme.txt"])
        for key in self.ours:
            self.assertNotIn(key, out)
        self.assertEqual(self.client.get_object(Bucket=other, Key="docs/readme.txt")["Body"].read(), b"outside the prefix")
        # Every planted key is still on the backend, untouched.
        keys = self.gateway.backend_keys()[self.real0]
        for key in [*self.bodies, *self.ours]:
            self.assertIn(key, keys)

    def test_conflict_keeps_the_existing_object(self) -> None:
        self.client.put_object(Bucket=self.bucket, Key="photos/cat.jpg", Body=b"the gateway's cat", ContentType="x/y")
        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/", "--dry-run")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(len(lines_with(out, "conflict: key=photos/cat.jpg:")), 1, out)
        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/")
        self.assertEqual(code, 0, out + err)
        conflicts = lines_with(out, "conflict:")
        self.assertEqual(len(conflicts), 1, out)
        self.assertIn("key=photos/cat.jpg:", conflicts[0])
        self.assertIn("it is kept", conflicts[0])
        self.assertEqual(
            sorted(key_of(line) for line in lines_with(out, "adopted:")),
            [key for key in self.photos if key != "photos/cat.jpg"],
        )
        answer = self.client.get_object(Bucket=self.bucket, Key="photos/cat.jpg")
        self.assertEqual(answer["Body"].read(), b"the gateway's cat")
        self.assertEqual(answer["ContentType"], "x/y")
        # Reported again on the next run; still nothing overwritten.
        code, out, err = self.run_import("--bucket", self.bucket, "--prefix", "photos/")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(len(lines_with(out, "conflict:")), 1, out)
        self.assertEqual(lines_with(out, "adopted:"), [], out)

    def test_unknown_bucket_or_backend_is_refused(self) -> None:
        code, out, err = self.run_import("--bucket", "no-such-vbucket")
        self.assertEqual(code, 2, out + err)
        self.assertIn("--bucket no-such-vbucket: no such virtual bucket", err)
        code, out, err = run_admin(
            self.config_path, "import", "--backend", "no-such-backend", "--bucket", self.bucket, own_process=True
        )
        self.assertEqual(code, 2, out + err)
        self.assertIn("--backend no-such-backend: no such backend", err)
        self.assertEqual(stored_objects(self.database, self.bucket), {})


class ImportStoreTests(Planted):
    """
    The import in this process into a store of its own on a database of
    C{kind} (SQLite here; PostgreSQL and MariaDB below), which the daemon
    never ran on.
    """

    kind = "sqlite"

    def setUp(self) -> None:
        if self.kind != "sqlite":
            dbfixtures.require_server(self.kind)  # SkipTest when not there (an error under CI), before the daemon starts
        super().setUp()

    def own_store(self) -> tuple[Any, str]:
        """(the configuration, loaded, on a fresh database of C{kind} with the schema; its URL)."""
        from s3balance.config import load_config
        from s3balance.store import migrate

        config = yaml.safe_load(self.config_path.read_text())
        workdir = Path(self.mktemp())
        workdir.mkdir()
        config["database"], url = fresh_store_database(self, self.kind, workdir)
        path = workdir / "own.yaml"
        path.write_text(yaml.safe_dump(config))
        loaded = load_config(str(path))
        migrate.upgrade(loaded.database.url)
        return loaded, url

    def run_here(self, config: Any, **options: Any) -> tuple[int, str]:
        from s3balance.ops import importer

        out = io.StringIO()
        status = importer.run(config, importer.ImportOptions(backend=self.real0, bucket=self.bucket, **options), out=out)
        return status, out.getvalue()

    def test_adopts_keys_once_and_keeps_an_existing_object(self) -> None:
        from s3balance.ops import adopt

        config, url = self.own_store()
        self.patch(sys, "stderr", io.StringIO())
        # The bucket has an object under one of the keys already (the gateway's).
        engine = adopt.open_engine(url)
        self.addCleanup(engine.dispose)
        adopt.transaction(engine, adopt.ensure_bucket, self.bucket, adopt.ORIGIN_CONFIG, adopt.utc_now())
        theirs = adopt.BackendCopy(
            backend=self.gateway.real_buckets[1],
            real_key=f"{self.bucket}/{uuid.uuid4().hex}",
            size=17,
            etag='"0123456789abcdef0123456789abcdef"',
            last_modified=adopt.utc_now().replace(microsecond=0),
            listed=adopt.utc_now(),
            content_type="x/y",
            headers={},
            metadata={},
        )
        self.assertTrue(adopt.transaction(engine, adopt.insert_copy, self.bucket, "photos/cat.jpg", theirs, adopt.utc_now()))

        status, out = self.run_here(config, prefix="photos/", dry_run=True)
        self.assertEqual(status, 0, out)
        self.assertEqual(
            sorted(key_of(line) for line in lines_with(out, "would-adopt:")),
            [key for key in self.photos if key != "photos/cat.jpg"],
        )
        self.assertEqual(sorted(stored(url)), [(self.bucket, "photos/cat.jpg")])

        status, out = self.run_here(config, prefix="photos/")
        self.assertEqual(status, 0, out)
        adopted = [key for key in self.photos if key != "photos/cat.jpg"]
        self.assertEqual(sorted(key_of(line) for line in lines_with(out, "adopted:")), adopted, out)
        [conflict] = lines_with(out, "conflict:")
        self.assertIn("key=photos/cat.jpg:", conflict)
        rows = stored(url)
        self.assertEqual(sorted(rows), sorted((self.bucket, key) for key in self.photos))
        for key in adopted:
            size, etag, _, _, _, checksums, locations = rows[(self.bucket, key)]
            direct = self.direct0.head_object(Bucket=self.real0, Key=key)
            self.assertEqual((size, etag, checksums, locations), (len(self.bodies[key]), direct["ETag"], "{}", [(self.real0, key)]))
        cat = rows[(self.bucket, "photos/cat.jpg")]
        self.assertEqual((cat[0], cat[2], cat[6]), (17, "x/y", [(theirs.backend, theirs.real_key)]))
        size, _, content_type, headers, _, _, _ = rows[(self.bucket, "photos/big.bin")]
        self.assertEqual((size, content_type, headers), (5 * MIB + 1000, "application/x-tar", {"x-amz-meta-kind": "archive"}))

        # Again: every key is known now (or still taken).
        status, out = self.run_here(config, prefix="photos/")
        self.assertEqual(status, 0, out)
        self.assertEqual(lines_with(out, "adopted:"), [], out)
        self.assertEqual(len(lines_with(out, "conflict:")), 1, out)
        self.assertEqual(len(stored(url)), len(self.photos))

    def test_usage_is_counted_and_progress_shown(self) -> None:
        """backend_usage grows as for commits; progress on stderr; the configured bucket gets its row."""
        from s3balance.ops import adopt

        config, url = self.own_store()
        engine = engine_on(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO backend_usage (backend, used_bytes, object_count) VALUES (:backend, 100, 1)"),
                    {"backend": self.real0},
                )
        finally:
            engine.dispose()
        self.patch(adopt, "PROGRESS_EVERY", 0.0)
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        status, out = self.run_here(config)
        self.assertEqual(status, 0, out)
        adopted = sum(len(body) for body in self.bodies.values())
        usage = query(url, f"SELECT used_bytes, object_count FROM backend_usage WHERE backend = '{self.real0}'")
        self.assertEqual(usage, [(100 + adopted, 1 + len(self.bodies))])
        progress = lines_with(stderr.getvalue(), "s3balance-admin import: progress:")
        self.assertTrue(progress, stderr.getvalue())
        self.assertIn(f"{len(self.bodies)} adopted", progress[-1])
        self.assertIn("keys/s", progress[-1])
        # The configured bucket got its row (the daemon never ran on this database).
        self.assertEqual(query(url, "SELECT name, origin FROM buckets"), [("vb-default", "config")])


class PostgreSQLImportStoreTests(ImportStoreTests):
    kind = dbfixtures.POSTGRES


class MariaDBImportStoreTests(ImportStoreTests):
    kind = dbfixtures.MYSQL
