"""
PutObject, streamed.

The order of effects is what keeps objects whole (DESIGN.md "Store
consistency"):

  1. headers in: authenticated and routed (L{Gateway.prepare});
  2. the bucket is checked, a backend is placed (its room reserved), and a
     write intent for a fresh real key is recorded in the store;
  3. the backend request opens; only then is the client told to send
     (100 Continue) and its transport resumed;
  4. body bytes are decoded (aws-chunked), verified incrementally and
     forwarded, except the last piece, which is held back until every
     digest, checksum and chunk signature has been verified;
  5. the backend confirms with its ETag;
  6. the store commits the row in one transaction that also queues the
     replaced version's backend copy for deletion;
  7. the client gets 200; the deletion worker removes the old copy once
     the deletion grace (for reads already under way) has passed.

A failure anywhere before 6 aborts the backend request (the backend never
sees the last bytes, so it never completes the object), turns the intent
into a queued deletion and answers an S3 error.  Nothing is recorded.
"""

from __future__ import annotations

import datetime
from typing import Optional
from urllib.parse import quote

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import RequestGenerationFailed, ResponseFailed, ResponseNeverReceived

from s3balance.auth.checksums import PayloadVerifier
from s3balance.auth.chunked import AwsChunkedDecoder
from s3balance.backends.backend import BackendError
from s3balance.backends.streaming import BodyAborted, PipeProducer
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import checksum_parts, storage_class
from s3balance.s3.bodies import decoded_length, trailer_names
from s3balance.s3.intent_lease import IntentLease, give_up_write
from s3balance.store.interfaces import (
    BackendFull,
    Location,
    ObjectRecord,
    PreconditionFailedError,
    StoreUnavailable,
)

log = Logger()

STORED_HEADERS = ("content-disposition", "cache-control", "expires", "content-language")
MAX_SINGLE_PUT = 5 * 1024**3  # 5 GiB, S3's limit for one PUT
MAX_METADATA = 2048
INTENT_LEASE = 3600.0
PENDING_BEFORE_BACKEND = 64 * 1024


def object_headers(call) -> tuple[Optional[str], dict[str, str]]:
    """The content type and the headers stored with an object (and sent to the backend)."""
    headers: dict[str, str] = {}
    content_type = call.header("content-type") or "binary/octet-stream"
    encoding = call.header("content-encoding")
    if encoding:
        tokens = [t.strip() for t in encoding.split(",") if t.strip() and t.strip().lower() != "aws-chunked"]
        if tokens:
            headers["content-encoding"] = ", ".join(tokens)
    for name in STORED_HEADERS:
        value = call.header(name)
        if value is not None:
            headers[name] = value
    metadata_size = 0
    for name, values in call.headers.items():
        if name.startswith("x-amz-meta-"):
            headers[name] = ",".join(values)
            metadata_size += len(name) - len("x-amz-meta-") + len(headers[name])
    if metadata_size > MAX_METADATA:
        raise S3Error("MetadataTooLarge")
    storage_class.apply(headers, storage_class.requested(call))
    return content_type, headers


def backend_headers(bucket: str, key: str, content_type: Optional[str], headers: dict[str, str]) -> dict[str, str]:
    """What the backend receives with the bytes (see s3balance.backends.backend)."""
    out = {"Content-Type": content_type or "binary/octet-stream"}
    out.update(headers)
    out.pop(storage_class.HEADER, None)  # a label of ours, not the backend's
    quoted = quote(key, safe="/")
    out["x-amz-meta-s3balance-bucket"] = bucket
    if len(quoted) <= 512:
        out["x-amz-meta-s3balance-key"] = quoted
    return out


