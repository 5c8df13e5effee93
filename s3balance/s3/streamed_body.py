"""
The body sink of a request whose body is object data (PutObject,
UploadPart): L{StreamedBody} takes the body chunks from
L{s3balance.s3.request.S3Request} as they arrive, decodes (aws-chunked) and
verifies them, and forwards them to the backend request, holding the last
piece back until every digest, checksum and chunk signature has been
verified.  It also has what its kinds (L{s3balance.s3.upload}) share: the
commit of the object, the lease of its write intent, and the answer to the
client, a failure's included.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import RequestGenerationFailed, ResponseFailed, ResponseNeverReceived

from s3balance.auth.checksums import PayloadVerifier
from s3balance.auth.chunked import AwsChunkedDecoder
from s3balance.backends import retention
from s3balance.backends.backend import BackendError, PutResult
from s3balance.backends.streaming import BodyAborted, PipeProducer
from s3balance.errors import S3Error
from s3balance.s3 import acl, lifecycle, object_lock, tagging, versioning
from s3balance.s3.bodies import decoded_length, trailer_names
from s3balance.s3.deferreds import observe, raise_failure
from s3balance.s3.intent_lease import INTENT_LEASE, IntentLease
from s3balance.s3.request import body_upstream
from s3balance.s3.writes import MAX_SINGLE_PUT, backend_error_to_s3, complete_replicas, object_headers
from s3balance.store.interfaces import Location, ObjectRecord, PreconditionFailedError, StoreUnavailable

if TYPE_CHECKING:
    from s3balance.s3.access import BucketAccess
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.s3.request import S3Request

log = Logger()

PENDING_BEFORE_BACKEND = 64 * 1024


class StreamedBody:
    """
    The body sink of one request whose body is object data, and the
    coroutine that delivers it (L{_run}, one per operation).
    """

    unknown_length = False

    def __init__(self, gateway: GatewayLike, request: S3Request, call: S3Call, length: Optional[int]) -> None:
        self.gateway = gateway
        self.request = request
        self.call = call
        self.size: Optional[int]
        self.size, chunked = decoded_length(call, length)
        if self.size is None and not self.unknown_length:
            raise S3Error("MissingContentLength")
        if self.size is not None and self.size > MAX_SINGLE_PUT:
            raise S3Error("EntityTooLarge", MaxSizeAllowed=str(MAX_SINGLE_PUT), ProposedSize=str(self.size))
        self.content_type, self.headers = object_headers(call)
        self.decoder = AwsChunkedDecoder(call.auth, trailer_names(call)) if chunked else None
        self.verifier = PayloadVerifier(call.headers, call.auth)
        # The client's TCP transport: paused and resumed for backpressure.
        self.pipe = PipeProducer(self.size or 0, upstream=cast(IPushProducer, body_upstream(request)))
        self.pipe.stall_timeout = gateway.config.balancer.backend_timeout
        self.pipe.clock = gateway.reactor
        self.pipe.on_stall = lambda: self._fail(
            S3Error("ServiceUnavailable", "The storage backend stopped taking data; the object was not stored.")
        )
        self._held = b""
        self._body_complete = False
        self._received = 0
        self._failed: Optional[S3Error] = None
        self._checksums: dict[str, str] = {}
        self._backend_request: Optional[Deferred[PutResult]] = None
        # The bucket as the access decision saw it (L{_require_bucket}): its
        # owner is the new object's.
        self.bucket_access: Optional[BucketAccess] = None
        # What a PutObject or PostObject locks its version with (s3.object_lock).
        self.lock = object_lock.NO_LOCK
        # Fires when the upload is over.  Its waiter (Gateway.handle) stops
        # the upload with cancel(), never by cancelling the coroutine: a
        # store write under way always finishes, and the cleanup knows its
        # outcome.
        self.finished: Deferred[None] = Deferred()

    def start(self) -> None:
        # Until a backend is ready for the body, hold at most this much of it
        # (plus the one read held back for verification), then pause the
        # client.  Not pausing it at once spares a small object's upload
        # two epoll_ctl calls: its body is in before the backend is ready.
        self.pipe.pending_limit = PENDING_BEFORE_BACKEND
        ensureDeferred(self._run()).addBoth(self._ended).chainDeferred(self.finished)

    def _ended(self, result: Optional[Failure]) -> Optional[Failure]:
        """
        The coroutine is over: let go of the body and of the links back to
        this upload (the pipe's stall callback, the client transport), so a
        dropped upload is freed by reference counting at once, not at the
        cycle collector's next full pass.
        """
        self._held = b""
        self._backend_request = None
        self.pipe.on_stall = None
        self.pipe.upstream = None
        if not self.pipe.started.called:
            # Never started, never will: its callbacks (100 Continue to the
            # request) would keep request, upload and pipe in a cycle.
            self.pipe.started = Deferred()
        self.decoder = None
        # The request holds this upload (body_sink) until it is freed itself;
        # nothing here needs the request any more (late body bytes and
        # client_gone only see that the upload is over).  Typed S3Request:
        # nothing reads it after this but UnknownLengthUpload's `sent`, which checks.
        self.request = None  # type: ignore[assignment]
        return result

    def cancel(self) -> None:
        """
        The client is gone: stop the upload as a client that left does (see
        L{_fail}).  The coroutine goes on to its cleanup on its own.
        """
        self._fail(S3Error("RequestTimeout", "The client closed the connection."))

    # -- body events, from S3Request ------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._failed is not None:
            return
        try:
            if self.decoder is not None:
                data = self.decoder.feed(data)
            if not data:
                return
            self._received += len(data)
            if self.size is not None and self._received > self.size:
                raise S3Error("IncompleteBody", "The body is longer than its declared length.")
            self.verifier.update(data)
        except S3Error as error:
            self._fail(error)
            return
        if self._held:
            self.pipe.write(self._held)
        self._held = data

    def client_gone(self, reason: Optional[Failure]) -> None:
        self._fail(S3Error("RequestTimeout", "The client closed the connection."))

    def _fail(self, error: S3Error) -> None:
        """Stop forwarding; the coroutine cleans up and answers when the body is in."""
        if self._failed is None:
            self._failed = error
            self.pipe.abort(BodyAborted(error.code))
            self._held = b""
        # Also on a second call: a backend request opened after the first
        # failure (it raced with a store call) is cut here, in the cleanup.
        if self._backend_request is not None and not self._backend_request.called:
            self._backend_request.cancel()

    # -- the coroutine ----------------------------------------------------------

    async def _run(self) -> None:
        raise NotImplementedError

    def _complete_body(self) -> None:
        """
        The whole body is in: check its length and digests, then release the
        held-back bytes so the backend can complete the object.  Once only.
        """
        if self._body_complete:
            return
        if self._failed is not None:
            raise self._failed
        trailers = self.decoder.finish() if self.decoder is not None else {}
        if self._received != self.size:
            raise S3Error("IncompleteBody")
        self._checksums = self.verifier.finish(trailers)
        self._body_complete = True
        if self._held:
            self.pipe.write(self._held)
            self._held = b""
        self.pipe.finish()

    async def _await_body_and_backend(self) -> PutResult:
        """
        Wait for the whole body, verify it, release the held-back bytes and
        wait for the backend's answer.  A backend that fails while the body
        is still arriving ends the wait early.
        """
        backend_request = self._backend_request
        assert backend_request is not None
        if self._failed is not None:
            # Failed (or cancelled) while the store was asked: the pipe is
            # aborted, and the backend request just opened is cut by the cleanup.
            backend_request.addErrback(_ignore)
            raise self._failed
        outcome: dict[str, Any] = {}  # "backend": a PutResult or Failure; "body": whether it all came
        wake: Deferred[str] = Deferred()
        backend_done: Deferred[None] = Deferred()

        def on_backend(result: Union[PutResult, Failure]) -> None:
            outcome["backend"] = result
            backend_done.callback(None)
            if not wake.called:
                wake.callback("backend")

        def on_body(complete: bool) -> bool:
            outcome["body"] = complete
            if not wake.called:
                wake.callback("body")
            return complete

        backend_request.addBoth(on_backend)
        self.request.body_received.addCallback(on_body)
        await wake
        if "body" not in outcome:
            if isinstance(outcome["backend"], Failure):
                raise_failure(outcome.pop("backend"))
            if self.size != 0:
                raise S3Error("InternalError", "The backend answered before the body was complete.")
            # An empty object needs no byte from the client, so the backend
            # may answer first; the (aws-chunked) body still has to verify.
            outcome["body"] = await observe(self.request.body_received)
        if not outcome["body"]:
            raise S3Error("RequestTimeout", "The client closed the connection.")
        self._complete_body()
        # The backend has every byte; one that never answers is cut off after
        # balancer.backend_timeout (Backend._put_body: a BackendError "Timeout").
        await backend_done
        if isinstance(outcome["backend"], Failure):
            raise_failure(outcome.pop("backend"))
        return outcome["backend"]

    async def _require_bucket(self) -> BucketAccess:
        """The bucket, if the caller may write to it (C{Gateway.require_bucket}), kept for the commit."""
        bucket = self.bucket_access = await self.gateway.require_bucket(self.call)
        # Checked before any byte is placed, as every header of the write.
        if self.call.operation in ("PutObject", "UploadPart"):
            object_lock.require_integrity(self.call, bucket)
        if self.call.operation in ("PutObject", "PostObject"):
            self.lock = object_lock.requested(self.call, bucket, datetime.datetime.now(datetime.UTC))
        return bucket

    def _renew_lease(self, intent_id: int) -> IntentLease:
        """Keep a write intent alive while its upload runs (the cleaner takes expired ones)."""
        return IntentLease(self.gateway.store, intent_id, INTENT_LEASE, self.gateway.reactor).start()

    async def _commit(
        self, intent_id: int, backend: str, real_key: str, etag: str, copies: Sequence[tuple[int, Location]] = ()
    ) -> None:
        """
        Record the object the backend confirmed (replacing any previous
        version) and answer.  C{copies}: the intents and locations of its
        other copies, written at once (a bucket with replicas), committed
        with it.  A bucket that wants more copies than that gets them now
        or soon (L{s3balance.s3.writes.complete_replicas}) before the answer.
        """
        call = self.call
        assert self.size is not None
        # Read in _run before any byte was placed.
        assert self.bucket_access is not None
        owner = self.bucket_access.owner
        record = ObjectRecord(
            bucket=call.bucket,
            key=call.key,
            size=self.size,
            etag=etag,
            last_modified=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            content_type=self.content_type,
            headers=self.headers,
            checksums=self._checksums,
            locations=(Location(backend, real_key), *(location for _, location in copies)),
            # Checked before the upload began (Gateway.prepare).
            tags=tagging.requested(call.header("x-amz-tagging")),
            acl=acl.requested(call.headers, owner, self.gateway.config.s3api),
            lock_mode=self.lock.mode,
            lock_until=self.lock.until,
            legal_hold=self.lock.legal_hold,
        )
        # A locked version's copies on backends with Object Lock are locked
        # there too before they count (s3balance.backends.retention).
        await retention.protect(
            self.gateway.pool, record.locations, record.lock_mode, record.lock_until, record.legal_hold
        )
        try:
            stored = await self.gateway.store.commit_object(
                intent_id,
                record,
                if_match=call.header("if-match"),
                if_none_match=call.header("if-none-match"),
                also=[copy_intent for copy_intent, _ in copies],
            )
        except PreconditionFailedError:
            raise S3Error("PreconditionFailed") from None
        for location in record.locations:
            self.gateway.pool.add_usage(location.backend, self.size, 1)
        self.gateway.kick_deleter(replaced=True)
        await complete_replicas(self.gateway, stored)
        self._answer_stored(etag, await lifecycle.expiration_header(self.gateway, record), stored)

    def _answer_stored(
        self, etag: str, expiration: Optional[str] = None, stored: Optional[ObjectRecord] = None
    ) -> None:
        reply = {"ETag": etag}
        if expiration is not None:
            reply["x-amz-expiration"] = expiration
        if stored is not None and self.bucket_access is not None:
            reply.update(versioning.version_headers(self.bucket_access, stored))
        for name, value in self._checksums.items():
            reply[f"x-amz-checksum-{name}"] = value
        self.gateway.answer_empty(self.request, 200, reply)

    def _client_error(self, error: Exception) -> S3Error:
        """What the client hears of a failed upload; call it in the except clause (it logs)."""
        answer = self._answer_for(error)
        # Kept (in _failed, in the caller's frame) beyond the except clause,
        # a raised error's traceback (or that of the error it was raised
        # while handling) would tie those frames, and this upload with them,
        # into a reference cycle.
        answer.__traceback__ = answer.__context__ = answer.__cause__ = None
        return answer

    def _answer_for(self, error: Exception) -> S3Error:
        if isinstance(error, S3Error):
            return error
        if isinstance(error, CancelledError):
            # Our own doing (a backend request cut because the upload failed
            # or its client left): not a fault to log.
            return self._failed or S3Error("RequestTimeout", "The client closed the connection.")
        if self._failed is not None:
            # A consequence of the failure already decided (e.g. the aborted
            # backend request of a body that did not verify).
            return self._failed
        if isinstance(error, StoreUnavailable):
            log.warn("upload {id}: metadata database unavailable: {error}", id=self.request.request_id, error=str(error))
            return S3Error("ServiceUnavailable", "The metadata database is unavailable; try again later.")
        if isinstance(error, (RequestGenerationFailed, ResponseFailed, ResponseNeverReceived)):
            log.warn("upload {id}: the backend connection failed: {error}", id=self.request.request_id, error=str(error))
            return S3Error("ServiceUnavailable", "The storage backend failed; the object was not stored.")
        if isinstance(error, BackendError):
            log.warn(
                "upload of {bucket}/{key} failed: {error}", bucket=self.call.bucket, key=self.call.key, error=str(error)
            )
            return backend_error_to_s3(error)
        log.failure("upload {id} failed", id=self.request.request_id)
        return S3Error("InternalError")

    async def _answer_failure(self, error: S3Error) -> None:
        request = self.request
        if request.gone or request.answered_early:
            return
        if not request.body_received.called:
            if request.expects_continue and not request.continue_sent:
                request.answer_raw(error)
                return
            # Drain the rest of the body, then answer.
            request.discard_body()
            if not await observe(request.body_received):
                return
        self.gateway.answer_error(request, error)


def _ignore(failure: Failure) -> None:
    """The outcome of a backend request the upload gave up on."""
