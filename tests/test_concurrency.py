"""
Two daemons on ONE database (PostgreSQL, then MariaDB) in front of the same two
SeaweedFS backends, hammered by 32 client threads (half through each daemon)
that write, delete and read the same few keys with distinct payloads.

Afterwards, once the deletion workers settled:
  - every key reads (through both daemons) as a version some writer wrote, and
    a version no completed operation was known to override; or is absent, and
    then a delete could have been the last operation;
  - the store and the backends agree: the location rows are exactly the
    objects on the backends (no missing data, no orphans), and fsck agrees;
  - no write intent and no queued deletion is left.

A second test does the same on a bucket with versioning Enabled: every
version any writer made is kept exactly once, under the id it was answered,
with its bytes; every delete made exactly one delete marker; each key's
versions are ordered newest first consistently with the clients' clocks (an
operation that ended before another began is older), with one latest.

Without a database server the tests skip saying why (fail under CI=true).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, func, pool, select
from twisted.trial.unittest import SynchronousTestCase

from s3balance.store import tables
from tests import dbfixtures
from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name

BUCKET = "vb-conc"
KEYS = [f"k/{n}" for n in range(8)]
THREADS = 32
DURATION = 12.0
SETTLE = 30.0


class Op:
    __slots__ = ("kind", "key", "payload", "start", "end", "ok", "error")

    def __init__(self, kind: str, key: str, payload: bytes | None) -> None:
        self.kind = kind
        self.key = key
        self.payload = payload
        self.start = time.monotonic()
        self.end = float("inf")
        self.ok = False
        self.error = ""


def payload_for(writer: int, seq: int, rng: random.Random) -> bytes:
    head = f"writer={writer} seq={seq};".encode()
    return head + bytes([65 + writer % 26]) * rng.randrange(0, 3000)


class TwoDaemonsOneDatabase:
    kind: str = ""
    db_type: str = ""
    # The bucket's buckets[].versioning (None: never versioned).
    versioning: str | None = None

    def setUp(self) -> None:
        # At the head revision already: the store's migration at start has
        # its own test (test_store.StartMigratesMixin).
        url = dbfixtures.store_database(self, self.kind)
        self.url = url
        first, second = shared_seaweedfs_pair()
        self.servers = (first, second)
        self.real = [unique_bucket_name("conc"), unique_bucket_name("conc")]
        first.create_bucket(self.real[0])
        second.create_bucket(self.real[1])
        backends = [backend_entry(first, self.real[0]), backend_entry(second, self.real[1])]
        self.daemons = []
        for number in range(2):
            workdir = Path(harness_dir()) / unique_bucket_name(f"conc{number}")
            workdir.mkdir(parents=True)
            config = base_config(
                backends,
                [BUCKET],
                workdir,
                database={"type": self.db_type, "dsn": url},
            )
            if self.versioning is not None:
                for entry in config["buckets"]:
                    if entry["name"] == BUCKET:
                        entry["versioning"] = self.versioning
            daemon = Daemon(config, name=f"conc-{self.kind}-{number}")
            # One after the other: two daemons starting at the same moment on
            # one database both insert the configured bucket's row.
            daemon.start()
            self.addCleanup(daemon.stop)
            self.daemons.append(daemon)
        self.engine = create_engine(url, poolclass=pool.NullPool)
        self.addCleanup(self.engine.dispose)

    # -- the load ------------------------------------------------------------

    def hammer(self) -> list[Op]:
        ops: list[Op] = []
        ops_lock = threading.Lock()
        barrier = threading.Barrier(THREADS, action=lambda: stop_at.append(time.monotonic() + DURATION))
        stop_at: list[float] = []

        def worker(number: int) -> None:
            rng = random.Random(number)
            client = self.daemons[number % 2].client()
            mine: list[Op] = []
            barrier.wait()
            seq = 0
            while time.monotonic() < stop_at[0]:
                key = rng.choice(KEYS)
                roll = rng.random()
                if roll < 0.5:
                    seq += 1
                    op = Op("put", key, payload_for(number, seq, rng))
                    try:
                        client.put_object(Bucket=BUCKET, Key=key, Body=op.payload)
                        op.ok = True
                        op.end = time.monotonic()
                    except Exception as error:
                        op.error = repr(error)
                elif roll < 0.7:
                    op = Op("delete", key, None)
                    try:
                        client.delete_object(Bucket=BUCKET, Key=key)
                        op.ok = True
                        op.end = time.monotonic()
                    except Exception as error:
                        op.error = repr(error)
                else:
                    op = Op("get", key, None)
                    try:
                        op.payload = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                        op.ok = True
                    except Exception as error:
                        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
                        if code == "NoSuchKey":
                            op.ok = True
                        else:
                            op.error = repr(error)
                    op.end = time.monotonic()
                mine.append(op)
            with ops_lock:
                ops.extend(mine)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION + 120)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads hung")
        self.assertGreater(len(ops), THREADS * 10, "the clients hardly ran")
        return ops

    # -- the checks ----------------------------------------------------------

    def count(self, table) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    def settled(self) -> bool:
        return self.count(tables.write_intents) == 0 and self.count(tables.deletion_queue) == 0

    def backend_objects(self) -> set[tuple[str, str]]:
        found = set()
        for server, bucket in zip(self.servers, self.real, strict=True):
            for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
                found.update((bucket, item["Key"]) for item in page.get("Contents", []))
        return found

    def rows(self) -> set[tuple[str, str]]:
        loc = tables.object_locations
        with self.engine.connect() as conn:
            return {(r.backend, r.real_key) for r in conn.execute(select(loc.c.backend, loc.c.real_key))}

    def check_final_value(self, key: str, ops: list[Op], value: bytes | None) -> str | None:
        """None when C{value} is a possible final state of C{key}, else why not."""
        mine = [op for op in ops if op.key == key and op.kind in ("put", "delete")]
        completed = [op for op in mine if op.ok]

        def overridden(op: Op) -> list[Op]:
            # A write that finished before another one started can't be the last.
            return [other for other in completed if other is not op and other.start > op.end]

        if value is None:
            deletes = [op for op in mine if op.kind == "delete"]
            if not [op for op in completed if op.kind == "put"]:
                return None
            if any(not overridden(op) for op in deletes):
                return None
            return f"{key} is absent, but a PUT started after every DELETE had finished"
        writers = [op for op in mine if op.kind == "put" and op.payload == value]
        if not writers:
            return f"{key} holds {value[:40]!r}, which no client wrote"
        if all(overridden(op) for op in writers):
            later = overridden(writers[0])[0]
            return (
                f"{key} holds {value[:40]!r} (written {writers[0].start:.3f}-{writers[0].end:.3f}) although a "
                f"{later.kind} ran later ({later.start:.3f}-{later.end:.3f})"
            )
        return None

    def test_two_daemons_one_database(self) -> None:
        started = time.monotonic()
        ops = self.hammer()
        hammered = time.monotonic()
        by_kind = collections.Counter((op.kind, op.ok) for op in ops)
        failures = [op for op in ops if not op.ok]
        written = {op.payload for op in ops if op.kind == "put"}

        # Every body a reader saw was a whole version some writer wrote.
        torn = [op for op in ops if op.kind == "get" and op.ok and op.payload and op.payload not in written]
        self.assertEqual(torn, [], "a GET returned bytes no client wrote")

        poll(
            self.settled,
            timeout=SETTLE,
            interval=0.2,
            message=f"write intents / queued deletions left after {SETTLE}s: "
            f"{self.count(tables.write_intents)} / {self.count(tables.deletion_queue)}",
        )
        settled_at = time.monotonic()

        problems = []
        for key in KEYS:
            seen = []
            for daemon in self.daemons:
                try:
                    seen.append(daemon.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
                except Exception as error:
                    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
                    if code != "NoSuchKey":
                        raise
                    seen.append(None)
            self.assertEqual(seen[0], seen[1], f"the two daemons disagree about {key}")
            problem = self.check_final_value(key, ops, seen[0])
            if problem:
                problems.append(problem)
        self.assertEqual(problems, [])

        # The store and the backends hold exactly the same objects.
        rows, objects = self.rows(), self.backend_objects()
        self.assertEqual(rows - objects, set(), "location rows whose backend object is gone")
        self.assertEqual(objects - rows, set(), "backend objects no row refers to (orphans)")
        with self.engine.connect() as conn:
            object_count = conn.execute(select(func.count()).select_from(tables.objects)).scalar_one()
        self.assertEqual(object_count, len(rows), "objects without exactly one location")

        # fsck agrees.
        import io

        from s3balance.config import load_config
        from s3balance.ops import fsck

        out = io.StringIO()
        status = fsck.run(load_config(str(self.daemons[0].config_path)), fsck.Options(older_than=0), out=out)
        self.assertEqual(status, 0, out.getvalue())

        # A GET must serve the body of the version whose headers it sent.
        cut_short = [
            line for daemon in self.daemons for line in daemon.log().splitlines() if "cut short" in line
        ]
        self.assertEqual(cut_short[:5], [], f"{len(cut_short)} GETs whose backend body did not match the row")

        # Writes never fail under contention; report everything else.
        write_failures = [op for op in failures if op.kind != "get"]
        read_failures = [op for op in failures if op.kind == "get"]
        summary = (
            f"{self.kind}: {len(ops)} ops in {hammered - started:.1f}s {dict(by_kind)}; "
            f"settled in {settled_at - hammered:.1f}s; {len(rows)} objects left"
        )
        print(summary)
        self.assertEqual(
            [op.error for op in write_failures][:5], [], f"{len(write_failures)} failed writes; {summary}"
        )
        self.assertEqual(
            [op.error for op in read_failures][:5], [], f"{len(read_failures)} failed reads; {summary}"
        )


class TwoDaemonsOneVersionedBucket(TwoDaemonsOneDatabase):
    """The two daemons write and delete the same keys of one bucket with versioning Enabled."""

    versioning = "Enabled"

    def test_two_daemons_one_database(self) -> None:
        """Every version kept once with its bytes, one marker per delete, newest first, one latest."""
        ops: list[tuple[str, str, str, bytes, float, float]] = []  # (kind, key, version id, payload, start, end)
        lock = threading.Lock()
        stop_at = time.monotonic() + DURATION / 2

        def worker(number: int) -> None:
            rng = random.Random(number)
            client = self.daemons[number % 2].client()
            seq = 0
            while time.monotonic() < stop_at:
                key = rng.choice(KEYS[:3])
                start = time.monotonic()
                if rng.random() < 0.75:
                    seq += 1
                    payload = payload_for(number, seq, rng)
                    answer = client.put_object(Bucket=BUCKET, Key=key, Body=payload)
                    kind = "put"
                else:
                    payload = b""
                    answer = client.delete_object(Bucket=BUCKET, Key=key)
                    kind = "delete"
                with lock:
                    ops.append((kind, key, answer["VersionId"], payload, start, time.monotonic()))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION * 10)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        print(f"{self.kind}: {len(ops)} writes and deletes of {len(KEYS[:3])} keys")
        self.assertGreater(len(ops), 20)
        client = self.daemons[0].client()
        for key in KEYS[:3]:
            mine = [op for op in ops if op[1] == key]
            answer = client.list_object_versions(Bucket=BUCKET, Prefix=key)
            listed = [(v["VersionId"], v["IsLatest"], v["LastModified"], "put") for v in answer.get("Versions", [])]
            listed += [(m["VersionId"], m["IsLatest"], m["LastModified"], "delete")
                       for m in answer.get("DeleteMarkers", [])]
            # Every operation's version once, of its kind; nothing else.
            self.assertEqual(sorted((vid, kind) for vid, _, _, kind in listed),
                             sorted((op[2], op[0]) for op in mine), key)
            self.assertEqual(sum(1 for _, latest, _, _ in listed if latest), 1 if mine else 0, key)
            # Newest first, as the XML lists them (versions and markers interleaved): by the ops' clocks.
            position = {op[2]: op for op in mine}
            body = self.raw_versions(client, key)
            for newer, older in zip(body, body[1:], strict=False):
                self.assertFalse(position[newer][5] < position[older][4],
                                 f"{key}: {newer} ended before {older} began, yet is listed as newer")
            self.assertEqual([vid for vid, latest, _, _ in listed if latest], body[:1], key)
            for kind, _, version_id, payload, _, _ in mine:
                if kind == "put":
                    read = client.get_object(Bucket=BUCKET, Key=key, VersionId=version_id)["Body"].read()
                    self.assertEqual(read, payload, f"{key} {version_id}")

    def raw_versions(self, client, key: str) -> list[str]:
        """The version ids of C{key} in the order the ListObjectVersions XML gives them (newest first)."""
        from xml.etree import ElementTree

        bodies: list[bytes] = []

        def keep(response_dict, **_):
            bodies.append(response_dict["body"])

        client.meta.events.register("before-parse.s3.ListObjectVersions", keep)
        try:
            client.list_object_versions(Bucket=BUCKET, Prefix=key)
        finally:
            client.meta.events.unregister("before-parse.s3.ListObjectVersions", keep)
        root = ElementTree.fromstring(bodies[-1])
        return [
            element.findtext("{*}VersionId") or ""
            for element in root
            if element.tag.rsplit("}", 1)[-1] in ("Version", "DeleteMarker") and element.findtext("{*}Key") == key
        ]


class PostgreSQLTests(TwoDaemonsOneDatabase, SynchronousTestCase):
    kind = dbfixtures.POSTGRES
    db_type = "postgres"


class MariaDBTests(TwoDaemonsOneDatabase, SynchronousTestCase):
    kind = dbfixtures.MYSQL
    db_type = "mysql"


class PostgreSQLVersionedTests(TwoDaemonsOneVersionedBucket, SynchronousTestCase):
    kind = dbfixtures.POSTGRES
    db_type = "postgres"


class MariaDBVersionedTests(TwoDaemonsOneVersionedBucket, SynchronousTestCase):
    kind = dbfixtures.MYSQL
    db_type = "mysql"