async def place_write(gateway, context: PlacementContext, size: int, lease: float, exclude=()) -> tuple:
    """
    Place a new object: a backend chosen by the strategy among those with
    room by this process's view (the pool's pre-filter), and a write intent
    for a fresh real key there reserving C{size} bytes, which the store
    grants only when they fit with every daemon's reservations.  A backend
    the store finds full is skipped for the next candidate.

    -> (local reservation, backend, real key, intent).  Raises
    InsufficientStorage (507) when no usable backend has room,
    ServiceUnavailable when none is usable.
    """
    pool = gateway.pool
    skipped = list(exclude)
    refused = False
    while True:
        reservation = pool.place(gateway.strategy, context, skipped, reserve=size)
        if reservation is None:
            if refused or pool.all_full(context.size, skipped):
                raise S3Error("InsufficientStorage", "No backend has room for this object.", status=507)
            raise S3Error("ServiceUnavailable", "No storage backend is available; try again later.")
        backend = pool.get(reservation.backend)
        real_key = gateway.new_real_key(context.bucket)
        try:
            intent = await gateway.store.begin_write(backend.name, real_key, lease, size, backend.config.max_size)
        except BackendFull as full:
            reservation.release()
            log.info("backend {backend} is full ({error}); placing elsewhere", backend=backend.name, error=str(full))
            skipped.append(backend.name)
            refused = True
            continue
        except BaseException:
            reservation.release()
            raise
        return reservation, backend, real_key, intent


class StreamedBody:
    """
    The body sink of one request whose body is object data, and the
    coroutine that delivers it (L{_run}, one per operation).
    """

    unknown_length = False

    def __init__(self, gateway, request, call, length: Optional[int]) -> None:
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
        self.pipe = PipeProducer(self.size or 0, upstream=request.channel.transport)
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
        self._backend_request: Optional[Deferred] = None
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

    def _ended(self, result):
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
        # client_gone only see that the upload is over).
        self.request = None
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

    def client_gone(self, reason) -> None:
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

    async def _await_body_and_backend(self):
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
        outcome: dict = {}
        wake: Deferred[str] = Deferred()
        backend_done: Deferred[None] = Deferred()

        def on_backend(result):
            outcome["backend"] = result
            backend_done.callback(None)
            if not wake.called:
                wake.callback("backend")

        def on_body(complete):
            outcome["body"] = complete
            if not wake.called:
                wake.callback("body")
            return complete

        backend_request.addBoth(on_backend)
        self.request.body_received.addCallback(on_body)
        await wake
        if "body" not in outcome:
            if isinstance(outcome["backend"], Failure):
                _raise(outcome.pop("backend"))
            if self.size != 0:
                raise S3Error("InternalError", "The backend answered before the body was complete.")
            # An empty object needs no byte from the client, so the backend
            # may answer first; the (aws-chunked) body still has to verify.
            outcome["body"] = await _observe(self.request.body_received)
        if not outcome["body"]:
            raise S3Error("RequestTimeout", "The client closed the connection.")
        self._complete_body()
        # The backend has every byte; one that never answers is cut off after
        # balancer.backend_timeout (Backend._put_body: a BackendError "Timeout").
        await backend_done
        if isinstance(outcome["backend"], Failure):
            _raise(outcome.pop("backend"))
        return outcome["backend"]

    def _renew_lease(self, intent_id: int) -> IntentLease:
        """Keep a write intent alive while its upload runs (the cleaner takes expired ones)."""
        return IntentLease(self.gateway.store, intent_id, INTENT_LEASE, self.gateway.reactor).start()

    async def _commit(self, intent_id: int, backend: str, real_key: str, etag: str) -> None:
        """Record the object the backend confirmed (replacing any previous version) and answer."""
        call = self.call
        assert self.size is not None
        record = ObjectRecord(
            bucket=call.bucket,
            key=call.key,
            size=self.size,
            etag=etag,
            last_modified=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            content_type=self.content_type,
            headers=self.headers,
            checksums=self._checksums,
            locations=(Location(backend, real_key),),
        )
        try:
            await self.gateway.store.commit_object(
                intent_id, record, if_match=call.header("if-match"), if_none_match=call.header("if-none-match")
            )
        except PreconditionFailedError:
            raise S3Error("PreconditionFailed") from None
        self.gateway.pool.add_usage(backend, self.size, 1)
        self.gateway.kick_deleter(replaced=True)
        self._answer_stored(etag)

    def _answer_stored(self, etag: str) -> None:
        reply = {"ETag": etag}
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
            if not await _observe(request.body_received):
                return
        self.gateway.answer_error(request, error)


