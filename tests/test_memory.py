"""
Memory of uploads whose client went away: a daemon process (its RSS read
from /proc/<pid>/status) gives back what dropped uploads held, at once and
not at the garbage collector's next full pass.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import poll
from tests.gateways import Lazy, launch
from tests.signing import STREAMING_SIGNED, encode_signed_chunks, sign_request

MIB = 1024 * 1024
CHUNK = 16 * MIB  # the largest signed aws-chunked chunk
DECLARED = 32 * MIB  # what each dropped upload announces
SIGNED_SENT = 12 * MIB  # dropped three quarters into the first chunk
PLAIN_SENT = 6 * MIB
DROPPED = 50
ALLOWED_GROWTH_KIB = 20 * 1024

_daemon = Lazy(lambda: launch("memory", ("vb-memory",)), stop=lambda gateway: gateway.daemon.stop())


def _pattern(size: int) -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


PAYLOAD = _pattern(DECLARED)


class DroppedUploads:
    """Uploads sent in part over a raw socket, then abandoned (the socket closed)."""

    def __init__(self, endpoint: str, port: int) -> None:
        self.endpoint = endpoint
        self.port = port
        self.count = 0

    def _send_and_drop(self, path: str, headers: dict, body: bytes) -> None:
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            connection.sendall(head.encode("latin-1") + b"\r\n")
            view = memoryview(body)
            for start in range(0, len(body), MIB):
                connection.sendall(view[start : start + MIB])
        finally:
            connection.close()

    def signed(self, key: str) -> None:
        """A signed aws-chunked upload dropped in the middle of a large chunk."""
        path = f"/vb-memory/{key}"
        chunks = [PAYLOAD[start : start + CHUNK] for start in range(0, DECLARED, CHUNK)]
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(DECLARED)}
        # The encoded length: every chunk's header line and CRLF, and the final chunk.
        signed = sign_request("PUT", self.endpoint + path, headers, STREAMING_SIGNED, host=f"127.0.0.1:{self.port}")
        body = encode_signed_chunks(signed, chunks)
        sent = dict(signed.headers)
        sent["content-length"] = str(len(body))
        header_line = body.index(b"\r\n") + 2
        self._send_and_drop(path, sent, body[: header_line + SIGNED_SENT])
        self.count += 1

    def plain(self, key: str) -> None:
        """An UNSIGNED-PAYLOAD upload with a Content-Length, dropped part way."""
        path = f"/vb-memory/{key}"
        headers = {"content-length": str(DECLARED)}
        signed = sign_request("PUT", self.endpoint + path, headers, host=f"127.0.0.1:{self.port}")
        self._send_and_drop(path, signed.headers, PAYLOAD[:PLAIN_SENT])
        self.count += 1


class DroppedUploadMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = _daemon()
        self.daemon = self.gateway.daemon
        self.drops = DroppedUploads(self.daemon.endpoint, self.daemon.port)

    def rss_kib(self) -> int:
        return self.daemon.rss_kib()[0]

    def settled_rss(self) -> int:
        """The RSS once nothing is in flight (the last dropped upload cleaned up)."""
        # The /metrics request that asks is in flight itself.
        poll(lambda: self.in_flight() <= 1, timeout=30, message=f"uploads still in flight: {self.in_flight()}")
        return self.rss_kib()

    def in_flight(self) -> float:
        import urllib.request

        with urllib.request.urlopen(f"{self.daemon.endpoint}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("s3balance_requests_in_flight"):
                    return float(line.split()[-1])
        return 0.0

    def test_dropped_uploads_give_their_memory_back(self) -> None:
        # Warm up: first allocations of every code path are not what is measured.
        for index in range(2):
            self.drops.signed(f"warm-signed-{index}")
            self.drops.plain(f"warm-plain-{index}")
        before = self.settled_rss()
        for index in range(DROPPED // 2):
            self.drops.signed(f"signed-{index}")
            self.drops.plain(f"plain-{index}")
        self.assertEqual(self.drops.count, 4 + DROPPED)
        after_drops = self.settled_rss()
        samples: list[int] = []

        def returned() -> bool:
            samples.append(self.rss_kib())
            return samples[-1] - before <= ALLOWED_GROWTH_KIB

        try:
            # Reading /proc only: a request to the daemon now would allocate
            # and could start the collector's full pass, which is what the
            # memory must not wait for.
            poll(returned, timeout=5, interval=0.25)
        except AssertionError:
            self.fail(
                f"daemon RSS {samples[-1]} KiB after {DROPPED} dropped uploads, "
                f"{samples[-1] - before} KiB above the {before} KiB it had before "
                f"(right after the drops: {after_drops} KiB)"
            )
        # Nothing of the dropped uploads became an object.
        s3 = self.gateway.client()
        listed = s3.list_objects_v2(Bucket="vb-memory").get("Contents", [])
        self.assertEqual(listed, [])


class DroppedUploadIsFreedTests(SynchronousTestCase):
    """
    With the cycle collector off, an upload whose client left is freed by
    reference counting alone as soon as its cleanup ends: no reference cycle
    (request <-> upload, pipe <-> upload, a kept exception's traceback) holds
    it, its body and its backend producer until a full collection.
    """

    def setUp(self) -> None:
        import gc

        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)

    def assertFreed(self, scenario) -> None:
        import weakref

        from tests.test_cancellation import make_gateway, make_upload

        gateway, store, pool, backend, clock = make_gateway()
        upload, request = make_upload(gateway)
        scenario(upload, request, store, backend, gateway)
        self.assertTrue(upload.finished.called)
        freed = [weakref.ref(upload), weakref.ref(request), weakref.ref(upload.pipe)]
        del upload, request
        store.pending.clear()
        backend.requests.clear()
        self.assertEqual([ref() for ref in freed], [None, None, None])

    def test_dropped_mid_body(self) -> None:
        from types import SimpleNamespace

        from s3balance.store.interfaces import WriteIntent
        from tests.test_cancellation import BODY

        def scenario(upload, request, store, backend, gateway) -> None:
            upload.data_received(BODY[:100])
            store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
            store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
            upload.data_received(BODY[100:200])
            request.connection_lost()

        self.assertFreed(scenario)

    def test_dropped_while_the_backend_stores_the_body(self) -> None:
        from types import SimpleNamespace

        from s3balance.store.interfaces import WriteIntent
        from tests.test_cancellation import BODY

        def scenario(upload, request, store, backend, gateway) -> None:
            upload.data_received(BODY)
            request.body_in()
            gateway.handle(request)
            store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
            store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
            request.connection_lost()

        self.assertFreed(scenario)

    def test_stored_upload(self) -> None:
        from types import SimpleNamespace

        from s3balance.backends.backend import PutResult
        from s3balance.store.interfaces import WriteIntent
        from tests.test_cancellation import BODY

        def scenario(upload, request, store, backend, gateway) -> None:
            upload.data_received(BODY)
            request.body_in()
            gateway.handle(request)
            store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
            store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
            backend.requests[0].callback(PutResult('"etag"'))
            store.pending["commit_object"].callback(None)
            self.assertEqual(request.answers, [200])

        self.assertFreed(scenario)

    def test_upload_refused_by_its_backend(self) -> None:
        """Answered with an error on a connection that stays open (the pipe never started)."""
        from types import SimpleNamespace

        from twisted.internet.defer import fail

        from s3balance.backends.backend import BackendError
        from s3balance.store.interfaces import WriteIntent
        from tests.test_cancellation import BODY

        def scenario(upload, request, store, backend, gateway) -> None:
            backend.put_object = lambda key, pipe, headers: fail(
                BackendError("b1", 0, "Unreachable", "connection refused", retryable=False)
            )
            upload.data_received(BODY)
            request.body_in()
            gateway.handle(request)
            store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
            store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
            self.assertEqual(request.answers, [503])
            self.assertFalse(request.disconnected)

        self.assertFreed(scenario)
