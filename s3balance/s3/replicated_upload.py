"""
PutObject of known length in a bucket with C{replicas: N} and
C{replication: sync} (L{ReplicatedPutObjectUpload}, chosen by
L{s3balance.s3.gateway.Gateway.start_upload}): the body streamed to N
backends at once (L{s3balance.backends.fanout}: paced by the slowest,
nothing held beyond each pipe's pending limit), the object committed with
every copy once all confirmed.  Any backend failing fails the write
(nothing recorded, every copy queued for deletion; a copy that had its
whole body and did not confirm only after the late-completion window); it
is tried again elsewhere only when no byte was sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.backends.backend import Backend, BackendError, client_caused
from s3balance.backends.fanout import all_stored, fan_out
from s3balance.placement.interfaces import PlacementContext
from s3balance.s3.intent_lease import INTENT_LEASE, IntentLease, give_up_write
from s3balance.s3.upload import PutObjectUpload, sleep
from s3balance.s3.writes import backend_headers, place_write
from s3balance.store.interfaces import Location

if TYPE_CHECKING:
    from s3balance.backends.pool import Reservation

log = Logger()


class ReplicatedPutObjectUpload(PutObjectUpload):
    """PutObject with every copy of a sync replicated bucket written at once."""

    async def _run(self) -> None:
        gateway, call, request = self.gateway, self.call, self.request
        copies = gateway.config.replication_of(call.bucket)[0]
        assert self.size is not None
        # Before the first wait: no body byte has reached the upload's own pipe yet.
        tee = fan_out(self.size, copies, self.pipe.upstream)
        for pipe in tee.pipes:
            pipe.stall_timeout, pipe.on_stall, pipe.clock = self.pipe.stall_timeout, self.pipe.on_stall, self.pipe.clock
            pipe.pending_limit = self.pipe.pending_limit
        assert self.pipe.written == 0
        self.pipe = tee
        balancer = gateway.config.balancer
        attempts = max(1, balancer.retry_attempts)
        exclude: list[str] = []
        placed: list[tuple[Reservation, Backend, str, int]] = []
        leases: list[IntentLease] = []
        # Backends that confirmed their copy.
        stored: set[str] = set()
        try:
            await self._require_bucket()
            for attempt in range(attempts):
                context = PlacementContext(call.bucket, call.key, self.size)
                for index in range(copies):
                    taken = exclude + [backend.name for _, backend, _, _ in placed]
                    reservation, backend, real_key, intent = await place_write(
                        gateway, context, self.size, INTENT_LEASE, taken, quota=index == 0
                    )
                    placed.append((reservation, backend, real_key, intent.id))
                    leases.append(self._renew_lease(intent.id))
                if request.whole_body:
                    self._complete_body()
                headers = backend_headers(call.bucket, call.key, self.content_type, self.headers)
                failed: list[str] = []
                stored.clear()
                requests = [
                    backend.put_object(real_key, pipe, headers).addBoth(_noting(stored, failed, backend.name))
                    for (_, backend, real_key, _), pipe in zip(placed, tee.pipes, strict=True)
                ]
                self._backend_request = all_stored(requests).addCallback(lambda results: results[0])
                tee.started.addCallback(lambda _: request.send_continue())
                try:
                    result = await self._await_body_and_backend()
                    break
                except BackendError as error:
                    if attempt + 1 == attempts or not error.retryable or tee.any_started():
                        raise
                    log.warn("a backend failed the replicated upload ({error}); trying others", error=str(error))
                    await self._release_copies(placed, leases, error)
                    exclude.extend(failed)
                    placed, leases = [], []
                    await sleep(gateway.reactor, balancer.retry_delay)
                    if self._failed is not None:
                        raise self._failed from None
            for lease in leases:
                lease.stop()
            leases = []
            # Reads start at the first location: the copies are listed from
            # one chosen by the key, so the reads of a bucket spread over its
            # backends (a strategy such as round-robin places every object's
            # first copy on the same backend when N copies divide its turn).
            turn = zlib.crc32(placed[0][2].encode()) % len(placed)
            (_, backend, real_key, intent_id), *others = placed[turn:] + placed[:turn]
            committing, placed = placed, []
            try:
                await self._commit(
                    intent_id, backend.name, real_key, result.etag,
                    [(other_intent, Location(other.name, other_key)) for _, other, other_key, other_intent in others],
                )
            except BaseException:
                placed = committing  # not committed: given up below
                raise
            finally:
                for reservation, _, _, _ in committing:
                    reservation.release()
        except Exception as error:
            answer = self._client_error(error)
            self._fail(answer)
            # A backend that had the whole body and did not confirm (cut off when
            # another failed, or failing itself) may store the copy still: its
            # key is deleted later (give_up_write).
            late = {
                backend.name
                for (_, backend, _, _), pipe in zip(placed, tee.pipes, strict=False)
                if pipe.delivered.called and backend.name not in stored
            }
            try:
                await self._release_copies(placed, leases, error, late)
            except Exception:
                log.failure("could not abandon the write intents of a replicated upload")
            await self._answer_failure(answer)
        finally:
            # (_ended lets go of the upload's own pipe; these would keep the upload in a cycle)
            for follower in tee.followers:
                follower.on_stall = None
                follower.upstream = None

    async def _release_copies(
        self,
        placed: list[tuple[Reservation, Backend, str, int]],
        leases: list[IntentLease],
        error: Exception,
        late: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Stop the leases, give up the intents and release the reservations of a replicated attempt."""
        for lease in leases:
            if lease.running:
                lease.stop()
        for reservation, _, _, _ in placed:
            reservation.release()
        for _, backend, _, intent_id in placed:
            await give_up_write(self.gateway, intent_id, error, True, late=backend.name in late)


def _noting(stored: set[str], failed: list[str], name: str) -> Callable[[Any], Any]:
    """
    A callback for backend C{name}'s request: notes it in C{stored} when it
    confirmed the copy, in C{failed} when it failed on its own (not
    cancelled or aborted by us); passes the result on.
    """

    def note(result: Any) -> Any:
        if not isinstance(result, Failure):
            stored.add(name)
        elif not client_caused(result):
            failed.append(name)
        return result

    return note
