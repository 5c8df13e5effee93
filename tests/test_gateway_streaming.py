"""
Streaming: a 1 GiB PUT and GET through the daemon with flat memory, chunked
transfer-encoding uploads of unknown length, and backpressure from a slow
reader.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
import urllib.parse

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import PatternStream, shared_gateway, sign

GIB = 1024**3
MIB = 1024**2


class RssSampler:
    """Samples the daemon's RSS every 50 ms in a thread."""

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.daemon.rss_kib()[0])
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def connection(endpoint: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(endpoint)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)


def stream_put(endpoint: str, path: str, body, length: int | None, extra: dict | None = None) -> http.client.HTTPResponse:
    url = endpoint + path
    headers = dict(extra or {})
    if length is not None:
        headers["Content-Length"] = str(length)
    signed = sign("PUT", url, headers)
    conn = connection(endpoint)
    conn.request("PUT", path, body=body, headers=signed, encode_chunked=length is None)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def stream_get(endpoint: str, path: str, pace: float = 0.0) -> tuple[int, str, int]:
    url = endpoint + path
    conn = connection(endpoint)
    conn.request("GET", path, headers=sign("GET", url))
    response = conn.getresponse()
    digest = hashlib.sha256()
    total = 0
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
        if pace:
            time.sleep(pace)
    conn.close()
    return response.status, digest.hexdigest(), total


class StreamingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)
        self.endpoint = self.gateway.daemon.endpoint

    def test_one_gib_put_and_get_with_bounded_memory(self) -> None:
        size = GIB
        before = self.gateway.daemon.rss_kib()[0]
        source = PatternStream(size, seed=7)
        with RssSampler(self.gateway.daemon) as put_sampler:
            response = stream_put(self.endpoint, f"/{self.bucket}/one-gib", iter(source), size)
        self.assertEqual(response.status, 200, response.reason)
        with RssSampler(self.gateway.daemon) as get_sampler:
            status, digest, total = stream_get(self.endpoint, f"/{self.bucket}/one-gib")
        self.assertEqual((status, total), (200, size))
        self.assertEqual(digest, source.sha256.hexdigest())
        growth = max(put_sampler.peak, get_sampler.peak) - before
        self.assertLess(growth, 64 * 1024, f"RSS grew by {growth} KiB while streaming 1 GiB")

    def test_chunked_upload_of_unknown_length_small(self) -> None:
        source = PatternStream(300 * 1024, seed=3)
        response = stream_put(self.endpoint, f"/{self.bucket}/chunked-small", iter(source), None)
        self.assertEqual(response.status, 200)
        status, digest, total = stream_get(self.endpoint, f"/{self.bucket}/chunked-small")
        self.assertEqual((status, total, digest), (200, 300 * 1024, source.sha256.hexdigest()))

    def test_chunked_upload_of_unknown_length_spanning_parts(self) -> None:
        size = 12 * MIB + 12345
        source = PatternStream(size, seed=4, block=256 * 1024)
        response = stream_put(self.endpoint, f"/{self.bucket}/chunked-big", iter(source), None)
        self.assertEqual(response.status, 200)
        head = self.s3.head_object(Bucket=self.bucket, Key="chunked-big")
        self.assertEqual(head["ContentLength"], size)
        status, digest, total = stream_get(self.endpoint, f"/{self.bucket}/chunked-big")
        self.assertEqual((status, total, digest), (200, size, source.sha256.hexdigest()))

    def test_slow_reader_holds_daemon_memory_flat(self) -> None:
        size = 256 * MIB
        source = PatternStream(size, seed=5)
        self.assertEqual(stream_put(self.endpoint, f"/{self.bucket}/slow", iter(source), size).status, 200)
        before = self.gateway.daemon.rss_kib()[0]
        url = self.endpoint + f"/{self.bucket}/slow"
        conn = connection(self.endpoint)
        conn.request("GET", f"/{self.bucket}/slow", headers=sign("GET", url))
        response = conn.getresponse()
        response.read(MIB)
        # The client stops reading; the daemon must not buffer the object.
        time.sleep(1.5)
        held = self.gateway.daemon.rss_kib()[0] - before
        conn.close()
        self.assertLess(held, 32 * 1024, f"daemon RSS grew {held} KiB for a stalled reader")


