"""
Replicas (s3balance.ops.replicate, s3balance.backends.fanout, store/replicas.py).

 - Units: the upstream gate paces the client by the slowest pipe; all_stored
   waits for every backend and fails on the first failure; the config keys.
 - L{ReplicaStoreMixin}: add_location, drop_location and under_replicated
   on the fake and on SQLite, PostgreSQL and MariaDB alike.
 - L{ReplicaDaemonTests}: real daemons (SQLite) over two real SeaweedFS
   servers with C{replicas: 2}: a PutObject (small, and 32 MiB streamed) is
   stored on both backends before it is acknowledged; a multipart upload and
   a copy get their second copy before they answer; async mode makes it in
   the background; the repair completes objects written before the bucket
   wanted two copies; a delete removes every copy; a PUT while one backend
   refuses connections fails cleanly with nothing recorded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial import unittest

from s3balance.backends.backend import PutResult
from s3balance.backends.fanout import UpstreamGate, all_stored, fan_out
from s3balance.config import ConfigError, parse_config
from s3balance.store.interfaces import Location
from s3balance.store.replicas import ADDED, EXPIRED, STALE
from tests import dbfixtures
from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.faultproxy import FaultProxy
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name
from tests.test_store import make_record
from tests.test_store_contract import OnDatabase, OnMemoryStore, _Helpers

MIB = 1024 * 1024
VB = "vb-replicas"


# -- units ----------------------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.paused = False
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class FanOutTests(unittest.SynchronousTestCase):
    def test_the_client_waits_for_the_slowest_pipe(self) -> None:
        transport = _Transport()
        gate = UpstreamGate(transport)
        gate.pauseProducing()
        gate.pauseProducing()
        self.assertEqual(transport.calls, ["pause"])
        gate.resumeProducing()
        self.assertTrue(transport.paused)
        gate.resumeProducing()
        self.assertFalse(transport.paused)
        gate.resumeProducing()  # (one too many is no resume of a paused client)
        self.assertEqual(transport.calls, ["pause", "resume"])

    def test_every_pipe_gets_every_byte(self) -> None:
        transport = _Transport()
        tee = fan_out(6, 3, transport)
        self.assertEqual(len(tee.pipes), 3)
        tee.write(b"abc")
        tee.write(b"def")
        tee.finish()
        for pipe in tee.pipes:
            self.assertEqual(pipe.written, 6)
            self.assertTrue(pipe._finished)
        self.assertFalse(tee.replayable)

    def test_pending_bytes_pause_the_client_until_every_pipe_drains(self) -> None:
        transport = _Transport()
        tee = fan_out(10, 2, transport)
        for pipe in tee.pipes:
            pipe.pending_limit = 2
        tee.write(b"abcd")
        self.assertTrue(transport.paused)

        class Consumer:
            def __init__(self) -> None:
                self.data = b""

            def write(self, data: bytes) -> None:
                self.data += data

        first = Consumer()
        tee.startProducing(first)  # the first backend is ready: the second still holds its bytes
        self.assertTrue(transport.paused)
        second = Consumer()
        tee.followers[0].startProducing(second)
        self.assertFalse(transport.paused)
        self.assertEqual((first.data, second.data), (b"abcd", b"abcd"))

    def test_all_stored_waits_for_every_answer(self) -> None:
        a: Deferred[PutResult] = Deferred()
        b: Deferred[PutResult] = Deferred()
        done = all_stored([a, b])
        results: list[Any] = []
        done.addCallback(results.append)
        b.callback(PutResult(etag='"b"'))
        self.assertEqual(results, [])
        a.callback(PutResult(etag='"a"'))
        self.assertEqual([r.etag for r in results[0]], ['"a"', '"b"'])

    def test_all_stored_fails_on_the_first_failure_and_cancels_the_rest(self) -> None:
        cancelled: list[str] = []
        a: Deferred[PutResult] = Deferred(lambda d: cancelled.append("a"))
        b: Deferred[PutResult] = Deferred()
        done = all_stored([a, b])
        b.errback(RuntimeError("backend b failed"))
        self.failureResultOf(done, RuntimeError)
        self.assertEqual(cancelled, ["a"])

    def test_cancelling_cancels_every_request(self) -> None:
        cancelled: list[str] = []
        a: Deferred[PutResult] = Deferred(lambda d: cancelled.append("a"))
        b: Deferred[PutResult] = Deferred(lambda d: cancelled.append("b"))
        done = all_stored([a, b])
        done.cancel()
        self.failureResultOf(done, CancelledError)
        self.assertEqual(sorted(cancelled), ["a", "b"])


def _config(balancer: dict | None = None, bucket: dict | None = None, backends: int = 2) -> dict:
    return {
        "database": {"type": "sqlite", "dsn": "/tmp/x.db"},
        "buckets": [
            {"name": f"real-{n}", "endpoint": "http://127.0.0.1:1", "access_key_id": "a", "secret_access_key": "s"}
            for n in range(backends)
        ]
        + [{"name": "vb-one", "virtual": True, **(bucket or {})}],
        "balancer": balancer or {},
        "s3api": {"access_key": "client", "secret_key": "client-secret"},
    }


class ConfigTests(unittest.SynchronousTestCase):
    def test_defaults_are_one_sync_copy(self) -> None:
        config = parse_config(_config())
        self.assertEqual(config.replication_of("vb-one"), (1, "sync"))
        self.assertEqual(config.replication_of("made-by-the-api"), (1, "sync"))

    def test_a_bucket_overrides_the_balancer(self) -> None:
        config = parse_config(_config({"replicas": 2, "replication": "async"}, {"replicas": 1}))
        self.assertEqual(config.replication_of("vb-one"), (1, "async"))
        self.assertEqual(config.replication_of("other"), (2, "async"))
        config = parse_config(_config(bucket={"replicas": 2, "replication": "ASYNC"}))
        self.assertEqual(config.replication_of("vb-one"), (2, "async"))

    def test_errors_name_the_key(self) -> None:
        for balancer, bucket, key in (
            ({"replicas": 0}, None, "balancer.replicas"),
            ({"replicas": 9}, None, "balancer.replicas"),
            ({"replication": "later"}, None, "balancer.replication"),
            (None, {"replicas": "two"}, "buckets[2].replicas"),
            (None, {"replication": "maybe"}, "buckets[2].replication"),
            ({"replica_repair_after": "0s"}, None, "balancer.replica_repair_after"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse_config(_config(balancer, bucket))
            self.assertIn(key, str(caught.exception))

    def test_more_copies_than_backends_is_refused(self) -> None:
        from s3balance.config.checks import check_config

        with self.assertRaises(ConfigError) as caught:
            check_config(parse_config(_config(bucket={"replicas": 3})))
        self.assertIn("buckets[2].replicas", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            check_config(parse_config(_config({"replicas": 3})))
        self.assertIn("balancer.replicas", str(caught.exception))
        check_config(parse_config(_config(bucket={"replicas": 2})))


# -- the store ----------------------------------------------------------------------


class ReplicaStoreMixin(_Helpers):
    """The replica calls, on the fake and on every database."""

    async def queued(self) -> list[tuple[str, str]]:
        return sorted((q.backend, q.real_key) for q in await self.store.queued_deletions(limit=1000))

    async def add(self, record: Any, backend: str, real_key: str, source: Any = None) -> str:
        intent = await self.store.begin_write(backend, real_key, 60)
        return await self.store.add_location(intent.id, record, source or record.locations[0], Location(backend, real_key))

    async def test_add_location_adds_a_copy(self) -> None:
        record = await self.put("k", "vb/k")
        self.assertEqual(await self.add(record, "b2", "vb/k-2"), ADDED)
        got = await self.store.get_object(record.bucket, "k")
        self.assertEqual(got.locations, (Location("b1", "vb/k"), Location("b2", "vb/k-2")))
        self.assertTrue(await self.store.is_referenced("b2", "vb/k-2"))
        self.assertEqual(await self.queued(), [])

    async def test_a_copy_of_a_replaced_object_is_queued_for_deletion(self) -> None:
        record = await self.put("k", "vb/k")
        await self.put("k", "vb/k-new", size=7, etag='"e2"')  # a new version meanwhile
        self.assertEqual(await self.add(record, "b2", "vb/k-2"), STALE)
        got = await self.store.get_object(record.bucket, "k")
        self.assertEqual(got.locations, (Location("b1", "vb/k-new"),))
        self.assertIn(("b2", "vb/k-2"), await self.queued())

    async def test_a_copy_of_a_deleted_object_is_queued_for_deletion(self) -> None:
        record = await self.put("k", "vb/k")
        await self.store.delete_object(record.bucket, "k")
        self.assertEqual(await self.add(record, "b2", "vb/k-2"), STALE)
        self.assertIn(("b2", "vb/k-2"), await self.queued())

    async def test_a_copy_whose_intent_ran_out_is_not_added(self) -> None:
        record = await self.put("k", "vb/k")
        intent = await self.store.begin_write("b2", "vb/k-2", 60)
        await self.store.abandon_write(intent.id, True)
        outcome = await self.store.add_location(intent.id, record, record.locations[0], Location("b2", "vb/k-2"))
        self.assertEqual(outcome, EXPIRED)
        self.assertEqual(len((await self.store.get_object(record.bucket, "k")).locations), 1)

    async def test_a_second_copy_on_one_backend_or_from_a_gone_source_is_refused(self) -> None:
        record = await self.put("k", "vb/k")
        self.assertEqual(await self.add(record, "b1", "vb/k-2"), STALE)
        self.assertEqual(await self.add(record, "b2", "vb/k-3", source=Location("b3", "vb/elsewhere")), STALE)
        self.assertEqual(len((await self.store.get_object(record.bucket, "k")).locations), 1)

    async def test_drop_location_never_drops_the_last_copy(self) -> None:
        record = await self.put("k", "vb/k")
        self.assertFalse(await self.store.drop_location(record, record.locations[0]))
        await self.add(record, "b2", "vb/k-2")
        record = await self.store.get_object(record.bucket, "k")
        self.assertTrue(await self.store.drop_location(record, Location("b1", "vb/k")))
        got = await self.store.get_object(record.bucket, "k")
        self.assertEqual(got.locations, (Location("b2", "vb/k-2"),))
        self.assertIn(("b1", "vb/k"), await self.queued())
        self.assertFalse(await self.store.drop_location(got, Location("b2", "vb/k-2")))

    async def test_commit_takes_every_copy_s_intent(self) -> None:
        first = await self.store.begin_write("b1", "vb/k", 60)
        second = await self.store.begin_write("b2", "vb/k-2", 60)
        record = make_record("k", "vb/k", locations=(Location("b1", "vb/k"), Location("b2", "vb/k-2")))
        await self.store.commit_object(first.id, record, also=[second.id])
        got = await self.store.get_object(record.bucket, "k")
        self.assertEqual(got.locations, record.locations)
        # Both intents are taken: nothing of this write is left to expire.
        from s3balance.store.interfaces import WriteIntentExpired

        with self.assertRaises(WriteIntentExpired):
            await self.store.commit_object(second.id, record)

    async def test_under_replicated_pages_through_a_bucket(self) -> None:
        records = [await self.put(f"k{n}", f"vb/k{n}") for n in range(5)]
        await self.add(records[1], "b2", "vb/k1-2")
        found, cursors = [], []
        after = 0
        while True:
            page, cursor = await self.store.under_replicated(records[0].bucket, 2, after, 2)
            found += [r.key for r in page]
            if cursor == after:
                break
            cursors.append(cursor)
            after = cursor
        self.assertEqual(found, ["k0", "k2", "k3", "k4"])
        self.assertEqual(len(cursors), 3)
        # Only the locations on the backends given count.
        page, _ = await self.store.under_replicated(records[0].bucket, 1, 0, 10, ["b2"])
        self.assertEqual([r.key for r in page], ["k0", "k2", "k3", "k4"])
        page, _ = await self.store.under_replicated(records[0].bucket, 2, 0, 10, ["b2"])
        self.assertEqual(len(page), 5)
        self.assertEqual(page[1].locations, (Location("b1", "vb/k1"), Location("b2", "vb/k1-2")))


class MemoryReplicaStoreTests(OnMemoryStore, ReplicaStoreMixin, unittest.TestCase):
    pass


class SQLiteReplicaStoreTests(OnDatabase, ReplicaStoreMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLReplicaStoreTests(OnDatabase, ReplicaStoreMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBReplicaStoreTests(OnDatabase, ReplicaStoreMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


# -- real daemons ----------------------------------------------------------------------


def pattern(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class Replicated:
    """A daemon over two fresh real buckets on the shared SeaweedFS pair (the second behind a fault proxy)."""

    def __init__(
        self, testcase: unittest.SynchronousTestCase, bucket: dict | None = None, spare: bool = False, **balancer: Any
    ) -> None:
        self.testcase = testcase
        pair = shared_seaweedfs_pair()
        # A third backend (spare) is a third real bucket on the first server.
        self.servers = [pair[0], pair[1], *([pair[0]] if spare else [])]
        self.real = [unique_bucket_name("rep") for _ in self.servers]
        for server, name in zip(self.servers, self.real, strict=True):
            server.create_bucket(name)
        self.proxy = FaultProxy("127.0.0.1", self.servers[1].port).start()
        testcase.addCleanup(self.proxy.close)
        entries = [backend_entry(server, name) for server, name in zip(self.servers, self.real, strict=True)]
        entries[1]["endpoint"] = f"http://127.0.0.1:{self.proxy.port}"
        workdir = Path(harness_dir()) / f"replicas-{time.monotonic_ns()}"
        workdir.mkdir(parents=True, exist_ok=True)
        balancer = {"replicas": 2, "replicate_period": "1s", **balancer}
        self.config = base_config(entries, [VB], workdir, balancer=balancer)
        if bucket:
            for entry in self.config["buckets"]:
                if entry.get("name") == VB:
                    entry.update(bucket)
        self.daemon = Daemon(self.config, name="replicas").start()
        testcase.addCleanup(self.daemon.stop)
        self.client = self.daemon.client()

    def locations(self, key: str) -> list[str]:
        path = self.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT l.backend FROM objects o JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ? AND o.key = ? ORDER BY l.backend",
                (VB, key.encode()),
            ).fetchall()
        return [backend for (backend,) in rows]

    def real_keys(self, index: int) -> list[str]:
        direct = self.servers[index].client()
        return [item["Key"] for item in direct.list_objects_v2(Bucket=self.real[index]).get("Contents", [])]

    def read_back(self, key: str) -> bytes:
        return self.client.get_object(Bucket=VB, Key=key)["Body"].read()


class ReplicaDaemonTests(unittest.SynchronousTestCase):
    def test_a_put_is_stored_on_both_backends_before_it_is_acknowledged(self) -> None:
        gateway = Replicated(self)
        small = pattern(1000, 1)
        big = pattern(32 * MIB + 5, 2)
        gateway.client.put_object(Bucket=VB, Key="small", Body=small)
        gateway.client.put_object(Bucket=VB, Key="big", Body=big)
        for key, body in (("small", small), ("big", big)):
            self.assertEqual(gateway.locations(key), sorted(gateway.real), key)
            self.assertEqual(gateway.read_back(key), body)
        self.assertEqual(len(gateway.real_keys(0)), 2)
        self.assertEqual(len(gateway.real_keys(1)), 2)
        # Either copy serves alone, byte for byte.
        for index in (0, 1):
            direct = gateway.servers[index].client()
            for real_key in gateway.real_keys(index):
                body = direct.get_object(Bucket=gateway.real[index], Key=real_key)["Body"].read()
                self.assertIn(body, (small, big))

    def test_a_multipart_upload_and_a_copy_answer_with_both_copies(self) -> None:
        gateway = Replicated(self)
        client = gateway.client
        upload = client.create_multipart_upload(Bucket=VB, Key="mp")
        parts, data = [], b""
        for number in (1, 2):
            body = pattern(5 * MIB if number == 1 else 1000, number)
            answer = client.upload_part(Bucket=VB, Key="mp", UploadId=upload["UploadId"], PartNumber=number, Body=body)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            data += body
        client.complete_multipart_upload(
            Bucket=VB, Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        self.assertEqual(gateway.locations("mp"), sorted(gateway.real))
        client.copy_object(Bucket=VB, Key="copied", CopySource={"Bucket": VB, "Key": "mp"})
        self.assertEqual(gateway.locations("copied"), sorted(gateway.real))
        self.assertEqual(gateway.read_back("copied"), data)
        head = client.head_object(Bucket=VB, Key="mp")
        self.assertTrue(head["ETag"].endswith('-2"'), head["ETag"])

    def test_async_copies_are_made_in_the_background(self) -> None:
        gateway = Replicated(self, replication="async")
        body = pattern(100_000, 3)
        gateway.client.put_object(Bucket=VB, Key="later", Body=body)
        poll(lambda: len(gateway.locations("later")) == 2, timeout=15, message="no second copy")
        self.assertEqual(gateway.read_back("later"), body)

    def test_the_repair_completes_objects_written_with_one_copy(self) -> None:
        gateway = Replicated(self, bucket={"replicas": 1})
        bodies = {f"k{n}": pattern(2000 + n, n) for n in range(5)}
        for key, body in bodies.items():
            gateway.client.put_object(Bucket=VB, Key=key, Body=body)
        self.assertTrue(all(len(gateway.locations(key)) == 1 for key in bodies))
        for entry in gateway.daemon.config["buckets"]:
            if entry.get("name") == VB:
                entry.pop("replicas")
        gateway.daemon.write_config()
        os.kill(gateway.daemon.process.pid, signal.SIGHUP)
        poll(
            lambda: all(len(gateway.locations(key)) == 2 for key in bodies),
            timeout=30,
            message="the repair did not complete every object",
        )
        for key, body in bodies.items():
            self.assertEqual(gateway.read_back(key), body)

    def test_a_delete_removes_every_copy(self) -> None:
        gateway = Replicated(self, deletion_grace="0s", cleanup_period="1s")
        gateway.client.put_object(Bucket=VB, Key="gone", Body=b"x" * 100)
        gateway.client.delete_object(Bucket=VB, Key="gone")
        poll(lambda: not gateway.real_keys(0) and not gateway.real_keys(1), timeout=15, message="copies left")

    def test_a_backend_refusing_fails_the_put_and_records_nothing(self) -> None:
        # (A copy that had its whole body may be stored late: deleted 5 x backend_timeout later.)
        gateway = Replicated(self, retry_attempts=1, deletion_grace="0s", cleanup_period="1s", backend_timeout="2s")
        gateway.proxy.refuse = True
        gateway.proxy.cut()  # (and the connections the health checks left open)
        with self.assertRaises(Exception) as caught:
            gateway.client.put_object(Bucket=VB, Key="nowhere", Body=pattern(10_000, 4))
        self.assertIn("ServiceUnavailable", str(caught.exception))
        self.assertEqual(gateway.locations("nowhere"), [])
        poll(lambda: not gateway.real_keys(0), timeout=30, message="the first copy was left behind")


class ReplicaFaultTests(unittest.SynchronousTestCase):
    def test_a_backend_cut_mid_upload_fails_the_put_and_leaves_nothing(self) -> None:
        gateway = Replicated(self, retry_attempts=1, deletion_grace="0s", cleanup_period="1s")
        gateway.proxy.stall_after(4 * MIB)
        body = pattern(24 * MIB, 7)
        client = gateway.client  # (boto3 without retries: tests.harness.clients)

        def cut_soon() -> None:
            time.sleep(1.0)
            gateway.proxy.cut()

        cutter = threading.Thread(target=cut_soon)
        cutter.start()
        with self.assertRaises(ClientError):
            client.put_object(Bucket=VB, Key="cut", Body=body)
        cutter.join()
        gateway.proxy.resume()
        self.assertEqual(gateway.locations("cut"), [])
        poll(
            lambda: not gateway.real_keys(0) and not gateway.real_keys(1),
            timeout=20,
            message=f"a copy was left behind: {gateway.real_keys(0)} {gateway.real_keys(1)}\n{gateway.daemon.log()[-3000:]}",
        )
        # Once the backend is back, the next write goes through whole.
        poll(lambda: gateway.daemon.health().get("backends", {}).get(gateway.real[1], {}).get("up"), timeout=20,
             message="the cut backend did not come back")
        gateway.client.put_object(Bucket=VB, Key="after", Body=b"after")
        self.assertEqual(gateway.locations("after"), sorted(gateway.real))

    def test_a_backend_down_for_long_gets_its_copies_made_elsewhere(self) -> None:
        gateway = Replicated(
            self, spare=True, replica_repair_after="2s", health_check_period="1s", unhealthy_threshold=1,
            strategy="round-robin",
        )
        bodies = {f"k{n}": pattern(5000 + n, 10 + n) for n in range(6)}
        for key, body in bodies.items():
            gateway.client.put_object(Bucket=VB, Key=key, Body=body)
        on_proxied = [key for key in bodies if gateway.real[1] in gateway.locations(key)]
        self.assertTrue(on_proxied)
        gateway.proxy.refuse = True
        gateway.proxy.cut()
        # Every object keeps two copies on backends that are up; the dead one's locations stay.
        poll(
            lambda: all(
                len([b for b in gateway.locations(key) if b != gateway.real[1]]) == 2 for key in bodies
            ),
            timeout=30,
            message="the copies on the dead backend were not made elsewhere",
        )
        for key in on_proxied:
            self.assertIn(gateway.real[1], gateway.locations(key))
        for key, body in bodies.items():
            self.assertEqual(gateway.read_back(key), body)


def real_locations(gateway: Replicated, key: str) -> list[tuple[str, str]]:
    """(backend, real key) of each copy of C{key}, from the daemon's database."""
    path = gateway.config["database"]["dsn"]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
        return sorted(
            connection.execute(
                "SELECT l.backend, l.real_key FROM objects o JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ? AND o.key = ?",
                (VB, key.encode()),
            ).fetchall()
        )