class PutObjectUpload(StreamedBody):
    """PutObject: place, write, verify, commit."""

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        reservation = None
        intent = None
        lease = None
        try:
            await gateway.require_bucket(call.bucket)
            exclude: list[str] = []
            balancer = gateway.config.balancer
            attempts = max(1, balancer.retry_attempts)
            # A small body all in before the backend request (request.whole_body)
            # is replayable: its bytes are still in memory, so a backend that
            # fails or stalls after taking it can be replaced by another.
            spare: Optional[PipeProducer] = None
            for attempt in range(attempts):
                assert self.size is not None
                reservation, backend, real_key, intent = await place_write(
                    gateway, PlacementContext(call.bucket, call.key, self.size), self.size, INTENT_LEASE, exclude
                )
                lease = self._renew_lease(intent.id)
                if request.whole_body:
                    # A small body is all in by now: checked first, it goes
                    # out with the request's head in one send.
                    self._complete_body()
                    if self.pipe.replayable and attempt + 1 < attempts:
                        spare = self.pipe.replica()
                self._backend_request = backend.put_object(
                    real_key, self.pipe, backend_headers(call.bucket, call.key, self.content_type, self.headers)
                )
                self.pipe.started.addCallback(lambda _: request.send_continue())
                try:
                    result = await self._await_body_and_backend()
                    break
                except BackendError as error:
                    replay = spare is not None and error.is_outage
                    untouched = error.retryable and not self.pipe.started.called
                    if attempt + 1 == attempts or not (replay or untouched):
                        raise
                    log.warn(
                        "backend {backend} failed the upload ({error}); trying another",
                        backend=backend.name,
                        error=str(error),
                    )
                    lease.stop()
                    lease = None
                    await self._give_up_intent(intent.id, error)
                    intent = None
                    reservation.release()
                    reservation = None
                    exclude.append(backend.name)
                    if self.pipe.started.called and spare is not None:
                        # This pipe's bytes went to the failed backend; an
                        # unstarted one is sent again as is (it may still
                        # hold the client paused until it starts).
                        self.pipe, spare = spare, None
                    await _sleep(gateway.reactor, balancer.retry_delay)
            assert self.size is not None and lease is not None and intent is not None
            lease.stop()
            lease = None
            await self._commit(intent.id, backend.name, real_key, result.etag)
            intent = None
        except Exception as error:
            answer = self._client_error(error)
            if lease is not None and lease.running:
                lease.stop()
            self._fail(answer)
            if intent is not None:
                try:
                    await self._give_up_intent(intent.id, error)
                except Exception:
                    log.failure("could not abandon write intent {id}", id=intent.id)
            await self._answer_failure(answer)
        finally:
            if reservation is not None:
                reservation.release()

    async def _give_up_intent(self, intent_id: int, error: Exception) -> None:
        """Abandon the write intent of an attempt that failed with C{error} (see L{give_up_write})."""
        await give_up_write(self.gateway, intent_id, error, self.pipe.started.called)


class PartUpload(StreamedBody):
    """UploadPart: the part goes to the backend that holds the multipart upload."""

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        store = gateway.store
        reservation = intent = lease = None
        try:
            number = part_number(call)
            upload = await store.get_multipart(call.query.get("uploadId", ""))
            if upload is None or upload.bucket != call.bucket or upload.key != call.key:
                raise S3Error("NoSuchUpload", UploadId=call.query.get("uploadId", ""))
            backend = gateway.pool.get(upload.backend)
            if backend is None or not gateway.pool.is_up(upload.backend):
                raise S3Error("ServiceUnavailable", "The backend holding this upload is unavailable; try again later.")
            checksum_parts.check_part(upload.headers, call)
            # The part's bytes are reserved on the upload's backend (an intent
            # now; the upload's row once the part is stored, until the upload
            # is completed or aborted).
            assert self.size is not None
            reservation = gateway.pool.reserve(upload.backend, self.size)
            try:
                intent = await store.begin_write(
                    upload.backend, upload.real_key, INTENT_LEASE, self.size, backend.config.max_size
                )
            except BackendFull:
                raise S3Error(
                    "InsufficientStorage", "The backend holding this upload has no room for this part.", status=507
                ) from None
            lease = self._renew_lease(intent.id)
            self._backend_request = backend.upload_part(upload.real_key, upload.backend_upload_id, number, self.pipe)
            self.pipe.started.addCallback(lambda _: request.send_continue())
            result = await self._await_body_and_backend()
            lease.stop()
            lease = None
            await store.record_part(intent.id, upload.upload_id, self.size)
            intent = None
            await store.record_part_checksums(upload.upload_id, number, self.size, result.etag, self._checksums)
            self._answer_stored(result.etag)
        except Exception as error:
            answer = self._client_error(error)
            if lease is not None and lease.running:
                lease.stop()
            self._fail(answer)
            if intent is not None:
                # A part cut short is no object of its own: the upload's abort
                # (or the backend) discards it; only the reservation goes.
                try:
                    await store.abandon_write(intent.id, False)
                except Exception:
                    log.failure("could not abandon write intent {id}", id=intent.id)
            await self._answer_failure(answer)
        finally:
            if reservation is not None:
                reservation.release()