def _tampered_middle_chunk(signed, chunks: list[bytes]) -> bytes:
    """The signed aws-chunked body of C{chunks} with one byte of the middle chunk's data changed."""
    from tests.signing import encode_signed_chunks

    body = bytearray(encode_signed_chunks(signed, chunks))
    first = sum(len(chunk) for chunk in chunks[:1])
    # Past the first chunk's data and CRLF and the second chunk's header line.
    at = body.index(b"\r\n", body.index(b"\r\n") + 2 + first + 2) + 2 + len(chunks[1]) // 2
    body[at] ^= 0x01
    return bytes(body)


class BadChunkNeverCompletesTests(SynchronousTestCase):
    """
    Signed chunk bytes stream onward before their chunk is verified; the
    held-back tail keeps the guarantee that a body with a chunk that does not
    verify never reaches its backend whole.
    """

    def test_backend_never_gets_the_whole_body_of_a_bad_middle_chunk(self) -> None:
        """With fakes: the backend connection sees part of the body, never all of it, and no finish."""
        from types import SimpleNamespace

        from s3balance.auth.sigv4 import AuthContext, PayloadMode
        from s3balance.s3.call import S3Call
        from s3balance.s3.routing import Target
        from s3balance.s3.upload import PutObjectUpload
        from s3balance.store.interfaces import WriteIntent
        from tests.signing import sign_request
        from tests.test_cancellation import FakeRequest, make_gateway

        gateway, store, pool, backend, clock = make_gateway()
        chunks = [bytes([n]) * (64 * 1024) for n in (1, 2, 3)]
        size = sum(map(len, chunks))
        signed = sign_request("PUT", "http://h/vb/key", payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        ctx = AuthContext(
            credential=None,
            payload_mode=PayloadMode.STREAMING_SIGNED,
            content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            signing_key=signed.key,
            seed_signature=signed.signature,
            scope=signed.scope,
            amz_date=signed.amz_date,
            region="us-east-1",
        )
        body = _tampered_middle_chunk(signed, chunks)
        request = FakeRequest()
        call = S3Call("PUT", Target("vb", "key"), "PutObject", {},
                      {"content-encoding": ["aws-chunked"], "x-amz-decoded-content-length": [str(size)]},
                      None, ctx, b"/vb/key")
        request.call = call
        upload = PutObjectUpload(gateway, request, call, len(body))
        request.body_sink = upload
        upload.start()
        store.pending["get_bucket"].callback(SimpleNamespace(name="vb", owner=None, acl=None, policy=None, public_access_block=None, versioning=None, object_lock=None))
        store.pending["begin_write"].callback(WriteIntent(7, "b1", "vb/x"))
        self.assertEqual(len(backend.requests), 1)
        for start in range(0, len(body), 1000):
            upload.data_received(body[start : start + 1000])
        # Most of the body streamed on (no chunk is held whole) ...
        self.assertGreater(backend.received, len(chunks[0]))
        # ... but never all of it: the backend cannot complete the object.
        self.assertLess(backend.received, size)
        self.assertTrue(backend.requests[0].called)
        request.body_in()
        self.assertNotIn("commit_object", store.names())
        self.assertEqual(store.calls[-1], ("abandon_write", 7, True))
        self.assertEqual(request.answers, [403])

    def test_bad_middle_chunk_stores_nothing(self) -> None:
        """Against the daemon: 403 SignatureDoesNotMatch, no object, nothing left on the backends."""
        from tests.gateways import assert_nothing_left
        from tests.signing import STREAMING_SIGNED, send, sign_request

        gateway = shared_gateway()
        bucket = gateway.new_bucket()
        endpoint = gateway.daemon.endpoint
        chunks = [bytes([n]) * (2 * MIB) for n in (1, 2, 3)]
        size = sum(map(len, chunks))
        url = f"{endpoint}/{bucket}/bad-middle"
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(size)}
        signed = sign_request("PUT", url, headers, STREAMING_SIGNED)
        status, _, answer = send("PUT", url, signed.headers, _tampered_middle_chunk(signed, chunks))
        self.assertEqual(status, 403, answer)
        self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", answer)
        s3 = gateway.client()
        self.assertEqual(s3.list_objects_v2(Bucket=bucket).get("Contents", []), [])
        assert_nothing_left(gateway, bucket)
