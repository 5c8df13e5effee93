"""
Fuzzing the HTTP face of a running daemon (a real twistd process, auth
required, two SeaweedFS backends) with hypothesis.

Every case is sent as raw bytes over a fresh socket, so the requests can be
anything: odd methods and paths, broken query strings and headers, wrong
Content-Length, XML bombs, torn aws-chunked framing, tampered signatures.
For every answer:

  - no 5xx except the daemon's intentional 501 / 503 / 507;
  - no Python traceback or exception text in the body;
  - an error answer is an S3 XML <Error> with a <Code> and carries
    x-amz-request-id (HEAD: the header only);
  - it answers, or closes the connection, within a few seconds;
  - the daemon stays alive, and the canary objects written before the run
    keep their exact bytes and ETags (checked after each test).

Volume: S3BALANCE_FUZZ_EXAMPLES (default 2000) cases over the whole module,
shared between the tests in proportion.  Under CI=true the runs are
derandomized; S3BALANCE_FUZZ_SEED pins a seed otherwise.  The long run:
`python -m tests.fuzz_main --examples 50000`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import socket
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote
from xml.etree import ElementTree

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Gateway, poll, sign, start_gateway
from tests.gateways import Lazy

TOTAL_EXAMPLES = int(os.environ.get("S3BALANCE_FUZZ_EXAMPLES", "2000"))
IN_CI = os.environ.get("CI", "").lower() == "true"
SEED = os.environ.get("S3BALANCE_FUZZ_SEED")
# Share of the examples per test (sums to 1).
SHARES = {"general": 0.40, "headers": 0.20, "xml": 0.15, "chunked": 0.20, "raw": 0.05}

ANSWER_TIMEOUT = 5.0  # seconds for the first byte / each read of an answer
ALLOWED_5XX = frozenset({501, 503, 507})
LEAK_MARKERS = (
    b"Traceback (most recent call last)",
    b'File "/',
    b"twisted.python.failure",
    b"<class '",
    b"builtins.",
)
OWN_PATHS = (b"/health", b"/metrics")
CONTROL_CHARS = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")

SUBRESOURCES = [
    "acl", "delete", "location", "versioning", "versions", "uploads", "uploadId", "partNumber",
    "tagging", "policy", "cors", "lifecycle", "website", "restore", "select", "versionId",
    "attributes", "retention", "legal-hold", "torrent", "object-lock", "notification", "logging",
]
LIST_PARAMS = [
    "prefix", "delimiter", "max-keys", "marker", "list-type", "continuation-token", "start-after",
    "encoding-type", "fetch-owner", "key-marker", "upload-id-marker", "max-uploads", "max-parts",
    "part-number-marker", "response-content-type", "response-content-disposition", "s3balance-proxy",
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders",
]
METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"]


def share(name: str) -> int:
    return max(10, int(TOTAL_EXAMPLES * SHARES[name]))


def fuzz_settings(name: str):
    def apply(fn):
        fn = settings(
            max_examples=share(name),
            deadline=None,
            derandomize=IN_CI and SEED is None,
            database=None if IN_CI else settings.default.database,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
            report_multiple_bugs=False,
        )(fn)
        if SEED is not None:
            fn = hypothesis_seed(int(SEED))(fn)
        return fn

    return apply


# -- the daemon under test --------------------------------------------------------


@dataclass
class World:
    gateway: Gateway
    host: str
    port: int
    bucket: str  # exists, holds canaries
    other_bucket: str  # exists, holds canaries, never named by the generators
    upload_key: str
    upload_id: str  # an open multipart upload in `bucket`
    canaries: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)


def _make_world() -> World:
    # Client-spoiled uploads count as backend failures today (see
    # ClientFaultsAreNotBackendFaultsTests); without a high threshold the
    # backends are marked down within a few cases and everything is 503.
    gateway = start_gateway("fuzz-gw", balancer={"unhealthy_threshold": 1000000})
    s3 = gateway.client()
    bucket = gateway.new_bucket(s3, prefix="fz")
    other = gateway.new_bucket(s3, prefix="fzc")
    canaries = {}
    for index, size in enumerate([0, 1, 1000, 70000, 300000]):
        body = hashlib.sha256(str(index).encode()).digest() * (size // 32 + 1)
        body = body[:size]
        for target in (bucket, other):
            key = f"canary-{uuid.uuid4().hex}/{index}"
            etag = s3.put_object(Bucket=target, Key=key, Body=body)["ETag"]
            canaries[(target, key)] = (body, etag)
    upload_key = "mpu-target"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=upload_key)["UploadId"]
    return World(gateway, "127.0.0.1", gateway.daemon.port, bucket, other, upload_key, upload_id, canaries)


world = Lazy(_make_world, stop=lambda made: made.gateway.daemon.stop())


# -- one exchange over a raw socket -------------------------------------------------


@dataclass
class Answer:
    status: Optional[int]  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes
    elapsed: float


class Hang(AssertionError):
    pass


def exchange(host: str, port: int, data: bytes, method: str, half_close: bool = False) -> Answer:
    """Send `data`, read one answer (100 Continue skipped)."""
    started = time.monotonic()
    sock = socket.create_connection((host, port), timeout=ANSWER_TIMEOUT)
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except TimeoutError:
            raise Hang(f"the daemon stopped reading the request for {ANSWER_TIMEOUT}s") from None
        except OSError:
            pass  # answered early and closed: read what is there
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
        except TimeoutError:
            raise Hang(f"no answer within {ANSWER_TIMEOUT}s") from None
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
            return Answer(None, {}, b"", time.monotonic() - started)
        try:
            body = response.read()
        except TimeoutError:
            raise Hang(f"answer {response.status} started but its body stalled") from None
        except (http.client.IncompleteRead, ConnectionResetError) as error:
            body = getattr(error, "partial", b"") or b""
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body, time.monotonic() - started)
    finally:
        sock.close()


def render(method: str, target: bytes, headers: list[tuple[str, str]], body: bytes, version: str = "HTTP/1.1") -> bytes:
    head = method.encode("latin-1") + b" " + target + b" " + version.encode() + b"\r\n"
    for name, value in headers:
        head += name.encode("latin-1") + b": " + value.encode("latin-1", "replace") + b"\r\n"
    return head + b"\r\n" + body


def check_answer(testcase, request: bytes, method: str, path: bytes, answer: Answer) -> None:
    """The properties every answer must have."""
    context = f"\nrequest: {request[:1500]!r}\nanswer: {answer.status} {answer.headers} {answer.body[:1500]!r}"
    world().outcomes[answer.status] += 1
    if answer.status is None:
        return
    testcase.assertFalse(
        answer.status >= 500 and answer.status not in ALLOWED_5XX, f"unexpected {answer.status}" + context
    )
    if path.split(b"?")[0] in OWN_PATHS:
        # Known: /health's last_error can hold a Failure's repr (reported with
        # ClientFaultsAreNotBackendFaultsTests); not an S3 answer anyway.
        return
    for marker in LEAK_MARKERS:
        testcase.assertNotIn(marker, answer.body, "Python internals in the answer" + context)
    if answer.status < 400:
        return
    if path == b"*" and answer.status == 405 and not answer.body:
        # twisted.web's own answer to "GET *" (only OPTIONS * is allowed).
        world().outcomes["asterisk-405"] += 1
        return
    if answer.status == 400 and not answer.body and "x-amz-request-id" not in answer.headers:
        # Twisted's own answer to an unparseable request (bad request line,
        # header line or Content-Length): no S3 request exists yet.
        world().outcomes["protocol-400"] += 1
        return
    testcase.assertIn("x-amz-request-id", answer.headers, "error without a request id" + context)
    if method == "HEAD":
        return
    body = answer.body
    if CONTROL_CHARS.search(body):
        # Known: keys with control characters are echoed unescaped (see
        # XmlEscapingTests); tolerated here so the fuzzer can look further.
        world().outcomes["xml-control-char"] += 1
        body = CONTROL_CHARS.sub(b"?", body)
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        testcase.fail("error body is not XML" + context)
    testcase.assertEqual(root.tag, "Error", "error body is not an <Error>" + context)
    testcase.assertTrue((root.findtext("Code") or "").strip(), "error without <Code>" + context)


def signed_headers(method: str, url: str, headers: list[tuple[str, str]], payload: str) -> Optional[list[tuple[str, str]]]:
    """`headers` plus SigV4 headers from botocore's signer (None when it can't sign this URL)."""
    plain = {}
    for name, value in headers:
        plain.setdefault(name, value)
    try:
        out = sign(method, url, plain, payload=payload)
    except Exception:
        return None
    merged = [(n, v) for n, v in headers if n.lower() not in {k.lower() for k in out}]
    return merged + [(n, v) for n, v in out.items() if n.lower() != "host"]


# -- strategies ---------------------------------------------------------------------

text_pieces = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="abc/.-_~%+ ", max_size=20),
    st.sampled_from(["..", ".", "../", "%2e%2e", "%2F", "%00", "%zz", "%c3", "%ff%fe", "\u00e9t\u00e9", "\U0001f600",
                     "a//b", "", "?", "#frag", "*", ";x=y", "k0", "k1", "dir/k2"]),
)


@st.composite
def keys(draw, w: World) -> Optional[bytes]:
    """A raw (on-the-wire) key, or None for a bucket-level request."""
    kind = draw(st.sampled_from(["none", "empty", "pool", "quoted", "raw", "traversal", "long", "canary-ish"]))
    if kind == "none":
        return None
    if kind == "empty":
        return b""
    if kind == "pool":
        return draw(st.sampled_from([b"k0", b"k1", b"dir/k2", b"mpu-target", b"a%20b", b"with+plus"]))
    if kind == "quoted":
        return quote(draw(st.text(max_size=40)), safe=draw(st.sampled_from(["/", "", "/~!*'()", "/%"]))).encode()
    if kind == "raw":
        return draw(text_pieces).encode("utf-8", "surrogatepass")
    if kind == "traversal":
        other = w.other_bucket
        canary = next(iter(k for (b, k) in w.canaries if b == other))
        return draw(st.sampled_from([
            f"../{other}/{canary}", f"..%2F{other}%2F{canary}", f"%2e%2e/{other}/{canary}",
            f"x/../../{other}/{canary}", f"./../{other}/{quote(canary, safe='')}",
        ])).encode()
    if kind == "long":
        return b"L" * draw(st.sampled_from([1023, 1024, 1025, 4000, 9000]))
    return b"canary-" + draw(st.text(alphabet="0123456789abcdef", max_size=8)).encode()


@st.composite
def paths(draw, w: World) -> bytes:
    kind = draw(st.sampled_from(["ours", "ours", "ours", "vb", "missing", "invalid", "root", "odd"]))
    if kind == "root":
        return b"/"
    if kind == "odd":
        return draw(st.sampled_from([b"*", b"", b"//", b"http://127.0.0.1/" + w.bucket.encode() + b"/k0",
                                     b"/health", b"/metrics", b"/admin/x", b"/%", b"/\xff\xfe/k"]))
    bucket = {
        "ours": w.bucket,
        "vb": "vb-default",
        "missing": "nosuch-" + draw(st.text(alphabet="abcdefghij0123456789", min_size=3, max_size=10)),
        "invalid": draw(st.sampled_from(["A_B", "..", "health", "x" * 300, "\u00e9", "a..b", "-a", "ab", "%41bc"])),
    }[kind]
    key = draw(keys(w))
    path = b"/" + quote(bucket, safe="%").encode()
    if key is None:
        return path + draw(st.sampled_from([b"", b"/"]))
    return path + b"/" + key


@st.composite
def queries(draw, w: World) -> bytes:
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(SUBRESOURCES), st.sampled_from(LIST_PARAMS), st.text(max_size=8)))
        value = draw(st.one_of(
            st.none(),
            st.just(""),
            st.sampled_from(["2", "0", "-1", "1001", "99999999999999999999", "abc", "url", "true", w.upload_id, "null",
                             "1", "10001", "%zz", "\u00e9"]),
            st.text(max_size=16),
        ))
        n = quote(name, safe=draw(st.sampled_from(["", "=&"]))).encode()
        pairs.append(n if value is None else n + b"=" + quote(value, safe="").encode())
    if draw(st.booleans()) and pairs:
        pairs.append(pairs[0])  # a duplicate
    return b"&".join(pairs)


header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=40),
    st.sampled_from(["", "0", "-1", "bytes=0-0", "bytes=-1", "bytes=5-1", "bytes=0-", "bytes=x-y", "bytes=0-1,3-4",
                     "items=0-1", "bytes=99999999999999999999-", "Thu, 01 Jan 1970 00:00:00 GMT", "yesterday",
                     "20991231T000000Z", "*", '"etag"', "W/\"x\"", "100-continue", "chunked", "aws-chunked",
                     "/", "/nosuch/k", "//", "/b/k?versionId=x", "%zz", "UNSIGNED-PAYLOAD", "GLACIER", "REPLACE"]),
)
HEADER_NAMES = [
    "x-amz-meta-a", "x-amz-meta-", "x-amz-date", "Date", "x-amz-content-sha256", "Content-MD5", "Expect", "Range",
    "x-amz-copy-source", "x-amz-copy-source-range", "x-amz-metadata-directive", "If-Match", "If-None-Match",
    "If-Modified-Since", "If-Unmodified-Since", "x-amz-checksum-crc32", "x-amz-checksum-sha256",
    "x-amz-sdk-checksum-algorithm", "x-amz-decoded-content-length", "Content-Encoding", "x-amz-trailer",
    "x-amz-storage-class", "x-amz-checksum-mode", "x-amz-acl", "x-s3balance-proxy", "Content-Type",
    "x-amz-copy-source-if-match", "x-amz-server-side-encryption", "Cache-Control", "Transfer-Encoding",
]


@st.composite
def header_lists(draw) -> list[tuple[str, str]]:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.one_of(st.sampled_from(HEADER_NAMES),
                              st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(lambda s: "x-amz-" + s)))
        out.append((name, draw(header_values)))
    if draw(st.integers(0, 20)) == 0:
        out.append(("x-amz-meta-big", "m" * draw(st.sampled_from([2000, 2100, 9000, 70000]))))
    return out


@dataclass
class Case:
    method: str
    path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes
    auth: str  # valid | sha256 | bad-sha256 | tampered | absent | garbage
    length: str  # exact | absent | garbage | more | less | http-chunked


@st.composite
def cases(draw, w: World, methods=st.sampled_from(METHODS), path_strategy=None, header_strategy=None, body_strategy=None) -> Case:
    method = draw(st.one_of(methods, st.sampled_from(["get", "G\u00e9T", "M-SEARCH", "X" * 50])) if draw(st.integers(0, 15)) == 0 else methods)
    path = draw(path_strategy if path_strategy is not None else paths(w))
    query = draw(queries(w))
    headers = draw(header_strategy if header_strategy is not None else header_lists())
    body = draw(body_strategy if body_strategy is not None else st.one_of(st.just(b""), st.binary(max_size=2048)))
    auth = draw(st.sampled_from(["valid", "valid", "valid", "sha256", "bad-sha256", "tampered", "absent", "garbage"]))
    length = draw(st.sampled_from(["exact"] * 6 + ["absent", "garbage", "more", "less", "http-chunked"]))
    return Case(method, path, query, headers, body, auth, length)


def case_bytes(w: World, case: Case, draw_garbage=None) -> tuple[bytes, bool]:
    """The request on the wire, and whether to half-close after sending it."""
    target = case.path + (b"?" + case.query if case.query else b"")
    headers = [(n, v) for n, v in case.headers if n.lower() not in ("content-length", "transfer-encoding", "host")]
    body = case.body
    half_close = False
    if case.length == "exact":
        headers.append(("Content-Length", str(len(body))))
    elif case.length == "garbage":
        headers.append(("Content-Length", draw_garbage or "abc"))
        half_close = True  # " 10" is a valid length: the daemon may wait for the body
    elif case.length == "more":
        headers.append(("Content-Length", str(len(body) + 10)))
        half_close = True
    elif case.length == "less":
        headers.append(("Content-Length", str(max(0, len(body) - 1))))
    elif case.length == "http-chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    host = f"{w.host}:{w.port}"
    url_ok = target.startswith(b"/") and all(32 < c < 127 for c in target)
    if case.auth != "absent" and url_ok:
        url = f"http://{host}" + target.decode("ascii")
        payload = {
            "sha256": hashlib.sha256(case.body).hexdigest(),
            "bad-sha256": hashlib.sha256(case.body + b"x").hexdigest(),
        }.get(case.auth, "UNSIGNED-PAYLOAD")
        signed = signed_headers(case.method, url, headers, payload)
        if signed is not None:
            headers = signed
            if case.auth == "tampered":
                headers = [
                    (n, v[:-1] + ("0" if v[-1] != "0" else "1")) if n.lower() == "authorization" else (n, v)
                    for n, v in headers
                ]
    if case.auth == "garbage":
        headers = [(n, v) for n, v in headers if n.lower() != "authorization"]
        headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=x/y, SignedHeaders=;;, Signature=zz"))
    headers = [("Host", host)] + headers + [("Connection", "close")]
    return render(case.method, target, headers, body), half_close


# -- the tests ------------------------------------------------------------------------


class FuzzTests(SynchronousTestCase):
    """Each test fuzzes one face, then checks the daemon and the canaries."""

    def setUp(self) -> None:
        self.w = world()
        self.started = time.monotonic()
        self.log_start = len(self.w.gateway.daemon.log())
        self.addCleanup(self.assertWorldIntact)

    def send(self, data: bytes, method: str, path: bytes, half_close: bool = False) -> Answer:
        try:
            answer = exchange(self.w.host, self.w.port, data, method, half_close)
        except Hang as error:
            self.fail(f"{error}\nrequest ({len(data)} bytes): {data[:1500]!r} ... {data[-1500:]!r}")
        self.assertLess(answer.elapsed, 3 * ANSWER_TIMEOUT, f"slow answer\nrequest: {data[:1500]!r}")
        check_answer(self, data, method, path, answer)
        if not self.w.gateway.daemon.process.running:
            self.fail(f"the daemon died\nrequest: {data[:1500]!r}\nlog tail: {self.w.gateway.daemon.log()[-3000:]}")
        return answer

    def send_case(self, case: Case, garbage_length: str = "abc") -> Answer:
        data, half_close = case_bytes(self.w, case, garbage_length)
        answer = self.send(data, case.method.upper(), case.path, half_close)
        head_size = len(data.split(b"\r\n\r\n", 1)[0])
        if head_size > 16384:
            # twisted.web.http.HTTPChannel drops a connection whose header
            # section is over 16 KiB without an answer (S3: 400).
            self.w.outcomes["oversized-head-dropped"] += answer.status is None
        elif case.length in ("exact", "http-chunked"):
            self.assertIsNotNone(answer.status, f"a complete request got no answer\nrequest: {data[:1500]!r}")
        return answer

    def signed_get(self, bucket: str, key: str, method: str = "GET") -> Answer:
        path = f"/{bucket}/{quote(key, safe='/')}"
        host = f"{self.w.host}:{self.w.port}"
        headers = signed_headers(method, f"http://{host}{path}", [], "UNSIGNED-PAYLOAD")
        assert headers is not None
        data = render(method, path.encode(), [("Host", host)] + headers + [("Connection", "close")], b"")
        return exchange(self.w.host, self.w.port, data, method)

    def assertWorldIntact(self) -> None:
        w = self.w
        daemon = w.gateway.daemon
        self.assertTrue(daemon.process.running, "the daemon died")
        # Backends may be marked down by client-caused aborts (see
        # test_bad_uploads_do_not_mark_backends_down); the health check brings them back.
        poll(lambda: daemon.health()["status"] == "ok", timeout=10, message=f"health: {daemon.health()}")
        for (bucket, key), (body, etag) in w.canaries.items():
            got = self.signed_get(bucket, key)
            self.assertEqual(got.status, 200, f"canary {bucket}/{key}: {got.status} {got.body[:300]!r}")
            self.assertEqual(got.body, body, f"canary {bucket}/{key} changed")
            self.assertEqual(got.headers.get("etag"), etag, f"canary {bucket}/{key} has another ETag")
        log = daemon.log()[self.log_start:]
        for marker in ("Traceback", "Unhandled"):
            self.assertNotIn(marker, log, f"{marker} in the daemon log:\n{log[log.find(marker) - 2000:][:6000]}")
        print(f"\n{self.id()}: {time.monotonic() - self.started:.1f}s, answers so far: {dict(w.outcomes)}")

    # -- the faces ------------------------------------------------------------------

    def test_general(self) -> None:
        """Methods, paths, queries, headers, bodies, lengths and signatures, all random."""

        @fuzz_settings("general")
        @given(case=cases(self.w), garbage=st.sampled_from(["abc", "-1", "1e3", " 10", "10, 10", "99999999999999999999", "0x10", ""]))
        def run(case: Case, garbage: str) -> None:
            self.send_case(case, garbage)

        run()

    def test_headers_on_real_objects(self) -> None:
        """Header garbage (ranges, dates, copy sources, metadata, preconditions) on existing objects, signed."""
        w = self.w
        object_paths = st.sampled_from([
            f"/{w.bucket}/k0".encode(), f"/{w.bucket}/k1".encode(), f"/{w.bucket}/dir/k2".encode(),
            f"/{w.bucket}/{w.upload_key}".encode(),
        ])
        copy_sources = st.one_of(
            st.sampled_from([f"/{w.bucket}/k0", f"{w.bucket}/k1", f"/{w.bucket}/nosuch", f"/{w.other_bucket}/nosuch",
                             f"/{w.bucket}/k0?versionId=null", f"/{w.bucket}/k0?versionId=zz", "/", "", "%", "/%zz/x",
                             f"/{w.bucket}/" + "x" * 2000]),
            st.text(max_size=30),
        )

        @st.composite
        def header_mix(draw):
            headers = draw(header_lists())
            if draw(st.booleans()):
                headers.append(("x-amz-copy-source", draw(copy_sources)))
            if draw(st.booleans()):
                headers.append(("Range", draw(header_values)))
            return headers

        # Objects to read and overwrite (their bytes may change: they are not canaries).
        s3 = w.gateway.client()
        for key in ("k0", "k1", "dir/k2"):
            s3.put_object(Bucket=w.bucket, Key=key, Body=b"0123456789" * 100)

        @fuzz_settings("headers")
        @given(case=cases(w, methods=st.sampled_from(["GET", "HEAD", "PUT", "GET", "HEAD", "PUT", "POST", "DELETE"]),
                          path_strategy=object_paths, header_strategy=header_mix()))
        def run(case: Case) -> None:
            case.auth = "valid" if case.auth in ("absent", "garbage") else case.auth
            case.length = "exact"
            self.send_case(case)

        run()

    def test_xml_bodies(self) -> None:
        """Random and broken XML for DeleteObjects and CompleteMultipartUpload, entity bombs included."""
        w = self.w
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
            + b"]><Delete><Object><Key>&lol9;</Key></Object></Delete>"
        )
        external = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>'
        fixed = st.sampled_from([
            bomb, external, b"", b"<", b"<Delete>", b"<Delete></Delete>", b"<Delete><Object/></Delete>",
            b"<Delete><Object><Key></Key></Object></Delete>", b"\xff\xfe<\x00D\x00", b"<?xml version='1.0' encoding='latin-1'?><Delete/>",
            b"<CompleteMultipartUpload/>", b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part><Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>99999999999999999999999</PartNumber><ETag>\"e\"</ETag></Part></CompleteMultipartUpload>",
            b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
            b"<a>" * 5000 + b"</a>" * 5000,
        ])
        element = st.recursive(
            st.text(max_size=10).map(lambda s: s.encode("utf-8", "surrogatepass")),
            lambda inner: st.tuples(
                st.sampled_from([b"Delete", b"Object", b"Key", b"Quiet", b"Part", b"PartNumber", b"ETag",
                                 b"CompleteMultipartUpload", b"VersionId", b"x"]),
                st.lists(inner, max_size=4),
                st.booleans(),
            ).map(lambda t: b"<" + t[0] + b">" + b"".join(t[1]) + (b"</" + t[0] + b">" if t[2] else b"")),
            max_leaves=12,
        )
        bodies = st.one_of(fixed, element, st.binary(max_size=300))
        # Its own upload: the general fuzz may abort the shared one.
        upload_id = w.gateway.client().create_multipart_upload(Bucket=w.bucket, Key=w.upload_key)["UploadId"]
        targets = st.sampled_from([
            (f"/{w.bucket}".encode(), b"delete"),
            (f"/{w.bucket}/".encode(), b"delete="),
            (f"/{w.bucket}/{w.upload_key}".encode(), b"uploadId=" + upload_id.encode()),
            (f"/{w.bucket}/{w.upload_key}".encode(), b"uploadId=nosuch"),
            (f"/{w.bucket}/other".encode(), b"uploadId=" + upload_id.encode()),
        ])

        @fuzz_settings("xml")
        @given(body=bodies, target=targets, md5=st.sampled_from(["good", "good", "bad", "none", "crc"]),
               auth=st.sampled_from(["valid", "valid", "valid", "sha256", "absent"]))
        def run(body: bytes, target: tuple[bytes, bytes], md5: str, auth: str) -> None:
            headers = [("Content-Type", "application/xml")]
            if md5 == "good":
                headers.append(("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode()))
            elif md5 == "bad":
                headers.append(("Content-MD5", base64.b64encode(hashlib.md5(body + b"!").digest()).decode()))
            elif md5 == "crc":
                headers.append(("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()))
            case = Case("POST", target[0], target[1], headers, body, auth, "exact")
            self.send_case(case)

        run()
        # The open upload is still there (no fuzz case could complete it without parts).
        listing = self.signed_get(w.bucket, "", "GET")
        self.assertEqual(listing.status, 200)

    def test_aws_chunked(self) -> None:
        """STREAMING-UNSIGNED-PAYLOAD-TRAILER framing: random chunking, then torn or tampered.

        Oracle: a 200 means the object reads back as exactly the intended
        bytes; a body that cannot decode to them is never a 200.
        """
        w = self.w

        @fuzz_settings("chunked")
        @given(
            data=st.binary(max_size=3000),
            cuts=st.lists(st.integers(1, 3000), max_size=6),
            mutation=st.sampled_from(["none", "none", "none", "truncate", "bad-hex", "short-chunk", "long-chunk",
                                      "decoded-length", "checksum", "no-trailer", "undeclared-trailer", "zero-mid",
                                      "garbage-after", "no-final-crlf", "upper-hex", "lf-only"]),
            where=st.integers(0, 10**6),
            upload_part=st.booleans(),
            key=st.integers(0, 5),
        )
        def run(data: bytes, cuts: list[int], mutation: str, where: int, upload_part: bool, key: int) -> None:
            bounds = sorted({c for c in cuts if c < len(data)})
            chunks = [data[a:b] for a, b in zip([0] + bounds, bounds + [len(data)], strict=True) if b > a]
            crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
            decoded_length = len(data)
            trailer = f"x-amz-checksum-crc32:{crc}\r\n".encode()
            declared_trailer = "x-amz-checksum-crc32"
            corrupt = mutation in ("truncate", "decoded-length", "checksum", "no-trailer", "undeclared-trailer")
            framed = []
            for index, chunk in enumerate(chunks):
                size = b"%x" % len(chunk)
                if mutation == "upper-hex":
                    size = size.upper()
                if index == where % max(1, len(chunks)):
                    if mutation == "bad-hex":
                        size, corrupt = [b"zz", b"-5", b" ", b"0x10", b"f" * 20, b""][where % 6], True
                    elif mutation == "short-chunk":
                        size, corrupt = b"%x" % (len(chunk) + 1 + where % 3), True
                    elif mutation == "long-chunk" and len(chunk) > 1:
                        size, corrupt = b"%x" % (len(chunk) - 1), True
                    elif mutation == "zero-mid" and len(chunks) > 1:
                        size, corrupt = b"0", True
                eol = b"\n" if mutation == "lf-only" else b"\r\n"
                corrupt = corrupt or mutation == "lf-only"
                framed.append(size + eol + chunk + eol)
            if mutation == "checksum":
                trailer = f"x-amz-checksum-crc32:{base64.b64encode(zlib.crc32(data + b'x').to_bytes(4, 'big')).decode()}\r\n".encode()
            if mutation == "no-trailer":
                trailer = b""
            if mutation == "undeclared-trailer":
                trailer += b"x-amz-checksum-sha1:AAAA\r\n"
            if mutation == "decoded-length":
                decoded_length += 1 + where % 5
            body = b"".join(framed) + b"0\r\n" + trailer + (b"" if mutation == "no-final-crlf" else b"\r\n")
            if mutation == "truncate":
                end = len(b"".join(framed)) + 2  # cut before the final chunk header is complete
                body = body[: where % max(1, end)]
            if mutation == "garbage-after":
                body += b"GARBAGE\r\n"
            if upload_part:
                path = f"/{w.bucket}/{w.upload_key}".encode()
                query = b"partNumber=1&uploadId=" + w.upload_id.encode()
            else:
                path = f"/{w.bucket}/chunked-{key}".encode()
                query = b""
            headers = [
                ("Content-Encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", str(decoded_length)),
                ("x-amz-trailer", declared_trailer),
                ("Content-Length", str(len(body))),
            ]
            host = f"{w.host}:{w.port}"
            url = f"http://{host}{path.decode()}" + ("?" + query.decode() if query else "")
            signed = signed_headers("PUT", url, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            assert signed is not None
            raw = render("PUT", path + (b"?" + query if query else b""), [("Host", host)] + signed + [("Connection", "close")], body)
            answer = self.send(raw, "PUT", path)
            w.outcomes[f"chunked-{mutation}-{answer.status}"] += 1
            if corrupt:
                self.assertNotEqual(answer.status, 200, f"a torn body ({mutation}) was accepted\nrequest: {raw[:2000]!r}")
            if answer.status == 200 and not upload_part:
                got = self.signed_get(w.bucket, f"chunked-{key}")
                self.assertEqual(got.status, 200)
                self.assertEqual(got.body, data, f"stored bytes differ ({mutation})\nrequest: {raw[:2000]!r}")

        run()

    def test_raw_garbage(self) -> None:
        """Bytes that are barely HTTP: broken request lines, header lines, versions."""
        w = self.w
        host = f"{w.host}:{w.port}".encode()
        lines = st.one_of(
            st.binary(max_size=200),
            st.sampled_from([
                b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
                b"GET / HTTP/1.0\r\n\r\n",
                b"GET /" + w.bucket.encode() + b" HTTP/2.0\r\nHost: x\r\n\r\n",
                b"GET\r\n\r\n",
                b"GET /  HTTP/1.1\r\n\r\n",
                b"PUT /" + w.bucket.encode() + b"/k HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                b"PUT /" + w.bucket.encode() + b"/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"PUT /" + w.bucket.encode() + b"/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * 20000 + b"\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 600 + b"\r\n",
                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                b"\r\n\r\n\r\n",
                b"GET / HTTP/1.1\nHost: x\n\n",
            ]),
        )

        @fuzz_settings("raw")
        @given(data=lines, connection_close=st.booleans())
        def run(data: bytes, connection_close: bool) -> None:
            self.send(data, "GET", b"/", half_close=True)

        run()


class ClientFaultsAreNotBackendFaultsTests(SynchronousTestCase):
    """Found by the fuzzer: uploads a client spoils must not count against the backend's health."""

    def test_bad_uploads_do_not_mark_backends_down(self) -> None:
        # Default thresholds; health checks only at the start, so that a probe
        # slowed down by a busy machine can't be mistaken for blame.
        gateway = start_gateway("fuzz-health", balancer={"health_check_period": "1h"})
        self.addCleanup(gateway.daemon.stop)
        daemon = gateway.daemon
        bucket = gateway.new_bucket(prefix="fzh")
        poll(lambda: daemon.health()["status"] == "ok", timeout=10)
        data = b"abcdefghij" * 10
        wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big"))
        body = b"%x\r\n" % len(data) + data + b"\r\n0\r\nx-amz-checksum-crc32:" + wrong + b"\r\n\r\n"
        path = f"/{bucket}/spoiled"
        host = f"127.0.0.1:{daemon.port}"
        headers = [("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", str(len(data))),
                   ("x-amz-trailer", "x-amz-checksum-crc32"), ("Content-Length", str(len(body)))]
        seen = []
        for _ in range(8):
            signed = signed_headers("PUT", f"http://{host}{path}", headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            assert signed is not None
            raw = render("PUT", path.encode(), [("Host", host)] + signed + [("Connection", "close")], body)
            answer = exchange("127.0.0.1", daemon.port, raw, "PUT")
            self.assertEqual(answer.status, 400, answer.body)
            seen.append({name: (state["up"], state["consecutive_failures"], state["last_error"])
                         for name, state in daemon.health()["backends"].items()})
        for states in seen:
            for name, (up, failures, error) in states.items():
                self.assertTrue(up and failures == 0, f"{name} blamed for a client's bad digest: {error}")



class XmlEscapingTests(SynchronousTestCase):
    """Found by the fuzzer: a key with a control character makes the error document invalid XML."""

    def test_error_document_for_a_control_character_key_is_well_formed(self) -> None:
        w = world()
        path = f"/{w.bucket}/a%01b"
        host = f"{w.host}:{w.port}"
        headers = signed_headers("GET", f"http://{host}{path}", [], "UNSIGNED-PAYLOAD")
        assert headers is not None
        raw = render("GET", path.encode(), [("Host", host)] + headers + [("Connection", "close")], b"")
        answer = exchange(w.host, w.port, raw, "GET")
        self.assertEqual(answer.status, 404)
        ElementTree.fromstring(answer.body)  # raises ParseError today: <Key>a\x01b</Key>



class XmlEncodingTests(SynchronousTestCase):
    """Found by the fuzzer: an XML body declaring an unknown encoding is a 500."""

    def test_unknown_xml_encoding_is_malformed_xml(self) -> None:
        w = world()
        body = b"<?xml version='1.0' encoding='ebcdic'?><Delete><Object><Key>k</Key></Object></Delete>"
        path, host = f"/{w.bucket}", f"{w.host}:{w.port}"
        headers = [("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode()),
                   ("Content-Length", str(len(body)))]
        signed = signed_headers("POST", f"http://{host}{path}?delete", headers, "UNSIGNED-PAYLOAD")
        assert signed is not None
        raw = render("POST", path.encode() + b"?delete", [("Host", host)] + signed + [("Connection", "close")], body)
        answer = exchange(w.host, w.port, raw, "POST")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertIn(b"<Code>MalformedXML</Code>", answer.body)

