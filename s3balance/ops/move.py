"""
Copying one object's bytes from a backend to another, for the drain
(L{s3balance.ops.drain}), the rebalance and the replicas, at a rate limit.

  - L{ObjectCopier.copy}: the object streamed to a fresh real key with the
    headers a PUT sends; a multipart object part by part with the source's
    part layout (C{HEAD ?partNumber=N}) where the source tells it, so the
    copy's ETag is the object's; objects over 5 GiB otherwise in parts of at
    least L{MIN_COPY_PART}.  The lengths are checked on both sides, and the
    ETag of a single PUT against the object's (an MD5).
  - L{Throttle}: a drain's bytes per second, shared by its copies, enforced
    by pausing the source connections (L{_Gate}).
  - L{place_copy} and L{copy_under_intent}: a copy's target and write
    intent, and the copy with the intent kept alive and given up on failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from s3balance.backends import retention
from s3balance.backends.backend import Backend, BackendError, PutResult
from s3balance.backends.streaming import BodyAborted, PipeProducer, relay_body
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3.intent_lease import INTENT_LEASE, IntentLease, give_up_write
from s3balance.s3.writes import MAX_SINGLE_PUT, backend_headers
from s3balance.store.interfaces import BackendFull, Location, ObjectRecord, StoreUnavailable
from s3balance.store.versions import weakens

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation
    from s3balance.s3.handler_types import GatewayLike

log = Logger()

# Objects of a multipart size (or whose source layout is unknown) are copied
# in parts of at least this size (S3 allows 10000 parts).
MIN_COPY_PART = 64 * 1024 * 1024
MAX_PARTS = 10000


class MoveError(Exception):
    """One object could not be moved (its drain goes on; the next pass tries it again)."""


def bare_etag(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


def is_md5_etag(etag: str) -> bool:
    """A single PUT's ETag: the MD5 of the bytes (a multipart object's ends in -<parts>)."""
    bare = bare_etag(etag)
    return len(bare) == 32 and all(c in "0123456789abcdef" for c in bare.lower())


class Throttle:
    """
    A drain's bytes per second, shared by its copies (a generic cell rate
    algorithm): L{charge} books bytes and says how long to wait before
    more.  After an idle spell up to C{burst} seconds' worth pass at once.
    """

    def __init__(self, rate: int, clock: Any, burst: float = 0.25) -> None:
        self.rate = rate
        self.clock = clock
        self.burst = burst
        self._free_at = clock.seconds() - burst

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def charge(self, size: int) -> float:
        """Book C{size} bytes; -> seconds to wait before the next."""
        if not self.limited:
            return 0.0
        now = self.clock.seconds()
        self._free_at = max(self._free_at, now - self.burst) + size / self.rate
        return self.wait()

    def wait(self) -> float:
        return max(0.0, self._free_at - self.clock.seconds()) if self.limited else 0.0


@implementer(IPushProducer)
class _Gate:
    """
    The source connection of one copy as its pipe's upstream, paused while
    the destination is slow (the pipe says so) or while the throttle says
    wait; resumed only when neither holds it.
    """

    def __init__(self, throttle: Throttle, clock: Any) -> None:
        self.throttle = throttle
        self.clock = clock
        self.producer: Optional[IPushProducer] = None
        self._held_by_pipe = False
        self._held_by_rate = False
        self._paused = False
        self._call: Optional[IDelayedCall] = None

    def wrap(self, producer: IPushProducer) -> IPushProducer:
        self.producer = producer
        self._apply()
        return self

    def took(self, size: int) -> None:
        if self.throttle.charge(size) > 0 and self._call is None:
            self._held_by_rate = True
            self._apply()
            self._call = self.clock.callLater(self.throttle.wait(), self._release)

    def _release(self) -> None:
        self._call = None
        wait = self.throttle.wait()
        if wait > 0:
            self._call = self.clock.callLater(wait, self._release)
            return
        self._held_by_rate = False
        self._apply()

    def _apply(self) -> None:
        wanted = self._held_by_pipe or self._held_by_rate
        if self.producer is not None and wanted != self._paused:
            self._paused = wanted
            if wanted:
                self.producer.pauseProducing()
            else:
                self.producer.resumeProducing()

    def close(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # IPushProducer, called by the pipe
    def pauseProducing(self) -> None:
        self._held_by_pipe = True
        self._apply()

    def resumeProducing(self) -> None:
        self._held_by_pipe = False
        self._apply()

    def stopProducing(self) -> None:
        self.close()
        if self.producer is not None:
            self.producer.stopProducing()




class ObjectCopier:
    """
    Copies objects between the backends of C{gateway}'s pool (its reactor
    and C{balancer.backend_timeout}, read at each copy).
    """

    def __init__(self, gateway: GatewayLike) -> None:
        self.gateway = gateway

    async def copy(
        self,
        source: Backend,
        source_key: str,
        target: Backend,
        real_key: str,
        record: ObjectRecord,
        throttle: Optional[Throttle],
    ) -> None:
        """Copy C{record}'s bytes at C{source_key} on C{source} to C{real_key} on C{target}; MoveError when they differ."""
        headers = backend_headers(record.bucket, record.key, record.content_type, dict(record.headers))
        layout = await self.layout(source, source_key, record.size, record.etag)
        if layout is None:
            result = await self.stream(
                source, source_key, None, record.size, lambda pipe: target.put_object(real_key, pipe, headers), throttle
            )
            if is_md5_etag(record.etag) and bare_etag(result.etag) != bare_etag(record.etag):
                raise MoveError(
                    f"the copy of {record.bucket}/{record.key} on {target.name} has ETag {result.etag}, "
                    f"not {record.etag}; not switched"
                )
            await self.protect(target, real_key, record)
            return
        upload_id = await target.create_multipart(real_key, headers)
        try:
            parts = []
            for number, (first, last) in enumerate(layout, 1):

                def send(pipe: PipeProducer, number: int = number) -> Deferred[PutResult]:
                    return target.upload_part(real_key, upload_id, number, pipe)

                result = await self.stream(source, source_key, (first, last), last - first + 1, send, throttle)
                parts.append((number, result.etag))
            etag = await target.complete_multipart(real_key, upload_id, parts)
        except BaseException:
            target.abort_multipart(real_key, upload_id).addErrback(
                lambda failure: log.warn("drain: could not abort the copy's upload on {backend}", backend=target.name)
            )
            raise
        if bare_etag(etag) != bare_etag(record.etag):
            # The bytes are the same (every part's length was checked); the
            # client keeps seeing the object's own ETag.
            log.info(
                "drain: {bucket}/{key} copied in {parts} part(s) with ETag {etag} (the object's: {ours})",
                bucket=record.bucket,
                key=record.key,
                parts=len(parts),
                etag=etag,
                ours=record.etag,
            )
        await self.protect(target, real_key, record)

    async def protect(self, target: Backend, real_key: str, record: ObjectRecord) -> None:
        """A locked version's new copy locked on its backend too, when that has Object Lock (before it counts)."""
        await retention.protect(
            self.gateway.pool, [Location(target.name, real_key)], record.lock_mode, record.lock_until, record.legal_hold
        )

    async def catch_up(self, record: ObjectRecord, location: Location) -> None:
        """
        A copy just recorded at C{location}, locked as its version is now.

        The copy was locked as C{record} was read (L{protect}), but
        PutObjectRetention or PutObjectLegalHold may have changed the version
        since, and sent the change to the copies it found.  The store orders
        the two (each locks the object's row): either the change found this
        copy's location, or this reads the changed version.  A backend that
        refuses is logged: the database still enforces the version's lock.
        """
        backend = self.gateway.pool.get(location.backend)
        if backend is None or not backend.config.object_lock:
            return
        try:
            current = await self.gateway.store.get_version(record.bucket, record.key, record.version_id or "null")
            if current is None or current.id != record.id:
                return
            if (current.lock_mode, current.lock_until) != (record.lock_mode, record.lock_until):
                # Weaker than the copy's (shortened or removed with the bypass): sent with it.
                weaker = weakens(record.lock_mode, record.lock_until, current.lock_mode, current.lock_until)
                await retention.put_retention(
                    backend, location.real_key, current.lock_mode, current.lock_until, bypass=weaker
                )
            if current.legal_hold != record.legal_hold:
                await retention.put_legal_hold(backend, location.real_key, current.legal_hold)
        except Exception as error:
            log.warn(
                "the lock of {bucket}/{key} changed while it was copied to {backend}; that copy could not "
                "follow it: {error}",
                bucket=record.bucket, key=record.key, backend=location.backend, error=f"{type(error).__name__}: {error}",
            )

    async def layout(self, source: Backend, key: str, size: int, etag: str) -> Optional[list[tuple[int, int]]]:
        """
        None for one PUT; else the byte ranges of the parts to copy: the
        source's own (HEAD ?partNumber=N) for a multipart object whose
        backend tells them, so the copy's ETag is the object's; parts of
        at least MIN_COPY_PART otherwise (objects over 5 GiB).
        """
        multipart = "-" in bare_etag(etag)
        if not multipart and size <= MAX_SINGLE_PUT:
            return None
        if multipart:
            ranges = await self.source_parts(source, key, size)
            if ranges is not None:
                return ranges
        if size <= MAX_SINGLE_PUT:
            return None
        part = max(MIN_COPY_PART, math.ceil(size / MAX_PARTS))
        return [(start, min(start + part, size) - 1) for start in range(0, size, part)]

    async def source_parts(self, source: Backend, key: str, size: int) -> Optional[list[tuple[int, int]]]:
        try:
            count, first = await source.head_part(key, 1)
            if not count or first is None or count > MAX_PARTS:
                return None
            ranges = [first]
            for number in range(2, count + 1):
                _, found = await source.head_part(key, number)
                if found is None:
                    return None
                ranges.append(found)
        except BackendError as error:
            log.info("drain: no part layout for {backend}/{key} ({error})", backend=source.name, key=key, error=str(error))
            return None
        expected = 0
        for first_byte, last_byte in ranges:
            if first_byte != expected or last_byte < first_byte:
                return None
            expected = last_byte + 1
        return ranges if expected == size else None

    async def stream(
        self,
        source: Backend,
        key: str,
        byte_range: Optional[tuple[int, int]],
        length: int,
        send: Callable[[PipeProducer], Deferred[PutResult]],
        throttle: Optional[Throttle],
    ) -> PutResult:
        """
        Stream C{length} bytes of C{key} (a range) from C{source} into the
        request C{send(pipe)} starts, each wait bounded by
        C{balancer.backend_timeout} as for a client's copy, the source paused
        as the throttle says.  The lengths are checked on both sides.
        """
        reactor = self.gateway.reactor
        timeout = self.gateway.config.balancer.backend_timeout
        response = await source.get_object(key, byte_range)
        pipe = PipeProducer(length)
        pipe.stall_timeout = timeout
        pipe.clock = reactor
        stalled: list[bool] = []

        def destination_stalled() -> None:
            stalled.append(True)
            pipe.abort(BodyAborted(f"the destination took no data for {timeout:g}s"))

        pipe.on_stall = destination_stalled
        gate = _Gate(throttle, reactor) if throttle is not None and throttle.limited else None
        sending = send(pipe)

        def register(producer: IPushProducer) -> None:
            pipe.upstream = gate.wrap(producer) if gate is not None else producer

        def write(data: bytes) -> None:
            pipe.write(data)
            if gate is not None:
                gate.took(len(data))

        received, stop = relay_body(response, write, register, length, idle_timeout=timeout, clock=reactor)

        def destination_failed(failure: Any) -> Any:
            stop()
            return failure

        sending.addErrback(destination_failed)
        try:
            await received
        except BaseException as error:
            pipe.abort(error if isinstance(error, BodyAborted) else BodyAborted(str(error)))
            stop()
            sending.cancel()
            try:
                await sending
            except BackendError:
                if not stalled:
                    raise
            except BaseException:
                pass
            if isinstance(error, CancelledError):
                raise
            if stalled:
                raise MoveError(f"{pipe.written} of {length} bytes: the destination stopped taking data") from None
            raise MoveError(f"reading {source.name}/{key} failed: {error}") from None
        finally:
            if gate is not None:
                gate.close()
        pipe.finish()
        return await sending


