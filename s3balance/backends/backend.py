"""
One real bucket on one S3 backend, as a client.

Requests go through L{s3balance.backends.client.HTTPClient}, a lean HTTP/1.1
client on persistent connections (C{twisted.web.client.Agent} cost a third
of the daemon's CPU per small GET; see that module).  We never use
C{treq.request} for object traffic: treq wraps every agent in a gzip
C{ContentDecoderAgent}, which would silently decompress objects stored with
C{Content-Encoding: gzip} and change their bytes.  Small answers (control
requests, a PUT's answer, an error document) are read by L{s3balance.backends.answers.AnswerBody},
which cuts a backend that stops sending one for C{timeout} seconds.

What we send a backend (and nothing else): the method and real key, our own
SigV4 signature (UNSIGNED-PAYLOAD), Content-Length, and for writes the
content headers (Content-Type, Content-Encoding, Content-Disposition,
Cache-Control, Content-Language, Expires) and the client's x-amz-meta-*
headers, plus x-amz-meta-s3balance-bucket / -key naming the virtual object for
recovery.  Client authentication, checksum and aws-chunked headers are never
forwarded: the gateway verifies them itself and sends plain bytes.  On a
backend with C{object_lock}, a locked version's retention and legal hold
too, as sub-resources (L{s3balance.backends.retention}).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Optional
from urllib.parse import quote

import attr
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import RequestGenerationFailed
from twisted.web.iweb import IBodyProducer, IResponse

from s3balance.backends.answers import (
    AnswerBody,
    AnswerDeadline,
    find_text,
    ids_of_key,
    quoted,
    s3_error_code,
)
from s3balance.backends.client import HTTPClient
from s3balance.backends.operations import OperationCounter
from s3balance.backends.signing import BackendSigner
from s3balance.backends.streaming import BodyAborted, PipeProducer
from s3balance.config.schema import BackendConfig

log = Logger()

BYPASS = "x-amz-bypass-governance-retention"

# Failures that mean the request never reached the backend.
_NOT_CONNECTED = (ConnectError, DNSLookupError, TimeoutError)


def client_caused(result: object) -> bool:
    """A failure of our own making (an upload we aborted), not the backend's."""
    if not isinstance(result, Failure):
        return False
    if result.check(CancelledError, BodyAborted):
        return True
    if result.check(RequestGenerationFailed):
        return any(reason.check(BodyAborted, CancelledError) for reason in result.value.reasons)
    return False


def operation_class(method: str) -> Optional[str]:
    """The billing class of a request: A for writes and listings, B for reads, None when free."""
    if method in ("PUT", "POST"):
        return "A"
    if method in ("GET", "HEAD"):
        return "B"
    return None


# The code of a BackendError for a backend that did not answer in time.
TIMEOUT = "Timeout"


class BackendError(Exception):
    """
    A backend answered with an error or could not be reached.

    @ivar status: the HTTP status, or 0 when no response was received.
    @ivar code: the S3 error code from the backend's XML, if any.
    @ivar retryable: True when the backend never accepted the request body,
        so the same write may be tried on another backend.
    """

    def __init__(self, backend: str, status: int, code: str, message: str, retryable: bool = False) -> None:
        self.backend = backend
        self.status = status
        self.code = code
        self.retryable = retryable
        super().__init__(f"backend {backend}: {status} {code} {message}".strip())

    @property
    def is_outage(self) -> bool:
        """A failure that says something about the backend's health."""
        return self.status == 0 or self.status >= 500

    @property
    def timed_out(self) -> bool:
        """
        The backend had the whole body and gave no answer in time: it may
        have stored the object, or may yet store it (a late completion).
        """
        return self.status == 0 and self.code == TIMEOUT


@attr.s(frozen=True, auto_attribs=True)
class PutResult:
    etag: str


def make_http_client(reactor: Any, max_idle: int = 64, connect_timeout: float = 10.0) -> HTTPClient:
    # No automatic retry of requests with a body: a PUT body can't be replayed.
    return HTTPClient(reactor, max_idle=max_idle, idle_timeout=60.0, connect_timeout=connect_timeout)


