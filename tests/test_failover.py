"""
GetObject failover between an object's locations (L{s3balance.s3.objects}).

In process, with fakes (pool, backends, responses, request):
L{s3balance.s3.objects.read_order}, the choice of the next location before
the first byte, the range asked of the next one after a body broke off and
the checks of its answer, and a client that leaves meanwhile.

With real processes: a daemon (SQLite) over two SeaweedFS servers, each
behind a L{tests.faultproxy.FaultProxy}.  An object gets its second location
from L{ReadFailoverDaemonTests.add_copy}, not from the replica write path:
the bytes PUT once more to the other backend's real bucket under a fresh real
key, and a second C{object_locations} row in the daemon's database.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from s3balance.backends.backend import BackendError
from s3balance.errors import S3Error
from s3balance.s3 import objects
from s3balance.s3.access import BucketAccess
from s3balance.s3.call import S3Call
from s3balance.s3.routing import Target
from s3balance.store.interfaces import Location, ObjectRecord
from tests.daemon import Daemon, backend_entry, base_config, sign, write_pattern_file
from tests.faultproxy import FaultProxy
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name

MIB = 1024 * 1024
DATA = bytes(range(256)) * 40  # 10240 bytes
VB = "vb-failover"


# -- in process -------------------------------------------------------------------------------


class FakeResponse:
    """A backend's answer whose body the test sends, and the body's connection as a producer."""

    def __init__(self, code: int = 200, length: Union[int, str] = len(DATA), headers: Optional[dict] = None) -> None:
        self.code = code
        self.length = length
        self.headers = Headers({name.encode(): [value.encode()] for name, value in (headers or {}).items()})
        self.protocol: Any = None
        self.stopped = False
        self.paused = False

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def end(self) -> None:
        self.protocol.connectionLost(Failure(ResponseDone()))

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionLost("reset")))


def range_answer(first: int, last: int, size: int = len(DATA), **headers: str) -> FakeResponse:
    """A 206 of bytes first..last of an object of size bytes."""
    values = {"content-range": f"bytes {first}-{last}/{size}", **headers}
    return FakeResponse(206, last - first + 1, values)


class FakeBackend:
    """Answers each GET with the next of C{answers}: a response, a BackendError, or None (never)."""

    def __init__(self, name: str, *answers: Union[FakeResponse, BackendError, None]) -> None:
        self.name = name
        self.answers = list(answers)
        self.asked: list[tuple[str, Optional[tuple[int, int]]]] = []
        self.pending: list[Deferred] = []

    def get_object(self, real_key: str, byte_range: Optional[tuple[int, int]] = None) -> Deferred:
        self.asked.append((real_key, byte_range))
        answer = self.answers.pop(0)
        if isinstance(answer, BackendError):
            return fail(answer)
        if answer is None:
            # Cancelled, as the HTTP client does it: the request fails (Backend.get_object
            # turns every failure into a BackendError).
            d: Deferred = Deferred(lambda d: d.errback(BackendError(self.name, 0, "Unreachable", "cancelled")))
            self.pending.append(d)
            return d
        return succeed(answer)


class FakePool:
    def __init__(self, backends: list[FakeBackend], down: tuple[str, ...] = ()) -> None:
        self.backends = {backend.name: backend for backend in backends}
        self.down = set(down)

    def readable(self, name: str) -> bool:
        return name in self.backends and name not in self.down

    def get(self, name: str) -> Optional[FakeBackend]:
        return self.backends.get(name)


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class FakeRequest:
    """What GetObject uses of an S3Request; a producer registered twice is an error, as in Twisted."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(transport=FakeTransport())
        self.code: Optional[int] = None
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.producer: Any = None
        self.producers: list[Any] = []
        self.finished = False
        self.disconnected = False
        self._waiters: list[Deferred] = []

    @property
    def gone(self) -> bool:
        return self.disconnected or self.finished

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def write(self, data: bytes) -> None:
        assert not self.gone
        self.body += data

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise ValueError("registering a producer before the previous one was unregistered")
        self.producer = producer
        self.producers.append(producer)

    def unregisterProducer(self) -> None:
        self.producer = None

    def finish(self) -> None:
        self.finished = True

    def notifyFinish(self) -> Deferred:
        d: Deferred = Deferred()
        self._waiters.append(d)
        return d

    def lose(self) -> None:
        self.disconnected = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(ConnectionLost("client gone"))

    @property
    def cut(self) -> bool:
        return bool(self.channel.transport.aborted)