class UnknownLengthUpload(PutObjectUpload):
    """
    PutObject with a chunked body and no declared length.

    Backends need a Content-Length, so the body is cut into parts of
    L{PART_SIZE} held in memory (at most two at a time: one being sent, one
    filling; the client is paused beyond that).  A body that ends within the
    first part is stored with one PUT; a longer one becomes a multipart
    upload on the placed backend, created when the first part is full and
    completed only after the whole body was verified (aborted otherwise).
    """

    unknown_length = True
    PART_SIZE = 5 * 1024 * 1024
    MAX_PARTS = 10000

    def __init__(self, gateway, request, call, length: Optional[int]) -> None:
        super().__init__(gateway, request, call, length)
        self._buffer = bytearray()
        self._parts: list[tuple[int, str]] = []
        self._queued = 0
        self._sending: Deferred = Deferred()
        self._sending.callback(None)
        self._paused = False
        self._placed: Optional[tuple] = None  # (backend, real_key, headers) once placed
        self._upload_id: Optional[str] = None
        # The reservation grows part by part (the intent's, checked by the
        # store): (local reservation, intent id) once placed, and the bytes
        # it covers (the first part's at first) and those given to parts.
        self._reserving: Optional[tuple] = None
        self._covered = self.PART_SIZE
        self._assigned = 0

    def data_received(self, data: bytes) -> None:
        if self._failed is not None:
            return
        self._received += len(data)
        try:
            self.verifier.update(data)
        except S3Error as error:
            self._fail(error)
            return
        self._buffer += data
        self._queue_full_parts()
        if len(self._buffer) + self._queued >= 2 * self.PART_SIZE and not self._paused:
            self._paused = True
            self.request.channel.transport.pauseProducing()

    def _queue_full_parts(self) -> None:
        while self._placed is not None and len(self._buffer) >= self.PART_SIZE:
            self._queue_part(bytes(self._buffer[: self.PART_SIZE]))
            del self._buffer[: self.PART_SIZE]

    def _queue_part(self, data: bytes) -> None:
        """Send one part after those already queued; the first creates the multipart upload."""
        assert self._placed is not None
        backend, real_key, headers = self._placed
        number = len(self._parts) + 1
        if number > self.MAX_PARTS:
            self._fail(S3Error("EntityTooLarge"))
            return
        self._parts.append((number, ""))
        self._queued += len(data)
        self._assigned += len(data)
        more = self._assigned - self._covered
        if more > 0:
            self._covered += more
            self._sending.addCallback(lambda _: self._grow_reservation(more))

        def create(_):
            if self._upload_id is not None:
                return None
            return backend.create_multipart(real_key, headers).addCallback(
                lambda upload_id: setattr(self, "_upload_id", upload_id)
            )

        def send(_):
            pipe = PipeProducer(len(data))
            pipe.write(data)
            pipe.finish()
            return backend.upload_part(real_key, self._upload_id, number, pipe)

        def sent(result):
            self._parts[number - 1] = (number, result.etag)
            self._queued -= len(data)
            if self._paused and len(self._buffer) + self._queued < 2 * self.PART_SIZE:
                self._paused = False
                if self.request is not None:  # None once the upload is over (_ended)
                    self.request.channel.transport.resumeProducing()

        def failed(failure):
            if failure.check(BackendFull):
                self._fail(S3Error("InsufficientStorage", "The backend has no room for the rest of this object.", status=507))
            else:
                self._fail(S3Error("ServiceUnavailable", "The storage backend failed; the object was not stored."))
            return failure

        self._sending.addCallback(create).addCallback(send).addCallbacks(sent, failed)

    def _grow_reservation(self, size: int) -> Deferred:
        """Reserve C{size} more bytes for the parts to come (BackendFull when they don't fit)."""
        assert self._placed is not None and self._reserving is not None
        backend = self._placed[0]
        reservation, intent_id = self._reserving
        reservation.grow(size)
        return self.gateway.store.grow_write(intent_id, backend.name, size, backend.config.max_size)

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        reservation = intent = None
        lease = None
        try:
            await gateway.require_bucket(call.bucket)
            reservation, backend, real_key, intent = await place_write(
                gateway, PlacementContext(call.bucket, call.key, None), self.PART_SIZE, INTENT_LEASE
            )
            lease = self._renew_lease(intent.id)
            headers = backend_headers(call.bucket, call.key, self.content_type, self.headers)
            self._reserving = (reservation, intent.id)
            self._placed = (backend, real_key, headers)
            self._queue_full_parts()
            self.pipe.resumeProducing()
            request.send_continue()
            if not await request.body_received:
                raise S3Error("RequestTimeout", "The client closed the connection.")
            if self._failed is not None:
                raise self._failed
            self._checksums = self.verifier.finish({})
            self.size = self._received
            if not self._parts:
                pipe = PipeProducer(len(self._buffer))
                pipe.write(bytes(self._buffer))
                pipe.finish()
                etag = (await backend.put_object(real_key, pipe, headers)).etag
            else:
                if self._buffer:
                    self._queue_part(bytes(self._buffer))
                    self._buffer = bytearray()
                await self._sending
                etag = await backend.complete_multipart(real_key, self._upload_id, self._parts)
                self._upload_id = None
            lease.stop()
            await self._commit(intent.id, backend.name, real_key, etag)
            intent = None
        except Exception as error:
            answer = self._client_error(error)
            if lease is not None and lease.running:
                lease.stop()
            self._fail(answer)
            if self._upload_id is not None and self._placed is not None:
                backend, real_key, _ = self._placed
                self._sending.addBoth(lambda _: backend.abort_multipart(real_key, self._upload_id)).addErrback(
                    lambda f: log.warn("could not abort upload on {backend}", backend=backend.name)
                )
            if intent is not None:
                await give_up_write(gateway, intent.id, error, True)
            await self._answer_failure(answer)
        finally:
            if reservation is not None:
                reservation.release()