class ScrubDaemonTests(unittest.SynchronousTestCase):

    def test_a_missing_or_corrupt_copy_is_replaced_from_a_good_one(self) -> None:
        gateway = Replicated(self, scrub_period="1s", scrub_rate=1000, scrub_read=True)
        missing, corrupt = pattern(3000, 5), pattern(4000, 6)
        gateway.client.put_object(Bucket=VB, Key="missing", Body=missing)
        gateway.client.put_object(Bucket=VB, Key="corrupt", Body=corrupt)
        before = {key: real_locations(gateway, key) for key in ("missing", "corrupt")}
        index = {name: n for n, name in enumerate(gateway.real)}
        backend, real_key = before["missing"][0]
        gateway.servers[index[backend]].client().delete_object(Bucket=backend, Key=real_key)
        backend, real_key = before["corrupt"][1]
        gateway.servers[index[backend]].client().put_object(Bucket=backend, Key=real_key, Body=b"X" * len(corrupt))

        def replaced() -> bool:
            return all(
                len(now := real_locations(gateway, key)) == 2 and now != before[key] for key in before
            )

        poll(replaced, timeout=30, message="the bad copies were not replaced")
        for key, body in (("missing", missing), ("corrupt", corrupt)):
            for backend, real_key in real_locations(gateway, key):
                direct = gateway.servers[index[backend]].client()
                self.assertEqual(direct.get_object(Bucket=backend, Key=real_key)["Body"].read(), body, key)

    def test_a_last_copy_is_never_dropped(self) -> None:
        gateway = Replicated(self, bucket={"replicas": 1}, scrub_period="1s", scrub_rate=1000)
        gateway.client.put_object(Bucket=VB, Key="only", Body=b"only copy")
        [(backend, real_key)] = real_locations(gateway, "only")
        index = {name: n for n, name in enumerate(gateway.real)}
        gateway.servers[index[backend]].client().delete_object(Bucket=backend, Key=real_key)
        poll(lambda: "no good copy is known" in gateway.daemon.log(), timeout=20, message="the lost copy went unreported")
        self.assertEqual(real_locations(gateway, "only"), [(backend, real_key)])


class ReadRepairTests(unittest.SynchronousTestCase):
    def test_a_copy_a_read_finds_missing_is_replaced(self) -> None:
        gateway = Replicated(self)
        body = pattern(7000, 8)
        gateway.client.put_object(Bucket=VB, Key="read", Body=body)
        index = {name: n for n, name in enumerate(gateway.real)}
        path = gateway.config["database"]["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            backend, real_key = connection.execute(
                "SELECT l.backend, l.real_key FROM objects o JOIN object_locations l ON l.object_id = o.id "
                "WHERE o.bucket = ? AND o.key = ? ORDER BY l.id LIMIT 1",
                (VB, b"read"),
            ).fetchone()
        gateway.servers[index[backend]].client().delete_object(Bucket=backend, Key=real_key)
        self.assertEqual(gateway.read_back("read"), body)  # from the other copy
        poll(
            lambda: len(now := real_locations(gateway, "read")) == 2 and (backend, real_key) not in now,
            timeout=20,
            message="the missing copy was not replaced",
        )
        self.assertEqual(gateway.read_back("read"), body)