class Backend:
    """
    A client of one real bucket.

    @ivar name: the configured real bucket name (also the backend's identity).
    """

    def __init__(self, config: BackendConfig, http: HTTPClient, reactor: Any) -> None:
        self.config = config
        self.name: str = config.name
        self._http = http
        self._reactor = reactor
        self.signer = BackendSigner(
            config.endpoint_url,
            config.name,
            config.region,
            config.access_key_id,
            config.secret_access_key,
            config.path_style,
        )
        # Passive health: callers report outcomes here; backends/health.py reads it.
        self.last_error: Optional[str] = None
        self.observers: list[Callable[[Backend, str, Any, float], object]] = []
        # Monthly operation counting (backends/operations.py), set by the pool.
        self.counter: Optional[OperationCounter] = None
        # Seconds a backend may keep us waiting for an answer (balancer.backend_timeout).
        self.timeout = 60.0

    def __repr__(self) -> str:
        return f"<Backend {self.name} {self.config.endpoint_url}>"

    # -- plumbing -----------------------------------------------------------

    def _request(
        self,
        method: str,
        real_key: Optional[str],
        query: str = "",
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[IBodyProducer] = None,
        length: Optional[int] = None,
        counted: bool = True,
    ) -> Deferred[IResponse]:
        if counted and self.counter is not None:
            self.counter.record(self.name, operation_class(method))
        signer = self.signer
        path, query = signer.target(real_key, query)
        to_sign = dict(headers) if headers else {}
        if length is not None:
            to_sign["Content-Length"] = str(length)
        signed = signer.sign_request(method, path, query, to_sign)
        target = f"{path}?{query}" if query else path
        lines = [f"{method} {target} HTTP/1.1", f"Host: {signer.host}"]
        lines.extend(f"{name}: {value}" for name, value in signed.items())
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            # A line break inside a value (as Twisted's Headers does: never
            # let a value start a header line of its own).
            text = "\r\n".join(line.replace("\r\n", " ").replace("\r", " ").replace("\n", " ") for line in lines)
        head = (text + "\r\n\r\n").encode("latin-1")
        started = time.monotonic()
        d = self._http.request(signer.endpoint, head, body, method == "HEAD")

        def observed(result: Any) -> Any:
            # A request we gave up on (client gone, timeout: the client's
            # cancellation fails it with CancelledError) or an upload we
            # aborted says nothing about the backend's health.
            if not client_caused(result):
                for observer in self.observers:
                    observer(self, method, result, time.monotonic() - started)
            return result

        return d.addBoth(observed)

    def _fail(self, response: IResponse, body: bytes) -> BackendError:
        code, message = s3_error_code(body)
        return BackendError(self.name, response.code, code, message)

    def _unreachable(self, failure: Failure) -> BackendError:
        retryable = bool(failure.check(*_NOT_CONNECTED))
        return BackendError(self.name, 0, "Unreachable", failure.getErrorMessage(), retryable=retryable)

    @inlineCallbacks
    def _simple(
        self,
        method: str,
        real_key: Optional[str],
        query: str = "",
        headers: Optional[Mapping[str, str]] = None,
        data: Optional[bytes] = None,
        ok: Sequence[int] = (200,),
        counted: bool = True,
        timeout_factor: float = 1.0,
    ) -> Generator[Deferred[Any], Any, tuple[IResponse, bytes]]:
        """A request with a small or empty body whose whole response we read."""
        body = None
        if data is not None:
            body = PipeProducer(len(data))
            body.write(data)
            body.finish()
        try:
            response = yield self._answer_within(
                self._request(method, real_key, query, headers, body, len(data) if data is not None else None, counted),
                timeout_factor,
            )
        except Exception as e:
            raise BackendError(
                self.name, 0, "Unreachable", str(e), retryable=isinstance(e, _NOT_CONNECTED)
            ) from e
        content = yield self._content(response)
        if response.code not in ok:
            raise self._fail(response, content)
        return response, content

    def _content(self, response: IResponse) -> Deferred[bytes]:
        """
        The whole (small) body of an answer.  A backend that sends none of
        it for C{timeout} seconds is cut off: L{BackendError} C{Timeout};
        a body cut short is a L{BackendError} too.
        """
        done: Deferred[bytes] = Deferred()
        reader = AnswerBody(done)
        response.deliverBody(reader)
        if not done.called:
            # Most answers are complete with their head: no timer for those.
            reader.watch(self._reactor, self.timeout)

        def failed(failure: Failure) -> Failure:
            if failure.check(BackendError):
                return failure
            if reader.expired:
                raise BackendError(self.name, 0, TIMEOUT, f"the answer stopped for {self.timeout:g}s")
            raise BackendError(self.name, 0, "Unreachable", f"answer cut short: {failure.getErrorMessage()}")

        return done.addErrback(failed)

    def _answer_within(self, d: Deferred, factor: float = 1.0) -> Deferred:
        """Cancel (and so cut the connection of) a request not answered in time."""
        return d.addTimeout(self.timeout * factor, self._reactor)

    # -- objects --------------------------------------------------------------

    def put_object(
        self,
        real_key: str,
        body: PipeProducer,
        headers: Mapping[str, str],
    ) -> Deferred[PutResult]:
        """
        Upload C{body.length} bytes from C{body} to C{real_key}.

        Fails with L{BackendError}; C{retryable} is set when the connection
        could not be made (no byte of the body was consumed).
        """
        return self._put_body(real_key, body, headers)

    def _put_body(
        self, real_key: str, body: PipeProducer, headers: Mapping[str, str], query: str = ""
    ) -> Deferred[PutResult]:
        """
        PUT C{body}.  Once its last byte is handed over, the backend has
        C{timeout} seconds to answer; then the request is cut and fails with
        a L{BackendError} C{Timeout} (status 0): the backend may still have
        stored the object, and may yet store it.
        """
        d = self._request("PUT", real_key, query=query, headers=headers, body=body, length=body.length)
        deadline = AnswerDeadline(self._reactor, self.timeout, d)
        body.delivered.addCallback(deadline.arm)

        def got(response: IResponse) -> Deferred[PutResult]:
            def read(content: bytes) -> PutResult:
                if response.code != 200:
                    raise self._fail(response, content)
                etag = response.headers.getRawHeaders(b"etag", [b""])[0].decode("latin-1")
                if not etag:
                    raise BackendError(self.name, response.code, "NoETag", "no ETag in PUT response")
                return PutResult(etag=quoted(etag))

            return self._content(response).addCallback(read)

        def failed(failure: Failure) -> Failure:
            if deadline.expired:
                raise BackendError(
                    self.name, 0, TIMEOUT, f"no answer within {self.timeout:g}s of the body's end"
                )
            if failure.check(BackendError) or client_caused(failure):
                return failure
            error = self._unreachable(failure)
            if body.started.called:
                error.retryable = False
            raise error

        return d.addCallbacks(got, failed)

    def get_object(
        self,
        real_key: str,
        byte_range: Optional[tuple[int, int]] = None,
    ) -> Deferred[IResponse]:
        """
        Start a GET; the response body is not read (stream it with
        L{s3balance.backends.streaming.relay_body}).  Non-2xx answers fail
        with L{BackendError}.
        """
        headers = {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        d = self._answer_within(self._request("GET", real_key, headers=headers))

        def got(response: IResponse) -> IResponse | Deferred[IResponse]:
            if response.code in (200, 206):
                return response
            return self._content(response).addCallback(lambda body: (_ for _ in ()).throw(self._fail(response, body)))

        def failed(failure: Failure) -> Failure:
            if failure.check(BackendError):
                return failure
            raise self._unreachable(failure)

        return d.addCallbacks(got, failed)

    def delete_object(self, real_key: str) -> Deferred:
        """
        Delete C{real_key}; a key that is already gone counts as deleted.
        On a backend with C{object_lock} (a versioned real bucket): every
        version of it (L{s3balance.backends.retention.delete_every_version}).
        """
        if self.config.object_lock:
            return self._delete_every_version(real_key)
        return self._simple("DELETE", real_key, ok=(200, 204, 404))

    @inlineCallbacks
    def _delete_every_version(self, real_key: str) -> Generator[Deferred[Any], Any, None]:
        """Every version and marker of C{real_key}, with the bypass (see L{s3balance.backends.retention})."""
        query = f"versions=&prefix={quote(real_key, safe='')}"
        for _ in range(5):
            response, content = yield self._simple("GET", None, query, ok=(200, 404))
            ids = ids_of_key(content, real_key, ("Version", "DeleteMarker"), "VersionId") if response.code == 200 else []
            if not ids:
                return
            for version_id in ids:
                yield self._simple("DELETE", real_key, f"versionId={quote(version_id, safe='')}", {BYPASS: "true"},
                                   ok=(200, 204, 404))
        # Still versions after five rounds: not deleted (the deletion stays queued), not reported done.
        raise BackendError(self.name, 200, "VersionsLeft", f"versions of {real_key} are left after 5 rounds")

    def put_control(self, real_key: str, query: str, document: bytes, bypass: bool = False) -> Deferred:
        """PUT a sub-resource's XML C{document} (C{?retention}, C{?legal-hold}) with the Content-MD5 S3 requires."""
        headers = {"Content-Type": "application/xml", "Content-MD5": base64.b64encode(hashlib.md5(document).digest()).decode()}
        if bypass:
            headers[BYPASS] = "true"
        return self._simple("PUT", real_key, query, headers, data=document, ok=(200, 204))

    @inlineCallbacks
    def head_object(self, real_key: str) -> Generator[Deferred[Any], Any, tuple[int, str]]:
        """-> (size, etag) of an object on the backend."""
        response, _ = yield self._simple("HEAD", real_key)
        length = response.headers.getRawHeaders(b"content-length", [b"0"])[0]
        etag = response.headers.getRawHeaders(b"etag", [b""])[0].decode("latin-1")
        return int(length), etag

    def list_parts(self, real_key: str, upload_id: str, marker: int = 0, max_parts: int = 1000) -> Deferred:
        """-> the backend's ListParts XML document (bytes)."""
        query = f"max-parts={max_parts}&part-number-marker={marker}&uploadId={quote(upload_id, safe='')}"
        return self._simple("GET", real_key, query).addCallback(lambda result: result[1])

    @inlineCallbacks
    def copy_object(self, real_key: str, source_key: str, headers: Mapping[str, str]) -> Generator[Deferred[Any], Any, str]:
        """Server-side copy of C{source_key} of this real bucket to C{real_key}. -> ETag"""
        copy_headers = dict(headers)
        copy_headers["x-amz-copy-source"] = f"/{quote(self.name, safe='')}/{quote(source_key, safe='/~')}"
        copy_headers["x-amz-metadata-directive"] = "REPLACE"
        _, content = yield self._simple("PUT", real_key, headers=copy_headers)
        if b"<Error>" in content[:512]:
            raise BackendError(self.name, 200, *s3_error_code(content))
        etag = find_text(content, "ETag")
        if not etag:
            raise BackendError(self.name, 200, "BadResponse", "no ETag in CopyObject answer")
        return quoted(etag)

    @inlineCallbacks
    def upload_part_copy(
        self, real_key: str, upload_id: str, part_number: int, source_key: str, byte_range: tuple[int, int] | None
    ) -> Generator[Deferred[Any], Any, str]:
        """Server-side UploadPartCopy from C{source_key} of this real bucket. -> ETag"""
        headers = {"x-amz-copy-source": f"/{quote(self.name, safe='')}/{quote(source_key, safe='/~')}"}
        if byte_range is not None:
            headers["x-amz-copy-source-range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        query = f"partNumber={part_number}&uploadId={quote(upload_id, safe='')}"
        _, content = yield self._simple("PUT", real_key, query, headers=headers)
        if b"<Error>" in content[:512]:
            raise BackendError(self.name, 200, *s3_error_code(content))
        etag = find_text(content, "ETag")
        if not etag:
            raise BackendError(self.name, 200, "BadResponse", "no ETag in UploadPartCopy answer")
        return quoted(etag)

    def head_bucket(self) -> Deferred:
        """The health probe; not counted against operation limits."""
        return self._simple("HEAD", None, ok=(200,), counted=False)

    def presign_get(
        self, real_key: str, expires: int, query: str = "", headers: Mapping[str, str] | None = None
    ) -> str:
        """A presigned GET URL; C{headers} are signed into it (the client must send them)."""
        return self.signer.presign("GET", real_key, expires, query, headers)

    # -- multipart ------------------------------------------------------------

    @inlineCallbacks
    def create_multipart(self, real_key: str, headers: Mapping[str, str]) -> Generator[Deferred[Any], Any, str]:
        _, content = yield self._simple("POST", real_key, "uploads=", headers, data=b"")
        upload_id = find_text(content, "UploadId")
        if not upload_id:
            raise BackendError(self.name, 200, "BadResponse", "no UploadId")
        return upload_id

    def upload_part(self, real_key: str, upload_id: str, part_number: int, body: PipeProducer) -> Deferred[PutResult]:
        query = f"partNumber={part_number}&uploadId={quote(upload_id, safe='')}"
        return self._put_body(real_key, body, {}, query)

    @inlineCallbacks
    def complete_multipart(self, real_key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> Generator[Deferred[Any], Any, str]:
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts
        )
        data = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        query = f"uploadId={quote(upload_id, safe='')}"
        # Completing a large upload can take minutes on some providers.
        response, content = yield self._simple(
            "POST", real_key, query, {"Content-Type": "application/xml"}, data=data, timeout_factor=10.0
        )
        # A 200 can still carry an error document (S3's long-running complete).
        if b"<Error>" in content[:512]:
            raise self._fail(response, content)
        etag = find_text(content, "ETag")
        if not etag:
            raise BackendError(self.name, 200, "BadResponse", "no ETag in CompleteMultipartUpload answer")
        return quoted(etag)

    @inlineCallbacks
    def multipart_uploads_of(self, real_key: str) -> Generator[Deferred[Any], Any, list[str]]:
        """The backend ids of the open multipart uploads of exactly C{real_key}."""
        query = f"prefix={quote(real_key, safe='')}&uploads="
        response, content = yield self._simple("GET", None, query, ok=(200, 404))
        if response.code == 404:
            return []
        return ids_of_key(content, real_key, ("Upload",), "UploadId")

    def abort_multipart(self, real_key: str, upload_id: str) -> Deferred:
        query = f"uploadId={quote(upload_id, safe='')}"
        return self._simple("DELETE", real_key, query, ok=(200, 204, 404))

    @inlineCallbacks
    def head_part(
        self, real_key: str, part_number: int
    ) -> Generator[Deferred[Any], Any, tuple[Optional[int], Optional[tuple[int, int]]]]:
        """
        HEAD one part of a multipart object (C{?partNumber=N}, as S3 answers
        it): -> (the object's part count, the part's byte range, first and
        last), each None when the backend does not say (an object that is no
        multipart object, or a backend without the parameter).
        """
        response, _ = yield self._simple("HEAD", real_key, f"partNumber={part_number}", ok=(200, 206))
        count = response.headers.getRawHeaders(b"x-amz-mp-parts-count", [b""])[0]
        found = re.fullmatch(rb"bytes (\d+)-(\d+)/\d+", response.headers.getRawHeaders(b"content-range", [b""])[0])
        return (
            int(count) if count.isdigit() else None,
            (int(found.group(1)), int(found.group(2))) if found else None,
        )
