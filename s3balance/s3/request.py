"""
The HTTP request object of the S3 face.

C{twisted.web.server.Request} collects the whole body (into a temporary file
above 100 kB) and only then renders.  For an S3 gateway that doubles latency
and disk I/O and caps object size by disk, so L{S3Request} acts as soon as the
headers are complete (C{gotLength}): it authenticates and routes the request
there, and for operations whose body is object data it hands every body chunk
(C{handleContentChunk}) to a streaming upload instead of a file.  Other bodies
(small XML documents) are kept in memory up to L{MAX_SMALL_BODY}.

A request that is rejected before its body was read is answered at once when
the client waits for C{100 Continue} (the body is then never sent), and
otherwise after the body was read and dropped.  Requests to our own paths
(C{/health}, C{/metrics}, C{/status}, C{/admin/}) are refused at their
headers (a missing token, a body over a few KiB) and answered at once.

L{s3balance.http.channel} holds the connection (L{S3Channel}: the server's
timeouts) and the site (L{S3Site}: the connection caps).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Optional, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers

from s3balance.errors import S3Error
from s3balance.http.transport import send_together
from s3balance.s3 import cors
from s3balance.s3.resource import body_limit

if TYPE_CHECKING:
    from s3balance.s3.call import S3Call

log = Logger()

MAX_SMALL_BODY = 4 * 1024 * 1024
# What an anonymous request not yet decided (its object's ACL will tell)
# may send as a body kept in memory.
UNDECIDED_BODY = 8 * 1024


class S3ResponseHeaders(Headers):
    """
    Response headers with S3's spelling: Twisted title-cases every name, but
    SDKs take user metadata names from the C{x-amz-meta-*} headers as they
    arrive, and S3 sends all C{x-amz-*} names in lower case.
    """

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(b"X-Amz-") else name), values


class BodySink(Protocol):
    """
    The streaming consumer of an upload's body: an
    L{s3balance.s3.streamed_body.StreamedBody}, which imports this module.
    """

    finished: Deferred[None]

    def data_received(self, data: bytes) -> None: ...

    def client_gone(self, reason: Optional[Failure]) -> None: ...

    def cancel(self) -> None: ...


def body_upstream(request: Any) -> Any:
    """
    What an upload pauses while its backend is slower than the client: the
    client connection, through the rate limits' gate when the request has
    one (s3balance.s3.ratelimit.PauseGate).
    """
    gate = getattr(request, "body_gate", None)
    return gate if gate is not None else request.channel.transport


def new_request_id() -> str:
    return os.urandom(8).hex().upper()


class S3Request(server.Request):
    """
    @ivar call: the routed and authenticated S3 call (set in C{gotLength}).
    @ivar body_sink: the streaming consumer of the body, for object uploads.
    @ivar early_error: an error found before the body was read, answered when
        the request is processed.
    """

    # S3 answers without a body carry no Content-Type.
    defaultContentType = None
    content: Any
    # The routed operation and target (set by Gateway.prepare, also when
    # authentication then fails), the S3 error code answered, and the body
    # bytes received: for the audit log (s3balance.s3.audit).
    operation: Optional[str] = None
    target: Any = None
    error_code: Optional[str] = None
    bytes_received = 0
    # The rate limits' byte throttle of this request and the gate its body's
    # reading is paused through (s3balance.s3.ratelimit), when it has one.
    throttle: Any = None
    body_gate: Any = None

    @property
    def _transport(self) -> Any:
        return self.channel.transport

    @property
    def _channel(self) -> Any:
        return self.channel

    @property
    def _site(self) -> Any:
        return self.channel.site  # type: ignore[attr-defined]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = S3ResponseHeaders()
        self.request_id = new_request_id()
        self.call: Optional[S3Call] = None
        self.body_sink: Optional[BodySink] = None
        self.early_error: Optional[S3Error] = None
        self.expects_continue = False
        self.continue_sent = False
        self.answered_early = False
        self._discarding = False
        self._small_body_size = 0
        self._small_body_limit = MAX_SMALL_BODY
        # The resource of one of our own paths (None for S3 requests).
        self.own_resource: Any = None
        # Fires True when the whole body is in, False when the client left first.
        self.body_received: Deferred[bool] = Deferred()
        self.whole_body = False  # True once body_received fired True

    # -- headers complete ---------------------------------------------------

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        if channel._path[:1] != b"/":
            self._absolute_form(channel)
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version
        expect = self.requestHeaders.getRawHeaders(b"expect")
        self.expects_continue = bool(
            expect and expect[0].lower() == b"100-continue" and self.clientproto == b"HTTP/1.1"
        )
        self.content = io.BytesIO()
        site = self._site
        gateway = site.gateway
        gateway.track(self)
        policy = gateway.config.s3api.cors
        if policy.enabled:
            origin = self.requestHeaders.getRawHeaders(b"origin")
            if origin:
                for name, value in cors.answer_headers(policy, origin[0].decode("latin-1")):
                    self.responseHeaders.setRawHeaders(name, [value])
        try:
            self.own_resource = site.resource.fixed_resource(self)
            if self.own_resource is not None:
                # Open to anyone: refused (or over its small limit) at the
                # headers, so no body is held for a request without a token.
                self._small_body_limit = body_limit(self.own_resource)
                if length != 0:
                    answer = site.resource.answer_before_body(self.own_resource, self, length)
                    if answer is not None:
                        self.answer_now(answer)
                return
            self.call = gateway.prepare(self, length)
            if self.call is not None and self.call.streaming:
                # We send 100 Continue ourselves once a backend is ready to
                # take the body; the channel must not send it now.
                self.requestHeaders.removeHeader(b"expect")
                self.content = None
                self.body_sink = gateway.start_upload(self, self.call, length)
            elif length is not None and length > MAX_SMALL_BODY:
                raise S3Error("EntityTooLarge", "The request body is too large for this operation.")
            elif self.call is not None and length != 0 and self.call.credential is None \
                    and gateway.config.s3api.auth_required and self.call.target.bucket is not None:
                self._admit_before_body(gateway)
        except S3Error as error:
            self.reject(error)
        except Exception:
            log.failure("preparing request {id} failed", id=self.request_id)
            self.reject(S3Error("InternalError"))

    def _admit_before_body(self, gateway: Any) -> None:
        """
        An anonymous request with a body kept in memory (a DeleteObjects or
        Put*Acl document): decided (C{Gateway.require_bucket}) before any of
        it is read, so that callers nobody granted anything hold no memory.
        The body's reading is paused meanwhile; a refusal is answered as
        one at the headers.  (Streamed bodies are decided before their
        backend is asked, and only a pipe's worth of them is ever held.)
        """
        from s3balance.s3.ratelimit import PauseGate

        gate = self.body_gate
        if gate is None:
            gate = self.body_gate = PauseGate(self._transport)
        gate.pauseProducing()

        def admitted(bucket: Any) -> None:
            if getattr(bucket, "awaiting_object", None) is not None:
                # Only the object's ACL may still allow it (a read, which
                # takes no body): no more than a crumb of body is kept.
                self._small_body_limit = min(self._small_body_limit, UNDECIDED_BODY)
            if not self.body_received.called:
                gate.resumeProducing()

        def refused(failure: Failure) -> None:
            if self.body_received.called:
                return  # the whole body came with the headers: the handler decides again
            if failure.check(S3Error):
                self.reject(failure.value)
            else:
                log.failure("deciding request {id} failed", failure, id=self.request_id)
                self.reject(S3Error("InternalError"))

        ensureDeferred(gateway.require_bucket(self.call)).addCallbacks(admitted, refused)

    def _absolute_form(self, channel: Any) -> None:
        """
        A request line with an absolute URI (as clients send to a proxy,
        RFC 9112 §3.2.2): its authority replaces Host and the rest is used
        as the path, so it is served like the origin-form request.
        """
        scheme, sep, rest = channel._path.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            return
        authority, slash, path = rest.partition(b"/")
        channel._path = b"/" + path
        if authority:
            self.requestHeaders.setRawHeaders(b"host", [authority])

    def reject(self, error: S3Error) -> None:
        """
        Answer C{error} without reading the body: at once when the client is
        still waiting for 100 Continue, else once the body was drained.
        """
        self.body_sink = None
        self.content = None
        self._discarding = True
        if self.expects_continue and not self.continue_sent:
            self.requestHeaders.removeHeader(b"expect")
            self.answer_raw(error)
        else:
            self.early_error = error
            self.discard_body()

    def discard_body(self) -> None:
        """Read and drop the rest of the body (to answer an error after it)."""
        self._discarding = True
        self._transport.resumeProducing()

    def answer_raw(self, error: S3Error) -> None:
        """Write a complete error response and close the connection."""
        if self.answered_early or self.finished or self.startedWriting:
            return
        self.answered_early = True
        self.error_code = error.code
        self.setResponseCode(error.status)
        body = error.to_xml(self.uri.split(b"?")[0].decode("latin-1"), self.request_id)
        try:
            reason = HTTPStatus(error.status).phrase
        except ValueError:
            reason = "Error"
        head = (
            f"HTTP/1.1 {error.status} {reason}\r\n"
            f"Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {self.request_id}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in error.headers)
            + "Server: s3balance\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        self._transport.write(head + body)
        self._channel.close_after_answer()
        self._site.gateway.observe_early_answer(self, error)

    def answer_now(self, body: bytes) -> None:
        """
        Send the response set up on this request (its code and headers) with
        C{body} before the request body was read, and close the connection.
        For our own paths; S3 errors go through L{answer_raw}.
        """
        if self.answered_early or self.finished or self.startedWriting:
            return
        self.answered_early = True
        self.body_sink = None
        self.content = None
        self._discarding = True
        # The channel would send 100 Continue after this answer.
        self.requestHeaders.removeHeader(b"expect")
        headers = self.responseHeaders
        headers.setRawHeaders(b"content-length", [str(len(body)).encode("ascii")])
        headers.setRawHeaders(b"connection", [b"close"])
        headers.setRawHeaders(b"server", [b"s3balance"])
        try:
            reason = HTTPStatus(self.code).phrase.encode("ascii")
        except ValueError:
            reason = b"Error"
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.code, reason)]
        for name, values in headers.getAllRawHeaders():
            lines.extend(name + b": " + value + b"\r\n" for value in values)
        lines.append(b"\r\n")
        if self.method != b"HEAD":
            lines.append(body)
        self._transport.write(b"".join(lines))
        self._channel.close_after_answer()

    def send_continue(self) -> None:
        if self.expects_continue and not self.continue_sent and not self.answered_early:
            self.continue_sent = True
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- body -----------------------------------------------------------------

    def handleContentChunk(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.throttle is not None:
            self.throttle.received(len(data))
        if self._discarding:
            return
        if self.body_sink is not None:
            self.body_sink.data_received(data)
            return
        self._small_body_size += len(data)
        if self._small_body_size > self._small_body_limit:
            if self.own_resource is not None:
                self.answer_now(self._site.resource.too_large(self))
            else:
                self.reject(S3Error("EntityTooLarge", "The request body is too large for this operation."))
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.content is None:
            self.content = io.BytesIO()
        super().requestReceived(command, path, version)

    def process(self) -> None:
        if self.answered_early:
            return
        self.setHeader(b"x-amz-request-id", self.request_id.encode("ascii"))
        if not self.body_received.called:
            self.whole_body = True
            self.body_received.callback(True)
        if self.finished or self._disconnected:
            # Answered while the body was still arriving (an upload that
            # failed early and drained the rest).
            return
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self.body_received.called:
            self.body_received.callback(False)
        sink, self.body_sink = self.body_sink, None
        if sink is not None:
            # The upload goes on to its cleanup on its own; dropping it here
            # undoes the request <-> upload cycle, so both are freed as soon
            # as the cleanup ends.
            sink.client_gone(reason)

    def write(self, data: bytes) -> None:
        """
        The first write sends the head and this data in one piece: Twisted
        writes them one after the other, and our transports send at once
        (L{s3balance.http.transport._EagerWrites}).
        """
        if self.throttle is not None and data:
            self.throttle.sent(len(data))
        if self.startedWriting or not data or self.channel is None:
            super().write(data)
            return
        send_together(self.channel.transport, functools.partial(server.Request.write, self, data))

    def setHeader(self, name: bytes, value: bytes) -> None:
        # Twisted stamps its own name and version on every response.
        if name.lower() == b"server":
            value = b"s3balance"
        super().setHeader(name, value)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.throttle is not None and streaming:
            producer = self.throttle.gate_for_answer(producer)
        super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self.throttle is not None:
            self.throttle.answer_producer_gone()
        super().unregisterProducer()

    @property
    def gone(self) -> bool:
        """The client connection is lost or the response is complete."""
        return bool(self._disconnected or self.finished)

    def finish(self) -> None:
        """
        Complete the response; nothing to do once the client has left (a
        client leaving is not an error: Twisted would raise C{RuntimeError}).
        """
        if self._disconnected:
            return
        super().finish()