def make_record(*backends: str, size: int = len(DATA)) -> ObjectRecord:
    return ObjectRecord(
        bucket="vb",
        key="key",
        size=size,
        etag='"0123456789abcdef0123456789abcdef"',
        last_modified=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        content_type="binary/octet-stream",
        headers={},
        checksums={},
        locations=tuple(Location(name, f"vb/{name}-copy") for name in backends),
        id=1,
    )


def make_call(range_header: Optional[str] = None) -> S3Call:
    return S3Call(
        method="GET",
        target=Target(bucket="vb", key="key"),
        operation="GetObject",
        query={},
        headers={"range": [range_header]} if range_header else {},
        credential=None,
        auth=None,
        raw_path=b"/vb/key",
    )


class ReadOrderTests(SynchronousTestCase):
    def test_readable_locations_in_record_order(self) -> None:
        pool = FakePool([FakeBackend("b1"), FakeBackend("b2"), FakeBackend("b3")], down=("b2",))
        record = make_record("b3", "b2", "b1", "gone")
        self.assertEqual(
            objects.read_order(pool, record.locations),  # type: ignore[arg-type]
            [Location("b3", "vb/b3-copy"), Location("b1", "vb/b1-copy")],
        )

    def test_nothing_readable(self) -> None:
        pool = FakePool([FakeBackend("b1")], down=("b1",))
        self.assertEqual(objects.read_order(pool, make_record("b1", "b2").locations), [])  # type: ignore[arg-type]