async def uncancelled(work: Deferred):
    """
    The result of C{work}, awaited to its end.  A handler cancelled meanwhile
    (its client left, see L{s3balance.s3.gateway.Gateway.handle}) goes on
    waiting instead of cancelling C{work}: a transaction handed to the
    store's threads runs on whatever happens here, and its caller must know
    whether it committed (a commit that succeeded must not be cleaned up as
    a failed write).  The cancellation is absorbed.
    """
    outcome: list = []
    waiter: list[Deferred] = []

    def done(result) -> None:
        outcome.append(result)
        if waiter and not waiter[0].called:
            waiter[0].callback(None)

    work.addBoth(done)
    while not outcome:
        waiter[:] = [Deferred()]
        try:
            await waiter[0]
        except CancelledError:
            continue
    result = outcome.pop()
    if isinstance(result, Failure):
        _raise(result)
    return result


def _raise(failure: Failure) -> None:
    """
    Raise C{failure}'s exception.  Not with C{failure.raiseException()}: its
    frame, in the exception's traceback, holds the failure, which holds the
    exception (a reference cycle through every frame of the upload).
    """
    error = failure.value
    del failure
    try:
        raise error
    finally:
        del error


def _ignore(failure: Failure) -> None:
    """The outcome of a backend request the upload gave up on."""


def _observe(shared: Deferred) -> Deferred:
    """
    A Deferred with C{shared}'s result that leaves C{shared} alone: awaiting
    a Deferred directly would take its result from later callbacks, and
    cancelling the wait would fail it for everybody.
    """
    copy: Deferred = Deferred()

    def forward(result):
        if not copy.called:
            copy.callback(result)
        return result

    shared.addBoth(forward)
    return copy


def part_number(call) -> int:
    try:
        number = int(call.query.get("partNumber", ""))
    except ValueError:
        number = 0
    if not 1 <= number <= 10000:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber")
    return number


def backend_error_to_s3(error: BackendError) -> S3Error:
    """What the client hears of a backend failure: its own 4xx codes pass, the rest is 503."""
    if 400 <= error.status < 500 and error.code in PASSED_BACKEND_CODES:
        return S3Error(error.code)
    return S3Error("ServiceUnavailable", "The storage backend failed; the data was not stored.")


PASSED_BACKEND_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload", "EntityTooLarge"})


def _sleep(reactor, seconds: float) -> Deferred:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