async def place_copy(
    gateway: GatewayLike, record: ObjectRecord, skipped: Iterable[str]
) -> tuple[Reservation, Backend, str, int]:
    """
    A backend for a copy of C{record} chosen by the strategy outside
    C{skipped} (the backends that hold a copy already, at least), its room
    reserved, and a write intent there for a fresh real key.  The intent
    names no bucket: a copy adds nothing to the virtual bucket's usage.  A
    backend the store finds full is passed over.  -> (reservation, backend,
    real key, intent id); MoveError when no backend can take it.
    """
    pool = gateway.pool
    skipped = list(skipped)
    context = PlacementContext(record.bucket, record.key, record.size)
    while True:
        reservation = pool.place(gateway.strategy, context, skipped, reserve=record.size)
        if reservation is None:
            raise MoveError(f"no backend can take {record.bucket}/{record.key} ({record.size} bytes) now")
        target = pool.get(reservation.backend)
        assert target is not None  # just placed there: in the pool
        real_key = gateway.new_real_key(record.bucket)
        try:
            intent = await gateway.store.begin_write(
                target.name, real_key, INTENT_LEASE, record.size, target.config.max_size
            )
        except BackendFull:
            reservation.release()
            skipped.append(target.name)
            continue
        except BaseException:
            reservation.release()
            raise
        return reservation, target, real_key, intent.id


async def copy_under_intent(
    gateway: GatewayLike,
    copier: ObjectCopier,
    record: ObjectRecord,
    source: Backend,
    source_key: str,
    target: Backend,
    real_key: str,
    intent_id: int,
    throttle: Optional[Throttle] = None,
) -> None:
    """
    C{copier.copy} with write intent C{intent_id}'s lease kept alive; on any
    failure the intent is given up (its key queued for deletion) and the
    error raised: a MoveError, or the outage, cancellation or database
    failure as it is.
    """
    lease = IntentLease(gateway.store, intent_id, INTENT_LEASE, gateway.reactor).start()
    try:
        await copier.copy(source, source_key, target, real_key, record, throttle)
    except BaseException as error:
        lease.stop()
        await give_up_write(gateway, intent_id, error, True)
        if isinstance(error, (MoveError, BackendError, CancelledError, StoreUnavailable)):
            raise
        raise MoveError(f"{type(error).__name__}: {error}") from error
    lease.stop()
