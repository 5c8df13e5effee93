"""
PutObject and UploadPart, streamed: the kinds of L{StreamedBody}
(L{PutObjectUpload}, L{UnknownLengthUpload} for a chunked body of no
declared length, L{PartUpload}), each the coroutine that delivers one body.

The order of effects is what keeps objects whole (docs/architecture.md,
"store/"):

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

from typing import TYPE_CHECKING, Any, Optional, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import Backend, BackendError, PutResult
from s3balance.backends.streaming import PipeProducer
from s3balance.errors import S3Error
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3 import checksum_parts
from s3balance.s3.intent_lease import INTENT_LEASE, give_up_write
from s3balance.s3.request import body_upstream
from s3balance.s3.streamed_body import StreamedBody
from s3balance.s3.writes import backend_headers, part_number, place_write, quota_error
from s3balance.store.interfaces import BackendFull, QuotaExceeded

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation
    from s3balance.s3.call import S3Call
    from s3balance.s3.handler_types import GatewayLike
    from s3balance.s3.request import S3Request

log = Logger()


class PutObjectUpload(StreamedBody):
    """PutObject: place, write, verify, commit."""

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        reservation = None
        intent = None
        lease = None
        try:
            await self._require_bucket()
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
                    await sleep(gateway.reactor, balancer.retry_delay)
                    if self._failed is not None:
                        raise self._failed from None  # the client left during the wait: place nothing more
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
            await self._require_bucket()
            upload = await store.get_multipart(call.query.get("uploadId", ""))
            if upload is None or upload.bucket != call.bucket or upload.key != call.key:
                raise S3Error("NoSuchUpload", UploadId=call.query.get("uploadId", ""))
            backend = gateway.pool.get(upload.backend)
            if backend is None or not gateway.pool.is_up(upload.backend):
                raise S3Error("ServiceUnavailable", "The backend holding this upload is unavailable; try again later.")
            checksum_parts.check_part(upload.headers, call)
            # The part's bytes are reserved on the upload's backend and in its
            # bucket (an intent now; the upload's row once the part is stored,
            # until the upload is completed or aborted).
            assert self.size is not None
            reservation = gateway.pool.reserve(upload.backend, self.size)
            try:
                intent = await store.begin_write(
                    upload.backend, upload.real_key, INTENT_LEASE, self.size, backend.config.max_size, upload.bucket
                )
            except QuotaExceeded as exceeded:
                raise quota_error(gateway, exceeded) from None
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

    def __init__(self, gateway: GatewayLike, request: S3Request, call: S3Call, length: Optional[int]) -> None:
        super().__init__(gateway, request, call, length)
        self._buffer = bytearray()
        self._parts: list[tuple[int, str]] = []
        self._queued = 0
        self._sending: Deferred[Any] = Deferred()
        self._sending.callback(None)
        self._paused = False
        # (backend, real_key, headers) once placed
        self._placed: Optional[tuple[Backend, str, dict[str, str]]] = None
        self._upload_id: Optional[str] = None
        # The reservation grows part by part (the intent's, checked by the
        # store): (local reservation, intent id) once placed, and the bytes
        # it covers (the first part's at first) and those given to parts.
        self._reserving: Optional[tuple[Reservation, int]] = None
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
            cast(IPushProducer, body_upstream(self.request)).pauseProducing()

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

        def create(_: object) -> Optional[Deferred[None]]:
            if self._upload_id is not None:
                return None
            return backend.create_multipart(real_key, headers).addCallback(
                lambda upload_id: setattr(self, "_upload_id", upload_id)
            )

        def send(_: object) -> Deferred[PutResult]:
            pipe = PipeProducer(len(data))
            pipe.write(data)
            pipe.finish()
            return backend.upload_part(real_key, cast(str, self._upload_id), number, pipe)  # created first

        def sent(result: PutResult) -> None:
            self._parts[number - 1] = (number, result.etag)
            self._queued -= len(data)
            if self._paused and len(self._buffer) + self._queued < 2 * self.PART_SIZE:
                self._paused = False
                if self.request is not None:  # None once the upload is over (_ended)
                    cast(IPushProducer, body_upstream(self.request)).resumeProducing()

        def failed(failure: Failure) -> Failure:
            if failure.check(QuotaExceeded):
                self._fail(quota_error(self.gateway, cast(QuotaExceeded, failure.value)))
            elif failure.check(BackendFull):
                self._fail(S3Error("InsufficientStorage", "The backend has no room for the rest of this object.", status=507))
            else:
                self._fail(S3Error("ServiceUnavailable", "The storage backend failed; the object was not stored."))
            return failure

        self._sending.addCallback(create).addCallback(send).addCallbacks(sent, failed)

    def _grow_reservation(self, size: int) -> Deferred[Any]:
        """Reserve C{size} more bytes for the parts to come (BackendFull or QuotaExceeded when they don't fit)."""
        assert self._placed is not None and self._reserving is not None
        backend = self._placed[0]
        reservation, intent_id = self._reserving
        reservation.grow(size)
        return self.gateway.store.grow_write(intent_id, backend.name, size, backend.config.max_size, self.call.bucket)

    async def _await_whole_body(self) -> None:
        """Wait for the end of the body; raise what failed the upload meanwhile."""
        if not await self.request.body_received:
            raise S3Error("RequestTimeout", "The client closed the connection.")
        if self._failed is not None:
            raise self._failed

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        reservation = intent = None
        lease = None
        try:
            await self._require_bucket()
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
            await self._await_whole_body()
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
                etag = await backend.complete_multipart(real_key, cast(str, self._upload_id), self._parts)
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

                def abort(_: object) -> Deferred[Any]:
                    return backend.abort_multipart(real_key, cast(str, self._upload_id))

                self._sending.addBoth(abort).addErrback(
                    lambda f: log.warn("could not abort upload on {backend}", backend=backend.name)
                )
            if intent is not None:
                await give_up_write(gateway, intent.id, error, True)
            await self._answer_failure(answer)
        finally:
            if reservation is not None:
                reservation.release()


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