class FailoverTests(SynchronousTestCase):
    """L{objects._get_object} and L{objects.get_object} over fakes."""

    def get(
        self, *backends: FakeBackend, down: tuple[str, ...] = (), range_header: Optional[str] = None,
        record: Optional[ObjectRecord] = None, current: Optional[ObjectRecord] = None, whole: bool = False,
    ) -> tuple[Deferred, FakeRequest]:
        record = record or make_record(*(backend.name for backend in backends))
        # The first lookup finds `record`, later ones `current` (a record replaced meanwhile).
        lookups = [record]

        def lookup(bucket: str, key: str) -> Deferred:
            return succeed(lookups.pop(0) if lookups else current or record)

        store = SimpleNamespace(get_object=lookup)

        async def require_bucket(call, bucket=None, action=None, key=None) -> BucketAccess:
            return BucketAccess(bucket or call.bucket, "000000000000")

        self.gateway = SimpleNamespace(
            pool=FakePool(list(backends), down),
            store=store,
            config=SimpleNamespace(balancer=SimpleNamespace(backend_timeout=30.0), s3api=SimpleNamespace(proxy_mode=True)),
            reactor=Clock(),
            require_bucket=require_bucket,
        )
        request = FakeRequest()
        handler = objects.get_object if whole else lambda g, r, c: objects._get_object(g, r, c, record)
        return ensureDeferred(handler(self.gateway, request, make_call(range_header))), request  # type: ignore[arg-type]

    def assertS3Error(self, d: Deferred, code: str) -> None:
        self.assertEqual(self.failureResultOf(d, S3Error).value.code, code)

    def test_a_failed_primary_is_skipped_before_the_first_byte(self) -> None:
        primary = FakeBackend("b1", BackendError("b1", 0, "Unreachable", "connection refused"))
        answer = FakeResponse()
        second = FakeBackend("b2", answer)
        d, request = self.get(primary, second)
        answer.send(DATA)
        answer.end()
        self.successResultOf(d)
        self.assertEqual((request.code, bytes(request.body), request.finished), (200, DATA, True))
        self.assertEqual(second.asked, [("vb/b2-copy", None)])

    def test_404_then_5xx_then_success(self) -> None:
        answer = FakeResponse(206, 100, {"content-range": f"bytes 10-109/{len(DATA)}"})
        backends = (
            FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", "")),
            FakeBackend("b2", BackendError("b2", 503, "SlowDown", "")),
            FakeBackend("b3", answer),
        )
        d, request = self.get(*backends, range_header="bytes=10-109")
        answer.send(DATA[10:110])
        answer.end()
        self.successResultOf(d)
        self.assertEqual((request.code, bytes(request.body)), (206, DATA[10:110]))
        self.assertEqual(
            [backend.asked for backend in backends],
            [[(f"vb/{name}-copy", (10, 109))] for name in ("b1", "b2", "b3")],
        )

    def test_an_answer_of_another_length_is_not_relayed(self) -> None:
        wrong = FakeResponse(200, len(DATA) + 1)
        right = FakeResponse()
        d, request = self.get(FakeBackend("b1", wrong), FakeBackend("b2", right))
        self.assertTrue(wrong.stopped)
        right.send(DATA)
        right.end()
        self.successResultOf(d)
        self.assertEqual(bytes(request.body), DATA)

    def test_a_down_backend_is_not_asked(self) -> None:
        primary = FakeBackend("b1")
        answer = FakeResponse()
        d, request = self.get(primary, FakeBackend("b2", answer), down=("b1",))
        answer.send(DATA)
        answer.end()
        self.successResultOf(d)
        self.assertEqual(primary.asked, [])

    def test_404_everywhere_is_internal_error(self) -> None:
        d, _ = self.get(FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", "")),
                        FakeBackend("b2", BackendError("b2", 404, "NoSuchKey", "")), whole=True)
        self.assertS3Error(d, "InternalError")

    def test_404_and_an_outage_is_service_unavailable(self) -> None:
        d, _ = self.get(FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", "")),
                        FakeBackend("b2", BackendError("b2", 0, "Unreachable", "")))
        self.assertS3Error(d, "ServiceUnavailable")

    def test_404_with_a_copy_on_a_down_backend_is_service_unavailable(self) -> None:
        d, _ = self.get(FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", "")), FakeBackend("b2"), down=("b2",))
        self.assertS3Error(d, "ServiceUnavailable")

    def test_404_everywhere_of_a_replaced_record_reads_the_new_one(self) -> None:
        answer = FakeResponse()
        b1 = FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", ""))
        b2 = FakeBackend("b2", BackendError("b2", 404, "NoSuchKey", ""))
        b3 = FakeBackend("b3", answer)
        d, request = self.get(b1, b2, b3, record=make_record("b1", "b2"), current=make_record("b3"), whole=True)
        answer.send(DATA)
        answer.end()
        self.successResultOf(d)
        self.assertEqual(bytes(request.body), DATA)

    def test_nothing_readable_is_service_unavailable(self) -> None:
        d, _ = self.get(FakeBackend("b1"), FakeBackend("b2"), down=("b1", "b2"))
        self.assertS3Error(d, "ServiceUnavailable")

    def test_mid_body_failure_goes_on_with_the_rest_from_the_next_copy(self) -> None:
        first = FakeResponse()
        rest = range_answer(4000, len(DATA) - 1)
        b1, b2 = FakeBackend("b1", first), FakeBackend("b2", rest)
        d, request = self.get(b1, b2)
        first.send(DATA[:1000])
        first.send(DATA[1000:4000])
        first.lose()
        self.assertEqual(b2.asked, [("vb/b2-copy", (4000, len(DATA) - 1))])
        self.assertEqual(len(request.producers), 2)  # the old producer was unregistered first
        rest.send(DATA[4000:9000])
        rest.send(DATA[9000:])
        rest.end()
        self.successResultOf(d)
        self.assertEqual((request.code, bytes(request.body), request.finished, request.cut), (200, DATA, True, False))
        self.assertIsNone(request.producer)

    def test_a_range_goes_on_from_where_it_broke_off(self) -> None:
        first = FakeResponse(206, 5000, {"content-range": f"bytes 100-5099/{len(DATA)}"})
        rest = range_answer(2100, 5099)
        b1, b2 = FakeBackend("b1", first), FakeBackend("b2", rest)
        d, request = self.get(b1, b2, range_header="bytes=100-5099")
        first.send(DATA[100:2100])
        first.lose()
        self.assertEqual(b2.asked, [("vb/b2-copy", (2100, 5099))])
        rest.send(DATA[2100:5100])
        rest.end()
        self.successResultOf(d)
        self.assertEqual((request.code, bytes(request.body)), (206, DATA[100:5100]))

    def test_the_rest_is_asked_of_each_copy_in_turn(self) -> None:
        first = FakeResponse()
        rest = range_answer(10, len(DATA) - 1)
        b1 = FakeBackend("b1", first)
        b2 = FakeBackend("b2", BackendError("b2", 500, "InternalError", ""))
        b3 = FakeBackend("b3", rest)
        d, request = self.get(b1, b2, b3)
        first.send(DATA[:10])
        first.lose()
        rest.send(DATA[10:])
        rest.end()
        self.successResultOf(d)
        self.assertEqual(bytes(request.body), DATA)
        self.assertEqual(b2.asked, [("vb/b2-copy", (10, len(DATA) - 1))])

    def test_a_rest_that_breaks_off_too_goes_on_from_the_next(self) -> None:
        first, second = FakeResponse(), range_answer(10, len(DATA) - 1)
        third = range_answer(20, len(DATA) - 1)
        d, request = self.get(FakeBackend("b1", first), FakeBackend("b2", second), FakeBackend("b3", third))
        first.send(DATA[:10])
        first.lose()
        second.send(DATA[10:20])
        second.lose()
        third.send(DATA[20:])
        third.end()
        self.successResultOf(d)
        self.assertEqual(bytes(request.body), DATA)

    def test_no_copy_left_cuts_the_connection(self) -> None:
        first = FakeResponse()
        d, request = self.get(FakeBackend("b1", first))
        first.send(DATA[:100])
        first.lose()
        self.successResultOf(d)
        self.assertTrue(request.cut)
        self.assertFalse(request.finished)
        self.assertEqual(bytes(request.body), DATA[:100])

    def test_a_rest_that_is_not_exactly_the_bytes_asked_is_not_used(self) -> None:
        size = len(DATA)
        for wrong in (
            FakeResponse(200, size),  # the whole object, the Range ignored
            FakeResponse(206, size - 100, {"content-range": f"bytes 100-{size - 1}/{size + 1}"}),  # another object
            FakeResponse(206, size - 100, {"content-range": f"bytes 99-{size - 2}/{size}"}),  # other bytes
            FakeResponse(206, size - 99, {"content-range": f"bytes 100-{size - 1}/{size}"}),  # a wrong length
            FakeResponse(206, UNKNOWN_LENGTH, {"content-range": f"bytes 100-{size - 1}/{size}"}),  # open-ended
            FakeResponse(206, size - 100),  # no Content-Range
        ):
            first = FakeResponse()
            d, request = self.get(FakeBackend("b1", first), FakeBackend("b2", wrong))
            first.send(DATA[:100])
            first.lose()
            self.successResultOf(d)
            self.assertTrue(wrong.stopped, wrong.headers)
            self.assertTrue(request.cut)
            self.assertEqual(bytes(request.body), DATA[:100])

    def test_a_late_byte_of_a_body_given_up_on_is_dropped(self) -> None:
        first = FakeResponse()
        rest = range_answer(100, len(DATA) - 1)
        d, request = self.get(FakeBackend("b1", first), FakeBackend("b2", rest))
        first.send(DATA[:100])
        protocol = first.protocol
        first.lose()
        self.assertTrue(first.stopped)
        protocol.dataReceived(b"stale")  # cannot happen after a lost connection; harmless if it did
        rest.send(DATA[100:])
        rest.end()
        self.successResultOf(d)
        self.assertEqual(bytes(request.body), DATA)

    def test_the_client_leaving_while_the_rest_is_asked_for_stops_there(self) -> None:
        first = FakeResponse()
        b2 = FakeBackend("b2", None)
        d, request = self.get(FakeBackend("b1", first), b2)
        first.send(DATA[:100])
        first.lose()
        self.assertEqual(len(b2.pending), 1)
        request.lose()
        d.cancel()  # as Gateway.handle does
        self.failureResultOf(d, CancelledError)
        self.assertTrue(b2.pending[0].called)
        self.assertFalse(request.cut)

    def test_the_client_leaving_mid_rest_stops_the_backend(self) -> None:
        first = FakeResponse()
        rest = range_answer(100, len(DATA) - 1)
        d, request = self.get(FakeBackend("b1", first), FakeBackend("b2", rest))
        first.send(DATA[:100])
        first.lose()
        rest.send(DATA[100:200])
        request.lose()
        self.assertTrue(rest.stopped)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_a_single_copy_keeps_its_answers(self) -> None:
        d, _ = self.get(FakeBackend("b1", BackendError("b1", 503, "SlowDown", "")))
        self.assertS3Error(d, "ServiceUnavailable")
        d, _ = self.get(FakeBackend("b1", BackendError("b1", 404, "NoSuchKey", "")), whole=True)
        self.assertS3Error(d, "InternalError")
        answer = FakeResponse()
        d, request = self.get(FakeBackend("b1", answer))
        answer.send(DATA)
        answer.end()
        self.successResultOf(d)
        self.assertEqual((bytes(request.body), request.finished, len(request.producers)), (DATA, True, 1))


# -- a daemon over two SeaweedFS servers -------------------------------------------------------


class ReadFailoverDaemonTests(SynchronousTestCase):
    """
    Two backends, each behind a proxy (C{self.proxies}); an object's
    primary copy on the first (C{a-...}), its second on the other.
    """

    def setUp(self) -> None:
        self.servers = shared_seaweedfs_pair()
        # Round-robin places in name order: a PUT into a fresh daemon lands on `a-...`.
        self.real = [unique_bucket_name("a-fo"), unique_bucket_name("b-fo")]
        self.proxies = []
        entries = []
        for server, bucket in zip(self.servers, self.real, strict=True):
            server.create_bucket(bucket)
            proxy = FaultProxy("127.0.0.1", server.port).start()
            self.addCleanup(proxy.close)
            self.proxies.append(proxy)
            entries.append(backend_entry(server, bucket, endpoint=f"http://{proxy.address}"))
        workdir = Path(harness_dir()) / unique_bucket_name("failover")
        workdir.mkdir(parents=True)
        # Probes only at the start: what a GET meets decides, not the health monitor.
        balancer = {"backend_timeout": "2s", "health_check_period": "1h", "retry_attempts": 1}
        self.daemon = Daemon(base_config(entries, [VB], workdir, balancer=balancer), name="failover").start()
        self.addCleanup(self.daemon.stop)
        self.addCleanup(self.keep_log)
        self.s3 = self.daemon.client()
        self.direct = [server.client() for server in self.servers]

    def keep_log(self) -> None:
        os.makedirs("failover-logs", exist_ok=True)
        with open(os.path.join("failover-logs", self.id().rsplit(".", 1)[-1] + ".log"), "w") as out:
            out.write(self.daemon.log())

    # -- the second location -------------------------------------------------------------

    def locations(self, key: str) -> list[tuple[int, int, str, str]]:
        """(row id, object id, backend, real key) of each location of C{key}, in record order."""
        path = self.daemon.config["database"]["dsn"]
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as connection:
            return connection.execute(
                "SELECT l.id, l.object_id, l.backend, l.real_key FROM objects o"
                " JOIN object_locations l ON l.object_id = o.id WHERE o.bucket = ? AND o.key = ? ORDER BY l.id",
                (VB, key.encode()),
            ).fetchall()

    def add_copy(self, key: str, body: Union[bytes, Path]) -> tuple[str, str]:
        """
        Give C{key} (PUT on the first backend) a second location on the other
        one: the same bytes under a fresh real key there, and a row after the
        first.  -> (the primary's real key, the copy's real key)
        """
        [(row, _, backend, real_key)] = self.locations(key)
        self.assertEqual(backend, self.real[0], "the PUT did not land on the first backend")
        head = self.direct[0].head_object(Bucket=self.real[0], Key=real_key)
        copy_key = f"{VB}/{uuid.uuid4().hex}"
        if isinstance(body, Path):
            with body.open("rb") as source:
                put = self.direct[1].put_object(Bucket=self.real[1], Key=copy_key, Body=source)
        else:
            put = self.direct[1].put_object(Bucket=self.real[1], Key=copy_key, Body=body)
        self.assertEqual(put["ETag"], head["ETag"])  # the same single PUT's ETag
        path = self.daemon.config["database"]["dsn"]
        with closing(sqlite3.connect(path, timeout=10)) as connection, connection:
            connection.execute(
                "INSERT INTO object_locations (object_id, backend, real_key, created)"
                " SELECT object_id, ?, ?, created FROM object_locations WHERE id = ?",
                (self.real[1], copy_key, row),
            )
        self.assertEqual([location[2:] for location in self.locations(key)],
                         [(self.real[0], real_key), (self.real[1], copy_key)])
        return real_key, copy_key

    def put_small(self, key: str, body: bytes = DATA) -> tuple[str, str]:
        self.s3.put_object(Bucket=VB, Key=key, Body=body)
        return self.add_copy(key, body)

    def put_large(self, key: str, size: int) -> tuple[Path, str]:
        """A pattern file of C{size} bytes PUT as C{key} in one request (streamed), with its copy. -> (file, sha256)"""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = write_pattern_file(path, size, seed=5)
        url = f"{self.daemon.endpoint}/{VB}/{key}"
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=60)
        try:
            with path.open("rb") as source:
                connection.request("PUT", f"/{VB}/{key}", body=source,
                                   headers=sign("PUT", url, {"Content-Length": str(size)}))
                answer = connection.getresponse()
                self.assertEqual(answer.status, 200, answer.read())
                answer.read()
        finally:
            connection.close()
        self.add_copy(key, path)
        return path, digest

    # -- reading ---------------------------------------------------------------------------

    def stream_get(
        self, key: str, headers: Optional[dict] = None, at: int = -1, then: Optional[Callable[[], None]] = None
    ) -> dict:
        """
        A signed GET read in 256 KiB pieces, hashing as it goes; C{then()}
        once C{at} bytes are in.  -> status, length, count, sha256, error
        (a short read), complete (the whole declared length arrived).

        The client's receive buffer is small (no autotuning up to
        C{tcp_rmem}'s tens of MiB), so the daemon is never far ahead of
        what was read when C{then()} runs.
        """
        url = f"{self.daemon.endpoint}/{VB}/{key}"
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        digest = hashlib.sha256()
        result: dict[str, Any] = {"count": 0, "error": None}
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            connection.request("GET", f"/{VB}/{key}", headers=sign("GET", url, headers))
            answer = connection.getresponse()
            result["status"] = answer.status
            result["length"] = int(answer.getheader("Content-Length") or -1)
            while True:
                try:
                    piece = answer.read(256 * 1024)
                except (http.client.IncompleteRead, ConnectionError) as error:
                    result["error"] = error
                    break
                if not piece:
                    break
                digest.update(piece)
                before, result["count"] = result["count"], result["count"] + len(piece)
                if then is not None and before < at <= result["count"]:
                    then()
        finally:
            connection.close()
        result["sha256"] = digest.hexdigest()
        result["complete"] = result["error"] is None and result["count"] == result["length"]
        return result

    def prefix_sha256(self, path: Path, count: int) -> str:
        """The sha256 of the first C{count} bytes of C{path}."""
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while count > 0:
                block = source.read(min(MIB, count))
                digest.update(block)
                count -= len(block)
        return digest.hexdigest()

    def kill_primary(self) -> None:
        """The first backend refuses connections and drops the ones it has."""
        self.proxies[0].refuse = True
        self.proxies[0].cut()

    def failovers(self) -> list[str]:
        """The daemon's log lines of a GET going on to another copy; and nothing went unhandled."""
        log = self.daemon.log()
        self.assertNotIn("Unhandled Error", log)
        self.assertNotIn("#critical]", log)
        return [line for line in log.splitlines() if "another copy" in line]

    # -- tests -----------------------------------------------------------------------------

    def test_a_primary_refusing_connections_is_read_from_the_copy(self) -> None:
        self.put_small("obj")
        self.kill_primary()
        got = self.s3.get_object(Bucket=VB, Key="obj")
        self.assertEqual(got["Body"].read(), DATA)
        self.assertEqual(got["ETag"], f'"{hashlib.md5(DATA).hexdigest()}"')
        self.assertEqual(self.s3.get_object(Bucket=VB, Key="obj", Range="bytes=7-99")["Body"].read(), DATA[7:100])
        self.assertTrue(any(f"from {self.real[0]} failed" in line for line in self.failovers()), self.failovers())

    def test_a_primary_copy_missing_on_its_backend_is_read_from_the_copy(self) -> None:
        primary_key, copy_key = self.put_small("obj")
        self.direct[0].delete_object(Bucket=self.real[0], Key=primary_key)
        self.assertEqual(self.s3.get_object(Bucket=VB, Key="obj")["Body"].read(), DATA)
        self.assertTrue(any("404" in line for line in self.failovers()), self.failovers())
        # Both copies missing: the record did not change, the data is lost.
        self.direct[1].delete_object(Bucket=self.real[1], Key=copy_key)
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as caught:
            self.s3.get_object(Bucket=VB, Key="obj")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InternalError")

    def test_a_large_object_whose_primary_dies_mid_body_arrives_whole(self) -> None:
        size = 64 * MIB
        _, digest = self.put_large("big", size)
        started = time.monotonic()
        result = self.stream_get("big", at=8 * MIB, then=self.kill_primary)
        self.assertEqual((result["status"], result["length"], result["error"]), (200, size, None))
        self.assertEqual((result["count"], result["sha256"]), (size, digest))
        self.assertLess(self.proxies[0].downstream_bytes, size, "the primary sent it all before it was cut")
        self.assertTrue(any("broke off at byte" in line for line in self.failovers()), self.failovers())
        self.assertLess(time.monotonic() - started, 30)

    def test_a_range_whose_primary_dies_mid_body_arrives_whole(self) -> None:
        path, _ = self.put_large("big", 20 * MIB)
        first, last = 1 * MIB + 17, 19 * MIB - 5
        with path.open("rb") as source:
            source.seek(first)
            digest = hashlib.sha256(source.read(last - first + 1)).hexdigest()
        result = self.stream_get("big", {"Range": f"bytes={first}-{last}"}, at=2 * MIB, then=self.kill_primary)
        self.assertEqual((result["status"], result["error"]), (206, None))
        self.assertEqual((result["count"], result["sha256"]), (last - first + 1, digest))
        self.assertTrue(any("broke off at byte" in line for line in self.failovers()), self.failovers())

    def test_a_stalled_primary_is_left_for_the_copy_mid_body(self) -> None:
        size = 16 * MIB
        _, digest = self.put_large("big", size)
        result = self.stream_get("big", at=1 * MIB, then=self.proxies[0].stall)
        self.assertEqual((result["status"], result["error"]), (200, None))
        self.assertEqual((result["count"], result["sha256"]), (size, digest))
        self.assertTrue(any("sent nothing for 2s" in line for line in self.failovers()), self.failovers())

    def test_both_copies_gone_mid_body_cut_the_connection(self) -> None:
        size = 16 * MIB
        path, _ = self.put_large("big", size)
        copy_key = self.locations("big")[1][3]
        self.direct[1].delete_object(Bucket=self.real[1], Key=copy_key)
        result = self.stream_get("big", at=1 * MIB, then=self.kill_primary)
        self.assertEqual(result["status"], 200)
        self.assertFalse(result["complete"])
        self.assertIsNotNone(result["error"])
        self.assertLess(result["count"], size)
        self.assertEqual(result["sha256"], self.prefix_sha256(path, result["count"]), "a wrong byte reached the client")
        self.assertTrue(self.failovers())
        self.assertIn("the rest from", self.daemon.log())
        self.assertIn("GET vb-failover/big cut short", self.daemon.log())

    def test_a_copy_of_another_length_is_never_spliced_in(self) -> None:
        size = 16 * MIB
        path, _ = self.put_large("big", size)
        copy_key = self.locations("big")[1][3]
        with path.open("rb") as source:
            self.direct[1].put_object(Bucket=self.real[1], Key=copy_key, Body=source.read(size - 1000))
        result = self.stream_get("big", at=1 * MIB, then=self.kill_primary)
        self.assertEqual(result["status"], 200)
        self.assertFalse(result["complete"])
        self.assertLess(result["count"], size)
        self.assertEqual(result["sha256"], self.prefix_sha256(path, result["count"]), "a wrong byte reached the client")
        self.assertTrue(self.failovers())
        self.assertIn("answered the rest", self.daemon.log())

    def test_head_and_listing_need_no_backend(self) -> None:
        self.put_small("obj")
        # Both backends black holes: a request to either would open a connection and hang.
        for proxy in self.proxies:
            proxy.cut()
            proxy.stall()
        connections = [proxy.connections for proxy in self.proxies]
        head = self.s3.head_object(Bucket=VB, Key="obj")
        self.assertEqual((head["ContentLength"], head["ETag"]), (len(DATA), f'"{hashlib.md5(DATA).hexdigest()}"'))
        ranged = self.s3.head_object(Bucket=VB, Key="obj", Range="bytes=0-9")
        self.assertEqual(ranged["ContentLength"], 10)
        listing = self.s3.list_objects_v2(Bucket=VB)
        self.assertEqual([(item["Key"], item["Size"]) for item in listing["Contents"]], [("obj", len(DATA))])
        self.assertEqual([proxy.connections for proxy in self.proxies], connections)
        # And down: a GET has nowhere to go.
        for proxy in self.proxies:
            proxy.refuse = True
            proxy.cut()
            proxy.resume()
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as caught:
            self.s3.get_object(Bucket=VB, Key="obj")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
